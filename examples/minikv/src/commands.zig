//! Command table, dispatch, and one handler per command.
//!
//! Handlers run with the keyspace lock held. They do everything that can fail
//! with WrongType or OutOfMemory before writing any reply bytes, so a failed
//! command never leaves half a reply in the output buffer.

const std = @import("std");
const Allocator = std.mem.Allocator;
const Writer = std.Io.Writer;

const resp = @import("resp.zig");
const debug = @import("debug.zig");
const defects = @import("defects.zig");
const faults = @import("faults.zig");
const AppendLog = @import("append_log.zig").AppendLog;
const log = std.log.scoped(.minikv);
const Keyspace = @import("keyspace.zig").Keyspace;
const End = @import("keyspace.zig").End;

/// Everything a handler may touch while executing one request.
pub const Context = struct {
    keyspace: *Keyspace,
    /// Request-scoped scratch memory, reset after every command.
    arena: Allocator,
    /// The connection's reply buffer.
    out: *Writer,
    defects: defects.Set,
    /// The values of the defects that take one (`slow-get=NS`).
    defect_params: defects.Params = .{},
    /// Only `ok-to-unknown` acts here; the others act on the connection.
    faults: faults.Set = .initEmpty(),
    /// Where the `grow-log` defect appends; the server's, guarded by the keyspace lock.
    audit_log: *defects.AuditLog,
    /// With `--append-only FILE`: where every write that succeeds is appended.
    append_log: ?*AppendLog = null,
    /// Set by SHUTDOWN; the connection ends the process after flushing replies.
    shutdown_requested: bool = false,

    fn gpa(ctx: *const Context) Allocator {
        return ctx.keyspace.gpa;
    }
};

pub const Error = Allocator.Error || Writer.Error || error{WrongType};

/// `args[0]` is the command name as the client sent it.
const Handler = *const fn (ctx: *Context, args: []const []const u8) Error!void;

pub const Command = struct {
    /// Upper case; lookups upper-case the requested name first.
    name: []const u8,
    /// Redis' convention: N > 0 means exactly N arguments including the
    /// command name; -N means at least N.
    arity: i32,
    handler: Handler,
    /// Whether it changes the keyspace, and so goes to the append-only file.
    writes: bool = false,

    fn acceptsArgCount(cmd: Command, count: usize) bool {
        if (cmd.arity >= 0) return count == @as(usize, @intCast(cmd.arity));
        return count >= @as(usize, @intCast(-cmd.arity));
    }
};

/// The commands minikv implements.
const implemented = [_]Command{
    .{ .name = "PING", .arity = -1, .handler = ping },
    .{ .name = "ECHO", .arity = 2, .handler = echo },
    .{ .name = "SET", .arity = -3, .handler = set, .writes = true },
    .{ .name = "GET", .arity = 2, .handler = get },
    .{ .name = "INCR", .arity = 2, .handler = incr, .writes = true },
    .{ .name = "DEL", .arity = -2, .handler = del, .writes = true },
    .{ .name = "EXISTS", .arity = -2, .handler = exists },
    .{ .name = "MSET", .arity = -3, .handler = mset, .writes = true },
    .{ .name = "MGET", .arity = -2, .handler = mget },
    .{ .name = "LPUSH", .arity = -3, .handler = lpush, .writes = true },
    .{ .name = "RPUSH", .arity = -3, .handler = rpush, .writes = true },
    .{ .name = "LPOP", .arity = -2, .handler = lpop, .writes = true },
    .{ .name = "RPOP", .arity = -2, .handler = rpop, .writes = true },
    .{ .name = "LRANGE", .arity = 4, .handler = lrange },
    .{ .name = "SADD", .arity = -3, .handler = sadd, .writes = true },
    .{ .name = "SREM", .arity = -3, .handler = srem, .writes = true },
    .{ .name = "SMEMBERS", .arity = 2, .handler = smembers },
    .{ .name = "HSET", .arity = -4, .handler = hset, .writes = true },
    .{ .name = "HGET", .arity = 3, .handler = hget },
    .{ .name = "HDEL", .arity = -3, .handler = hdel, .writes = true },
    .{ .name = "ZADD", .arity = -4, .handler = zadd, .writes = true },
    .{ .name = "ZRANGE", .arity = -4, .handler = zrange },
    .{ .name = "DBSIZE", .arity = 1, .handler = dbsize },
    .{ .name = "FLUSHALL", .arity = -1, .handler = flushall, .writes = true },
    .{ .name = "CONFIG", .arity = -2, .handler = config },
    .{ .name = "COMMAND", .arity = -1, .handler = command },
    .{ .name = "SHUTDOWN", .arity = -1, .handler = shutdown },
    .{ .name = "DEBUG", .arity = -2, .handler = debug.command },
};

