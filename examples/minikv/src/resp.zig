//! RESP2: parsing client requests and encoding replies.
//!
//! Requests are parsed in place: argument slices point into the caller's input
//! buffer, so they stay valid only until that buffer is compacted or refilled.

const std = @import("std");
const Allocator = std.mem.Allocator;
const Writer = std.Io.Writer;

/// Redis' limits: at most 1M arguments per command, 512 MiB per bulk string.
pub const max_args = 1024 * 1024;
pub const max_bulk_len = 512 * 1024 * 1024;
/// Longest inline command (or header line) we buffer while waiting for its
/// newline; same as Redis' PROTO_INLINE_MAX_SIZE.
pub const max_inline_len = 64 * 1024;

/// Preallocation cap for the argument list, so a hostile "*1000000" header
/// does not reserve megabytes before any argument has arrived.
const max_preallocated_args = 1024;

pub const ProtocolError = error{
    InvalidMultibulkLength,
    InvalidBulkLength,
    ExpectedBulkString,
    ExpectedCrlf,
    LineTooLong,
};

pub const ParseError = ProtocolError || Allocator.Error;

pub const Request = struct {
    /// args[0] is the command name. Empty for no-op requests (blank inline
    /// lines, "*0"), which the caller should simply skip.
    args: []const []const u8,
    /// Bytes of input this request occupied.
    len: usize,
};

/// Parses one request from the front of `input`. Returns null if `input`
/// holds only part of a request; call again once more bytes have arrived.
/// The argument list is allocated from `arena`.
pub fn parseRequest(arena: Allocator, input: []const u8) ParseError!?Request {
    if (input.len == 0) return null;
    if (input[0] == '*') return parseMultibulk(arena, input);
    return parseInline(arena, input);
}

/// Text for the "-ERR Protocol error: ..." reply sent before closing the connection.
pub fn protocolErrorMessage(err: ProtocolError) []const u8 {
    return switch (err) {
        error.InvalidMultibulkLength => "invalid multibulk length",
        error.InvalidBulkLength => "invalid bulk length",
        error.ExpectedBulkString => "expected '$'",
        error.ExpectedCrlf => "expected CRLF after bulk string",
        error.LineTooLong => "too big inline request",
    };
}

fn parseMultibulk(arena: Allocator, input: []const u8) ParseError!?Request {
    const header = try readLine(input, 1) orelse return null;
    const count = parseInteger(header.text) orelse return error.InvalidMultibulkLength;
    if (count > max_args) return error.InvalidMultibulkLength;
    // Like Redis, treat "*0" and "*-1" as an empty request rather than an error.
    if (count <= 0) return .{ .args = &.{}, .len = header.end };
    const arg_count: usize = @intCast(count);

    var args: std.ArrayList([]const u8) = try .initCapacity(arena, @min(arg_count, max_preallocated_args));
    var pos = header.end;
    while (args.items.len < arg_count) {
        if (pos >= input.len) return null;
        if (input[pos] != '$') return error.ExpectedBulkString;
        const length_line = try readLine(input, pos + 1) orelse return null;
        const bulk_len = parseInteger(length_line.text) orelse return error.InvalidBulkLength;
        if (bulk_len < 0 or bulk_len > max_bulk_len) return error.InvalidBulkLength;

        const start = length_line.end;
        const end = start + @as(usize, @intCast(bulk_len));
        if (input.len < end + 2) return null;
        if (!std.mem.eql(u8, input[end..][0..2], "\r\n")) return error.ExpectedCrlf;
        try args.append(arena, input[start..end]);
        pos = end + 2;
    }
    return .{ .args = args.items, .len = pos };
}

/// Inline commands are what a human types into telnet: "PING\r\n" or
/// "SET k v\n". Arguments are separated by spaces or tabs; unlike Redis we do
/// not interpret quotes.
fn parseInline(arena: Allocator, input: []const u8) ParseError!?Request {
    const newline = std.mem.indexOfScalar(u8, input, '\n') orelse {
        if (input.len > max_inline_len) return error.LineTooLong;
        return null;
    };
    const line = std.mem.trimEnd(u8, input[0..newline], "\r");

    var args: std.ArrayList([]const u8) = .empty;
    var words = std.mem.tokenizeAny(u8, line, " \t");
    while (words.next()) |word| try args.append(arena, word);
    return .{ .args = args.items, .len = newline + 1 };
}

const Line = struct {
    text: []const u8,
    /// Offset just past the terminating CRLF.
    end: usize,
};

