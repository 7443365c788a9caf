//! Types whose layouts tests/test_layout.py reads from this program's DWARF. Run, the program prints
//! what Zig says of each: `size NAME @sizeOf @alignOf` and `offset NAME.FIELD @offsetOf`, one a line.

const std = @import("std");

/// A variant as big as a HyperLogLog's registers, stored inline.
pub const Sketch = struct {
    registers: [4096]u8,
};

pub const Pair = struct {
    left: u32,
    right: u32,
};

/// A tagged union with one big variant and small ones (one of them void).
pub const Big = union(enum) {
    string: []u8,
    number: i64,
    pair: Pair,
    sketch: Sketch,
    empty: void,
};

/// The same without the big variant.
pub const Small = union(enum) {
    string: []u8,
    number: i64,
    pair: Pair,
    empty: void,
};

/// The same with the big variant boxed.
pub const Boxed = union(enum) {
    string: []u8,
    number: i64,
    pair: Pair,
    sketch: *Sketch,
    empty: void,
};

/// A payload (12 B) that is not a multiple of its alignment (8): the tag goes right after it.
pub const Odd = union(enum) {
    bytes: [12]u8,
    word: u64,
    blob: [100]u8,
};

pub const OddBoxed = union(enum) {
    bytes: [12]u8,
    word: u64,
    blob: *[100]u8,
};

/// A tag as aligned as the payload: the tag comes first; boxing `c` makes the payload more aligned.
pub const TagFirst = union(enum) {
    a: [3]u8,
    b: u8,
    c: [50]u8,
};

pub const TagFirstBoxed = union(enum) {
    a: [3]u8,
    b: u8,
    c: *[50]u8,
};

/// A bare union: its DWARF size is its largest member's, 12, where @sizeOf says 16.
pub const Bare = extern union {
    word: u64,
    bytes: [12]u8,
};

/// A struct with a hole where it was written (u8 then u64); Zig reorders it.
pub const Holey = struct {
    flag: u8,
    count: u64,
    tail: u16,
};

/// An extern struct keeps its declared order, so the hole is where it was written.
pub const HoleyExtern = extern struct {
    flag: u8,
    count: u64,
    tail: u16,
};

/// A struct with a big inline array, and the same with the array boxed.
pub const Record = struct {
    id: u32,
    blob: [64]u8,
    flag: bool,
};

pub const RecordBoxed = struct {
    id: u32,
    blob: *[64]u8,
    flag: bool,
};

/// Optionals, slices and nested arrays, as fields.
pub const Misc = struct {
    maybe: ?u32,
    maybe_ptr: ?*Sketch,
    name: []const u8,
    grid: [3][5]u16,
};

/// A type made by an expression, not declared: Zig names it "types.Chosen__union_N".
pub const Chosen = if (@sizeOf(usize) == 8) union(enum) {
    word: u64,
    bytes: [32]u8,
} else union(enum) {
    word: u32,
};

/// Two types of one last name: "Inner" alone names neither.
pub const Left = struct {
    pub const Inner = struct { x: u32 };
    inner: Inner,
};

pub const Right = struct {
    pub const Inner = struct { y: u64 };
    inner: Inner,
};

/// The keyspace's shape: a string-keyed hash map whose every slot holds a Big.
pub const Map = std.StringHashMapUnmanaged(Big);

var sink: usize = 0;

/// Keeps `value` (and so its type's debug information) alive in ReleaseFast.
fn keep(value: anytype) void {
    const p: *volatile usize = &sink;
    p.* +%= @intFromPtr(value);
}

fn size(out: *std.Io.Writer, comptime name: []const u8, comptime T: type) !void {
    try out.print("size {s} {d} {d}\n", .{ name, @sizeOf(T), @alignOf(T) });
}

fn offsets(out: *std.Io.Writer, comptime name: []const u8, comptime T: type) !void {
    inline for (std.meta.fields(T)) |field| {
        try out.print("offset {s}.{s} {d}\n", .{ name, field.name, @offsetOf(T, field.name) });
    }
}

pub fn main() !void {
    var gpa: std.heap.DebugAllocator(.{}) = .init;
    defer _ = gpa.deinit();
    const allocator = gpa.allocator();
    const n = std.os.argv.len;

    var map: Map = .empty;
    defer map.deinit(allocator);
    var sketch: Sketch = .{ .registers = @splat(0) };
    sketch.registers[3] = @intCast(n);
    try map.put(allocator, "a", .{ .sketch = sketch });
    try map.put(allocator, "b", .{ .number = @intCast(n) });
    var blob: [100]u8 = @splat(@intCast(n));
    var small_blob: [50]u8 = @splat(@intCast(n));
    var record_blob: [64]u8 = @splat(@intCast(n));
    var small: Small = .{ .pair = .{ .left = 1, .right = @intCast(n) } };
    var boxed: Boxed = .{ .sketch = &sketch };
    var odd: Odd = .{ .word = n };
    var odd_boxed: OddBoxed = .{ .blob = &blob };
    var tag_first: TagFirst = .{ .b = @intCast(n) };
    var tag_first_boxed: TagFirstBoxed = .{ .c = &small_blob };
    var bare: Bare = .{ .word = n };
    var holey: Holey = .{ .flag = 1, .count = n, .tail = 2 };
    var holey_extern: HoleyExtern = .{ .flag = 1, .count = n, .tail = 2 };
    var record: Record = .{ .id = @intCast(n), .blob = record_blob, .flag = true };
    var record_boxed: RecordBoxed = .{ .id = @intCast(n), .blob = &record_blob, .flag = true };
    var misc: Misc = .{ .maybe = null, .maybe_ptr = &sketch, .name = "x", .grid = @splat(@splat(0)) };
    var chosen: Chosen = .{ .word = n };
    var left: Left = .{ .inner = .{ .x = @intCast(n) } };
    var right: Right = .{ .inner = .{ .y = n } };
    keep(&map);
    keep(&small);
    keep(&boxed);
    keep(&odd);
    keep(&odd_boxed);
    keep(&tag_first);
    keep(&tag_first_boxed);
    keep(&bare);
    keep(&holey);
    keep(&holey_extern);
    keep(&record);
    keep(&record_boxed);
    keep(&misc);
    keep(&chosen);
    keep(&left);
    keep(&right);

    var buffer: [4096]u8 = undefined;
    var writer = std.fs.File.stdout().writer(&buffer);
    const out = &writer.interface;
    inline for (.{
        .{ "Sketch", Sketch },               .{ "Pair", Pair },           .{ "Big", Big },
        .{ "Small", Small },                 .{ "Boxed", Boxed },         .{ "Odd", Odd },
        .{ "OddBoxed", OddBoxed },           .{ "TagFirst", TagFirst },   .{ "TagFirstBoxed", TagFirstBoxed },
        .{ "Bare", Bare },                   .{ "Holey", Holey },         .{ "HoleyExtern", HoleyExtern },
        .{ "Record", Record },               .{ "RecordBoxed", RecordBoxed }, .{ "Misc", Misc },
        .{ "Chosen", Chosen },               .{ "Left", Left },           .{ "Right", Right },
        .{ "Left.Inner", Left.Inner },       .{ "Map", Map },
    }) |entry| try size(out, entry[0], entry[1]);
    try offsets(out, "Holey", Holey);
    try offsets(out, "HoleyExtern", HoleyExtern);
    try offsets(out, "Record", Record);
    try offsets(out, "Misc", Misc);
    try out.flush();
}