/// Redis commands minikv knows by name but does not implement. A real server's
/// table holds all of them (Redis has some 240), which is what makes a linear
/// scan of it expensive: see the `linear-lookup` defect.
const not_implemented_names = [_][]const u8{
    "APPEND",        "AUTH",        "BGREWRITEAOF", "BGSAVE",       "BITCOUNT",        "BITFIELD",         "BITOP",        "BITPOS",      "BLMOVE",
    "BLMPOP",        "BLPOP",       "BRPOP",        "BRPOPLPUSH",   "BZMPOP",          "BZPOPMAX",         "BZPOPMIN",     "CLIENT",      "CLUSTER",
    "COPY",          "DECR",        "DECRBY",       "DISCARD",      "DUMP",            "EVAL",             "EVALSHA",      "EXEC",        "EXPIRE",
    "EXPIREAT",      "EXPIRETIME",  "FAILOVER",     "FCALL",        "FLUSHDB",         "FUNCTION",         "GEOADD",       "GEODIST",     "GEOHASH",
    "GEOPOS",        "GEORADIUS",   "GEOSEARCH",    "GETBIT",       "GETDEL",          "GETEX",            "GETRANGE",     "GETSET",      "HELLO",
    "HEXISTS",       "HGETALL",     "HINCRBY",      "HINCRBYFLOAT", "HKEYS",           "HLEN",             "HMGET",        "HMSET",       "HRANDFIELD",
    "HSCAN",         "HSETNX",      "HSTRLEN",      "HVALS",        "INCRBY",          "INCRBYFLOAT",      "INFO",         "KEYS",        "LASTSAVE",
    "LATENCY",       "LCS",         "LINDEX",       "LINSERT",      "LLEN",            "LMOVE",            "LMPOP",        "LOLWUT",      "LPOS",
    "LPUSHX",        "LREM",        "LSET",         "LTRIM",        "MEMORY",          "MIGRATE",          "MODULE",       "MONITOR",     "MOVE",
    "MSETNX",        "MULTI",       "OBJECT",       "PERSIST",      "PEXPIRE",         "PEXPIREAT",        "PEXPIRETIME",  "PFADD",       "PFCOUNT",
    "PFMERGE",       "PSETEX",      "PSUBSCRIBE",   "PTTL",         "PUBLISH",         "PUBSUB",           "PUNSUBSCRIBE", "QUIT",        "RANDOMKEY",
    "READONLY",      "READWRITE",   "RENAME",       "RENAMENX",     "REPLICAOF",       "RESET",            "RESTORE",      "ROLE",        "RPOPLPUSH",
    "RPUSHX",        "SAVE",        "SCAN",         "SCARD",        "SCRIPT",          "SDIFF",            "SDIFFSTORE",   "SELECT",      "SETBIT",
    "SETEX",         "SETNX",       "SETRANGE",     "SINTER",       "SINTERCARD",      "SINTERSTORE",      "SISMEMBER",    "SLOWLOG",     "SMISMEMBER",
    "SMOVE",         "SORT",        "SPOP",         "SRANDMEMBER",  "SSCAN",           "STRLEN",           "SUBSCRIBE",    "SUNION",      "SUNIONSTORE",
    "SWAPDB",        "SYNC",        "TIME",         "TOUCH",        "TTL",             "TYPE",             "UNLINK",       "UNSUBSCRIBE", "UNWATCH",
    "WAIT",          "WATCH",       "XACK",         "XADD",         "XCLAIM",          "XDEL",             "XGROUP",       "XINFO",       "XLEN",
    "XPENDING",      "XRANGE",      "XREAD",        "XREADGROUP",   "XREVRANGE",       "XTRIM",            "ZCARD",        "ZCOUNT",      "ZDIFF",
    "ZINCRBY",       "ZINTER",      "ZLEXCOUNT",    "ZMPOP",        "ZMSCORE",         "ZPOPMAX",          "ZPOPMIN",      "ZRANDMEMBER", "ZRANGEBYLEX",
    "ZRANGEBYSCORE", "ZRANGESTORE", "ZRANK",        "ZREM",         "ZREMRANGEBYRANK", "ZREMRANGEBYSCORE", "ZREVRANGE",    "ZREVRANK",    "ZSCAN",
    "ZSCORE",        "ZUNION",      "ZUNIONSTORE",
};

/// Every command name minikv knows, in alphabetical order as in Redis'
/// generated command table.
pub const table: [implemented.len + not_implemented_names.len]Command = blk: {
    @setEvalBranchQuota(200_000);
    var commands: [implemented.len + not_implemented_names.len]Command = undefined;
    for (implemented, 0..) |cmd, i| commands[i] = cmd;
    for (not_implemented_names, implemented.len..) |name, i| {
        commands[i] = .{ .name = name, .arity = -1, .handler = notImplemented };
    }
    std.sort.insertion(Command, &commands, {}, struct {
        fn lessThan(_: void, a: Command, b: Command) bool {
            return std.mem.lessThan(u8, a.name, b.name);
        }
    }.lessThan);
    break :blk commands;
};

/// Longest command name a lookup considers; anything longer is unknown.
const max_name_len = 16;

const by_name: std.StaticStringMap(*const Command) = .initComptime(kvs: {
    var kvs: [table.len]struct { []const u8, *const Command } = undefined;
    for (&kvs, &table) |*kv, *cmd| {
        std.debug.assert(cmd.name.len <= max_name_len);
        kv.* = .{ cmd.name, cmd };
    }
    break :kvs kvs;
});

/// Commands a `-Dbasic-commands` build answers: a server that implements a handful.
const basic_names = [_][]const u8{ "PING", "SET", "GET", "DEL", "SHUTDOWN" };

/// Finds a command by name, case-insensitively.
pub fn lookup(name: []const u8, linear_lookup: bool) ?*const Command {
    const found = if (linear_lookup) defects.findCommandLinear(&table, name) else found: {
        var upper: [max_name_len]u8 = undefined;
        if (name.len > upper.len) return null;
        break :found by_name.get(std.ascii.upperString(&upper, name));
    };
    const cmd = found orelse return null;
    if (@import("shape").basic_commands) {
        for (basic_names) |basic| {
            if (std.mem.eql(u8, cmd.name, basic)) return cmd;
        }
        return null;
    }
    return cmd;
}

