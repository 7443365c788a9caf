//! zprof's counting-allocator shim.
//!
//! zprof builds a target against a copy of Zig's lib directory in which
//! `std/mem/Allocator.zig` routes `rawAlloc`, `rawResize`, `rawRemap` and
//! `rawFree` through the functions below. Every allocator layer (arena,
//! debug/GPA, page, c, ...) funnels through those four functions, so the shim
//! sees each allocation without any edit to the target's sources.
//!
//! The counters live in a file that zprof creates and names in the environment
//! variable `ZPROF_SHM`. The first hooked call maps it and writes the header;
//! from then on zprof reads the counters at any moment, without stopping or
//! signalling the process. Without `ZPROF_SHM` (for example in the build runner
//! or in `zig build test`), the hooks only forward the calls.
//!
//! Rules for this file: it never allocates (it is the allocation hook), it
//! touches shared counters only with atomics (targets are multi-threaded), and
//! every table has a fixed size and a bounded probe, so a full table loses
//! detail, counted in `Counters`, never correctness.
//!
//! In the overlay zprof builds for valgrind's massif, `massif_client_requests`
//! is true and the hooks also describe each block the program holds to
//! valgrind (see `Massif`), with or without `ZPROF_SHM`.

const std = @import("std");
const builtin = @import("builtin");
const Allocator = std.mem.Allocator;
const Alignment = std.mem.Alignment;

/// "ZPROFSH1" read as a little-endian u64.
pub const magic: u64 = 0x314853464f52505a;
/// Bumped whenever any extern struct below changes shape.
pub const layout_version: u64 = 1;
pub const env_var = "ZPROF_SHM";
/// zprof's massif overlay rewrites this exact line to `true` (zprof/target/shim.py).
pub const massif_client_requests = false;

pub const layer_capacity = 16;
pub const site_capacity = 16384;
/// Frame 0 is the `ret_addr` the Allocator API passes; the rest come from a
/// frame-pointer walk that starts in the function that called the allocator.
pub const site_depth = 8;
pub const live_capacity = 1 << 22;
pub const size_class_count = 64;
const site_probe_limit = 32;
const live_probe_limit = 64;
const no_layer: u64 = std.math.maxInt(u64);
const live_shift: u6 = 64 - @ctz(@as(u64, live_capacity));

pub const Header = extern struct {
    magic: u64,
    version: u64,
    header_size: u64,
    total_size: u64,
    attached_pid: u64,
    layer_capacity: u64,
    site_capacity: u64,
    site_depth: u64,
    live_capacity: u64,
    size_class_count: u64,
    counters_offset: u64,
    size_classes_offset: u64,
    layers_offset: u64,
    sites_offset: u64,
    live_offset: u64,
    layer_size: u64,
    site_size: u64,
    live_entry_size: u64,
};

/// Events the tables could not hold; zprof reports them as loss of detail.
pub const Counters = extern struct {
    untracked_frees: u64,
    live_table_full: u64,
    sites_dropped: u64,
    layers_dropped: u64,
};

/// One allocator implementation, keyed by the address of its `vtable.alloc`
/// function, which zprof names from the symbol table (arena, debug/GPA, page, c).
pub const Layer = extern struct {
    alloc_fn: u64,
    allocs: u64,
    /// Allocations made while another hooked allocator call was running on the
    /// same thread: an allocator backing another (arena -> GPA -> page).
    nested_allocs: u64,
    alloc_bytes: u64,
    alloc_failures: u64,
    frees: u64,
    /// Frees made inside another hooked allocator call, as `nested_allocs`.
    nested_frees: u64,
    free_bytes: u64,
    live_bytes: u64,
    peak_live_bytes: u64,
    resizes_in_place: u64,
    resizes_refused: u64,
    remaps_in_place: u64,
    remaps_moved: u64,
    remaps_refused: u64,
};

/// A call site: a stack, the layer that served it, and the layer whose call it
/// was nested in (`parent_layer` is `no_layer` for calls from program code).
pub const Site = extern struct {
    key: u64,
    ready: u64,
    layer: u64,
    parent_layer: u64,
    frames: [site_depth]u64,
    allocs: u64,
    alloc_bytes: u64,
    frees: u64,
    free_bytes: u64,
    min_size: u64,
    max_size: u64,
};

