//! The keyspace: every key and value the server stores.
//!
//! All of it is owned by one allocator (the server's GPA), so FLUSHALL hands
//! every byte back and a leak checker can tell stored data from leaks. The
//! keyspace is not thread-safe; the server guards it with one mutex.
//!
//! Updates are shaped so a repeated request allocates the same way every time:
//! overwriting a value frees the old copy and allocates one new copy, and
//! re-adding an existing member allocates nothing.

const std = @import("std");
const Allocator = std.mem.Allocator;
const shape = @import("shape");

pub const Error = Allocator.Error || error{WrongType};

/// What a key holds. A `-Dfat-value` build adds `sketch`, a variant no
/// command makes, whose inline registers make every Value, and so every
/// entry of the keyspace's table, larger than 4 KiB: the shape of a server
/// whose hash table stores big values in place. The two declarations differ
/// only in that variant.
pub const Value = if (shape.fat_value) union(enum) {
    string: []u8,
    list: List,
    set: Set,
    hash: Hash,
    zset: SortedSet,
    sketch: Sketch,

    pub const Kind = std.meta.Tag(Value);
    pub const deinit = deinitValue;
    const isEmpty = valueIsEmpty;
} else union(enum) {
    string: []u8,
    list: List,
    set: Set,
    hash: Hash,
    zset: SortedSet,

    pub const Kind = std.meta.Tag(Value);
    pub const deinit = deinitValue;
    const isEmpty = valueIsEmpty;
};

/// A HyperLogLog-like sketch, held inline (not behind a pointer): only in
/// `-Dfat-value` builds' Value, and never made by any command.
pub const Sketch = struct {
    registers: [4096]u8,

    /// Owns no memory: its registers are part of the Value.
    pub fn deinit(_: *Sketch, _: Allocator) void {}
};

fn deinitValue(value: *Value, gpa: Allocator) void {
    switch (value.*) {
        .string => |bytes| gpa.free(bytes),
        inline else => |*container| container.deinit(gpa),
    }
    value.* = undefined;
}

fn valueIsEmpty(value: *const Value) bool {
    return switch (value.*) {
        inline else => |*held| switch (@TypeOf(held.*)) {
            // Neither is a container: never empty, as Redis never keeps an empty string key.
            []u8, Sketch => false,
            else => held.count() == 0,
        },
    };
}

/// The container type stored under `kind`, e.g. `Container(.list) == List`.
pub fn Container(comptime kind: Value.Kind) type {
    return @FieldType(Value, @tagName(kind));
}

