//! Planted performance defects, each off by default and switched on with
//! `--defect NAME`. They are the ground truth a profiler run is judged
//! against, so every one lives in its own `noinline` function: it keeps its
//! own symbol and stack frame in ReleaseFast, and its cost is exactly what its
//! doc comment says, nothing more.

const std = @import("std");
const posix = std.posix;
const Allocator = std.mem.Allocator;
const Writer = std.Io.Writer;
const Command = @import("commands.zig").Command;
const flags = @import("flags.zig");
const resp = @import("resp.zig");

pub const Defect = enum {
    alloc_reply,
    small_allocs,
    large_alloc,
    leak,
    hot_loop,
    linear_lookup,
    grow_log,
    write_per_part,
    copy_on_hit,
    /// Takes a value: `slow-get=NS` (`Params.slow_get_ns`).
    slow_get,

    /// The spelling used on the command line, e.g. "alloc-reply".
    pub fn flagName(defect: Defect) []const u8 {
        return flags.name(Defect, defect);
    }

    /// Parses a command-line spelling; null if no defect has that name.
    pub fn fromFlagName(name: []const u8) ?Defect {
        return flags.parse(Defect, name);
    }

    /// What `=VALUE` stands for in the defect's spelling, or null for a
    /// defect that takes no value.
    pub fn valueName(defect: Defect) ?[]const u8 {
        return switch (defect) {
            .slow_get => "NS",
            else => null,
        };
    }
};

pub const Set = std.EnumSet(Defect);

/// The values of the defects that take one. A defect is on when it is in the
/// `Set`; its value here only says how much it costs.
pub const Params = struct {
    /// `slow-get=NS`: nanoseconds of busy work per GET; `slow-get` alone
    /// means `default_slow_get_ns`.
    slow_get_ns: u64 = default_slow_get_ns,
    /// How fast `slowGet` spins on this machine; measured at start-up when
    /// slow-get is on (`SpinRate.measure`).
    spin_rate: SpinRate = .nominal,
};

pub const ParseError = error{ UnknownDefect, InvalidDefectValue };

/// Turns on the defect `text` spells: "NAME", or "NAME=VALUE" for one that
/// takes a value. `--defect` and src/planted.zig both come through here. On
/// error neither `set` nor `params` has changed.
pub fn enable(set: *Set, params: *Params, text: []const u8) ParseError!void {
    const eq = std.mem.indexOfScalar(u8, text, '=');
    const name = text[0 .. eq orelse text.len];
    const value: ?[]const u8 = if (eq) |at| text[at + 1 ..] else null;
    const defect = Defect.fromFlagName(name) orelse return error.UnknownDefect;
    switch (defect) {
        .slow_get => if (value) |ns| {
            params.slow_get_ns = std.fmt.parseInt(u64, ns, 10) catch return error.InvalidDefectValue;
        },
        else => if (value != null) return error.InvalidDefectValue,
    }
    set.insert(defect);
}

/// Prints every defect's spelling, each after a space, with `[=VALUE]` after
/// those that take a value.
pub fn printAll() void {
    for (std.enums.values(Defect)) |defect| {
        std.debug.print(" {s}", .{defect.flagName()});
        if (defect.valueName()) |value| std.debug.print("[={s}]", .{value});
    }
}

/// alloc-reply (HSET): formats the integer reply in a 256-byte GPA buffer,
/// copies it to the output buffer and frees it, instead of printing straight
/// into the output buffer. Exactly one extra allocation per HSET.
pub noinline fn formatReplyAlloc(gpa: Allocator, out: *Writer, value: i64) (Allocator.Error || Writer.Error)!void {
    const scratch = try gpa.alloc(u8, 256);
    defer gpa.free(scratch);
    const reply = std.fmt.bufPrint(scratch, ":{d}\r\n", .{value}) catch unreachable; // an i64 needs < 32 bytes
    try out.writeAll(reply);
}

/// copy-on-hit (GET): replies from a copy of the value it found, made and
/// freed per request, instead of from the value itself. Exactly one extra
/// allocation per GET that finds its key and none per miss: a read path that
/// only a load of hits shows.
pub noinline fn replyWithCopy(gpa: Allocator, out: *Writer, value: []const u8) (Allocator.Error || Writer.Error)!void {
    const copy = try gpa.dupe(u8, value);
    defer gpa.free(copy);
    try resp.writeBulkString(out, copy);
}