/// One live block, so that a free is charged to the site that allocated it.
/// `key` is the address tagged with the layer (see `liveKey`): an allocator
/// hands out blocks at the same address as the block backing them.
pub const LiveEntry = extern struct {
    key: u64,
    size: u64,
    site: u64,
};

const empty_slot: u64 = 0;
const tombstone: u64 = 1;

pub const Region = struct {
    header: *Header,
    counters: *Counters,
    size_classes: *[size_class_count]u64,
    layers: *[layer_capacity]Layer,
    sites: *[site_capacity]Site,
    live: *[live_capacity]LiveEntry,

    const counters_offset = std.mem.alignForward(usize, @sizeOf(Header), 64);
    const size_classes_offset = std.mem.alignForward(usize, counters_offset + @sizeOf(Counters), 64);
    const layers_offset = std.mem.alignForward(usize, size_classes_offset + size_class_count * 8, 64);
    const sites_offset = std.mem.alignForward(usize, layers_offset + layer_capacity * @sizeOf(Layer), 64);
    const live_offset = std.mem.alignForward(usize, sites_offset + site_capacity * @sizeOf(Site), 4096);
    pub const total_size = live_offset + live_capacity * @sizeOf(LiveEntry);

    /// Lays the tables over `bytes`, which must be zeroed or already laid out.
    pub fn init(bytes: []align(8) u8, pid: u64) Region {
        std.debug.assert(bytes.len >= total_size);
        const region: Region = .{
            .header = @ptrCast(bytes.ptr),
            .counters = @ptrCast(@alignCast(bytes.ptr + counters_offset)),
            .size_classes = @ptrCast(@alignCast(bytes.ptr + size_classes_offset)),
            .layers = @ptrCast(@alignCast(bytes.ptr + layers_offset)),
            .sites = @ptrCast(@alignCast(bytes.ptr + sites_offset)),
            .live = @ptrCast(@alignCast(bytes.ptr + live_offset)),
        };
        region.header.* = .{
            .magic = 0, // written last, so a reader never sees a half-written header
            .version = layout_version,
            .header_size = @sizeOf(Header),
            .total_size = total_size,
            .attached_pid = pid,
            .layer_capacity = layer_capacity,
            .site_capacity = site_capacity,
            .site_depth = site_depth,
            .live_capacity = live_capacity,
            .size_class_count = size_class_count,
            .counters_offset = counters_offset,
            .size_classes_offset = size_classes_offset,
            .layers_offset = layers_offset,
            .sites_offset = sites_offset,
            .live_offset = live_offset,
            .layer_size = @sizeOf(Layer),
            .site_size = @sizeOf(Site),
            .live_entry_size = @sizeOf(LiveEntry),
        };
        @atomicStore(u64, &region.header.magic, magic, .release);
        return region;
    }

    fn add(field: *u64, value: u64) void {
        _ = @atomicRmw(u64, field, .Add, value, .monotonic);
    }

    fn sub(field: *u64, value: u64) void {
        _ = @atomicRmw(u64, field, .Sub, value, .monotonic);
    }

    fn raiseTo(field: *u64, value: u64) void {
        _ = @atomicRmw(u64, field, .Max, value, .monotonic);
    }

    fn lowerTo(field: *u64, value: u64) void {
        _ = @atomicRmw(u64, field, .Min, value, .monotonic);
    }

    fn layerIndex(region: Region, alloc_fn: u64) ?u64 {
        for (region.layers, 0..) |*layer, index| {
            const seen = @atomicLoad(u64, &layer.alloc_fn, .acquire);
            if (seen == alloc_fn) return index;
            if (seen == empty_slot) {
                const raced = @cmpxchgStrong(u64, &layer.alloc_fn, empty_slot, alloc_fn, .acq_rel, .acquire) orelse return index;
                if (raced == alloc_fn) return index;
            }
        }
        add(&region.counters.layers_dropped, 1);
        return null;
    }

    fn siteIndex(region: Region, frames: *const [site_depth]u64, layer: u64, parent_layer: u64) ?u64 {
        var hash = std.hash.Wyhash.init(layer);
        hash.update(std.mem.asBytes(frames));
        hash.update(std.mem.asBytes(&parent_layer));
        // 0 and 1 are the empty and tombstone markers.
        const key = hash.final() | 2;
        var slot = key % site_capacity;
        for (0..site_probe_limit) |_| {
            const site = &region.sites[slot];
            const seen = @atomicLoad(u64, &site.key, .acquire);
            if (seen == key) return slot;
            if (seen == empty_slot) {
                if (@cmpxchgStrong(u64, &site.key, empty_slot, key, .acq_rel, .acquire)) |raced| {
                    if (raced == key) return slot;
                } else {
                    site.layer = layer;
                    site.parent_layer = parent_layer;
                    site.frames = frames.*;
                    site.min_size = std.math.maxInt(u64);
                    @atomicStore(u64, &site.ready, 1, .release);
                    return slot;
                }
            }
            slot = (slot + 1) % site_capacity;
        }
        add(&region.counters.sites_dropped, 1);
        return null;
    }

    fn liveKey(address: u64, layer: u64) u64 {
        // User-space addresses fit in 48 bits on the 64-bit targets Zig supports.
        return address | ((layer + 1) << 48);
    }

    fn slotOf(region: Region, entry: *const LiveEntry) u64 {
        return (@intFromPtr(entry) - @intFromPtr(region.live)) / @sizeOf(LiveEntry);
    }

    fn liveSlot(key: u64) u64 {
        // Blocks are at least 8-byte aligned; mix the rest with a Fibonacci hash.
        return ((key >> 3) *% 0x9e3779b97f4a7c15) >> live_shift;
    }

    /// Records a live block. An entry with the same address is a block that
    /// was released without a free (an arena reset, a buffer reuse): it is
    /// overwritten rather than kept as a stale twin.
    fn track(region: Region, key: u64, size: u64, site: u64) void {
        var slot = liveSlot(key);
        var reusable: ?*LiveEntry = null;
        const target = for (0..live_probe_limit) |_| {
            const entry = &region.live[slot];
            const seen = @atomicLoad(u64, &entry.key, .acquire);
            if (seen == key) break entry;
            if (seen == tombstone and reusable == null) reusable = entry;
            if (seen == empty_slot) break reusable orelse entry;
            slot = (slot + 1) % live_capacity;
        } else reusable orelse {
            add(&region.counters.live_table_full, 1);
            return;
        };
        const seen = @atomicLoad(u64, &target.key, .acquire);
        if (seen != key) {
            if (@cmpxchgStrong(u64, &target.key, seen, key, .acq_rel, .monotonic) != null) {
                // Another thread took the slot first: rare, and only detail is lost.
                add(&region.counters.live_table_full, 1);
                return;
            }
        }
        // Only the owner of the block reads these, after the program has handed
        // the block over with its own synchronisation.
        @atomicStore(u64, &target.size, size, .release);
        @atomicStore(u64, &target.site, site, .release);
    }

    fn find(region: Region, key: u64) ?*LiveEntry {
        var slot = liveSlot(key);
        for (0..live_probe_limit) |_| {
            const entry = &region.live[slot];
            const seen = @atomicLoad(u64, &entry.key, .acquire);
            if (seen == key) return entry;
            if (seen == empty_slot) return null;
            slot = (slot + 1) % live_capacity;
        }
        return null;
    }

    /// Forgets a block and returns the entry's site and size.
    fn untrack(region: Region, key: u64) ?LiveEntry {
        const entry = region.find(key) orelse return null;
        const taken: LiveEntry = .{
            .key = key,
            .size = @atomicLoad(u64, &entry.size, .acquire),
            .site = @atomicLoad(u64, &entry.site, .acquire),
        };
        // A slot followed by an empty one ends its probe chain, so it can be
        // emptied rather than left as a tombstone that lengthens later probes.
        const next = &region.live[(slotOf(region, entry) + 1) % live_capacity];
        const ends_chain = @atomicLoad(u64, &next.key, .acquire) == empty_slot;
        @atomicStore(u64, &entry.key, if (ends_chain) empty_slot else tombstone, .release);
        return taken;
    }

    fn recordAlloc(region: Region, call: Call, address: u64, size: u64) void {
        const layer = &region.layers[call.layer];
        add(if (call.parent_layer == no_layer) &layer.allocs else &layer.nested_allocs, 1);
        add(&layer.alloc_bytes, size);
        growLive(layer, size);
        if (call.parent_layer == no_layer) add(&region.size_classes[sizeClass(size)], 1);

        const site_index = region.siteIndex(&call.frames, call.layer, call.parent_layer) orelse return;
        const site = &region.sites[site_index];
        add(&site.allocs, 1);
        add(&site.alloc_bytes, size);
        raiseTo(&site.max_size, size);
        lowerTo(&site.min_size, size);
        region.track(liveKey(address, call.layer), size, site_index);
    }

    fn recordFree(region: Region, layer_index: u64, address: u64, size: u64, nested: bool) void {
        const layer = &region.layers[layer_index];
        add(if (nested) &layer.nested_frees else &layer.frees, 1);
        add(&layer.free_bytes, size);
        sub(&layer.live_bytes, size);
        const block = region.untrack(liveKey(address, layer_index)) orelse {
            add(&region.counters.untracked_frees, 1);
            return;
        };
        const site = &region.sites[block.site];
        add(&site.frees, 1);
        add(&site.free_bytes, block.size);
    }

    /// A block kept its address and changed size: charge the difference to the
    /// layer and to the site that allocated it.
    fn recordInPlace(region: Region, layer_index: u64, block: ?LiveEntry, address: u64, old_size: u64, new_size: u64) void {
        const layer = &region.layers[layer_index];
        if (new_size >= old_size) {
            add(&layer.alloc_bytes, new_size - old_size);
            growLive(layer, new_size - old_size);
        } else {
            add(&layer.free_bytes, old_size - new_size);
            sub(&layer.live_bytes, old_size - new_size);
        }
        const kept = block orelse return;
        const site = &region.sites[kept.site];
        if (new_size >= old_size) add(&site.alloc_bytes, new_size - old_size) else add(&site.free_bytes, old_size - new_size);
        region.track(liveKey(address, layer_index), new_size, kept.site);
    }
};