pub const Keyspace = struct {
    gpa: Allocator,
    entries: std.StringHashMapUnmanaged(Value) = .empty,
    /// At this many keys, adding one more fails with OutOfMemory, as on a
    /// server at its memory limit (the `--full-after` fault); null: no limit.
    max_keys: ?usize = null,

    pub fn init(gpa: Allocator) Keyspace {
        return .{ .gpa = gpa };
    }

    pub fn deinit(keyspace: *Keyspace) void {
        keyspace.freeEntries();
        keyspace.entries.deinit(keyspace.gpa);
        keyspace.* = undefined;
    }

    /// FLUSHALL: frees every key, every value and the table itself.
    pub fn flushAll(keyspace: *Keyspace) void {
        keyspace.freeEntries();
        keyspace.entries.clearAndFree(keyspace.gpa);
    }

    fn freeEntries(keyspace: *Keyspace) void {
        var it = keyspace.entries.iterator();
        while (it.next()) |entry| {
            keyspace.gpa.free(entry.key_ptr.*);
            entry.value_ptr.deinit(keyspace.gpa);
        }
    }

    pub fn count(keyspace: *const Keyspace) usize {
        return keyspace.entries.count();
    }

    pub fn contains(keyspace: *const Keyspace, key: []const u8) bool {
        return keyspace.entries.contains(key);
    }

    /// Removes `key` and frees its value. Returns whether it existed.
    pub fn delete(keyspace: *Keyspace, key: []const u8) bool {
        var removed = keyspace.entries.fetchRemove(key) orelse return false;
        keyspace.gpa.free(removed.key);
        removed.value.deinit(keyspace.gpa);
        return true;
    }

    /// Redis deletes a container key as soon as its last element is removed;
    /// call this after any operation that may have emptied one.
    pub fn deleteIfEmpty(keyspace: *Keyspace, key: []const u8) void {
        const value = keyspace.entries.getPtr(key) orelse return;
        if (value.isEmpty()) _ = keyspace.delete(key);
    }

    /// The string stored at `key`, or null if the key does not exist.
    pub fn getString(keyspace: *const Keyspace, key: []const u8) error{WrongType}!?[]const u8 {
        const value = keyspace.entries.getPtr(key) orelse return null;
        return switch (value.*) {
            .string => |bytes| bytes,
            else => error.WrongType,
        };
    }

    /// SET: stores a copy of `bytes` at `key`, replacing any value of any type.
    pub fn putString(keyspace: *Keyspace, key: []const u8, bytes: []const u8) Allocator.Error!void {
        // Copy first: once the slot exists nothing below may fail.
        const copy = try keyspace.gpa.dupe(u8, bytes);
        errdefer keyspace.gpa.free(copy);
        const slot = try keyspace.slotFor(key);
        if (slot.found_existing) slot.value.deinit(keyspace.gpa);
        slot.value.* = .{ .string = copy };
    }

    /// The container of type `kind` at `key`, or null if the key does not exist.
    pub fn lookup(
        keyspace: *Keyspace,
        key: []const u8,
        comptime kind: Value.Kind,
    ) error{WrongType}!?*Container(kind) {
        const value = keyspace.entries.getPtr(key) orelse return null;
        if (value.* != kind) return error.WrongType;
        return &@field(value, @tagName(kind));
    }

    /// The container of type `kind` at `key` for writing, created empty if the
    /// key does not exist. If the caller then fails to add anything, it must
    /// call `deleteIfEmpty` so no empty container is left behind.
    pub fn lookupOrCreate(
        keyspace: *Keyspace,
        key: []const u8,
        comptime kind: Value.Kind,
    ) Error!*Container(kind) {
        if (keyspace.entries.getPtr(key)) |value| {
            if (value.* != kind) return error.WrongType;
            return &@field(value, @tagName(kind));
        }
        const slot = try keyspace.slotFor(key);
        slot.value.* = @unionInit(Value, @tagName(kind), .{});
        return &@field(slot.value, @tagName(kind));
    }

    const Slot = struct {
        value: *Value,
        found_existing: bool,
    };

    /// Finds or inserts the table slot for `key`. A new slot gets its own copy
    /// of the key and an undefined value the caller must fill in.
    fn slotFor(keyspace: *Keyspace, key: []const u8) Allocator.Error!Slot {
        if (keyspace.max_keys) |max| {
            if (keyspace.entries.count() >= max and !keyspace.entries.contains(key)) return error.OutOfMemory;
        }
        const gop = try keyspace.entries.getOrPut(keyspace.gpa, key);
        if (!gop.found_existing) {
            // The table still points at the caller's (borrowed) key here.
            gop.key_ptr.* = keyspace.gpa.dupe(u8, key) catch |err| {
                keyspace.entries.removeByPtr(gop.key_ptr);
                return err;
            };
        }
        return .{ .value = gop.value_ptr, .found_existing = gop.found_existing };
    }
};

pub const End = enum { front, back };

/// A doubly linked list of byte strings: O(1) push and pop at both ends.
/// Each element costs exactly two allocations (node and value), so pushes
/// never trigger amortized regrowth.
pub const List = struct {
    nodes: std.DoublyLinkedList = .{},
    len: usize = 0,

    const Node = struct {
        link: std.DoublyLinkedList.Node = .{},
        value: []u8,

        fn fromLink(link: *std.DoublyLinkedList.Node) *Node {
            return @fieldParentPtr("link", link);
        }
    };

    pub fn deinit(list: *List, gpa: Allocator) void {
        while (list.popOwned(gpa, .front)) |value| gpa.free(value);
    }

    pub fn count(list: *const List) usize {
        return list.len;
    }

    pub fn push(list: *List, gpa: Allocator, end: End, value: []const u8) Allocator.Error!void {
        const copy = try gpa.dupe(u8, value);
        errdefer gpa.free(copy);
        const node = try gpa.create(Node);
        node.* = .{ .value = copy };
        switch (end) {
            .front => list.nodes.prepend(&node.link),
            .back => list.nodes.append(&node.link),
        }
        list.len += 1;
    }

    /// Removes an element and returns its bytes, which the caller now owns
    /// and must free with `gpa`.
    pub fn popOwned(list: *List, gpa: Allocator, end: End) ?[]u8 {
        const link = switch (end) {
            .front => list.nodes.popFirst(),
            .back => list.nodes.pop(),
        } orelse return null;
        const node = Node.fromLink(link);
        const value = node.value;
        gpa.destroy(node);
        list.len -= 1;
        return value;
    }

    /// Iterates the elements starting at `index` (0 = front).
    pub fn iteratorAt(list: *const List, index: usize) Iterator {
        var link = list.nodes.first;
        for (0..index) |_| link = (link orelse break).next;
        return .{ .link = link };
    }

    pub const Iterator = struct {
        link: ?*std.DoublyLinkedList.Node,

        pub fn next(it: *Iterator) ?[]const u8 {
            const link = it.link orelse return null;
            it.link = link.next;
            return Node.fromLink(link).value;
        }
    };
};

