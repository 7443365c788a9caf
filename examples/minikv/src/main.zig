//! minikv: a small Redis-compatible (RESP2) server, the sample target for
//! zprof. It serves on 127.0.0.1 only.
//!
//!     minikv [--port N] [--allocator debug|smp] [--scratch arena|fba|stack-fallback]
//!            [--defect NAME[=VALUE]]... [--fault NAME]...
//!            [--crash-after N] [--hang-after N] [--full-after N] [--append-only FILE]
//!            [--tick HZ]
//!
//! The defects named in src/planted.zig are on in every run, as if passed
//! with `--defect` before the command line's own: a defect planted in the
//! source rather than asked for.

const std = @import("std");
const posix = std.posix;
const shape = @import("shape");

const defects = @import("defects.zig");
const faults = @import("faults.zig");
const flags = @import("flags.zig");
const planted = @import("planted.zig");
const Server = @import("server.zig").Server;
const Scratch = @import("server.zig").Scratch;
const AppendLog = @import("append_log.zig").AppendLog;
const cron = @import("cron.zig");

const default_port = 6380;
/// Pending-connection queue; Redis' default tcp-backlog.
const listen_backlog = 511;

/// Where all of minikv's memory comes from: the keyspace, every connection's
/// buffers and scratch, and the command line itself.
const AllocatorKind = enum {
    /// `std.heap.DebugAllocator(.{})`: Zig's general-purpose allocator, with
    /// its safety checks and per-allocation stack traces.
    debug,
    /// `std.heap.smp_allocator`: Zig's allocator for multithreaded release builds.
    smp,

    pub fn flagName(kind: AllocatorKind) []const u8 {
        return flags.name(AllocatorKind, kind);
    }

    pub fn fromFlagName(name: []const u8) ?AllocatorKind {
        return flags.parse(AllocatorKind, name);
    }
};

const Options = struct {
    port: u16 = default_port,
    allocator: AllocatorKind = .debug,
    scratch: Scratch = .arena,
    defects: defects.Set = .initEmpty(),
    defect_params: defects.Params = .{},
    faults: faults.Set = .initEmpty(),
    limits: faults.Limits = .{},
    /// `--append-only FILE`: a slice of the command line, valid while it is.
    append_only: ?[]const u8 = null,
    /// `--tick HZ`: housekeeping allocations HZ times a second (`cron.zig`); 0: none.
    tick_hz: u32 = 0,
};

const OptionsError = error{
    UnknownFlag,
    MissingValue,
    InvalidPort,
    InvalidCount,
    UnknownDefect,
    InvalidDefectValue,
    UnknownPlantedDefect,
    InvalidPlantedDefectValue,
    UnknownFault,
    UnknownScratch,
    UnknownAllocator,
    HelpRequested,
};

/// Parses the arguments after the program name, after turning on the
/// `planted_defects` (src/planted.zig's) as if each came with `--defect`
/// first. On error, `bad_arg` is the argument (or planted name) to blame in
/// the message.
fn parseOptions(planted_defects: []const []const u8, args: []const [:0]const u8, bad_arg: *[]const u8) OptionsError!Options {
    var options: Options = .{};
    for (planted_defects) |text| {
        bad_arg.* = text;
        defects.enable(&options.defects, &options.defect_params, text) catch |err| return switch (err) {
            error.UnknownDefect => error.UnknownPlantedDefect,
            error.InvalidDefectValue => error.InvalidPlantedDefectValue,
        };
    }
    var i: usize = 0;
    while (i < args.len) : (i += 1) {
        const flag = args[i];
        bad_arg.* = flag;
        if (std.mem.eql(u8, flag, "--help") or std.mem.eql(u8, flag, "-h")) return error.HelpRequested;

        const Flag = enum { port, allocator, scratch, defect, fault, crash_after, hang_after, full_after, append_only, tick };
        if (!std.mem.startsWith(u8, flag, "--")) return error.UnknownFlag;
        const which = flags.parse(Flag, flag[2..]) orelse return error.UnknownFlag;
        i += 1;
        if (i == args.len) return error.MissingValue;
        const value = args[i];
        bad_arg.* = value;

        switch (which) {
            .port => options.port = std.fmt.parseInt(u16, value, 10) catch return error.InvalidPort,
            .allocator => options.allocator = AllocatorKind.fromFlagName(value) orelse return error.UnknownAllocator,
            .scratch => options.scratch = Scratch.fromFlagName(value) orelse return error.UnknownScratch,
            .defect => try defects.enable(&options.defects, &options.defect_params, value),
            .fault => options.faults.insert(faults.Fault.fromFlagName(value) orelse return error.UnknownFault),
            .crash_after => options.limits.crash_after = std.fmt.parseInt(u64, value, 10) catch return error.InvalidCount,
            .hang_after => options.limits.hang_after = std.fmt.parseInt(u64, value, 10) catch return error.InvalidCount,
            .full_after => options.limits.full_after = std.fmt.parseInt(usize, value, 10) catch return error.InvalidCount,
            .append_only => options.append_only = value,
            .tick => {
                options.tick_hz = std.fmt.parseInt(u32, value, 10) catch return error.InvalidCount;
                if (options.tick_hz > cron.max_hz) return error.InvalidCount;
            },
        }
    }
    return options;
}