pub const member_tag_count = 8;
pub const member_tag_len = 16;
pub const MemberTags = [member_tag_count][]u8;

/// small-allocs (SADD): makes eight separate 16-byte GPA allocations per
/// request, filled from the members. Release them with `freeMemberTags` once
/// the request is done.
pub noinline fn splitMemberTags(gpa: Allocator, members: []const []const u8) Allocator.Error!MemberTags {
    std.debug.assert(members.len > 0);
    var tags: MemberTags = undefined;
    var allocated: usize = 0;
    errdefer for (tags[0..allocated]) |tag| gpa.free(tag);

    for (&tags, 0..) |*tag, i| {
        tag.* = try gpa.alloc(u8, member_tag_len);
        allocated += 1;
        const member = members[i % members.len];
        for (tag.*, 0..) |*byte, j| byte.* = if (member.len == 0) 0 else member[j % member.len];
    }
    std.mem.doNotOptimizeAway(&tags);
    return tags;
}

pub fn freeMemberTags(gpa: Allocator, tags: *const MemberTags) void {
    for (tags) |tag| gpa.free(tag);
}

pub const scratch_len = 2 * 1024 * 1024;

/// large-alloc (LPUSH): allocates a 2 MiB scratch buffer from the GPA, copies
/// the pushed values into it, and frees it again, once per request.
pub noinline fn scratchCopy(gpa: Allocator, values: []const []const u8) Allocator.Error!void {
    const scratch = try gpa.alloc(u8, scratch_len);
    defer gpa.free(scratch);
    var used: usize = 0;
    for (values) |value| {
        const n = @min(value.len, scratch.len - used);
        @memcpy(scratch[used..][0..n], value[0..n]);
        used += n;
    }
    // The buffer must really be written, not optimised into nothing.
    std.mem.doNotOptimizeAway(scratch[0..used]);
}

pub const audit_record_len = 64;

/// leak (SET): allocates a 64-byte "audit record" from the GPA, fills it from
/// the key, and drops the only pointer to it. Leaks 64 bytes per SET.
pub noinline fn leakyAudit(gpa: Allocator, key: []const u8) Allocator.Error!void {
    const record = try gpa.alloc(u8, audit_record_len);
    for (record, 0..) |*byte, i| byte.* = if (key.len == 0) 0 else key[i % key.len] +% @as(u8, @truncate(i));
    std.mem.doNotOptimizeAway(record);
}

pub const log_record_len = 64;

/// A server-wide buffer the `grow-log` defect appends to and never trims.
/// FLUSHALL leaves it alone: it is not keyspace data. Guarded by the
/// keyspace lock, which every command holds.
pub const AuditLog = struct {
    bytes: std.ArrayList(u8) = .empty,

    pub fn deinit(log: *AuditLog, gpa: Allocator) void {
        log.bytes.deinit(gpa);
        log.* = undefined;
    }
};

/// grow-log (SET): appends a 64-byte record, filled from the key, to the
/// audit log, reserving exactly what it appends. Past a page the buffer grows
/// in place (a remap) rather than moving, so the only trace it leaves in the
/// allocator is the resize: 64 bytes more held per SET, for ever.
pub noinline fn appendAuditLog(gpa: Allocator, log: *AuditLog, key: []const u8) Allocator.Error!void {
    try log.bytes.ensureTotalCapacityPrecise(gpa, log.bytes.items.len + log_record_len);
    const record = log.bytes.addManyAsSliceAssumeCapacity(log_record_len);
    for (record, 0..) |*byte, i| byte.* = if (key.len == 0) 0 else key[i % key.len];
}

/// Iterations of `spinScore`'s loop. Each step is a 64-bit multiply-add
/// that depends on the previous one (about 3-4 cycles), so the count alone
/// sets the cost: measured at ~100 µs per call on a 2.1 GHz Xeon;
/// a faster desktop core takes proportionally less.
pub const spin_iterations = 64_000;