/// Runs one request and appends its reply to `ctx.out`. Only failures to
/// write the reply are returned; command errors become error replies.
pub fn execute(ctx: *Context, args: []const []const u8) Writer.Error!void {
    std.debug.assert(args.len > 0);
    if (ctx.faults.contains(.error_ping)) return resp.writeError(ctx.out, faults.error_ping_reply);
    const found = lookup(args[0], ctx.defects.contains(.linear_lookup));
    if (ctx.faults.contains(.ok_to_unknown) and answersOkWithoutRunning(found)) {
        return resp.writeSimpleString(ctx.out, "OK");
    }
    const cmd = found orelse return replyUnknownCommand(ctx.out, args[0]);
    if (!cmd.acceptsArgCount(args.len)) return replyWrongArity(ctx.out, cmd.name);

    cmd.handler(ctx, args) catch |err| return switch (err) {
        error.WrongType => resp.writeError(ctx.out, "WRONGTYPE Operation against a key holding the wrong kind of value"),
        error.OutOfMemory => resp.writeError(ctx.out, "ERR out of memory"),
        error.WriteFailed => error.WriteFailed,
    };
    if (cmd.writes) if (ctx.append_log) |append_log| {
        // The reply is already written: a full disk costs durability, not the client's answer.
        append_log.append(args) catch |err| log.warn("cannot append to the append-only file: {s}", .{@errorName(err)});
    };
}

/// The `ok-to-unknown` fault's choice: `+OK` for a name minikv does not know
/// (`found` is null), one it knows but does not implement, and the commands
/// the fault fakes (`faults.ok_without_running`), whatever their arguments.
fn answersOkWithoutRunning(found: ?*const Command) bool {
    const cmd = found orelse return true;
    if (cmd.handler == &notImplemented) return true;
    for (faults.ok_without_running) |name| {
        if (std.mem.eql(u8, cmd.name, name)) return true;
    }
    return false;
}

fn notImplemented(ctx: *Context, args: []const []const u8) Error!void {
    try ctx.out.writeAll("-ERR '");
    try writeSanitized(ctx.out, args[0]);
    try ctx.out.writeAll("' is not implemented by minikv\r\n");
}

fn replyUnknownCommand(out: *Writer, name: []const u8) Writer.Error!void {
    try out.writeAll("-ERR unknown command '");
    try writeSanitized(out, name);
    try out.writeAll("'\r\n");
}

/// Echoes client-supplied text inside an error reply: CR or LF would break
/// the reply framing, and like Redis we cap the echo at 128 bytes.
fn writeSanitized(out: *Writer, text: []const u8) Writer.Error!void {
    for (text[0..@min(text.len, 128)]) |c| try out.writeByte(if (c == '\r' or c == '\n') ' ' else c);
}

fn replyWrongArity(out: *Writer, name: []const u8) Writer.Error!void {
    var lower: [max_name_len + "|get".len]u8 = undefined;
    try out.print("-ERR wrong number of arguments for '{s}' command\r\n", .{std.ascii.lowerString(&lower, name)});
}

const syntax_error = "ERR syntax error";
const not_an_integer = "ERR value is not an integer or out of range";
const not_a_float = "ERR value is not a valid float";

// Connection and server commands

fn ping(ctx: *Context, args: []const []const u8) Error!void {
    switch (args.len) {
        1 => try resp.writeSimpleString(ctx.out, "PONG"),
        2 => try resp.writeBulkString(ctx.out, args[1]),
        else => try replyWrongArity(ctx.out, "PING"),
    }
}

fn echo(ctx: *Context, args: []const []const u8) Error!void {
    try resp.writeBulkString(ctx.out, args[1]);
}

fn dbsize(ctx: *Context, _: []const []const u8) Error!void {
    try resp.writeInteger(ctx.out, @intCast(ctx.keyspace.count()));
}

fn flushall(ctx: *Context, args: []const []const u8) Error!void {
    // ASYNC and SYNC are accepted for compatibility; flushing is always synchronous.
    for (args[1..]) |mode| {
        if (!std.ascii.eqlIgnoreCase(mode, "ASYNC") and !std.ascii.eqlIgnoreCase(mode, "SYNC")) {
            return resp.writeError(ctx.out, syntax_error);
        }
    }
    ctx.keyspace.flushAll();
    try resp.writeSimpleString(ctx.out, "OK");
}

/// minikv has no configuration worth exposing; CONFIG GET only answers the
/// persistence settings that redis-benchmark asks about at start-up.
fn config(ctx: *Context, args: []const []const u8) Error!void {
    if (!std.ascii.eqlIgnoreCase(args[1], "GET")) {
        try ctx.out.writeAll("-ERR unknown subcommand '");
        try writeSanitized(ctx.out, args[1]);
        return ctx.out.writeAll("'. Try CONFIG HELP.\r\n");
    }
    if (args.len != 3) return replyWrongArity(ctx.out, "CONFIG|GET");

    const settings = [_]struct { name: []const u8, value: []const u8 }{
        .{ .name = "save", .value = "" },
        .{ .name = "appendonly", .value = "no" },
    };
    const pattern = args[2];
    // Only "*" and exact names are understood; there is no glob matching.
    const match_all = std.mem.eql(u8, pattern, "*");
    var matches: usize = 0;
    for (settings) |setting| {
        if (match_all or std.ascii.eqlIgnoreCase(pattern, setting.name)) matches += 1;
    }
    try resp.writeArrayHeader(ctx.out, 2 * matches);
    for (settings) |setting| {
        if (match_all or std.ascii.eqlIgnoreCase(pattern, setting.name)) {
            try resp.writeBulkString(ctx.out, setting.name);
            try resp.writeBulkString(ctx.out, setting.value);
        }
    }
}

/// COMMAND and its subcommands (DOCS, COUNT, INFO...) answer an empty array:
/// enough for redis-cli, which only uses it for hints.
fn command(ctx: *Context, _: []const []const u8) Error!void {
    try resp.writeArrayHeader(ctx.out, 0);
}

/// Like Redis, SHUTDOWN sends no reply; the client sees the connection close.
fn shutdown(ctx: *Context, _: []const []const u8) Error!void {
    ctx.shutdown_requested = true;
}