/// The allocator the command line asks for, found before anything is
/// allocated, so that the command line itself is read with it. It walks the
/// arguments as `parseOptions` does (every flag but --help takes a value); a
/// value that parseOptions refuses counts as the default, and parseOptions
/// then reports it.
fn requestedAllocator(args: []const [*:0]const u8) AllocatorKind {
    var kind: AllocatorKind = .debug;
    var i: usize = 0;
    while (i + 1 < args.len) : (i += 2) {
        const flag = std.mem.span(args[i]);
        if (std.mem.eql(u8, flag, "--help") or std.mem.eql(u8, flag, "-h")) break;
        if (std.mem.eql(u8, flag, "--allocator")) kind = AllocatorKind.fromFlagName(std.mem.span(args[i + 1])) orelse .debug;
    }
    return kind;
}

const usage = "usage: minikv [--port N] [--allocator debug|smp] [--scratch arena|fba|stack-fallback] [--defect NAME[=VALUE]]... [--fault NAME]... [--crash-after N] [--hang-after N] [--full-after N] [--append-only FILE] [--tick HZ]";

/// Reports a bad command line on one line of stderr and exits with status 2.
fn exitUsageError(err: OptionsError, bad_arg: []const u8) noreturn {
    switch (err) {
        error.HelpRequested => {
            std.debug.print("{s}\ndefects:", .{usage});
            defects.printAll();
            std.debug.print(" (slow-get alone: {d} ns)\nfaults:", .{defects.default_slow_get_ns});
            flags.printAll(faults.Fault);
            std.debug.print("\nplanted (on in every run, from src/planted.zig):", .{});
            if (planted.defects.len == 0) std.debug.print(" none", .{});
            for (planted.defects) |text| std.debug.print(" {s}", .{text});
            std.debug.print("\n", .{});
            std.process.exit(0);
        },
        error.UnknownFlag => std.debug.print("minikv: unknown flag '{s}' ({s})\n", .{ bad_arg, usage }),
        error.MissingValue => std.debug.print("minikv: {s} needs a value ({s})\n", .{ bad_arg, usage }),
        error.InvalidPort => std.debug.print("minikv: invalid port '{s}' (expected 0-65535)\n", .{bad_arg}),
        error.InvalidCount => std.debug.print("minikv: invalid count '{s}' (expected a whole number)\n", .{bad_arg}),
        error.UnknownScratch => {
            std.debug.print("minikv: unknown scratch '{s}' (known:", .{bad_arg});
            flags.printAll(Scratch);
            std.debug.print(")\n", .{});
        },
        error.UnknownDefect, error.UnknownPlantedDefect => {
            const where = if (err == error.UnknownPlantedDefect) " planted in src/planted.zig" else "";
            std.debug.print("minikv: unknown defect '{s}'{s} (known:", .{ bad_arg, where });
            defects.printAll();
            std.debug.print(")\n", .{});
        },
        error.InvalidDefectValue, error.InvalidPlantedDefectValue => {
            const where = if (err == error.InvalidPlantedDefectValue) " planted in src/planted.zig" else "";
            std.debug.print("minikv: invalid defect '{s}'{s} (slow-get=NS takes a whole number of nanoseconds; the others take no value)\n", .{ bad_arg, where });
        },
        error.UnknownAllocator => {
            std.debug.print("minikv: unknown allocator '{s}' (known:", .{bad_arg});
            flags.printAll(AllocatorKind);
            std.debug.print(")\n", .{});
        },
        error.UnknownFault => {
            std.debug.print("minikv: unknown fault '{s}' (known:", .{bad_arg});
            flags.printAll(faults.Fault);
            std.debug.print(")\n", .{});
        },
    }
    std.process.exit(2);
}