/// hot-loop (ZADD): burns about 100 µs of CPU per request on pointless
/// arithmetic. Calibrated by iteration count, not by the clock, so the cost
/// is pure CPU work inside this frame.
pub noinline fn spinScore(score: f64) void {
    var state: u64 = @bitCast(score);
    for (0..spin_iterations) |_| {
        state = state *% 6364136223846793005 +% 1442695040888963407;
        std.mem.doNotOptimizeAway(state);
    }
}

/// linear-lookup (dispatch): finds a command by scanning the whole table with
/// case-insensitive compares instead of one hash lookup.
pub noinline fn findCommandLinear(table: []const Command, name: []const u8) ?*const Command {
    for (table) |*command| {
        if (std.ascii.eqlIgnoreCase(command.name, name)) return command;
    }
    return null;
}

/// The parts `writeReplyInParts` sends one reply in. Every RESP reply ends
/// with CRLF, its terminator. A reply of several lines (a bulk string, an
/// array) has its first line, CRLF included, as its header; a reply of one
/// line (`+OK`, `:1`, `-ERR ...`, `$-1`) has its type byte. The body is what
/// lies between, empty only for an empty bulk string (`$0\r\n` + `\r\n`).
pub const ReplyParts = struct {
    header: []const u8,
    body: []const u8,
    terminator: []const u8,

    pub fn split(reply: []const u8) ReplyParts {
        const terminator_len: usize = if (std.mem.endsWith(u8, reply, "\r\n")) 2 else 0;
        const end = reply.len - terminator_len;
        const first_line_end = if (std.mem.indexOf(u8, reply, "\r\n")) |cr| cr + 2 else reply.len;
        const header_len = if (first_line_end <= end) first_line_end else @min(1, end);
        return .{
            .header = reply[0..header_len],
            .body = reply[header_len..end],
            .terminator = reply[end..],
        };
    }
};

/// Flags of every send: like std.net.Stream.Writer's, no SIGPIPE from a
/// client that hung up (EPIPE instead).
const send_flags = posix.MSG.NOSIGNAL;

/// write-per-part (every reply): sends one reply with three sendmsg(2) calls,
/// header, body and terminator (`ReplyParts`), where minikv otherwise sends
/// a whole batch of replies with one (the same call std.net.Stream.Writer
/// makes). An empty part still costs its call. Each call has its own line so
/// that a profiler can tell the three apart.
pub noinline fn writeReplyInParts(stream: std.net.Stream, reply: []const u8) !void {
    const parts: ReplyParts = .split(reply);
    const vectors = [3]posix.iovec_const{
        .{ .base = parts.header.ptr, .len = parts.header.len },
        .{ .base = parts.body.ptr, .len = parts.body.len },
        .{ .base = parts.terminator.ptr, .len = parts.terminator.len },
    };
    try finishPart(stream, parts.header, try posix.sendmsg(stream.handle, &partMessage(&vectors[0]), send_flags));
    try finishPart(stream, parts.body, try posix.sendmsg(stream.handle, &partMessage(&vectors[1]), send_flags));
    try finishPart(stream, parts.terminator, try posix.sendmsg(stream.handle, &partMessage(&vectors[2]), send_flags));
}

fn partMessage(vector: *const posix.iovec_const) posix.msghdr_const {
    return .{ .name = null, .namelen = 0, .iov = vector[0..1], .iovlen = 1, .control = null, .controllen = 0, .flags = 0 };
}

/// Sends what the kernel did not take of `part` (only after a signal
/// interrupted a send), so a reply is never cut short.
fn finishPart(stream: std.net.Stream, part: []const u8, sent: usize) !void {
    if (sent == part.len) return;
    var socket_writer = stream.writer(&.{});
    socket_writer.interface.writeAll(part[sent..]) catch return socket_writer.err orelse error.WriteFailed;
}

/// `slow-get` without `=NS`: 2 µs per GET, a few times what a GET costs.
pub const default_slow_get_ns = 2000;