/// Reads a CRLF-terminated line starting at `start`, or null if the CRLF has not arrived yet.
fn readLine(input: []const u8, start: usize) ProtocolError!?Line {
    const cr = std.mem.indexOfPos(u8, input, start, "\r\n") orelse {
        if (input.len - start > max_inline_len) return error.LineTooLong;
        return null;
    };
    return .{ .text = input[start..cr], .end = cr + 2 };
}

/// Strict decimal integer, as Redis' string2ll accepts it: an optional '-',
/// then digits, no '+', no leading zeros, no whitespace, no underscores, and
/// within i64. Used for protocol lengths and for command arguments alike.
pub fn parseInteger(text: []const u8) ?i64 {
    if (text.len == 0) return null;
    const negative = text[0] == '-';
    const digits = if (negative) text[1..] else text;
    if (digits.len == 0) return null;
    if (digits[0] == '0' and (digits.len > 1 or negative)) return null;

    // Accumulate as a negative number: its range is one larger, so i64's
    // minimum parses without overflow.
    var value: i64 = 0;
    for (digits) |c| {
        if (c < '0' or c > '9') return null;
        value = std.math.mul(i64, value, 10) catch return null;
        value = std.math.sub(i64, value, c - '0') catch return null;
    }
    if (negative) return value;
    return std.math.negate(value) catch null;
}

// Reply encoding. Every writer takes the connection's output buffer; the
// connection flushes it once per batch of requests.

pub fn writeSimpleString(out: *Writer, text: []const u8) Writer.Error!void {
    try out.print("+{s}\r\n", .{text});
}

/// `message` starts with the error code, e.g. "ERR syntax error".
pub fn writeError(out: *Writer, message: []const u8) Writer.Error!void {
    try out.print("-{s}\r\n", .{message});
}

pub fn writeInteger(out: *Writer, value: i64) Writer.Error!void {
    try out.print(":{d}\r\n", .{value});
}

pub fn writeBulkString(out: *Writer, bytes: []const u8) Writer.Error!void {
    try out.print("${d}\r\n", .{bytes.len});
    try out.writeAll(bytes);
    try out.writeAll("\r\n");
}

pub fn writeNullBulkString(out: *Writer) Writer.Error!void {
    try out.writeAll("$-1\r\n");
}

pub fn writeNullArray(out: *Writer) Writer.Error!void {
    try out.writeAll("*-1\r\n");
}

pub fn writeArrayHeader(out: *Writer, len: usize) Writer.Error!void {
    try out.print("*{d}\r\n", .{len});
}

/// Scores go out as bulk strings. Plain decimal for ordinary magnitudes and
/// exponent form otherwise, so 1e300 does not become a 301-digit string.
pub fn writeDouble(out: *Writer, value: f64) Writer.Error!void {
    var buffer: [64]u8 = undefined;
    const magnitude = @abs(value);
    const text = if (std.math.isInf(value))
        (if (value > 0) "inf" else "-inf")
    else if (magnitude == 0 or (magnitude >= 1e-6 and magnitude < 1e17))
        std.fmt.bufPrint(&buffer, "{d}", .{value}) catch unreachable // at most ~40 chars
    else
        std.fmt.bufPrint(&buffer, "{e}", .{value}) catch unreachable; // shortest exponent form
    try writeBulkString(out, text);
}

const testing = std.testing;

fn expectArgs(expected: []const []const u8, actual: []const []const u8) !void {
    try testing.expectEqual(expected.len, actual.len);
    for (expected, actual) |e, a| try testing.expectEqualStrings(e, a);
}

test "parse a multibulk request" {
    var arena: std.heap.ArenaAllocator = .init(testing.allocator);
    defer arena.deinit();
    const input = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
    const request = (try parseRequest(arena.allocator(), input)).?;
    try expectArgs(&.{ "SET", "key", "value" }, request.args);
    try testing.expectEqual(input.len, request.len);
}

test "bulk strings are binary safe" {
    var arena: std.heap.ArenaAllocator = .init(testing.allocator);
    defer arena.deinit();
    const input = "*2\r\n$4\r\nECHO\r\n$4\r\na\r\nb\r\n$0\r\n\r\n";
    const request = (try parseRequest(arena.allocator(), input)).?;
    try expectArgs(&.{ "ECHO", "a\r\nb" }, request.args);
    try testing.expectEqual(input.len - "$0\r\n\r\n".len, request.len);
}

test "every proper prefix of a request is incomplete" {
    var arena: std.heap.ArenaAllocator = .init(testing.allocator);
    defer arena.deinit();
    const input = "*3\r\n$4\r\nHSET\r\n$1\r\nh\r\n$10\r\n0123456789\r\n";
    for (0..input.len) |cut| {
        defer _ = arena.reset(.retain_capacity);
        try testing.expectEqual(null, try parseRequest(arena.allocator(), input[0..cut]));
    }
    const request = (try parseRequest(arena.allocator(), input)).?;
    try testing.expectEqual(input.len, request.len);
}