fn growLive(layer: *Layer, size: u64) void {
    const live = @atomicRmw(u64, &layer.live_bytes, .Add, size, .monotonic) +% size;
    Region.raiseTo(&layer.peak_live_bytes, live);
}

pub fn sizeClass(size: u64) usize {
    return if (size == 0) 0 else 64 - @as(usize, @clz(size));
}

/// What the shim knows about the call in progress.
const Call = struct {
    layer: u64,
    parent_layer: u64,
    frames: [site_depth]u64,
};

/// The layer of the outermost hooked call running on this thread, so that a
/// call made by an allocator to its backing allocator is counted as nested.
threadlocal var outer_layer: u64 = no_layer;

const State = enum(u8) { detached, attaching, attached, disabled };
var state: std.atomic.Value(State) = .init(.detached);
var region_storage: Region = undefined;

fn attachedRegion() ?Region {
    switch (state.load(.acquire)) {
        .attached => return region_storage,
        .disabled => return null,
        .detached, .attaching => {},
    }
    if (state.cmpxchgStrong(.detached, .attaching, .acq_rel, .acquire)) |_| {
        // Another thread is mapping the file: a handful of system calls.
        while (state.load(.acquire) == .attaching) std.atomic.spinLoopHint();
        return if (state.load(.acquire) == .attached) region_storage else null;
    }
    if (mapRegion()) |region| {
        region_storage = region;
        state.store(.attached, .release);
        return region;
    }
    state.store(.disabled, .release);
    return null;
}