/// How many iterations of `slowGet`'s loop take a microsecond.
pub const SpinRate = struct {
    iterations_per_us: u64,

    /// The rate implied by `spin_iterations`' measurement (~100 µs for
    /// 64 000 steps on a 2.1 GHz Xeon): what slowGet uses when nothing was
    /// measured, as in unit tests.
    pub const nominal: SpinRate = .{ .iterations_per_us = spin_iterations / 100 };

    /// Loop iterations of one timed run: a few milliseconds at most.
    const probe_iterations = 1_000_000;
    const probe_runs = 5;

    /// Times `slowGet` itself, the fastest of a few runs (the others were
    /// interrupted or ran at a lower clock), so NS is NS of this machine's
    /// CPU time. Takes some 5-15 ms; done once, at start-up.
    pub fn measure() SpinRate {
        var timer = std.time.Timer.start() catch return .nominal;
        // A rate at which the probe's NS is exactly probe_iterations.
        const probe: SpinRate = .{ .iterations_per_us = 1000 };
        var fastest: u64 = std.math.maxInt(u64);
        for (0..probe_runs) |_| {
            timer.reset();
            slowGet(probe_iterations, probe);
            fastest = @min(fastest, timer.read());
        }
        return .{ .iterations_per_us = @max(1, probe_iterations * std.time.ns_per_us / @max(1, fastest)) };
    }

    /// In 64 bits, saturating: a 128-bit division would be a call into
    /// compiler-rt, a frame of its own in slowGet's profile.
    fn iterations(rate: SpinRate, ns: u64) u64 {
        const scaled = std.math.mul(u64, ns, rate.iterations_per_us) catch std.math.maxInt(u64);
        return scaled / std.time.ns_per_us;
    }
};

/// slow-get (GET): burns `ns` nanoseconds of CPU per request on pointless
/// arithmetic, the same dependent multiply-add as `spinScore`. The loop runs
/// a count of iterations `rate` says take that long on this machine rather
/// than watching a clock, so every cycle of it is in this frame (a clock read
/// would be in the vDSO's).
pub noinline fn slowGet(ns: u64, rate: SpinRate) void {
    var state: u64 = ns;
    var left = rate.iterations(ns);
    while (left > 0) : (left -= 1) {
        state = state *% 6364136223846793005 +% 1442695040888963407;
        std.mem.doNotOptimizeAway(state);
    }
}

const testing = std.testing;

test "defect flag names round-trip" {
    try testing.expectEqualStrings("alloc-reply", Defect.alloc_reply.flagName());
    try testing.expectEqualStrings("linear-lookup", Defect.linear_lookup.flagName());
    for (std.enums.values(Defect)) |defect| {
        try testing.expectEqual(defect, Defect.fromFlagName(defect.flagName()).?);
    }
    try testing.expectEqual(null, Defect.fromFlagName("alloc_reply"));
    try testing.expectEqual(null, Defect.fromFlagName("nope"));
}

test "enable: names, values, and values only where a defect takes one" {
    var set: Set = .initEmpty();
    var params: Params = .{};
    try enable(&set, &params, "leak");
    try testing.expect(set.contains(.leak));
    try enable(&set, &params, "slow-get");
    try testing.expect(set.contains(.slow_get));
    try testing.expectEqual(default_slow_get_ns, params.slow_get_ns);
    try enable(&set, &params, "slow-get=5000");
    try testing.expectEqual(5000, params.slow_get_ns);
    try enable(&set, &params, "write-per-part");
    try testing.expectEqual(3, set.count());

    const before = set;
    try testing.expectError(error.InvalidDefectValue, enable(&set, &params, "slow-get=fast"));
    try testing.expectError(error.InvalidDefectValue, enable(&set, &params, "slow-get="));
    try testing.expectError(error.InvalidDefectValue, enable(&set, &params, "slow-get=-1"));
    try testing.expectError(error.InvalidDefectValue, enable(&set, &params, "hot-loop=1"));
    try testing.expectError(error.UnknownDefect, enable(&set, &params, "slow_get=1"));
    try testing.expectError(error.UnknownDefect, enable(&set, &params, "=1"));
    try testing.expect(set.eql(before));
    try testing.expectEqual(5000, params.slow_get_ns);
}