/// A set of byte strings; the set owns its members.
pub const Set = struct {
    members: std.StringHashMapUnmanaged(void) = .empty,

    pub fn deinit(set: *Set, gpa: Allocator) void {
        var it = set.members.keyIterator();
        while (it.next()) |member| gpa.free(member.*);
        set.members.deinit(gpa);
    }

    pub fn count(set: *const Set) usize {
        return set.members.count();
    }

    /// Returns whether `member` was newly added.
    pub fn add(set: *Set, gpa: Allocator, member: []const u8) Allocator.Error!bool {
        const gop = try set.members.getOrPut(gpa, member);
        if (gop.found_existing) return false;
        gop.key_ptr.* = gpa.dupe(u8, member) catch |err| {
            set.members.removeByPtr(gop.key_ptr);
            return err;
        };
        return true;
    }

    /// Returns whether `member` was present.
    pub fn remove(set: *Set, gpa: Allocator, member: []const u8) bool {
        const removed = set.members.fetchRemove(member) orelse return false;
        gpa.free(removed.key);
        return true;
    }

    pub fn iterator(set: *const Set) std.StringHashMapUnmanaged(void).KeyIterator {
        return set.members.keyIterator();
    }
};

/// Field/value pairs; the hash owns both.
pub const Hash = struct {
    fields: std.StringHashMapUnmanaged([]u8) = .empty,

    pub fn deinit(hash: *Hash, gpa: Allocator) void {
        var it = hash.fields.iterator();
        while (it.next()) |entry| {
            gpa.free(entry.key_ptr.*);
            gpa.free(entry.value_ptr.*);
        }
        hash.fields.deinit(gpa);
    }

    pub fn count(hash: *const Hash) usize {
        return hash.fields.count();
    }

    pub fn get(hash: *const Hash, field: []const u8) ?[]const u8 {
        return hash.fields.get(field);
    }

    /// Sets `field` to a copy of `value`. Returns whether the field is new.
    /// Overwriting costs one allocation (the new value) and one free (the old).
    pub fn put(hash: *Hash, gpa: Allocator, field: []const u8, value: []const u8) Allocator.Error!bool {
        const copy = try gpa.dupe(u8, value);
        errdefer gpa.free(copy);
        const gop = try hash.fields.getOrPut(gpa, field);
        if (gop.found_existing) {
            gpa.free(gop.value_ptr.*);
        } else {
            gop.key_ptr.* = gpa.dupe(u8, field) catch |err| {
                hash.fields.removeByPtr(gop.key_ptr);
                return err;
            };
        }
        gop.value_ptr.* = copy;
        return !gop.found_existing;
    }

    /// Returns whether `field` was present.
    pub fn remove(hash: *Hash, gpa: Allocator, field: []const u8) bool {
        const removed = hash.fields.fetchRemove(field) orelse return false;
        gpa.free(removed.key);
        gpa.free(removed.value);
        return true;
    }
};