fn mapRegion() ?Region {
    if (builtin.os.tag != .linux) return null;
    const path = std.posix.getenv(env_var) orelse return null;
    const fd = std.posix.open(path, .{ .ACCMODE = .RDWR, .CLOEXEC = true }, 0) catch return null;
    defer std.posix.close(fd);
    const stat = std.posix.fstat(fd) catch return null;
    // zprof makes the file large enough; a smaller one is not ours to grow.
    if (stat.size < Region.total_size) return null;
    const bytes = std.posix.mmap(null, Region.total_size, std.posix.PROT.READ | std.posix.PROT.WRITE, .{ .TYPE = .SHARED }, fd, 0) catch return null;
    return Region.init(bytes, @intCast(std.os.linux.getpid()));
}

/// The stack of the allocation: the API's `ret_addr`, then the return
/// addresses found by following frame pointers from the hook's caller. Zig
/// keeps frame pointers in ReleaseFast on x86-64 and aarch64; the walk stops
/// at anything that does not look like a caller's frame.
inline fn captureFrames(ret_addr: usize) [site_depth]u64 {
    var frames: [site_depth]u64 = @splat(0);
    frames[0] = ret_addr;
    var frame_pointer = @frameAddress();
    var depth: usize = 1;
    while (depth < site_depth) : (depth += 1) {
        const return_address = @as(*const usize, @ptrFromInt(frame_pointer + @sizeOf(usize))).*;
        if (return_address == 0) break;
        frames[depth] = return_address;
        const caller_frame = @as(*const usize, @ptrFromInt(frame_pointer)).*;
        const stack_limit = 1 << 20;
        if (caller_frame <= frame_pointer or caller_frame - frame_pointer > stack_limit or caller_frame % @alignOf(usize) != 0) break;
        frame_pointer = caller_frame;
    }
    return frames;
}

