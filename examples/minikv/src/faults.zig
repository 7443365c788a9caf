//! Planted faults, each off by default and switched on with `--fault NAME`:
//! a server that passes zprof's short probes and then misbehaves under load.
//! They are the ground truth for how zprof meets a broken target, as the
//! defects are for what it measures.

const std = @import("std");
const flags = @import("flags.zig");

pub const Fault = enum {
    /// Once the server has executed `garble_after` requests, every batch of
    /// replies it sends while two or more clients are connected starts with
    /// a stray byte that is not RESP, as a server whose threads share one
    /// writer would send. One client at a time is served correctly.
    garble_under_load,
    /// Every `sporadic_error_interval`th request, counted over all clients,
    /// gets `sporadic_error_reply` instead of running.
    sporadic_errors,
    /// Every command minikv does not implement, known by name or not, gets
    /// `+OK` instead of an error, and so do the commands in `ok_without_running`,
    /// which then do nothing: a server that claims commands it lacks.
    ok_to_unknown,
    /// Every command, PING included, gets `error_ping_reply`: a server that
    /// listens and answers, but not as zprof can drive it.
    error_ping,
    /// At start-up a child process takes a copy of the listening socket and,
    /// in a session of its own, holds it until `linger_ms` after minikv has
    /// exited: the port stays taken a moment after the server is gone, as an
    /// io_uring server's does.
    linger_port,
    /// At start-up, a process whose pid is even dereferences a null pointer
    /// (`crashAtStart`) and dies of it before it listens (SIGSEGV; SIGABRT
    /// after a printed trace in Debug and ReleaseSafe); one whose pid is odd
    /// starts normally: a server that crashes at start-up now and then.
    crash_at_start,

    pub fn flagName(fault: Fault) []const u8 {
        return flags.name(Fault, fault);
    }

    pub fn fromFlagName(text: []const u8) ?Fault {
        return flags.parse(Fault, text);
    }
};

pub const Set = std.EnumSet(Fault);

/// Faults that strike after a number of requests, counted over all clients,
/// each set with its own option and a count.
pub const Limits = struct {
    /// `--crash-after N`: the request after the Nth aborts the process (SIGABRT).
    crash_after: ?u64 = null,
    /// `--hang-after N`: the request after the Nth, and every later one, never
    /// gets a reply: its connection's thread blocks for good, as on a lock
    /// nobody releases, while the process lives on.
    hang_after: ?u64 = null,
    /// `--full-after N`: once N keys are stored, every write that would add a
    /// key answers `-ERR out of memory`, as a server at its memory limit does;
    /// writes to keys that exist, reads and deletes still work (the keyspace's
    /// `max_keys`).
    full_after: ?usize = null,
};

/// What becomes of one request.
pub const Action = enum { execute, fail, crash, hang };

/// More than zprof's probes send, far less than a second of load.
pub const garble_after = 1000;
pub const garble_byte = "w";
pub const sporadic_error_interval = 200;
pub const sporadic_error_reply = "-ERR planted sporadic error\r\n";
/// Commands minikv implements that `ok-to-unknown` answers `+OK` to without
/// running them: those zprof relies on to empty and count the keyspace, and
/// the batch write it loads keys with.
pub const ok_without_running = [_][]const u8{ "DBSIZE", "FLUSHALL", "MSET" };
pub const error_ping_reply = "ERR Protocol error";
pub const linger_ms = 300;

/// `linger-port`: forks the child that keeps the listening socket (its
/// copy, inherited) until `linger_ms` after this process has exited. The
/// child leaves the process group, so that what stops minikv's group does
/// not stop it, and checks for its parent's exit every 10 ms.
pub fn lingerOnExit() void {
    const parent = std.os.linux.getpid();
    const pid = std.posix.fork() catch |err| {
        std.debug.print("minikv: cannot fork for --fault linger-port: {s}\n", .{@errorName(err)});
        return;
    };
    if (pid != 0) return;
    _ = std.os.linux.setsid();
    while (std.os.linux.getppid() == parent) std.Thread.sleep(10 * std.time.ns_per_ms);
    std.Thread.sleep(linger_ms * std.time.ns_per_ms);
    std.process.exit(0);
}