// Strings and keys

fn set(ctx: *Context, args: []const []const u8) Error!void {
    // No EX/PX/NX/XX options: minikv has no expiry.
    if (args.len != 3) return resp.writeError(ctx.out, syntax_error);
    const key = args[1];
    if (ctx.defects.contains(.leak)) try defects.leakyAudit(ctx.gpa(), key);
    if (ctx.defects.contains(.grow_log)) try defects.appendAuditLog(ctx.gpa(), ctx.audit_log, key);
    try ctx.keyspace.putString(key, args[2]);
    try resp.writeSimpleString(ctx.out, "OK");
}

fn get(ctx: *Context, args: []const []const u8) Error!void {
    if (ctx.defects.contains(.slow_get)) defects.slowGet(ctx.defect_params.slow_get_ns, ctx.defect_params.spin_rate);
    if (try ctx.keyspace.getString(args[1])) |value| {
        if (ctx.defects.contains(.copy_on_hit)) return defects.replyWithCopy(ctx.gpa(), ctx.out, value);
        try resp.writeBulkString(ctx.out, value);
    } else {
        try resp.writeNullBulkString(ctx.out);
    }
}

fn incr(ctx: *Context, args: []const []const u8) Error!void {
    const key = args[1];
    const current: i64 = if (try ctx.keyspace.getString(key)) |text|
        resp.parseInteger(text) orelse return resp.writeError(ctx.out, not_an_integer)
    else
        0;
    const next = std.math.add(i64, current, 1) catch
        return resp.writeError(ctx.out, "ERR increment or decrement would overflow");

    var buffer: [24]u8 = undefined; // "-9223372036854775808" is 20 bytes
    const text = std.fmt.bufPrint(&buffer, "{d}", .{next}) catch unreachable;
    try ctx.keyspace.putString(key, text);
    try resp.writeInteger(ctx.out, next);
}

fn del(ctx: *Context, args: []const []const u8) Error!void {
    var deleted: i64 = 0;
    for (args[1..]) |key| {
        if (ctx.keyspace.delete(key)) deleted += 1;
    }
    try resp.writeInteger(ctx.out, deleted);
}

fn exists(ctx: *Context, args: []const []const u8) Error!void {
    // A key named twice counts twice, as in Redis.
    var found: i64 = 0;
    for (args[1..]) |key| {
        if (ctx.keyspace.contains(key)) found += 1;
    }
    try resp.writeInteger(ctx.out, found);
}

fn mset(ctx: *Context, args: []const []const u8) Error!void {
    if (args.len % 2 != 1) return replyWrongArity(ctx.out, "MSET");
    var i: usize = 1;
    while (i < args.len) : (i += 2) try ctx.keyspace.putString(args[i], args[i + 1]);
    try resp.writeSimpleString(ctx.out, "OK");
}

fn mget(ctx: *Context, args: []const []const u8) Error!void {
    try resp.writeArrayHeader(ctx.out, args.len - 1);
    for (args[1..]) |key| {
        // MGET never fails with WRONGTYPE: a non-string reads as nil.
        const value = ctx.keyspace.getString(key) catch null;
        if (value) |bytes| try resp.writeBulkString(ctx.out, bytes) else try resp.writeNullBulkString(ctx.out);
    }
}

// Lists

fn lpush(ctx: *Context, args: []const []const u8) Error!void {
    if (ctx.defects.contains(.large_alloc)) try defects.scratchCopy(ctx.gpa(), args[2..]);
    try push(ctx, args, .front);
}

fn rpush(ctx: *Context, args: []const []const u8) Error!void {
    try push(ctx, args, .back);
}

fn push(ctx: *Context, args: []const []const u8, end: End) Error!void {
    const key = args[1];
    const list = try ctx.keyspace.lookupOrCreate(key, .list);
    errdefer ctx.keyspace.deleteIfEmpty(key);
    for (args[2..]) |value| try list.push(ctx.gpa(), end, value);
    try resp.writeInteger(ctx.out, @intCast(list.count()));
}

fn lpop(ctx: *Context, args: []const []const u8) Error!void {
    try pop(ctx, args, .front);
}

fn rpop(ctx: *Context, args: []const []const u8) Error!void {
    try pop(ctx, args, .back);
}

/// LPOP/RPOP key [count]: without a count, one bulk reply; with a count, an array.
fn pop(ctx: *Context, args: []const []const u8, end: End) Error!void {
    if (args.len > 3) return resp.writeError(ctx.out, syntax_error);
    const requested: ?usize = if (args.len == 3) blk: {
        const n = resp.parseInteger(args[2]) orelse return resp.writeError(ctx.out, not_an_integer);
        if (n < 0) return resp.writeError(ctx.out, "ERR value is out of range, must be positive");
        break :blk @intCast(n);
    } else null;

    const key = args[1];
    const list = try ctx.keyspace.lookup(key, .list) orelse {
        return if (requested == null) resp.writeNullBulkString(ctx.out) else resp.writeNullArray(ctx.out);
    };
    defer ctx.keyspace.deleteIfEmpty(key);

    const gpa = ctx.gpa();
    if (requested) |n| {
        const popped = @min(n, list.count());
        try resp.writeArrayHeader(ctx.out, popped);
        for (0..popped) |_| {
            const value = list.popOwned(gpa, end).?;
            defer gpa.free(value);
            try resp.writeBulkString(ctx.out, value);
        }
    } else {
        const value = list.popOwned(gpa, end).?; // stored lists are never empty
        defer gpa.free(value);
        try resp.writeBulkString(ctx.out, value);
    }
}