/// Members ordered by (score, member bytes), as Redis orders them.
///
/// `scores` answers "what is this member's score" in O(1); `ordered` is the
/// rank order for ZRANGE, kept sorted by binary-search insertion. Members in
/// `ordered` borrow their bytes from the keys of `scores`.
pub const SortedSet = struct {
    scores: std.StringHashMapUnmanaged(f64) = .empty,
    ordered: std.ArrayList(Entry) = .empty,

    pub const Entry = struct {
        score: f64,
        member: []const u8,

        fn lessThan(a: Entry, b: Entry) bool {
            if (a.score != b.score) return a.score < b.score;
            return std.mem.order(u8, a.member, b.member) == .lt;
        }
    };

    pub fn deinit(zset: *SortedSet, gpa: Allocator) void {
        var it = zset.scores.keyIterator();
        while (it.next()) |member| gpa.free(member.*);
        zset.scores.deinit(gpa);
        zset.ordered.deinit(gpa);
    }

    pub fn count(zset: *const SortedSet) usize {
        return zset.ordered.items.len;
    }

    /// Adds `member` or updates its score. Returns whether it is new.
    pub fn put(zset: *SortedSet, gpa: Allocator, member: []const u8, score: f64) Allocator.Error!bool {
        std.debug.assert(!std.math.isNan(score));
        // Reserve rank space first so the insertion below cannot fail halfway.
        try zset.ordered.ensureUnusedCapacity(gpa, 1);
        const gop = try zset.scores.getOrPut(gpa, member);
        if (gop.found_existing) {
            const old_score = gop.value_ptr.*;
            if (old_score == score) return false;
            const stored_member = gop.key_ptr.*;
            _ = zset.ordered.orderedRemove(zset.rankOf(.{ .score = old_score, .member = stored_member }));
            gop.value_ptr.* = score;
            zset.insertAssumeCapacity(.{ .score = score, .member = stored_member });
            return false;
        }
        const owned_member = gpa.dupe(u8, member) catch |err| {
            zset.scores.removeByPtr(gop.key_ptr);
            return err;
        };
        gop.key_ptr.* = owned_member;
        gop.value_ptr.* = score;
        zset.insertAssumeCapacity(.{ .score = score, .member = owned_member });
        return true;
    }

    /// Entries in rank order (lowest score first).
    pub fn entries(zset: *const SortedSet) []const Entry {
        return zset.ordered.items;
    }

    /// Index of the first entry not less than `entry`.
    fn rankOf(zset: *const SortedSet, entry: Entry) usize {
        return std.sort.partitionPoint(Entry, zset.ordered.items, entry, struct {
            fn before(target: Entry, item: Entry) bool {
                return Entry.lessThan(item, target);
            }
        }.before);
    }

    fn insertAssumeCapacity(zset: *SortedSet, entry: Entry) void {
        zset.ordered.insertAssumeCapacity(zset.rankOf(entry), entry);
    }
};

const testing = std.testing;

test "a Value is larger than 4 KiB exactly in -Dfat-value builds" {
    if (shape.fat_value) {
        try testing.expect(@sizeOf(Value) > 4096);
    } else {
        try testing.expect(@sizeOf(Value) <= 64);
        try testing.expect(!@hasField(Value, "sketch"));
    }
}

test "strings: put, overwrite, delete" {
    var keyspace: Keyspace = .init(testing.allocator);
    defer keyspace.deinit();

    try keyspace.putString("k", "one");
    try keyspace.putString("k", "two");
    try testing.expectEqualStrings("two", (try keyspace.getString("k")).?);
    try testing.expectEqual(null, try keyspace.getString("missing"));
    try testing.expect(keyspace.delete("k"));
    try testing.expect(!keyspace.delete("k"));
    try testing.expectEqual(0, keyspace.count());
}

test "wrong type is reported, and SET replaces any type" {
    var keyspace: Keyspace = .init(testing.allocator);
    defer keyspace.deinit();

    const list = try keyspace.lookupOrCreate("k", .list);
    try list.push(testing.allocator, .back, "x");
    try testing.expectError(error.WrongType, keyspace.getString("k"));
    try testing.expectError(error.WrongType, keyspace.lookupOrCreate("k", .set));
    try testing.expectError(error.WrongType, keyspace.lookup("k", .hash));
    try keyspace.putString("k", "now a string");
    try testing.expectEqualStrings("now a string", (try keyspace.getString("k")).?);
}

test "list push, pop and iterate" {
    var keyspace: Keyspace = .init(testing.allocator);
    defer keyspace.deinit();
    const gpa = testing.allocator;

    const list = try keyspace.lookupOrCreate("l", .list);
    try list.push(gpa, .front, "b");
    try list.push(gpa, .front, "a");
    try list.push(gpa, .back, "c");
    try testing.expectEqual(3, list.count());

    var it = list.iteratorAt(1);
    try testing.expectEqualStrings("b", it.next().?);
    try testing.expectEqualStrings("c", it.next().?);
    try testing.expectEqual(null, it.next());

    const last = list.popOwned(gpa, .back).?;
    defer gpa.free(last);
    try testing.expectEqualStrings("c", last);
    try testing.expectEqual(2, list.count());
}

