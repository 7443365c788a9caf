//! Planted performance defects, each off by default and switched on with
//! `--defect NAME`. They are the ground truth a profiler run is judged
//! against, so every one lives in its own `noinline` function: it keeps its
//! own symbol and stack frame in ReleaseFast, and its cost is exactly what its
//! doc comment says, nothing more.

const std = @import("std");
const Allocator = std.mem.Allocator;
const Writer = std.Io.Writer;
const Command = @import("commands.zig").Command;
const flags = @import("flags.zig");

pub const Defect = enum {
    alloc_reply,
    small_allocs,
    large_alloc,
    leak,
    hot_loop,
    linear_lookup,
    grow_log,

    /// The spelling used on the command line, e.g. "alloc-reply".
    pub fn flagName(defect: Defect) []const u8 {
        return flags.name(Defect, defect);
    }

    /// Parses a command-line spelling; null if no defect has that name.
    pub fn fromFlagName(name: []const u8) ?Defect {
        return flags.parse(Defect, name);
    }
};

pub const Set = std.EnumSet(Defect);

/// alloc-reply (HSET): formats the integer reply in a 256-byte GPA buffer,
/// copies it to the output buffer and frees it, instead of printing straight
/// into the output buffer. Exactly one extra allocation per HSET.
pub noinline fn formatReplyAlloc(gpa: Allocator, out: *Writer, value: i64) (Allocator.Error || Writer.Error)!void {
    const scratch = try gpa.alloc(u8, 256);
    defer gpa.free(scratch);
    const reply = std.fmt.bufPrint(scratch, ":{d}\r\n", .{value}) catch unreachable; // an i64 needs < 32 bytes
    try out.writeAll(reply);
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
