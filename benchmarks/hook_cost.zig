//! What one hooked allocator call costs, in nanoseconds: the shim's hooks
//! called as `std.mem.Allocator` calls them, over an allocator that does no
//! work of its own (a bump pointer over addresses it never touches), so that
//! the time measured is the hook's. benchmarks/shim_overhead.py runs it with
//! and without `ZPROF_SHM` and beside Tracy's published cost of a call-stack
//! capture (about 98 ns).
//!
//!     hook_cost THREADS LIVE_BLOCKS CALLS_PER_THREAD
//!
//! Each thread allocates 32-byte blocks at consecutive addresses and frees
//! each one LIVE_BLOCKS allocations later, so LIVE_BLOCKS blocks per thread
//! stay live (a server's growing key space when LIVE_BLOCKS is large, its
//! per-request buffers when small). It prints nanoseconds per call (allocs
//! and frees), the mean over threads.

const std = @import("std");
const hooks = @import("hooks");

const block_size = 32;

/// An allocator whose blocks are numbers: it hands out consecutive addresses
/// in a range nobody maps, and forgets frees. The hooks only look at addresses.
const Counting = struct {
    next: usize,

    fn alloc(context: *anyopaque, len: usize, _: std.mem.Alignment, _: usize) ?[*]u8 {
        const self: *Counting = @ptrCast(@alignCast(context));
        const address = self.next;
        self.next += len;
        return @ptrFromInt(address);
    }

    fn free(_: *anyopaque, _: []u8, _: std.mem.Alignment, _: usize) void {}

    const vtable: std.mem.Allocator.VTable = .{
        .alloc = alloc,
        .resize = std.mem.Allocator.noResize,
        .remap = std.mem.Allocator.noRemap,
        .free = free,
    };
};

fn worker(thread_index: usize, live_blocks: usize, calls: usize, nanoseconds: *u64) void {
    // Each thread's addresses in a range of their own, as each thread of a
    // server allocates from slabs of its own.
    var counting: Counting = .{ .next = 0x1000_0000_0000 + thread_index * 0x10_0000_0000 };
    const allocator: std.mem.Allocator = .{ .ptr = &counting, .vtable = &Counting.vtable };
    const alignment: std.mem.Alignment = .@"16";
    var timer = std.time.Timer.start() catch @panic("no monotonic clock");
    var made: usize = 0;
    var freed: usize = 0;
    var first_address = counting.next;
    while (made + freed < calls) {
        const memory = hooks.alloc(allocator, block_size, alignment, @returnAddress()) orelse unreachable;
        std.mem.doNotOptimizeAway(memory);
        made += 1;
        if (made > live_blocks) {
            const oldest: [*]u8 = @ptrFromInt(first_address);
            hooks.free(allocator, oldest[0..block_size], alignment, @returnAddress());
            first_address += block_size;
            freed += 1;
        }
    }
    nanoseconds.* = timer.read() / calls;
}

pub fn main() !void {
    var arguments = std.process.args();
    _ = arguments.skip();
    const threads = try std.fmt.parseInt(usize, arguments.next() orelse "1", 10);
    const live_blocks = try std.fmt.parseInt(usize, arguments.next() orelse "1000", 10);
    const calls = try std.fmt.parseInt(usize, arguments.next() orelse "4000000", 10);

    var per_thread: [64]u64 = @splat(0);
    var workers: [64]std.Thread = undefined;
    const count = @min(threads, workers.len);
    for (workers[0..count], 0..) |*thread, index| {
        thread.* = try std.Thread.spawn(.{}, worker, .{ index, live_blocks, calls, &per_thread[index] });
    }
    for (workers[0..count]) |thread| thread.join();
    var total: u64 = 0;
    for (per_thread[0..count]) |value| total += value;
    var buffer: [64]u8 = undefined;
    var stdout = std.fs.File.stdout().writer(&buffer);
    try stdout.interface.print("{d}\n", .{total / count});
    try stdout.interface.flush();
}