/// Listens on 127.0.0.1:`port` (0 picks a free port).
fn listen(port: u16) !std.net.Server {
    const address: std.net.Address = .initIp4(.{ 127, 0, 0, 1 }, port);
    const fd = try posix.socket(posix.AF.INET, posix.SOCK.STREAM | posix.SOCK.CLOEXEC, posix.IPPROTO.TCP);
    errdefer posix.close(fd);
    // SO_REUSEADDR alone, so a restart is not refused while old connections
    // linger in TIME_WAIT. Address.listen(.{ .reuse_address = true }) would
    // also set SO_REUSEPORT, letting a second server share a port that is
    // already in use instead of failing.
    try posix.setsockopt(fd, posix.SOL.SOCKET, posix.SO.REUSEADDR, &std.mem.toBytes(@as(c_int, 1)));
    try posix.bind(fd, &address.any, address.getOsSockLen());
    try posix.listen(fd, listen_backlog);

    var bound: std.net.Address = address;
    var bound_len = bound.getOsSockLen();
    try posix.getsockname(fd, &bound.any, &bound_len);
    return .{ .listen_address = bound, .stream = .{ .handle = fd } };
}

/// The port to listen on: --port's, unless the build fixed one (-Dfixed-port)
/// or names an environment variable that holds it (-Dport-env).
fn listenPort(requested: u16) u16 {
    if (shape.fixed_port != 0) return shape.fixed_port;
    if (shape.port_env.len == 0) return requested;
    const text = std.posix.getenv(shape.port_env) orelse {
        std.debug.print("minikv: {s} is not set; this build takes its port from it\n", .{shape.port_env});
        std.process.exit(2);
    };
    return std.fmt.parseInt(u16, text, 10) catch {
        std.debug.print("minikv: {s}={s} is not a port\n", .{ shape.port_env, text });
        std.process.exit(2);
    };
}

pub fn main() void {
    // Keyspace data and per-connection buffers all come from this allocator.
    // (std.heap.GeneralPurposeAllocator is a deprecated alias for DebugAllocator.)
    var debug_state: std.heap.DebugAllocator(.{}) = .init;
    const gpa = switch (requestedAllocator(std.os.argv[1..])) {
        .debug => debug_state.allocator(),
        .smp => std.heap.smp_allocator,
    };
    // No debug_state.deinit(): the process only ends through SHUTDOWN or a
    // signal, and leak accounting is the profiler's job.

    // The append-only file is opened while the command line that names it is still allocated.
    const options, const append_log = options: {
        const argv = std.process.argsAlloc(gpa) catch {
            std.debug.print("minikv: out of memory reading the command line\n", .{});
            std.process.exit(1);
        };
        defer std.process.argsFree(gpa, argv);
        var bad_arg: []const u8 = "";
        const options = parseOptions(planted.defects, argv[1..], &bad_arg) catch |err| exitUsageError(err, bad_arg);
        const path = options.append_only orelse break :options .{ options, null };
        const append_log = AppendLog.open(path) catch |err| {
            std.debug.print("minikv: cannot open the append-only file '{s}': {s}\n", .{ path, @errorName(err) });
            std.process.exit(1);
        };
        break :options .{ options, append_log };
    };

    if (options.faults.contains(.crash_at_start)) faults.crashAtStart();

    const port = listenPort(options.port);
    var listener = listen(port) catch |err| {
        switch (err) {
            error.AddressInUse => std.debug.print("minikv: cannot listen on 127.0.0.1:{d}: port already in use\n", .{port}),
            else => std.debug.print("minikv: cannot listen on 127.0.0.1:{d}: {s}\n", .{ port, @errorName(err) }),
        }
        std.process.exit(1);
    };

    if (options.faults.contains(.linger_port)) faults.lingerOnExit();

    var server: Server = .init(gpa, options.defects, options.faults, options.limits, options.scratch);
    server.defect_params = options.defect_params;
    if (options.defects.contains(.slow_get)) server.defect_params.spin_rate = .measure();
    server.append_log = append_log;
    if (options.tick_hz > 0) cron.start(gpa, options.tick_hz) catch |err| {
        std.debug.print("minikv: cannot start the --tick thread: {s}\n", .{@errorName(err)});
        std.process.exit(1);
    };
    std.debug.print("minikv listening on 127.0.0.1:{d}\n", .{listener.listen_address.getPort()});
    server.acceptLoop(&listener);
}

