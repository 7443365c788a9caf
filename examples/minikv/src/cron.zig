//! `--tick HZ`: a housekeeping thread in the manner of Redis' serverCron
//! (which runs `hz` times a second, 10 by default). Every 1/HZ seconds it
//! takes `blocks_per_tick` small blocks from the server's allocator and gives
//! them back, as a server's periodic bookkeeping does. The allocator sees
//! this work whether or not requests come: what an allocation count per
//! request must not mistake for the requests' own.

const std = @import("std");
const Allocator = std.mem.Allocator;

pub const blocks_per_tick = 4;
const block_bytes = 48;
pub const max_hz = 1000;

/// Starts the thread; it runs until the process ends.
pub fn start(gpa: Allocator, hz: u32) std.Thread.SpawnError!void {
    std.debug.assert(hz > 0 and hz <= max_hz);
    const thread = try std.Thread.spawn(.{}, run, .{ gpa, std.time.ns_per_s / hz });
    thread.detach();
}

fn run(gpa: Allocator, period_ns: u64) void {
    while (true) {
        std.Thread.sleep(period_ns);
        tick(gpa);
    }
}

/// One tick's bookkeeping: `blocks_per_tick` blocks taken, then given back.
/// A block the allocator cannot give is skipped: the next tick tries again.
noinline fn tick(gpa: Allocator) void {
    var blocks: [blocks_per_tick]?[]u8 = @splat(null);
    for (&blocks) |*block| block.* = gpa.alloc(u8, block_bytes) catch null;
    for (blocks) |block| if (block) |bytes| gpa.free(bytes);
}

test "a tick gives back every block it takes" {
    var counting: std.testing.FailingAllocator = .init(std.testing.allocator, .{});
    tick(counting.allocator());
    try std.testing.expectEqual(blocks_per_tick, counting.allocations);
    try std.testing.expectEqual(counting.allocated_bytes, counting.freed_bytes);
}
