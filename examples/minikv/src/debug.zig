//! DEBUG: requests that make minikv do what real servers sometimes do to a
//! profiler watching them, for zprof's reliability tests. Like Redis' DEBUG,
//! they are not for ordinary clients:
//!
//!     DEBUG FOREIGN-FRAME key value   SET, from a callback that a C function built
//!                                     without frame pointers calls with a bogus
//!                                     frame pointer (src/foreign_frame.c)
//!     DEBUG FORK-ALLOC n              a forked child makes n allocations and exits
//!     DEBUG EXEC-SELF                 a forked child runs `minikv --help`, which
//!                                     allocates as it reads its command line
//!
//! Each replies +OK once its work is done and its child, if any, has exited.

const std = @import("std");
const posix = std.posix;
const commands = @import("commands.zig");
const flags = @import("flags.zig");
const resp = @import("resp.zig");

const Subcommand = enum {
    foreign_frame,
    fork_alloc,
    exec_self,

    /// The arguments each takes, DEBUG and the subcommand included.
    fn arity(subcommand: Subcommand) usize {
        return switch (subcommand) {
            .foreign_frame => 4,
            .fork_alloc => 3,
            .exec_self => 2,
        };
    }
};

/// Longest subcommand name looked up; anything longer is unknown.
const max_subcommand_len = 16;
/// FORK-ALLOC's child makes at most this many allocations.
const max_child_allocations = 1_000_000;

extern fn minikv_call_with_foreign_frame(callback: *const fn (?*anyopaque) callconv(.c) void, context: ?*anyopaque, frame: usize) void;

/// The DEBUG command's handler.
pub fn command(ctx: *commands.Context, args: []const []const u8) commands.Error!void {
    var lower: [max_subcommand_len]u8 = undefined;
    const subcommand = if (args[1].len <= lower.len) flags.parse(Subcommand, std.ascii.lowerString(&lower, args[1])) else null;
    const which = subcommand orelse {
        try ctx.out.writeAll("-ERR unknown DEBUG subcommand (known:");
        for (std.enums.values(Subcommand)) |value| try ctx.out.print(" {s}", .{flags.name(Subcommand, value)});
        return ctx.out.writeAll(")\r\n");
    };
    if (args.len != which.arity()) return resp.writeError(ctx.out, "ERR wrong number of arguments for 'debug' command");
    switch (which) {
        .foreign_frame => try setThroughForeignFrame(ctx, args[2], args[3]),
        .fork_alloc => {
            const count = resp.parseInteger(args[2]) orelse return resp.writeError(ctx.out, "ERR value is not an integer or out of range");
            if (count < 0 or count > max_child_allocations) return resp.writeError(ctx.out, "ERR value is out of range");
            try replyForChild(ctx, forkChild(allocateInChild, @intCast(count)));
        },
        .exec_self => try replyForChild(ctx, forkChild(execSelfInChild, 0)),
    }
}

/// SET key value, run from `minikv_call_with_foreign_frame`: the keyspace
/// allocates while the frame-pointer chain above the callback leads to a
/// bogus frame outside this thread's stack.
noinline fn setThroughForeignFrame(ctx: *commands.Context, key: []const u8, value: []const u8) commands.Error!void {
    const Call = struct {
        ctx: *commands.Context,
        key: []const u8,
        value: []const u8,
        result: std.mem.Allocator.Error!void = {},

        fn run(context: ?*anyopaque) callconv(.c) void {
            const call: *@This() = @ptrCast(@alignCast(context.?));
            call.result = call.ctx.keyspace.putString(call.key, call.value);
        }
    };
    var call: Call = .{ .ctx = ctx, .key = key, .value = value };
    const bogus: BogusFrame = .map(@frameAddress());
    defer bogus.unmap();
    minikv_call_with_foreign_frame(Call.run, &call, bogus.address());
    try call.result;
    try resp.writeSimpleString(ctx.out, "OK");
}