fn beginCall(region: Region, a: Allocator, ret_addr: usize) ?Call {
    const layer = region.layerIndex(@intFromPtr(a.vtable.alloc)) orelse return null;
    return .{ .layer = layer, .parent_layer = outer_layer, .frames = captureFrames(ret_addr) };
}

const Nesting = struct {
    saved: u64,
    fn enter(layer: u64) Nesting {
        const saved = outer_layer;
        if (saved == no_layer) outer_layer = layer;
        return .{ .saved = saved };
    }
    fn leave(nesting: Nesting) void {
        outer_layer = nesting.saved;
    }
};

inline fn countedAlloc(a: Allocator, len: usize, alignment: Alignment, ret_addr: usize) ?[*]u8 {
    const region = attachedRegion() orelse return a.vtable.alloc(a.ptr, len, alignment, ret_addr);
    const call = beginCall(region, a, ret_addr) orelse return a.vtable.alloc(a.ptr, len, alignment, ret_addr);
    const nesting: Nesting = .enter(call.layer);
    const result = a.vtable.alloc(a.ptr, len, alignment, ret_addr);
    nesting.leave();
    if (result) |memory| {
        region.recordAlloc(call, @intFromPtr(memory), len);
    } else {
        Region.add(&region.layers[call.layer].alloc_failures, 1);
    }
    return result;
}

inline fn countedFree(a: Allocator, memory: []u8, alignment: Alignment, ret_addr: usize) void {
    if (attachedRegion()) |region| {
        if (region.layerIndex(@intFromPtr(a.vtable.alloc))) |layer| {
            // Forget the block before it is released: once released, another
            // thread may be handed the same address.
            region.recordFree(layer, @intFromPtr(memory.ptr), memory.len, outer_layer != no_layer);
            const nesting: Nesting = .enter(layer);
            defer nesting.leave();
            return a.vtable.free(a.ptr, memory, alignment, ret_addr);
        }
    }
    a.vtable.free(a.ptr, memory, alignment, ret_addr);
}

inline fn countedResize(a: Allocator, memory: []u8, alignment: Alignment, new_len: usize, ret_addr: usize) bool {
    const region = attachedRegion() orelse return a.vtable.resize(a.ptr, memory, alignment, new_len, ret_addr);
    const layer_index = region.layerIndex(@intFromPtr(a.vtable.alloc)) orelse return a.vtable.resize(a.ptr, memory, alignment, new_len, ret_addr);
    const layer = &region.layers[layer_index];
    const nesting: Nesting = .enter(layer_index);
    const resized = a.vtable.resize(a.ptr, memory, alignment, new_len, ret_addr);
    nesting.leave();
    if (!resized) {
        Region.add(&layer.resizes_refused, 1);
        return false;
    }
    Region.add(&layer.resizes_in_place, 1);
    const address = @intFromPtr(memory.ptr);
    region.recordInPlace(layer_index, region.untrack(Region.liveKey(address, layer_index)), address, memory.len, new_len);
    return true;
}

inline fn countedRemap(a: Allocator, memory: []u8, alignment: Alignment, new_len: usize, ret_addr: usize) ?[*]u8 {
    const region = attachedRegion() orelse return a.vtable.remap(a.ptr, memory, alignment, new_len, ret_addr);
    const layer_index = region.layerIndex(@intFromPtr(a.vtable.alloc)) orelse return a.vtable.remap(a.ptr, memory, alignment, new_len, ret_addr);
    const layer = &region.layers[layer_index];
    const old_address = @intFromPtr(memory.ptr);
    // Taken out first: a moving remap releases the old address inside the call.
    const block = region.untrack(Region.liveKey(old_address, layer_index));
    const nesting: Nesting = .enter(layer_index);
    const result = a.vtable.remap(a.ptr, memory, alignment, new_len, ret_addr);
    nesting.leave();
    const new_memory = result orelse {
        Region.add(&layer.remaps_refused, 1);
        if (block) |kept| region.track(kept.key, kept.size, kept.site);
        return null;
    };
    const new_address = @intFromPtr(new_memory);
    Region.add(if (new_address == old_address) &layer.remaps_in_place else &layer.remaps_moved, 1);
    region.recordInPlace(layer_index, block, new_address, memory.len, new_len);
    return result;
}