test "sorted set keeps rank order across score updates" {
    var keyspace: Keyspace = .init(testing.allocator);
    defer keyspace.deinit();
    const gpa = testing.allocator;

    const zset = try keyspace.lookupOrCreate("z", .zset);
    try testing.expect(try zset.put(gpa, "b", 2));
    try testing.expect(try zset.put(gpa, "a", 2));
    try testing.expect(try zset.put(gpa, "c", 1));
    try testing.expect(!try zset.put(gpa, "c", 3));
    try testing.expect(!try zset.put(gpa, "a", 2));

    const expected = [_]SortedSet.Entry{
        .{ .score = 2, .member = "a" },
        .{ .score = 2, .member = "b" },
        .{ .score = 3, .member = "c" },
    };
    try testing.expectEqual(expected.len, zset.entries().len);
    for (expected, zset.entries()) |e, actual| {
        try testing.expectEqual(e.score, actual.score);
        try testing.expectEqualStrings(e.member, actual.member);
    }
}

test "emptied containers are deleted" {
    var keyspace: Keyspace = .init(testing.allocator);
    defer keyspace.deinit();
    const gpa = testing.allocator;

    const set = try keyspace.lookupOrCreate("s", .set);
    _ = try set.add(gpa, "m");
    try testing.expect(set.remove(gpa, "m"));
    keyspace.deleteIfEmpty("s");
    try testing.expect(!keyspace.contains("s"));
}

fn fillEveryType(gpa: Allocator) !void {
    var keyspace: Keyspace = .init(gpa);
    defer keyspace.deinit();

    try keyspace.putString("str", "value");
    try keyspace.putString("str", "value2");
    const list = try keyspace.lookupOrCreate("list", .list);
    try list.push(gpa, .back, "a");
    try list.push(gpa, .front, "b");
    const set = try keyspace.lookupOrCreate("set", .set);
    _ = try set.add(gpa, "a");
    _ = try set.add(gpa, "b");
    const hash = try keyspace.lookupOrCreate("hash", .hash);
    _ = try hash.put(gpa, "f", "v");
    _ = try hash.put(gpa, "f", "v2");
    const zset = try keyspace.lookupOrCreate("zset", .zset);
    _ = try zset.put(gpa, "a", 1);
    _ = try zset.put(gpa, "a", 2);
    _ = try zset.put(gpa, "b", 0);
    keyspace.flushAll();
    try testing.expectEqual(0, keyspace.count());
    try keyspace.putString("after-flush", "x");
}

test "no leaks on any allocation failure, and FLUSHALL frees everything" {
    try testing.checkAllAllocationFailures(testing.allocator, fillEveryType, .{});
}

test "a keyspace at max_keys refuses a new key, not an existing one" {
    var keyspace: Keyspace = .init(testing.allocator);
    defer keyspace.deinit();
    keyspace.max_keys = 1;

    try keyspace.putString("k", "one");
    try testing.expectError(error.OutOfMemory, keyspace.putString("other", "x"));
    try testing.expectError(error.OutOfMemory, keyspace.lookupOrCreate("list", .list));
    try keyspace.putString("k", "two");
    try testing.expectEqualStrings("two", (try keyspace.getString("k")).?);
    try testing.expectEqual(1, keyspace.count());
}

test "FLUSHALL returns every byte to the allocator" {
    var counting: std.testing.FailingAllocator = .init(testing.allocator, .{});
    const gpa = counting.allocator();
    var keyspace: Keyspace = .init(gpa);
    defer keyspace.deinit();

    try keyspace.putString("k", "v");
    _ = try (try keyspace.lookupOrCreate("h", .hash)).put(gpa, "f", "v");
    _ = try (try keyspace.lookupOrCreate("z", .zset)).put(gpa, "m", 1);
    try (try keyspace.lookupOrCreate("l", .list)).push(gpa, .back, "x");
    _ = try (try keyspace.lookupOrCreate("s", .set)).add(gpa, "m");

    keyspace.flushAll();
    try testing.expectEqual(counting.allocated_bytes, counting.freed_bytes);
    try testing.expectEqual(counting.allocations, counting.deallocations);
}
