//! Command-line spellings of enum values: the tag with dashes for
//! underscores, so `Defect.alloc_reply` is `--defect alloc-reply`.

const std = @import("std");

/// The spelling of `value` on the command line.
pub fn name(comptime E: type, value: E) []const u8 {
    return switch (value) {
        inline else => |tag| comptime dashed(@tagName(tag)),
    };
}

/// The value spelled `text`, or null if no value of `E` is spelled that way.
pub fn parse(comptime E: type, text: []const u8) ?E {
    const by_name: std.StaticStringMap(E) = comptime .initComptime(kvs: {
        const fields = @typeInfo(E).@"enum".fields;
        var kvs: [fields.len]struct { []const u8, E } = undefined;
        for (&kvs, fields) |*kv, field| kv.* = .{ dashed(field.name), @field(E, field.name) };
        break :kvs kvs;
    });
    return by_name.get(text);
}

/// Prints every spelling of `E`, each after a space.
pub fn printAll(comptime E: type) void {
    for (std.enums.values(E)) |value| std.debug.print(" {s}", .{name(E, value)});
}

fn dashed(comptime tag: []const u8) []const u8 {
    comptime {
        var buffer: [tag.len]u8 = tag[0..tag.len].*;
        std.mem.replaceScalar(u8, &buffer, '_', '-');
        const result = buffer;
        return &result;
    }
}

test "spellings round-trip, and only the dashed one parses" {
    const Example = enum { plain, two_words };
    try std.testing.expectEqualStrings("two-words", name(Example, .two_words));
    for (std.enums.values(Example)) |value| try std.testing.expectEqual(value, parse(Example, name(Example, value)).?);
    try std.testing.expectEqual(null, parse(Example, "two_words"));
    try std.testing.expectEqual(null, parse(Example, "nope"));
}