/// Two pages mapped within 1 MiB above a stack frame, outside the stack
/// itself: the first holds a frame record whose caller frame is the second,
/// which may not be read. A frame-pointer walk that follows a bogus frame
/// pointer to the first page without checking it against the stack faults on
/// the second; one that checks stops before either.
const BogusFrame = struct {
    pages: []align(std.heap.page_size_min) u8,

    /// A return address no code has: what a walk through the bogus frame would record.
    const return_address: usize = 0x00de_ad00_0000;
    const page = std.heap.page_size_min;

    fn map(frame: usize) BogusFrame {
        // The first free spot 64 KiB, 128 KiB, ... above the frame; anywhere if none is free.
        var step: usize = 1;
        const pages = while (step < 16) : (step += 1) {
            const wanted = std.mem.alignForward(usize, frame + step * 64 * 1024, page);
            if (mapAt(@ptrFromInt(wanted))) |found| break found else |_| {}
        } else mapAt(null) catch @panic("DEBUG FOREIGN-FRAME: out of address space");
        posix.mprotect(@alignCast(pages[page..]), posix.PROT.NONE) catch @panic("DEBUG FOREIGN-FRAME: mprotect failed");
        const record: *[2]usize = @ptrCast(pages.ptr);
        record.* = .{ @intFromPtr(pages.ptr) + page, return_address };
        return .{ .pages = pages };
    }

    fn mapAt(hint: ?[*]align(page) u8) posix.MMapError![]align(page) u8 {
        return posix.mmap(hint, 2 * page, posix.PROT.READ | posix.PROT.WRITE, .{
            .TYPE = .PRIVATE,
            .ANONYMOUS = true,
            .FIXED_NOREPLACE = hint != null,
        }, -1, 0);
    }

    fn address(bogus: BogusFrame) usize {
        return @intFromPtr(bogus.pages.ptr);
    }

    fn unmap(bogus: BogusFrame) void {
        posix.munmap(bogus.pages);
    }
};

/// How a forked child ended, or null when the fork failed.
const ChildStatus = ?u32;

/// Forks; the child runs `body(argument)`, which never returns, while the
/// parent waits for it.
fn forkChild(comptime body: fn (usize) noreturn, argument: usize) ChildStatus {
    const pid = posix.fork() catch return null;
    if (pid == 0) body(argument);
    return posix.waitpid(pid, 0).status;
}

fn replyForChild(ctx: *commands.Context, status: ChildStatus) commands.Error!void {
    const code = status orelse return resp.writeError(ctx.out, "ERR fork failed");
    if (!posix.W.IFEXITED(code) or posix.W.EXITSTATUS(code) != 0) return resp.writeError(ctx.out, "ERR the child failed");
    try resp.writeSimpleString(ctx.out, "OK");
}

/// In a forked child of a threaded process: only the page allocator, which
/// takes no lock another thread of the parent may have held at the fork.
fn allocateInChild(count: usize) noreturn {
    const allocator = std.heap.page_allocator;
    for (0..count) |_| {
        const block = allocator.alloc(u8, 64) catch posix.exit(1);
        allocator.free(block);
    }
    posix.exit(0);
}

/// In a forked child: nothing between fork and exec but the exec.
fn execSelfInChild(_: usize) noreturn {
    const argv = [_:null]?[*:0]const u8{ "minikv", "--help" };
    const envp: [*:null]const ?[*:0]const u8 = @ptrCast(std.os.environ.ptr);
    posix.execveZ("/proc/self/exe", &argv, envp) catch {};
    posix.exit(127);
}

test "subcommands: arity, unknown names, and a set through the foreign frame" {
    var keyspace: @import("keyspace.zig").Keyspace = .init(std.testing.allocator);
    defer keyspace.deinit();
    var arena: std.heap.ArenaAllocator = .init(std.testing.allocator);
    defer arena.deinit();
    var replies: std.Io.Writer.Allocating = .init(std.testing.allocator);
    defer replies.deinit();
    var audit_log: @import("defects.zig").AuditLog = .{};
    var ctx: commands.Context = .{ .keyspace = &keyspace, .arena = arena.allocator(), .out = &replies.writer, .defects = .initEmpty(), .audit_log = &audit_log };

    try command(&ctx, &.{ "DEBUG", "foreign-FRAME", "k", "v" });
    try std.testing.expectEqualStrings("+OK\r\n", replies.written());
    try std.testing.expectEqualStrings("v", (try keyspace.getString("k")).?);
    replies.clearRetainingCapacity();
    try command(&ctx, &.{ "DEBUG", "FORK-ALLOC", "3" });
    try std.testing.expectEqualStrings("+OK\r\n", replies.written());
    replies.clearRetainingCapacity();
    try command(&ctx, &.{ "DEBUG", "FORK-ALLOC", "-1" });
    try std.testing.expectEqualStrings("-ERR value is out of range\r\n", replies.written());
    replies.clearRetainingCapacity();
    try command(&ctx, &.{ "DEBUG", "EXEC-SELF", "extra" });
    try std.testing.expectEqualStrings("-ERR wrong number of arguments for 'debug' command\r\n", replies.written());
    replies.clearRetainingCapacity();
    try command(&ctx, &.{ "DEBUG", "SEGFAULT" });
    try std.testing.expectEqualStrings("-ERR unknown DEBUG subcommand (known: foreign-frame fork-alloc exec-self)\r\n", replies.written());
}