fn lrange(ctx: *Context, args: []const []const u8) Error!void {
    const start = resp.parseInteger(args[2]) orelse return resp.writeError(ctx.out, not_an_integer);
    const stop = resp.parseInteger(args[3]) orelse return resp.writeError(ctx.out, not_an_integer);
    const list = try ctx.keyspace.lookup(args[1], .list) orelse return resp.writeArrayHeader(ctx.out, 0);

    const range = Range.resolve(start, stop, list.count());
    try resp.writeArrayHeader(ctx.out, range.len);
    var it = list.iteratorAt(range.first);
    for (0..range.len) |_| try resp.writeBulkString(ctx.out, it.next().?);
}

/// A resolved LRANGE/ZRANGE window: Redis' inclusive, possibly negative
/// (counted from the end) start/stop clamped to a sequence of `count` items.
const Range = struct {
    first: usize,
    len: usize,

    fn resolve(start: i64, stop: i64, count: usize) Range {
        const n: i64 = @intCast(count);
        const from = @max(if (start < 0) start + n else start, 0);
        const to = @min(if (stop < 0) stop + n else stop, n - 1);
        if (from > to) return .{ .first = 0, .len = 0 };
        return .{ .first = @intCast(from), .len = @intCast(to - from + 1) };
    }
};

// Sets

fn sadd(ctx: *Context, args: []const []const u8) Error!void {
    const gpa = ctx.gpa();
    const key = args[1];
    const members = args[2..];

    const tags: ?defects.MemberTags = if (ctx.defects.contains(.small_allocs))
        try defects.splitMemberTags(gpa, members)
    else
        null;
    defer if (tags) |*t| defects.freeMemberTags(gpa, t);

    const set_value = try ctx.keyspace.lookupOrCreate(key, .set);
    errdefer ctx.keyspace.deleteIfEmpty(key);
    var added: i64 = 0;
    for (members) |member| {
        if (try set_value.add(gpa, member)) added += 1;
    }
    try resp.writeInteger(ctx.out, added);
}

fn srem(ctx: *Context, args: []const []const u8) Error!void {
    const key = args[1];
    const set_value = try ctx.keyspace.lookup(key, .set) orelse return resp.writeInteger(ctx.out, 0);
    var removed: i64 = 0;
    for (args[2..]) |member| {
        if (set_value.remove(ctx.gpa(), member)) removed += 1;
    }
    ctx.keyspace.deleteIfEmpty(key);
    try resp.writeInteger(ctx.out, removed);
}

fn smembers(ctx: *Context, args: []const []const u8) Error!void {
    const set_value = try ctx.keyspace.lookup(args[1], .set) orelse return resp.writeArrayHeader(ctx.out, 0);
    try resp.writeArrayHeader(ctx.out, set_value.count());
    var it = set_value.iterator();
    while (it.next()) |member| try resp.writeBulkString(ctx.out, member.*);
}

// Hashes

fn hset(ctx: *Context, args: []const []const u8) Error!void {
    if (args.len % 2 != 0) return replyWrongArity(ctx.out, "HSET");
    const key = args[1];
    const hash = try ctx.keyspace.lookupOrCreate(key, .hash);
    errdefer ctx.keyspace.deleteIfEmpty(key);

    var added: i64 = 0;
    var i: usize = 2;
    while (i < args.len) : (i += 2) {
        if (try hash.put(ctx.gpa(), args[i], args[i + 1])) added += 1;
    }
    if (ctx.defects.contains(.alloc_reply)) {
        try defects.formatReplyAlloc(ctx.gpa(), ctx.out, added);
    } else {
        try resp.writeInteger(ctx.out, added);
    }
}

fn hget(ctx: *Context, args: []const []const u8) Error!void {
    const hash = try ctx.keyspace.lookup(args[1], .hash) orelse return resp.writeNullBulkString(ctx.out);
    if (hash.get(args[2])) |value| {
        try resp.writeBulkString(ctx.out, value);
    } else {
        try resp.writeNullBulkString(ctx.out);
    }
}

fn hdel(ctx: *Context, args: []const []const u8) Error!void {
    const key = args[1];
    const hash = try ctx.keyspace.lookup(key, .hash) orelse return resp.writeInteger(ctx.out, 0);
    var removed: i64 = 0;
    for (args[2..]) |field| {
        if (hash.remove(ctx.gpa(), field)) removed += 1;
    }
    ctx.keyspace.deleteIfEmpty(key);
    try resp.writeInteger(ctx.out, removed);
}

// Sorted sets

/// ZADD key score member [score member ...]. The NX/XX/GT/LT/CH/INCR flags
/// are not supported.
fn zadd(ctx: *Context, args: []const []const u8) Error!void {
    if (args.len % 2 != 0) return resp.writeError(ctx.out, syntax_error);
    const key = args[1];
    const pairs = args[2..];

    // Validate every score before touching the keyspace, so a bad score adds nothing.
    const scores = try ctx.arena.alloc(f64, pairs.len / 2);
    for (scores, 0..) |*score, i| {
        score.* = parseScore(pairs[2 * i]) orelse return resp.writeError(ctx.out, not_a_float);
    }
    if (ctx.defects.contains(.hot_loop)) defects.spinScore(scores[0]);

    const zset = try ctx.keyspace.lookupOrCreate(key, .zset);
    errdefer ctx.keyspace.deleteIfEmpty(key);
    var added: i64 = 0;
    for (scores, 0..) |score, i| {
        if (try zset.put(ctx.gpa(), pairs[2 * i + 1], score)) added += 1;
    }
    try resp.writeInteger(ctx.out, added);
}

/// A finite or infinite double; NaN and Zig-only syntax (digit separators) are rejected.
fn parseScore(text: []const u8) ?f64 {
    if (std.mem.indexOfScalar(u8, text, '_') != null) return null;
    const score = std.fmt.parseFloat(f64, text) catch return null;
    if (std.math.isNan(score)) return null;
    return score;
}