// The hooks Allocator.zig calls. The counting bodies above are `inline`, so
// the frame walk still starts in these functions, as zprof's symbols expect.

pub noinline fn alloc(a: Allocator, len: usize, alignment: Alignment, ret_addr: usize) ?[*]u8 {
    if (!massif_client_requests) return countedAlloc(a, len, alignment, ret_addr);
    const call: Massif = .enter(a);
    const result = countedAlloc(a, len, alignment, ret_addr);
    call.leave();
    if (call.report) if (result) |memory| clientRequest(.MalloclikeBlock, @intFromPtr(memory), len, 0, 0);
    return result;
}

pub noinline fn free(a: Allocator, memory: []u8, alignment: Alignment, ret_addr: usize) void {
    if (!massif_client_requests) return countedFree(a, memory, alignment, ret_addr);
    const call: Massif = .enter(a);
    defer call.leave();
    // Told before the block is released: once released, another thread may
    // be handed the same address.
    if (call.report) clientRequest(.FreelikeBlock, @intFromPtr(memory.ptr), 0, 0, 0);
    countedFree(a, memory, alignment, ret_addr);
}

pub noinline fn resize(a: Allocator, memory: []u8, alignment: Alignment, new_len: usize, ret_addr: usize) bool {
    if (!massif_client_requests) return countedResize(a, memory, alignment, new_len, ret_addr);
    const call: Massif = .enter(a);
    const resized = countedResize(a, memory, alignment, new_len, ret_addr);
    call.leave();
    if (call.report and resized) clientRequest(.ResizeinplaceBlock, @intFromPtr(memory.ptr), memory.len, new_len, 0);
    return resized;
}

pub noinline fn remap(a: Allocator, memory: []u8, alignment: Alignment, new_len: usize, ret_addr: usize) ?[*]u8 {
    if (!massif_client_requests) return countedRemap(a, memory, alignment, new_len, ret_addr);
    const call: Massif = .enter(a);
    const result = countedRemap(a, memory, alignment, new_len, ret_addr);
    call.leave();
    const new_memory = result orelse return null;
    if (!call.report) return result;
    if (new_memory == memory.ptr) {
        clientRequest(.ResizeinplaceBlock, @intFromPtr(memory.ptr), memory.len, new_len, 0);
    } else {
        // The old address was released inside the call; valgrind runs one
        // thread at a time, so another thread reusing it first is rare.
        clientRequest(.FreelikeBlock, @intFromPtr(memory.ptr), 0, 0, 0);
        clientRequest(.MalloclikeBlock, @intFromPtr(new_memory), new_len, 0, 0);
    }
    return result;
}

/// Which calls massif hears of: each block the program holds, once. Those
/// are the blocks program code gets from any allocator but an arena, and the
/// blocks an arena gets from its backing allocator (it hands out parts of
/// them and gives them back only en bloc, on reset or deinit). The blocks an
/// allocator takes from the one behind it (GPA slabs from the page
/// allocator) would count the same bytes twice, and massif sees the C
/// allocator's malloc and free itself.
const Massif = struct {
    saved: Caller,
    report: bool,

    const Caller = enum(u8) { program, arena, allocator };
    /// Who made the hooked call running on this thread (none: the program).
    threadlocal var caller: Caller = .program;

    const arena_vtable = vtable: {
        var arena: std.heap.ArenaAllocator = undefined;
        break :vtable arena.allocator().vtable;
    };
    const c_vtables: []const *const Allocator.VTable =
        if (builtin.link_libc) &.{ std.heap.c_allocator.vtable, std.heap.raw_c_allocator.vtable } else &.{};

    fn enter(a: Allocator) Massif {
        const saved = caller;
        const is_arena = a.vtable == arena_vtable;
        caller = if (is_arena) .arena else .allocator;
        const is_c = for (c_vtables) |vtable| {
            if (a.vtable == vtable) break true;
        } else false;
        return .{ .saved = saved, .report = saved != .allocator and !is_arena and !is_c };
    }

    fn leave(call: Massif) void {
        caller = call.saved;
    }
};