test {
    _ = @import("resp.zig");
    _ = @import("keyspace.zig");
    _ = @import("commands.zig");
    _ = @import("defects.zig");
    _ = @import("faults.zig");
    _ = @import("flags.zig");
    _ = @import("cron.zig");
    _ = @import("server.zig");
    _ = @import("debug.zig");
    _ = @import("append_log.zig");
}

const testing = std.testing;

test "options: defaults, port, repeated defects and faults" {
    var bad_arg: []const u8 = "";
    const defaults = try parseOptions(&.{}, &.{}, &bad_arg);
    try testing.expectEqual(default_port, defaults.port);
    try testing.expectEqual(0, defaults.defects.count());

    const options = try parseOptions(&.{}, &.{ "--defect", "leak", "--port", "6390", "--defect", "hot-loop", "--scratch", "stack-fallback" }, &bad_arg);
    try testing.expectEqual(6390, options.port);
    try testing.expectEqual(.stack_fallback, options.scratch);
    try testing.expect(options.defects.contains(.leak));
    try testing.expect(options.defects.contains(.hot_loop));
    try testing.expectEqual(2, options.defects.count());
    try testing.expectEqual(0, options.faults.count());

    const faulty = try parseOptions(&.{}, &.{ "--fault", "garble-under-load", "--fault", "sporadic-errors" }, &bad_arg);
    try testing.expectEqual(2, faulty.faults.count());
    try testing.expectEqual(faults.Limits{}, faulty.limits);

    const limited = try parseOptions(&.{}, &.{ "--crash-after", "20000", "--hang-after", "0", "--full-after", "1000" }, &bad_arg);
    try testing.expectEqual(faults.Limits{ .crash_after = 20000, .hang_after = 0, .full_after = 1000 }, limited.limits);

    const persisting = try parseOptions(&.{}, &.{ "--append-only", "minikv.aof" }, &bad_arg);
    try testing.expectEqualStrings("minikv.aof", persisting.append_only.?);
    try testing.expectEqual(null, defaults.append_only);

    const claiming = try parseOptions(&.{}, &.{ "--fault", "ok-to-unknown" }, &bad_arg);
    try testing.expect(claiming.faults.contains(.ok_to_unknown));
}

test "options: errors name the offending argument" {
    var bad_arg: []const u8 = "";
    try testing.expectError(error.UnknownFlag, parseOptions(&.{}, &.{"--verbose"}, &bad_arg));
    try testing.expectEqualStrings("--verbose", bad_arg);
    try testing.expectError(error.UnknownDefect, parseOptions(&.{}, &.{ "--defect", "slow" }, &bad_arg));
    try testing.expectEqualStrings("slow", bad_arg);
    try testing.expectError(error.MissingValue, parseOptions(&.{}, &.{"--port"}, &bad_arg));
    try testing.expectError(error.InvalidPort, parseOptions(&.{}, &.{ "--port", "70000" }, &bad_arg));
    try testing.expectError(error.InvalidPort, parseOptions(&.{}, &.{ "--port", "-1" }, &bad_arg));
    try testing.expectError(error.UnknownScratch, parseOptions(&.{}, &.{ "--scratch", "pool" }, &bad_arg));
    try testing.expectEqualStrings("pool", bad_arg);
    try testing.expectError(error.UnknownFault, parseOptions(&.{}, &.{ "--fault", "garble" }, &bad_arg));
    try testing.expectError(error.UnknownFlag, parseOptions(&.{}, &.{"-port"}, &bad_arg));
    try testing.expectError(error.InvalidCount, parseOptions(&.{}, &.{ "--crash-after", "many" }, &bad_arg));
    try testing.expectEqualStrings("many", bad_arg);
    try testing.expectError(error.InvalidCount, parseOptions(&.{}, &.{ "--hang-after", "-5" }, &bad_arg));
    try testing.expectError(error.MissingValue, parseOptions(&.{}, &.{"--hang-after"}, &bad_arg));
    try testing.expectError(error.InvalidCount, parseOptions(&.{}, &.{ "--full-after", "-1" }, &bad_arg));
}