/// ZRANGE key start stop [WITHSCORES], by rank only.
fn zrange(ctx: *Context, args: []const []const u8) Error!void {
    const with_scores = args.len == 5;
    if (args.len > 5 or (with_scores and !std.ascii.eqlIgnoreCase(args[4], "WITHSCORES"))) {
        return resp.writeError(ctx.out, syntax_error);
    }
    const start = resp.parseInteger(args[2]) orelse return resp.writeError(ctx.out, not_an_integer);
    const stop = resp.parseInteger(args[3]) orelse return resp.writeError(ctx.out, not_an_integer);
    const zset = try ctx.keyspace.lookup(args[1], .zset) orelse return resp.writeArrayHeader(ctx.out, 0);

    const range = Range.resolve(start, stop, zset.count());
    const window = zset.entries()[range.first..][0..range.len];
    try resp.writeArrayHeader(ctx.out, if (with_scores) 2 * window.len else window.len);
    for (window) |entry| {
        try resp.writeBulkString(ctx.out, entry.member);
        if (with_scores) try resp.writeDouble(ctx.out, entry.score);
    }
}

// Tests

const testing = std.testing;

/// A keyspace plus a reply buffer, driving commands the way a connection does.
const TestServer = struct {
    keyspace: Keyspace,
    arena: std.heap.ArenaAllocator,
    replies: Writer.Allocating,
    defects: defects.Set = .initEmpty(),
    faults: faults.Set = .initEmpty(),
    audit_log: defects.AuditLog = .{},

    fn init(gpa: Allocator) TestServer {
        return .{ .keyspace = .init(gpa), .arena = .init(gpa), .replies = .init(gpa) };
    }

    fn deinit(server: *TestServer) void {
        server.audit_log.deinit(server.keyspace.gpa);
        server.keyspace.deinit();
        server.arena.deinit();
        server.replies.deinit();
    }

    /// Runs a space-separated command and returns its reply (valid until the next call).
    fn run(server: *TestServer, line: []const u8) ![]const u8 {
        defer _ = server.arena.reset(.retain_capacity);
        var args: std.ArrayList([]const u8) = .empty;
        var words = std.mem.tokenizeScalar(u8, line, ' ');
        while (words.next()) |word| try args.append(server.arena.allocator(), word);

        server.replies.clearRetainingCapacity();
        var ctx: Context = .{
            .keyspace = &server.keyspace,
            .arena = server.arena.allocator(),
            .out = &server.replies.writer,
            .defects = server.defects,
            .faults = server.faults,
            .audit_log = &server.audit_log,
        };
        try execute(&ctx, args.items);
        return server.replies.written();
    }

    fn expect(server: *TestServer, line: []const u8, expected_reply: []const u8) !void {
        try testing.expectEqualStrings(expected_reply, try server.run(line));
    }
};

test "strings and keys" {
    var server: TestServer = .init(testing.allocator);
    defer server.deinit();

    try server.expect("PING", "+PONG\r\n");
    try server.expect("ping hello", "$5\r\nhello\r\n");
    try server.expect("ECHO hi", "$2\r\nhi\r\n");
    try server.expect("SET k v", "+OK\r\n");
    try server.expect("get k", "$1\r\nv\r\n");
    try server.expect("GET nope", "$-1\r\n");
    try server.expect("INCR n", ":1\r\n");
    try server.expect("INCR n", ":2\r\n");
    try server.expect("INCR k", "-ERR value is not an integer or out of range\r\n");
    try server.expect("SET big 9223372036854775807", "+OK\r\n");
    try server.expect("INCR big", "-ERR increment or decrement would overflow\r\n");
    try server.expect("MSET a 1 b 2", "+OK\r\n");
    try server.expect("MGET a nope b", "*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n");
    try server.expect("EXISTS a a nope", ":2\r\n");
    try server.expect("DEL a b nope", ":2\r\n");
    try server.expect("DBSIZE", ":3\r\n");
}

test "errors: unknown command, arity, wrong type, syntax" {
    var server: TestServer = .init(testing.allocator);
    defer server.deinit();

    try server.expect("NOPE x", "-ERR unknown command 'NOPE'\r\n");
    try server.expect("GET", "-ERR wrong number of arguments for 'get' command\r\n");
    try server.expect("MSET a 1 b", "-ERR wrong number of arguments for 'mset' command\r\n");
    try server.expect("HSET h f", "-ERR wrong number of arguments for 'hset' command\r\n");
    try server.expect("CONFIG GET", "-ERR wrong number of arguments for 'config|get' command\r\n");
    try server.expect("SET k v EX", "-ERR syntax error\r\n");
    try server.expect("LPUSH l a", ":1\r\n");
    try server.expect("GET l", "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n");
    try server.expect("SADD l m", "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n");
    try server.expect("ZADD z notanumber m", "-ERR value is not a valid float\r\n");
    try server.expect("ZADD z nan m", "-ERR value is not a valid float\r\n");
    try server.expect("EXISTS z", ":0\r\n");
}

test "lists" {
    var server: TestServer = .init(testing.allocator);
    defer server.deinit();

    try server.expect("RPUSH l b c", ":2\r\n");
    try server.expect("LPUSH l a", ":3\r\n");
    try server.expect("LRANGE l 0 -1", "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n");
    try server.expect("LRANGE l -2 100", "*2\r\n$1\r\nb\r\n$1\r\nc\r\n");
    try server.expect("LRANGE l 5 10", "*0\r\n");
    try server.expect("LPOP l", "$1\r\na\r\n");
    try server.expect("RPOP l 5", "*2\r\n$1\r\nc\r\n$1\r\nb\r\n");
    try server.expect("EXISTS l", ":0\r\n");
    try server.expect("LPOP l", "$-1\r\n");
    try server.expect("LPOP l 2", "*-1\r\n");
}