test "pipelined requests parse one after another" {
    var arena: std.heap.ArenaAllocator = .init(testing.allocator);
    defer arena.deinit();
    const input = "*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n*2\r\n$4\r\nEC";

    var rest: []const u8 = input;
    const first = (try parseRequest(arena.allocator(), rest)).?;
    try expectArgs(&.{"PING"}, first.args);
    rest = rest[first.len..];
    const second = (try parseRequest(arena.allocator(), rest)).?;
    try expectArgs(&.{ "GET", "k" }, second.args);
    rest = rest[second.len..];
    const third = (try parseRequest(arena.allocator(), rest)).?;
    try expectArgs(&.{"PING"}, third.args);
    rest = rest[third.len..];
    try testing.expectEqual(null, try parseRequest(arena.allocator(), rest));
    try testing.expectEqualStrings("*2\r\n$4\r\nEC", rest);
}

test "inline requests" {
    var arena: std.heap.ArenaAllocator = .init(testing.allocator);
    defer arena.deinit();
    const a = arena.allocator();

    const ping = (try parseRequest(a, "PING\r\n")).?;
    try expectArgs(&.{"PING"}, ping.args);
    try testing.expectEqual(6, ping.len);

    const set = (try parseRequest(a, "  set\tk   v\n")).?;
    try expectArgs(&.{ "set", "k", "v" }, set.args);

    const blank = (try parseRequest(a, "\r\n")).?;
    try testing.expectEqual(0, blank.args.len);
    try testing.expectEqual(2, blank.len);

    try testing.expectEqual(null, try parseRequest(a, "PIN"));
}

test "empty multibulk is a no-op request" {
    var arena: std.heap.ArenaAllocator = .init(testing.allocator);
    defer arena.deinit();
    const request = (try parseRequest(arena.allocator(), "*0\r\n*-1\r\n")).?;
    try testing.expectEqual(0, request.args.len);
    try testing.expectEqual(4, request.len);
}

test "protocol errors" {
    var arena: std.heap.ArenaAllocator = .init(testing.allocator);
    defer arena.deinit();
    const a = arena.allocator();
    try testing.expectError(error.InvalidMultibulkLength, parseRequest(a, "*x\r\n"));
    try testing.expectError(error.InvalidMultibulkLength, parseRequest(a, "*+1\r\n"));
    try testing.expectError(error.InvalidMultibulkLength, parseRequest(a, "*99999999\r\n"));
    try testing.expectError(error.ExpectedBulkString, parseRequest(a, "*1\r\n:1\r\n"));
    try testing.expectError(error.InvalidBulkLength, parseRequest(a, "*1\r\n$-2\r\n"));
    try testing.expectError(error.InvalidBulkLength, parseRequest(a, "*1\r\n$1_0\r\n"));
    try testing.expectError(error.ExpectedCrlf, parseRequest(a, "*1\r\n$1\r\nab\r\n"));

    const long_line = [_]u8{'a'} ** (max_inline_len + 1);
    try testing.expectError(error.LineTooLong, parseRequest(a, &long_line));
    try testing.expectError(error.LineTooLong, parseRequest(a, "*" ++ long_line));
}

test parseInteger {
    try testing.expectEqual(0, parseInteger("0"));
    try testing.expectEqual(42, parseInteger("42"));
    try testing.expectEqual(-7, parseInteger("-7"));
    try testing.expectEqual(std.math.maxInt(i64), parseInteger("9223372036854775807"));
    try testing.expectEqual(std.math.minInt(i64), parseInteger("-9223372036854775808"));
    for ([_][]const u8{ "", "-", "+1", "01", "-0", " 1", "1 ", "1_0", "9223372036854775808", "1.5" }) |bad| {
        try testing.expectEqual(null, parseInteger(bad));
    }
}

test "reply encoding" {
    var buffer: [256]u8 = undefined;
    var out: Writer = .fixed(&buffer);
    try writeSimpleString(&out, "OK");
    try writeError(&out, "ERR nope");
    try writeInteger(&out, -3);
    try writeBulkString(&out, "hi");
    try writeNullBulkString(&out);
    try writeArrayHeader(&out, 2);
    try writeDouble(&out, 1.5);
    try writeDouble(&out, 1e300);
    try writeDouble(&out, -std.math.inf(f64));
    try testing.expectEqualStrings(
        "+OK\r\n-ERR nope\r\n:-3\r\n$2\r\nhi\r\n$-1\r\n*2\r\n$3\r\n1.5\r\n$5\r\n1e300\r\n$4\r\n-inf\r\n",
        out.buffered(),
    );
}
