//! Networking: one detached thread per client, one mutex around the keyspace.
//!
//! Each connection reads whatever the socket has, executes every complete
//! request in its buffer, and sends all their replies with a single write
//! (sendmsg(2), through std.net.Stream.Writer), so pipelined clients cost one
//! read and one write per batch. The `write-per-part` defect instead sends
//! every reply as soon as it is made, in three writes.

const std = @import("std");
const posix = std.posix;
const Allocator = std.mem.Allocator;

const commands = @import("commands.zig");
const defects = @import("defects.zig");
const faults = @import("faults.zig");
const flags = @import("flags.zig");
const resp = @import("resp.zig");
const AppendLog = @import("append_log.zig").AppendLog;
const Keyspace = @import("keyspace.zig").Keyspace;

const log = std.log.scoped(.minikv);

/// Handlers are shallow; the 16 MiB default would reserve needless address
/// space for every client.
const connection_stack_size = 512 * 1024;
/// Starting size of a connection's input buffer; it grows for larger requests.
const initial_input_capacity = 16 * 1024;
/// A request that does not fit in this much buffered input is refused
/// (Redis' client-query-buffer-limit is 1 GiB).
const max_input_capacity = 1024 * 1024 * 1024;
/// Starting size of a connection's reply buffer; it grows for larger replies.
const initial_output_capacity = 16 * 1024;
/// Send replies early once this much is pending, so a long pipeline of large
/// replies does not pile up in memory.
const output_flush_threshold = 64 * 1024;
/// Buffers that grew beyond this for an unusually large request or reply are
/// released afterwards instead of being kept for the connection's lifetime.
const max_retained_capacity = 1024 * 1024;
/// `--scratch fba`: each connection's fixed scratch buffer, allocated once.
const fixed_scratch_len = 64 * 1024;
/// `--scratch stack-fallback`: scratch on the handler's stack up to this
/// size, then from the connection's arena.
const stack_scratch_len = 1024;

/// Where a request's scratch memory (parsed arguments, handler temporaries)
/// comes from. Every kind is released all at once after each request, never
/// block by block: the allocator shapes a profiler must count right.
pub const Scratch = enum {
    /// A per-connection `ArenaAllocator` over the GPA, reset keeping its capacity.
    arena,
    /// A per-connection `FixedBufferAllocator` over one GPA buffer, rewound.
    fba,
    /// A `stackFallback` buffer on the stack, then the arena.
    stack_fallback,

    /// The spelling used on the command line, e.g. "stack-fallback".
    pub fn flagName(scratch: Scratch) []const u8 {
        return flags.name(Scratch, scratch);
    }

    pub fn fromFlagName(name: []const u8) ?Scratch {
        return flags.parse(Scratch, name);
    }
};

pub const Server = struct {
    gpa: Allocator,
    defects: defects.Set,
    /// The values of the defects that take one (`slow-get=NS`).
    defect_params: defects.Params = .{},
    faults: faults.Set,
    limits: faults.Limits,
    scratch: Scratch,
    traffic: faults.Traffic = .{},
    /// Guards `keyspace` and `audit_log`; held for the duration of each command.
    keyspace_lock: std.Thread.Mutex = .{},
    keyspace: Keyspace,
    audit_log: defects.AuditLog = .{},
    /// `--append-only FILE`; written under the keyspace lock.
    append_log: ?AppendLog = null,

    pub fn init(gpa: Allocator, enabled_defects: defects.Set, enabled_faults: faults.Set, limits: faults.Limits, scratch: Scratch) Server {
        return .{
            .gpa = gpa,
            .defects = enabled_defects,
            .faults = enabled_faults,
            .limits = limits,
            .scratch = scratch,
            .keyspace = .{ .gpa = gpa, .max_keys = limits.full_after },
        };
    }

    /// Accepts clients forever, serving each on its own detached thread.
    /// The process ends through SHUTDOWN (or a signal), never by returning.
    pub fn acceptLoop(server: *Server, listener: *std.net.Server) noreturn {
        while (true) {
            const client = listener.accept() catch |err| {
                log.warn("accept failed: {s}", .{@errorName(err)});
                // Out of descriptors or memory: back off rather than spin on the same error.
                if (err != error.ConnectionAborted) std.Thread.sleep(10 * std.time.ns_per_ms);
                continue;
            };
            // Replies go out in one write per batch; don't let Nagle hold them back.
            posix.setsockopt(client.stream.handle, posix.IPPROTO.TCP, posix.TCP.NODELAY, &std.mem.toBytes(@as(c_int, 1))) catch {};

            const thread = std.Thread.spawn(
                .{ .stack_size = connection_stack_size },
                runConnection,
                .{ server, client.stream },
            ) catch |err| {
                log.warn("cannot start a thread for a new client: {s}", .{@errorName(err)});
                client.stream.close();
                continue;
            };
            thread.detach();
        }
    }

    /// SHUTDOWN: ends the process with status 0. The caller must not hold
    /// the keyspace lock.
    fn shutdown(server: *Server) noreturn {
        // Take the lock and never release it, so no other client is
        // mid-command when the process ends.
        server.keyspace_lock.lock();
        std.debug.print("minikv shutting down\n", .{});
        std.process.exit(0);
    }
};