test "sets, hashes, sorted sets" {
    var server: TestServer = .init(testing.allocator);
    defer server.deinit();

    try server.expect("SADD s a b a", ":2\r\n");
    try server.expect("SREM s a x", ":1\r\n");
    try server.expect("SMEMBERS s", "*1\r\n$1\r\nb\r\n");
    try server.expect("SREM s b", ":1\r\n");
    try server.expect("EXISTS s", ":0\r\n");

    try server.expect("HSET h f1 v1 f2 v2", ":2\r\n");
    try server.expect("HSET h f1 new", ":0\r\n");
    try server.expect("HGET h f1", "$3\r\nnew\r\n");
    try server.expect("HGET h nope", "$-1\r\n");
    try server.expect("HDEL h f1 f2 f3", ":2\r\n");
    try server.expect("EXISTS h", ":0\r\n");

    try server.expect("ZADD z 2 b 1 a 3 c", ":3\r\n");
    try server.expect("ZADD z 0.5 c", ":0\r\n");
    try server.expect("ZRANGE z 0 -1", "*3\r\n$1\r\nc\r\n$1\r\na\r\n$1\r\nb\r\n");
    try server.expect("ZRANGE z 0 0 withscores", "*2\r\n$1\r\nc\r\n$3\r\n0.5\r\n");
    try server.expect("ZRANGE z 0 0 BYSCORE", "-ERR syntax error\r\n");
}