test "a reply splits into header, body and terminator" {
    const cases = [_]struct { reply: []const u8, parts: [3][]const u8 }{
        .{ .reply = "$5\r\nhello\r\n", .parts = .{ "$5\r\n", "hello", "\r\n" } },
        .{ .reply = "+OK\r\n", .parts = .{ "+", "OK", "\r\n" } },
        .{ .reply = ":-3\r\n", .parts = .{ ":", "-3", "\r\n" } },
        .{ .reply = "$-1\r\n", .parts = .{ "$", "-1", "\r\n" } },
        .{ .reply = "$0\r\n\r\n", .parts = .{ "$0\r\n", "", "\r\n" } },
        .{ .reply = "*2\r\n$1\r\na\r\n$1\r\nb\r\n", .parts = .{ "*2\r\n", "$1\r\na\r\n$1\r\nb", "\r\n" } },
        .{ .reply = "*0\r\n", .parts = .{ "*", "0", "\r\n" } },
    };
    for (cases) |case| {
        const parts: ReplyParts = .split(case.reply);
        try testing.expectEqualStrings(case.parts[0], parts.header);
        try testing.expectEqualStrings(case.parts[1], parts.body);
        try testing.expectEqualStrings(case.parts[2], parts.terminator);
    }
}

test "writeReplyInParts sends the reply whole, in order" {
    var fds: [2]posix.fd_t = undefined;
    try testing.expectEqual(0, std.os.linux.socketpair(posix.AF.UNIX, posix.SOCK.STREAM, 0, &fds));
    defer posix.close(fds[1]);
    {
        defer posix.close(fds[0]);
        try writeReplyInParts(.{ .handle = fds[0] }, "$5\r\nhello\r\n");
        try writeReplyInParts(.{ .handle = fds[0] }, "$0\r\n\r\n");
    }
    var buffer: [64]u8 = undefined;
    var received: usize = 0;
    while (true) {
        const n = try posix.read(fds[1], buffer[received..]);
        if (n == 0) break;
        received += n;
    }
    try testing.expectEqualStrings("$5\r\nhello\r\n$0\r\n\r\n", buffer[0..received]);
}

test "slowGet takes roughly the time it is asked for" {
    const rate: SpinRate = .measure();
    try testing.expect(rate.iterations_per_us > 0);
    var timer = try std.time.Timer.start();
    var fastest: u64 = std.math.maxInt(u64);
    for (0..5) |_| {
        timer.reset();
        slowGet(1_000_000, rate);
        fastest = @min(fastest, timer.read());
    }
    // 1 ms asked: generous bounds, for a loaded machine.
    try testing.expect(fastest > 500_000);
    try testing.expect(fastest < 2_000_000);
}

test "defect functions free what they should and nothing else" {
    var counting: std.testing.FailingAllocator = .init(testing.allocator, .{});
    const gpa = counting.allocator();

    var buffer: [32]u8 = undefined;
    var out: Writer = .fixed(&buffer);
    try formatReplyAlloc(gpa, &out, 42);
    try testing.expectEqualStrings(":42\r\n", out.buffered());
    try testing.expectEqual(1, counting.allocations);

    const tags = try splitMemberTags(gpa, &.{ "alpha", "beta" });
    freeMemberTags(gpa, &tags);
    try testing.expectEqual(1 + member_tag_count, counting.allocations);

    try scratchCopy(gpa, &.{ "x", "yz" });
    try testing.expectEqual(1 + member_tag_count + 1, counting.allocations);

    try testing.expectEqual(counting.allocations, counting.deallocations);
    try testing.expectEqual(counting.allocated_bytes, counting.freed_bytes);
}

test "appendAuditLog keeps 64 bytes more per call in one buffer" {
    var log: AuditLog = .{};
    defer log.deinit(testing.allocator);
    for (0..3) |_| try appendAuditLog(testing.allocator, &log, "key");
    try testing.expectEqual(3 * log_record_len, log.bytes.items.len);
    try testing.expectEqual(3 * log_record_len, log.bytes.capacity);
    try testing.expectEqualStrings("keykeykey", log.bytes.items[0..9]);
}

test "leakyAudit leaks exactly one 64-byte block" {
    // An arena owns the leaked block so the test itself stays leak-free.
    var arena: std.heap.ArenaAllocator = .init(testing.allocator);
    defer arena.deinit();
    var counting: std.testing.FailingAllocator = .init(arena.allocator(), .{});
    try leakyAudit(counting.allocator(), "key");
    try testing.expectEqual(1, counting.allocations);
    try testing.expectEqual(0, counting.deallocations);
    try testing.expectEqual(audit_record_len, counting.allocated_bytes);
}
