//! `--append-only FILE`: every write command that succeeds is appended to
//! FILE in RESP, as Redis' append-only file and Zoltraak's AOF do, without
//! fsync (the page cache takes it). The ground truth for zprof noticing a
//! target that writes to disk while the Redis it is compared with does not.

const std = @import("std");
const resp = @import("resp.zig");

pub const AppendLog = struct {
    file: std.fs.File,

    /// Opens (or creates) `path`, relative to the working directory, to
    /// append to what it holds.
    pub fn open(path: []const u8) !AppendLog {
        const file = try std.fs.cwd().createFile(path, .{ .truncate = false });
        errdefer file.close();
        try file.seekFromEnd(0);
        return .{ .file = file };
    }

    pub fn close(log: *AppendLog) void {
        log.file.close();
        log.* = undefined;
    }

    /// Appends one command as a RESP array, through a buffer on this frame:
    /// no allocation, and one write(2) for a command that fits the buffer.
    /// Callers serialise (the keyspace lock).
    pub fn append(log: *AppendLog, args: []const []const u8) std.Io.Writer.Error!void {
        var buffer: [4096]u8 = undefined;
        // Streaming, not positional: each write lands at the file's offset, its end.
        var file_writer = log.file.writerStreaming(&buffer);
        const out = &file_writer.interface;
        try resp.writeArrayHeader(out, args.len);
        for (args) |arg| try resp.writeBulkString(out, arg);
        try out.flush();
    }
};

const testing = std.testing;

test "append writes each command after the last, in RESP" {
    var tmp = testing.tmpDir(.{});
    defer tmp.cleanup();
    var dir_buffer: [std.fs.max_path_bytes]u8 = undefined;
    const dir_path = try tmp.dir.realpath(".", &dir_buffer);
    var path_buffer: [std.fs.max_path_bytes]u8 = undefined;
    const path = try std.fmt.bufPrint(&path_buffer, "{s}/minikv.aof", .{dir_path});

    for (0..2) |_| { // a second open appends to what the first wrote
        var log = try AppendLog.open(path);
        defer log.close();
        try log.append(&.{ "SET", "k", "v" });
    }
    const written = try tmp.dir.readFileAlloc(testing.allocator, "minikv.aof", 1024);
    defer testing.allocator.free(written);
    try testing.expectEqualStrings("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n" ** 2, written);
}