test "options: allocator, defects with values, and planted defects" {
    var bad_arg: []const u8 = "";
    const defaults = try parseOptions(&.{}, &.{}, &bad_arg);
    try testing.expectEqual(.debug, defaults.allocator);
    try testing.expectEqual(.smp, (try parseOptions(&.{}, &.{ "--allocator", "smp" }, &bad_arg)).allocator);
    try testing.expectError(error.UnknownAllocator, parseOptions(&.{}, &.{ "--allocator", "c" }, &bad_arg));
    try testing.expectEqualStrings("c", bad_arg);

    const slow = try parseOptions(&.{}, &.{ "--defect", "slow-get=5000", "--defect", "write-per-part" }, &bad_arg);
    try testing.expect(slow.defects.contains(.slow_get));
    try testing.expect(slow.defects.contains(.write_per_part));
    try testing.expectEqual(5000, slow.defect_params.slow_get_ns);
    const plain = try parseOptions(&.{}, &.{ "--defect", "slow-get" }, &bad_arg);
    try testing.expectEqual(defects.default_slow_get_ns, plain.defect_params.slow_get_ns);
    try testing.expectError(error.InvalidDefectValue, parseOptions(&.{}, &.{ "--defect", "slow-get=soon" }, &bad_arg));
    try testing.expectEqualStrings("slow-get=soon", bad_arg);
    try testing.expectError(error.InvalidDefectValue, parseOptions(&.{}, &.{ "--defect", "leak=1" }, &bad_arg));

    // Planted defects come first: the command line's value wins.
    const both = try parseOptions(&.{ "slow-get=100", "leak" }, &.{ "--defect", "slow-get=7" }, &bad_arg);
    try testing.expectEqual(2, both.defects.count());
    try testing.expectEqual(7, both.defect_params.slow_get_ns);
    const only_planted = try parseOptions(&.{"slow-get=100"}, &.{}, &bad_arg);
    try testing.expect(only_planted.defects.contains(.slow_get));
    try testing.expectEqual(100, only_planted.defect_params.slow_get_ns);
    try testing.expectError(error.UnknownPlantedDefect, parseOptions(&.{"slow"}, &.{}, &bad_arg));
    try testing.expectEqualStrings("slow", bad_arg);
    try testing.expectError(error.InvalidPlantedDefectValue, parseOptions(&.{"slow-get=x"}, &.{}, &bad_arg));

    try testing.expectEqual(10, (try parseOptions(&.{}, &.{ "--tick", "10" }, &bad_arg)).tick_hz);
    try testing.expectError(error.InvalidCount, parseOptions(&.{}, &.{ "--tick", "100000" }, &bad_arg));
    const crashing = try parseOptions(&.{}, &.{ "--fault", "crash-at-start" }, &bad_arg);
    try testing.expect(crashing.faults.contains(.crash_at_start));
}

test "the allocator is found before parsing, as parseOptions would find it" {
    try testing.expectEqual(.debug, requestedAllocator(&.{}));
    try testing.expectEqual(.smp, requestedAllocator(&.{ "--port", "1", "--allocator", "smp" }));
    try testing.expectEqual(.debug, requestedAllocator(&.{ "--allocator", "smp", "--allocator", "debug" }));
    try testing.expectEqual(.debug, requestedAllocator(&.{ "--allocator", "nope" }));
    // A value, not a flag: the file named --allocator.
    try testing.expectEqual(.debug, requestedAllocator(&.{ "--append-only", "--allocator", "smp" }));
    try testing.expectEqual(.debug, requestedAllocator(&.{ "--help", "--allocator", "smp" }));
    try testing.expectEqual(.debug, requestedAllocator(&.{"--allocator"}));
}

test "planted defects parse" {
    var bad_arg: []const u8 = "";
    _ = try parseOptions(planted.defects, &.{}, &bad_arg);
}