test "config, command, flushall, shutdown" {
    var server: TestServer = .init(testing.allocator);
    defer server.deinit();

    try server.expect("CONFIG GET save", "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
    try server.expect("config get appendonly", "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
    try server.expect("CONFIG GET maxmemory", "*0\r\n");
    try server.expect("CONFIG GET *", "*4\r\n$4\r\nsave\r\n$0\r\n\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
    try server.expect("CONFIG SET save x", "-ERR unknown subcommand 'SET'. Try CONFIG HELP.\r\n");
    try server.expect("COMMAND DOCS", "*0\r\n");
    try server.expect("SET k v", "+OK\r\n");
    try server.expect("FLUSHALL", "+OK\r\n");
    try server.expect("DBSIZE", ":0\r\n");
    try server.expect("SHUTDOWN", "");
}

test "FLUSHALL frees everything the keyspace holds" {
    var counting: std.testing.FailingAllocator = .init(testing.allocator, .{});
    var server: TestServer = .init(testing.allocator);
    defer server.deinit();
    // Count only keyspace allocations, not the harness' own buffers.
    server.keyspace.deinit();
    server.keyspace = .init(counting.allocator());

    _ = try server.run("MSET a 1 b 2");
    _ = try server.run("RPUSH l x y z");
    _ = try server.run("SADD s x y");
    _ = try server.run("HSET h f v");
    _ = try server.run("ZADD z 1 x 2 y");
    try testing.expect(counting.allocations > counting.deallocations);
    try server.expect("FLUSHALL", "+OK\r\n");
    try testing.expectEqual(counting.allocations, counting.deallocations);
    try testing.expectEqual(counting.allocated_bytes, counting.freed_bytes);
}

/// GPA allocations one more run of `line` makes, after a warm-up run.
fn steadyStateAllocations(enabled: []const defects.Defect, setup: []const u8, line: []const u8) !usize {
    var counting: std.testing.FailingAllocator = .init(testing.allocator, .{});
    var server: TestServer = .init(testing.allocator);
    defer server.deinit();
    server.keyspace.deinit();
    server.keyspace = .init(counting.allocator());
    server.defects = .initMany(enabled);

    if (setup.len > 0) _ = try server.run(setup);
    _ = try server.run(line);
    const before = counting.allocations;
    _ = try server.run(line);
    return counting.allocations - before;
}

test "defects add exactly the allocations they promise" {
    // Overwriting a hash field: one new value copy.
    try testing.expectEqual(1, try steadyStateAllocations(&.{}, "", "HSET h f v"));
    try testing.expectEqual(2, try steadyStateAllocations(&.{.alloc_reply}, "", "HSET h f v"));
    // Re-adding an existing member: nothing.
    try testing.expectEqual(0, try steadyStateAllocations(&.{}, "", "SADD s m"));
    try testing.expectEqual(8, try steadyStateAllocations(&.{.small_allocs}, "", "SADD s m"));
    // Each pushed element: a node and a value copy.
    try testing.expectEqual(2, try steadyStateAllocations(&.{}, "", "LPUSH l v"));
    try testing.expectEqual(3, try steadyStateAllocations(&.{.large_alloc}, "", "LPUSH l v"));
    // Overwriting a string: one new value copy.
    try testing.expectEqual(1, try steadyStateAllocations(&.{}, "", "SET k v"));
    // ZADD of an existing member with the same score: nothing, defect or not.
    try testing.expectEqual(0, try steadyStateAllocations(&.{}, "", "ZADD z 1 m"));
    try testing.expectEqual(0, try steadyStateAllocations(&.{.hot_loop}, "", "ZADD z 1 m"));
    try testing.expectEqual(0, try steadyStateAllocations(&.{.linear_lookup}, "SET k v", "GET k"));
    // A GET that finds its key: one copy with copy-on-hit; a miss: nothing, defect or not.
    try testing.expectEqual(0, try steadyStateAllocations(&.{}, "SET k v", "GET k"));
    try testing.expectEqual(1, try steadyStateAllocations(&.{.copy_on_hit}, "SET k v", "GET k"));
    try testing.expectEqual(0, try steadyStateAllocations(&.{.copy_on_hit}, "", "GET missing"));
}

test "leak defect leaks 64 bytes per SET and nothing else" {
    // An arena owns the leaked blocks so the test itself stays leak-free.
    var arena: std.heap.ArenaAllocator = .init(testing.allocator);
    defer arena.deinit();
    var counting: std.testing.FailingAllocator = .init(arena.allocator(), .{});
    var server: TestServer = .init(testing.allocator);
    defer server.deinit();
    server.keyspace.deinit();
    server.keyspace = .init(counting.allocator());
    server.defects = .initOne(.leak);

    for (0..3) |_| try server.expect("SET k v", "+OK\r\n");
    try server.expect("FLUSHALL", "+OK\r\n");
    try testing.expectEqual(3, counting.allocations - counting.deallocations);
    try testing.expectEqual(3 * defects.audit_record_len, counting.allocated_bytes - counting.freed_bytes);
}

test "grow-log keeps 64 bytes more per SET, FLUSHALL or not" {
    var server: TestServer = .init(testing.allocator);
    defer server.deinit();
    server.defects = .initOne(.grow_log);
    for (0..3) |_| try server.expect("SET k v", "+OK\r\n");
    try server.expect("FLUSHALL", "+OK\r\n");
    try testing.expectEqual(3 * defects.log_record_len, server.audit_log.bytes.items.len);
}

test "defects do not change replies" {
    var server: TestServer = .init(testing.allocator);
    defer server.deinit();
    server.defects = .initFull();

    try server.expect("hset h f v", ":1\r\n");
    try server.expect("HSET h f v2", ":0\r\n");
    try server.expect("SADD s a b", ":2\r\n");
    try server.expect("LPUSH l a b", ":2\r\n");
    try server.expect("ZADD z 1 a", ":1\r\n");
    try server.expect("zRaNgE z 0 -1", "*1\r\n$1\r\na\r\n");
    try server.expect("NOPE", "-ERR unknown command 'NOPE'\r\n");
}

test "a known but unimplemented command says so" {
    var server: TestServer = .init(testing.allocator);
    defer server.deinit();
    try server.expect("append k v", "-ERR 'append' is not implemented by minikv\r\n");
}

test "error-ping answers every command with an error, PING included" {
    var server: TestServer = .init(testing.allocator);
    defer server.deinit();
    server.faults = .initOne(.error_ping);
    try server.expect("PING", "-ERR Protocol error\r\n");
    try server.expect("SET k v", "-ERR Protocol error\r\n");
    server.faults = .initEmpty();
    try server.expect("PING", "+PONG\r\n");
}

test "ok-to-unknown answers +OK to what minikv lacks, and to DBSIZE, FLUSHALL and MSET without running them" {
    var server: TestServer = .init(testing.allocator);
    defer server.deinit();
    server.faults = .initOne(.ok_to_unknown);

    try server.expect("SET k v", "+OK\r\n");
    try server.expect("NOPE x", "+OK\r\n");
    try server.expect("append k v", "+OK\r\n");
    try server.expect("ZCARD z", "+OK\r\n");
    try server.expect("MSET a 1 b 2", "+OK\r\n");
    try server.expect("GET a", "$-1\r\n");
    try server.expect("DBSIZE", "+OK\r\n");
    try server.expect("FLUSHALL", "+OK\r\n");
    try server.expect("GET k", "$1\r\nv\r\n");
    try testing.expectEqual(1, server.keyspace.count());
    // What minikv implements still runs, arity checks included.
    try server.expect("HSET h f v", ":1\r\n");
    try server.expect("GET", "-ERR wrong number of arguments for 'get' command\r\n");

    // Without the fault, the same commands are real.
    server.faults = .initEmpty();
    try server.expect("NOPE x", "-ERR unknown command 'NOPE'\r\n");
    try server.expect("MSET a 1 b 2", "+OK\r\n");
    try server.expect("GET a", "$1\r\n1\r\n");
    try server.expect("DBSIZE", ":4\r\n");
    try server.expect("FLUSHALL", "+OK\r\n");
    try server.expect("DBSIZE", ":0\r\n");
}

test "a full keyspace refuses new keys with out of memory, and still takes the rest" {
    var server: TestServer = .init(testing.allocator);
    defer server.deinit();
    server.keyspace.max_keys = 2;

    try server.expect("SET a 1", "+OK\r\n");
    try server.expect("RPUSH l x", ":1\r\n");
    const out_of_memory = "-ERR out of memory\r\n";
    try server.expect("SET b 1", out_of_memory);
    try server.expect("INCR n", out_of_memory);
    try server.expect("HSET h f v", out_of_memory);
    try server.expect("SADD s m", out_of_memory);
    try server.expect("ZADD z 1 m", out_of_memory);
    try server.expect("LPUSH l2 x", out_of_memory);
    try server.expect("MSET c 1 d 2", out_of_memory);
    try server.expect("DBSIZE", ":2\r\n");
    // Keys that exist take writes; reads and deletes work, and a delete makes room.
    try server.expect("SET a 2", "+OK\r\n");
    try server.expect("RPUSH l y", ":2\r\n");
    try server.expect("GET a", "$1\r\n2\r\n");
    try server.expect("DEL a", ":1\r\n");
    try server.expect("SET b 1", "+OK\r\n");
    try server.expect("FLUSHALL", "+OK\r\n");
    try server.expect("MSET c 1 d 2", "+OK\r\n");
}

test "every command name resolves through both lookups" {
    for (&table) |*cmd| {
        try testing.expectEqual(cmd, lookup(cmd.name, false).?);
        try testing.expectEqual(cmd, lookup(cmd.name, true).?);
    }
    try testing.expectEqualStrings("PING", lookup("ping", false).?.name);
    try testing.expectEqualStrings("APPEND", table[0].name); // alphabetical, as Redis' table
    try testing.expectEqual(null, lookup("a-very-long-command-name", false));
}