/// A valgrind client request: a no-op on a real CPU. std.valgrind's
/// functions compile to nothing without `-fvalgrind`, which ReleaseFast turns
/// off and `zig build` cannot pass to a project, so this is their instruction
/// sequence (std/valgrind.zig), with std's request codes.
fn clientRequest(request: std.valgrind.ClientRequest, a1: usize, a2: usize, a3: usize, a4: usize) void {
    const args = [_]usize{ @intFromEnum(request), a1, a2, a3, a4, 0 };
    switch (builtin.cpu.arch) {
        .x86_64 => _ = asm volatile (
            \\ rolq  $3,    %%rdi ; rolq $13, %%rdi
            \\ rolq  $61,   %%rdi ; rolq $51, %%rdi
            \\ xchgq %%rbx, %%rbx
            : [_] "={rdx}" (-> usize),
            : [_] "{rax}" (&args),
              [_] "{rdx}" (@as(usize, 0)),
            : .{ .memory = true }),
        .aarch64 => _ = asm volatile (
            \\ ror x12, x12, #3  ; ror x12, x12, #13
            \\ ror x12, x12, #51 ; ror x12, x12, #61
            \\ orr x10, x10, x10
            : [_] "={x3}" (-> usize),
            : [_] "{x4}" (&args),
              [_] "{x3}" (@as(usize, 0)),
            : .{ .memory = true }),
        else => {},
    }
}

test "a freed block is charged to the site that allocated it" {
    const bytes = try std.testing.allocator.alignedAlloc(u8, .@"8", Region.total_size);
    defer std.testing.allocator.free(bytes);
    @memset(bytes, 0);
    const region = Region.init(bytes, 1);
    try std.testing.expectEqual(magic, region.header.magic);

    const layer = region.layerIndex(0x1000).?;
    try std.testing.expectEqual(layer, region.layerIndex(0x1000).?);
    var frames: [site_depth]u64 = @splat(0);
    frames[0] = 0x4242;
    const call: Call = .{ .layer = layer, .parent_layer = no_layer, .frames = frames };
    region.recordAlloc(call, 0x10000, 48);
    region.recordAlloc(call, 0x20000, 16);
    region.recordFree(layer, 0x10000, 48, false);
    region.recordFree(layer, 0x30000, 8, false); // never seen: counted, not charged

    const site = &region.sites[region.siteIndex(&frames, layer, no_layer).?];
    try std.testing.expectEqual(@as(u64, 2), site.allocs);
    try std.testing.expectEqual(@as(u64, 64), site.alloc_bytes);
    try std.testing.expectEqual(@as(u64, 48), site.free_bytes);
    try std.testing.expectEqual(@as(u64, 16), site.min_size);
    try std.testing.expectEqual(@as(u64, 48), site.max_size);
    try std.testing.expectEqual(@as(u64, 1), region.counters.untracked_frees);
    try std.testing.expectEqual(@as(u64, 8), region.layers[layer].live_bytes);
    try std.testing.expectEqual(@as(u64, 64), region.layers[layer].peak_live_bytes);
    try std.testing.expectEqual(@as(u64, 1), region.size_classes[sizeClass(16)]);
}

test "an in-place resize moves the block's size and the site's bytes" {
    const bytes = try std.testing.allocator.alignedAlloc(u8, .@"8", Region.total_size);
    defer std.testing.allocator.free(bytes);
    @memset(bytes, 0);
    const region = Region.init(bytes, 1);
    const layer = region.layerIndex(0x1000).?;
    const frames: [site_depth]u64 = @splat(7);
    region.recordAlloc(.{ .layer = layer, .parent_layer = no_layer, .frames = frames }, 0x10000, 32);
    region.recordInPlace(layer, region.untrack(Region.liveKey(0x10000, layer)), 0x10000, 32, 96);
    try std.testing.expectEqual(@as(u64, 96), region.find(Region.liveKey(0x10000, layer)).?.size);
    try std.testing.expectEqual(@as(u64, 96), region.layers[layer].live_bytes);
    region.recordFree(layer, 0x10000, 96, false);
    try std.testing.expectEqual(@as(u64, 0), region.layers[layer].live_bytes);
    try std.testing.expectEqual(@as(u64, 0), region.counters.untracked_frees);
}