/// `crash-at-start`: in a process whose pid is even, reads a byte at
/// address 0, which kills it with SIGSEGV (in Debug and ReleaseSafe Zig's
/// segfault handler first prints a stack trace, then aborts: SIGABRT). The
/// address is read through a volatile, so no optimiser knows it is null and
/// turns the read into a trap or drops it: the fault is the same
/// segmentation fault, at this line, in every optimize mode.
pub noinline fn crashAtStart() void {
    if (std.os.linux.getpid() & 1 != 0) return;
    var null_address: usize = 0;
    const address = @as(*volatile usize, &null_address).*;
    const byte: *allowzero const volatile u8 = @ptrFromInt(address);
    std.mem.doNotOptimizeAway(byte.*);
}

/// What the faults depend on, shared by every client's thread.
pub const Traffic = struct {
    /// Requests executed, over all clients.
    requests: std.atomic.Value(u64) = .init(0),
    /// Clients connected now.
    clients: std.atomic.Value(u32) = .init(0),

    /// Counts one request and says what becomes of it.
    pub fn countRequest(traffic: *Traffic, faults: Set, limits: Limits) Action {
        const executed = traffic.requests.fetchAdd(1, .monotonic) + 1;
        if (limits.crash_after) |after| if (executed > after) return .crash;
        if (limits.hang_after) |after| if (executed > after) return .hang;
        if (faults.contains(.sporadic_errors) and executed % sporadic_error_interval == 0) return .fail;
        return .execute;
    }

    /// Whether `garble-under-load` garbles the batch about to be sent.
    pub fn garbles(traffic: *const Traffic, faults: Set) bool {
        return faults.contains(.garble_under_load) and
            traffic.requests.load(.monotonic) >= garble_after and
            traffic.clients.load(.monotonic) >= 2;
    }
};

test "sporadic errors come every interval, garbling only with company after the threshold" {
    var traffic: Traffic = .{};
    const both: Set = .initFull();
    var failed: usize = 0;
    for (0..garble_after) |_| failed += @intFromBool(traffic.countRequest(both, .{}) == .fail);
    try std.testing.expectEqual(garble_after / sporadic_error_interval, failed);
    try std.testing.expect(!traffic.garbles(both));
    _ = traffic.clients.fetchAdd(2, .monotonic);
    try std.testing.expect(traffic.garbles(both));
    try std.testing.expect(!traffic.garbles(.initEmpty()));
    var quiet: Traffic = .{};
    try std.testing.expectEqual(.execute, quiet.countRequest(.initEmpty(), .{}));
}

test "crash and hang come after their count of requests, crash first when both are due" {
    var traffic: Traffic = .{};
    for (0..3) |_| try std.testing.expectEqual(.execute, traffic.countRequest(.initEmpty(), .{ .hang_after = 3, .crash_after = 5 }));
    try std.testing.expectEqual(.hang, traffic.countRequest(.initEmpty(), .{ .hang_after = 3, .crash_after = 5 }));
    try std.testing.expectEqual(.hang, traffic.countRequest(.initEmpty(), .{ .hang_after = 3, .crash_after = 5 }));
    try std.testing.expectEqual(.crash, traffic.countRequest(.initEmpty(), .{ .hang_after = 3, .crash_after = 5 }));
    var zero: Traffic = .{};
    try std.testing.expectEqual(.crash, zero.countRequest(.initEmpty(), .{ .crash_after = 0 }));
}

test "crashAtStart kills a process with an even pid by SIGSEGV, and returns in one with an odd pid" {
    var seen = [2]bool{ false, false };
    var tries: usize = 0;
    while (!(seen[0] and seen[1]) and tries < 32) : (tries += 1) {
        const pid = try std.posix.fork();
        if (pid == 0) {
            // No core file in the working directory, and no trace from Zig's
            // segfault handler (the test runner's): the bare signal.
            std.posix.setrlimit(.CORE, .{ .cur = 0, .max = 0 }) catch {};
            const default: std.posix.Sigaction = .{ .handler = .{ .handler = std.posix.SIG.DFL }, .mask = std.posix.sigemptyset(), .flags = 0 };
            std.posix.sigaction(std.posix.SIG.SEGV, &default, null);
            crashAtStart();
            std.posix.exit(0);
        }
        const status = std.posix.waitpid(pid, 0).status;
        const even = @rem(pid, 2) == 0;
        seen[@intFromBool(even)] = true;
        if (even) {
            try std.testing.expect(std.posix.W.IFSIGNALED(status));
            try std.testing.expectEqual(std.posix.SIG.SEGV, std.posix.W.TERMSIG(status));
        } else {
            try std.testing.expect(std.posix.W.IFEXITED(status));
            try std.testing.expectEqual(0, std.posix.W.EXITSTATUS(status));
        }
    }
}