/// `--hang-after`: this connection never answers again; the process lives on.
fn hang() noreturn {
    while (true) std.Thread.sleep(std.time.ns_per_hour);
}

/// Thread entry point: owns `stream` and closes it when the client goes away.
fn runConnection(server: *Server, stream: std.net.Stream) void {
    defer stream.close();
    _ = server.traffic.clients.fetchAdd(1, .monotonic);
    defer _ = server.traffic.clients.fetchSub(1, .monotonic);
    var connection: Connection = Connection.init(server, stream) catch |err| {
        log.warn("cannot set up a new client: {s}", .{@errorName(err)});
        return;
    };
    defer connection.deinit();

    connection.serve() catch |err| switch (err) {
        // The client hung up, or we hung up on it after a protocol error.
        error.EndOfStream, error.ConnectionResetByPeer, error.BrokenPipe, error.ProtocolError => {},
        else => log.warn("client dropped: {s}", .{@errorName(err)}),
    };
}

const Connection = struct {
    server: *Server,
    stream: std.net.Stream,
    /// Request-scoped memory (parsed argument lists, handler scratch) with
    /// `--scratch arena`, and past the stack buffer with `stack-fallback`.
    /// Reset after every command, keeping its capacity for the next one.
    arena: std.heap.ArenaAllocator,
    /// With `--scratch fba`: the request-scoped memory, rewound after every
    /// command, over `fixed_scratch` (empty otherwise).
    fixed: std.heap.FixedBufferAllocator,
    fixed_scratch: []u8,
    /// Bytes received but not yet executed. Requests are parsed in place, so
    /// their arguments point into this buffer.
    input: std.ArrayList(u8),
    /// Replies not yet sent.
    output: std.Io.Writer.Allocating,

    fn init(server: *Server, stream: std.net.Stream) Allocator.Error!Connection {
        const gpa = server.gpa;
        var input: std.ArrayList(u8) = try .initCapacity(gpa, initial_input_capacity);
        errdefer input.deinit(gpa);
        const fixed_scratch = try gpa.alloc(u8, if (server.scratch == .fba) fixed_scratch_len else 0);
        errdefer gpa.free(fixed_scratch);
        return .{
            .server = server,
            .stream = stream,
            .arena = .init(gpa),
            .fixed = .init(fixed_scratch),
            .fixed_scratch = fixed_scratch,
            .input = input,
            .output = try .initCapacity(gpa, initial_output_capacity),
        };
    }

    fn deinit(conn: *Connection) void {
        conn.arena.deinit();
        conn.server.gpa.free(conn.fixed_scratch);
        conn.input.deinit(conn.server.gpa);
        conn.output.deinit();
        conn.* = undefined;
    }

    fn serve(conn: *Connection) !void {
        while (true) {
            try conn.receive();
            try conn.executeBuffered();
            try conn.flush();
        }
    }

    /// Blocks until the socket has more bytes and appends them to `input`.
    fn receive(conn: *Connection) !void {
        const gpa = conn.server.gpa;
        if (conn.input.unusedCapacitySlice().len == 0) {
            // A request larger than the buffer: grow it (doubling) up to the limit.
            if (conn.input.capacity >= max_input_capacity) {
                try conn.replyProtocolError("request too large");
                return error.ProtocolError;
            }
            try conn.input.ensureUnusedCapacity(gpa, conn.input.capacity);
        }
        // Our own growable buffer, read into directly: requests may outgrow
        // any fixed std.Io.Reader buffer.
        const n = try posix.read(conn.stream.handle, conn.input.unusedCapacitySlice());
        if (n == 0) return error.EndOfStream;
        conn.input.items.len += n;
    }

    /// Executes every complete request in `input`, appending replies to
    /// `output`, and keeps any trailing partial request for the next read.
    fn executeBuffered(conn: *Connection) !void {
        const server = conn.server;
        var consumed: usize = 0;
        while (consumed < conn.input.items.len) {
            defer {
                _ = conn.arena.reset(.retain_capacity);
                conn.fixed.reset();
            }
            // Made anew for every request, on this frame: its buffer is rewound with it.
            var stack_scratch = std.heap.stackFallback(stack_scratch_len, conn.arena.allocator());
            const scratch = switch (server.scratch) {
                .arena => conn.arena.allocator(),
                .fba => conn.fixed.allocator(),
                .stack_fallback => stack_scratch.get(),
            };

            const parsed = resp.parseRequest(scratch, conn.input.items[consumed..]) catch |err| switch (err) {
                error.OutOfMemory => return error.OutOfMemory,
                else => |protocol_error| {
                    try conn.replyProtocolError(resp.protocolErrorMessage(protocol_error));
                    return error.ProtocolError;
                },
            };
            const request = parsed orelse break; // the rest has not arrived yet
            consumed += request.len;
            if (request.args.len == 0) continue;
            switch (server.traffic.countRequest(server.faults, server.limits)) {
                .execute => {},
                .fail => {
                    try conn.output.writer.writeAll(faults.sporadic_error_reply);
                    try conn.replied();
                    continue;
                },
                .crash => {
                    std.debug.print("minikv: crashing after {d} requests (--crash-after)\n", .{server.limits.crash_after.?});
                    posix.abort();
                },
                .hang => hang(),
            }

            var ctx: commands.Context = .{
                .keyspace = &server.keyspace,
                .arena = scratch,
                .out = &conn.output.writer,
                .defects = server.defects,
                .defect_params = server.defect_params,
                .faults = server.faults,
                .audit_log = &server.audit_log,
                .append_log = if (server.append_log) |*append_log| append_log else null,
            };
            {
                server.keyspace_lock.lock();
                defer server.keyspace_lock.unlock();
                try commands.execute(&ctx, request.args);
            }
            if (ctx.shutdown_requested) {
                // Earlier requests in the pipeline still get their replies.
                conn.flush() catch {};
                server.shutdown();
            }
            try conn.replied();
        }
        conn.discardInput(consumed);
    }

    /// After each request's reply: sends what is pending if it has grown
    /// large, or, with `write-per-part`, always, so that each reply goes out
    /// on its own.
    fn replied(conn: *Connection) !void {
        if (conn.server.defects.contains(.write_per_part) or conn.output.written().len >= output_flush_threshold) {
            try conn.flush();
        }
    }

    /// Drops the first `len` bytes of `input`, moving any partial request to the front.
    fn discardInput(conn: *Connection, len: usize) void {
        const remaining = conn.input.items.len - len;
        if (len > 0 and remaining > 0) {
            std.mem.copyForwards(u8, conn.input.items[0..remaining], conn.input.items[len..]);
        }
        conn.input.items.len = remaining;
        if (remaining == 0 and conn.input.capacity > max_retained_capacity) {
            const gpa = conn.server.gpa;
            conn.input.clearAndFree(gpa);
            // If this fails, the next receive() grows the empty buffer again.
            conn.input.ensureTotalCapacity(gpa, initial_input_capacity) catch {};
        }
    }

    /// Sends all pending replies: with `write-per-part` just one reply
    /// (`replied` sends each as soon as it is made), in three writes.
    fn flush(conn: *Connection) !void {
        const pending = conn.output.written();
        if (pending.len == 0) return;
        // Unbuffered: `output` already is the buffer.
        var socket_writer = conn.stream.writer(&.{});
        if (conn.server.traffic.garbles(conn.server.faults)) {
            socket_writer.interface.writeAll(faults.garble_byte) catch return socket_writer.err orelse error.WriteFailed;
        }
        if (conn.server.defects.contains(.write_per_part)) {
            try defects.writeReplyInParts(conn.stream, pending);
        } else {
            socket_writer.interface.writeAll(pending) catch return socket_writer.err orelse error.WriteFailed;
        }
        conn.output.clearRetainingCapacity();
        if (conn.output.writer.buffer.len > max_retained_capacity) {
            conn.output.deinit();
            conn.output = .init(conn.server.gpa);
        }
    }

    /// Replies "-ERR Protocol error: ..." and sends everything pending; the
    /// caller then closes the connection, as Redis does.
    fn replyProtocolError(conn: *Connection, message: []const u8) !void {
        try conn.output.writer.print("-ERR Protocol error: {s}\r\n", .{message});
        try conn.flush();
    }
};
