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
//! every table has a fixed size and a bounded probe. What a full table could
//! not hold is counted, call by call and byte by byte, in `Losses`, so zprof
//! can say exactly which figures it affects.
//!
//! Blocks have owners. A block belongs to the call site that allocated it
//! until it is freed, or resized or remapped by another site (then it belongs
//! to that one: growth in place is charged where it happens), or handed out
//! again at the same address by its allocator without a free: an arena reset,
//! a `FixedBufferAllocator` rewound, a `stackFallback` buffer reused. That
//! last case, a release en bloc, is counted per layer, which is how zprof
//! tells allocators that release en bloc from those that free block by block.
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
pub const layout_version: u64 = 3;
pub const env_var = "ZPROF_SHM";
/// Test-only: smaller tables, e.g. `layers=2,sites=64,live=1024`, so that
/// zprof's tests can make each one overflow. The header reports the limits.
pub const limits_env_var = "ZPROF_SHIM_LIMITS";
/// zprof's massif overlay rewrites this exact line to `true` (zprof/target/shim.py).
pub const massif_client_requests = false;

pub const layer_capacity = 16;
pub const site_capacity = 16384;
/// Frame 0 is the `ret_addr` the Allocator API passes; the rest come from a
/// frame-pointer walk that starts in the function that called the allocator.
/// Sixteen, because a Debug build inlines nothing: std's wrappers between a
/// hash map's `put` and the allocator alone take about ten frames.
pub const site_depth = 16;
pub const live_capacity = 1 << 22;
pub const size_class_count = 64;
/// The counters every hooked call writes live in this many copies, one per
/// thread where a process has no more threads than copies (see `Shard`), and
/// zprof adds the copies up when it reads them. With one shared copy, every
/// thread's update pulls the same cache lines from the core that updated them
/// last, which cost a server with many threads more than the rest of the hook.
pub const shard_count = 8;
const site_probe_limit = 32;
const live_probe_limit = 64;
const claim_attempts = 8;
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
    shard_count: u64,
    losses_offset: u64,
    size_classes_offset: u64,
    layer_fns_offset: u64,
    layers_offset: u64,
    layer_counts_offset: u64,
    sites_offset: u64,
    site_counts_offset: u64,
    live_offset: u64,
    layer_size: u64,
    layer_counts_size: u64,
    site_size: u64,
    site_counts_size: u64,
    live_entry_size: u64,
    /// Bytes from one shard's copy of a table to the next one's.
    size_classes_stride: u64,
    layer_counts_stride: u64,
    site_counts_stride: u64,
};

/// What the tables could not hold, as calls and bytes.
pub const Losses = extern struct {
    /// Frees of blocks the live table did not hold (never tracked, or
    /// allocated before the hook attached): no site was credited.
    untracked_frees: u64,
    untracked_free_bytes: u64,
    /// Blocks the live table had no room for: counted at their site, but
    /// their frees cannot be credited to it.
    live_table_full: u64,
    live_table_full_bytes: u64,
    /// Allocations the site table had no room for: in the layer totals and
    /// size classes, in no site, and not tracked.
    sites_dropped: u64,
    sites_dropped_bytes: u64,
    /// Calls to allocators beyond the layer table: not counted at all.
    layers_dropped: u64,
    layers_dropped_bytes: u64,
};

/// The calls one layer served, of one kind: from program code, or nested
/// (made while another hooked allocator call was running on the same thread:
/// an allocator backing another, arena -> GPA -> page).
pub const Calls = extern struct {
    allocs: u64,
    /// Bytes of the allocations, and what blocks grew by in resizes and remaps.
    alloc_bytes: u64,
    alloc_failures: u64,
    frees: u64,
    /// Bytes of the frees, and what blocks shrank by in resizes and remaps.
    free_bytes: u64,
    resizes_in_place: u64,
    resizes_refused: u64,
    remaps_in_place: u64,
    remaps_moved: u64,
    remaps_refused: u64,
};

/// One allocator implementation is keyed by the address of its `vtable.alloc`
/// function (a separate table of those, read on every call and written once),
/// which zprof names from the symbol table (arena, debug/GPA, page, c). Its
/// live bytes are one shared figure, so that its peak is exact: they have a
/// cache line of their own.
pub const Layer = extern struct {
    live_bytes: u64,
    peak_live_bytes: u64,
    reserved: [6]u64,
};

/// What one shard counted of one layer's calls.
pub const LayerCounts = extern struct {
    program: Calls,
    nested: Calls,
    /// Blocks handed out again at the address of a live block without a
    /// free in between (released en bloc), and the bytes those held.
    reissues: u64,
    reissued_bytes: u64,

    fn calls(counts: *LayerCounts, parent_layer: u64) *Calls {
        return if (parent_layer == no_layer) &counts.program else &counts.nested;
    }
};

/// A call site: a stack, the layer that served it, and the layer whose call it
/// was nested in (`parent_layer` is `no_layer` for calls from program code).
/// Written once, when the site is first seen; its counts are in `SiteCounts`.
pub const Site = extern struct {
    key: u64,
    ready: u64,
    layer: u64,
    parent_layer: u64,
    frames: [site_depth]u64,
};

/// What one shard counted at one call site.
pub const SiteCounts = extern struct {
    allocs: u64,
    alloc_bytes: u64,
    frees: u64,
    free_bytes: u64,
    /// 0 until the shard counts an allocation here (an allocation is never empty).
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

/// How much of each table this run uses: the capacities, unless the
/// test-only `ZPROF_SHIM_LIMITS` asks for less.
pub const Limits = struct {
    layers: u64 = layer_capacity,
    sites: u64 = site_capacity,
    /// A power of two: the live table is indexed by a hash's top bits.
    live: u64 = live_capacity,
    /// `sites=off`: counters only, for zprof's benchmark of what the counters
    /// alone cost. No stack is walked and no block tracked, so there are no
    /// call sites and no releases en bloc; the layers' totals stay exact.
    call_sites: bool = true,

    /// `layers=N,sites=N,live=N`, any subset; a value is capped at the
    /// capacity, and `live` is rounded down to a power of two.
    pub fn parse(text: []const u8) Limits {
        var limits: Limits = .{};
        var pairs = std.mem.tokenizeScalar(u8, text, ',');
        while (pairs.next()) |pair| {
            const equals = std.mem.indexOfScalar(u8, pair, '=') orelse continue;
            const name = pair[0..equals];
            if (std.mem.eql(u8, pair, "sites=off")) {
                limits.call_sites = false;
                limits.sites = 0;
            }
            const value = std.fmt.parseInt(u64, pair[equals + 1 ..], 10) catch continue;
            if (value == 0) continue;
            if (std.mem.eql(u8, name, "layers")) limits.layers = @min(value, layer_capacity);
            if (std.mem.eql(u8, name, "sites")) limits.sites = @min(value, site_capacity);
            if (std.mem.eql(u8, name, "live")) limits.live = std.math.floorPowerOfTwo(u64, std.math.clamp(value, 2, live_capacity));
        }
        return limits;
    }
};

pub const Region = struct {
    header: *Header,
    losses: *Losses,
    size_classes: *[shard_count][size_class_count]u64,
    layer_fns: []u64,
    layers: []Layer,
    layer_counts: *[shard_count][layer_capacity]LayerCounts,
    sites: []Site,
    site_counts: *[shard_count][site_capacity]SiteCounts,
    live: []LiveEntry,
    live_shift: u6,
    call_sites: bool,

    const losses_offset = std.mem.alignForward(usize, @sizeOf(Header), 64);
    const size_classes_offset = std.mem.alignForward(usize, losses_offset + @sizeOf(Losses), 64);
    const layer_fns_offset = std.mem.alignForward(usize, size_classes_offset + @sizeOf([shard_count][size_class_count]u64), 64);
    const layers_offset = std.mem.alignForward(usize, layer_fns_offset + layer_capacity * 8, 64);
    const layer_counts_offset = std.mem.alignForward(usize, layers_offset + layer_capacity * @sizeOf(Layer), 64);
    const sites_offset = std.mem.alignForward(usize, layer_counts_offset + @sizeOf([shard_count][layer_capacity]LayerCounts), 64);
    const site_counts_offset = std.mem.alignForward(usize, sites_offset + site_capacity * @sizeOf(Site), 64);
    const live_offset = std.mem.alignForward(usize, site_counts_offset + @sizeOf([shard_count][site_capacity]SiteCounts), 4096);
    pub const total_size = live_offset + live_capacity * @sizeOf(LiveEntry);

    /// Makes `pid` the owner of a counter file, unless another process is:
    /// true when the file was free or is already `pid`'s.
    pub fn claimFile(header: *Header, pid: u64) bool {
        const owner = @cmpxchgStrong(u64, &header.attached_pid, 0, pid, .acq_rel, .acquire) orelse return true;
        return owner == pid;
    }

    /// Lays the tables over `bytes`, which must be zeroed or already laid out.
    pub fn init(bytes: []align(8) u8, pid: u64, limits: Limits) Region {
        std.debug.assert(bytes.len >= total_size);
        const layer_fns: [*]u64 = @ptrCast(@alignCast(bytes.ptr + layer_fns_offset));
        const layers: [*]Layer = @ptrCast(@alignCast(bytes.ptr + layers_offset));
        const sites: [*]Site = @ptrCast(@alignCast(bytes.ptr + sites_offset));
        const live: [*]LiveEntry = @ptrCast(@alignCast(bytes.ptr + live_offset));
        const region: Region = .{
            .header = @ptrCast(bytes.ptr),
            .losses = @ptrCast(@alignCast(bytes.ptr + losses_offset)),
            .size_classes = @ptrCast(@alignCast(bytes.ptr + size_classes_offset)),
            .layer_fns = layer_fns[0..limits.layers],
            .layers = layers[0..limits.layers],
            .layer_counts = @ptrCast(@alignCast(bytes.ptr + layer_counts_offset)),
            .sites = sites[0..limits.sites],
            .site_counts = @ptrCast(@alignCast(bytes.ptr + site_counts_offset)),
            .live = live[0..limits.live],
            .live_shift = @intCast(64 - @ctz(limits.live)),
            .call_sites = limits.call_sites,
        };
        region.header.* = .{
            .magic = 0, // written last, so a reader never sees a half-written header
            .version = layout_version,
            .header_size = @sizeOf(Header),
            .total_size = total_size,
            .attached_pid = pid,
            .layer_capacity = limits.layers,
            .site_capacity = limits.sites,
            .site_depth = site_depth,
            .live_capacity = limits.live,
            .size_class_count = size_class_count,
            .shard_count = shard_count,
            .losses_offset = losses_offset,
            .size_classes_offset = size_classes_offset,
            .layer_fns_offset = layer_fns_offset,
            .layers_offset = layers_offset,
            .layer_counts_offset = layer_counts_offset,
            .sites_offset = sites_offset,
            .site_counts_offset = site_counts_offset,
            .live_offset = live_offset,
            .layer_size = @sizeOf(Layer),
            .layer_counts_size = @sizeOf(LayerCounts),
            .site_size = @sizeOf(Site),
            .site_counts_size = @sizeOf(SiteCounts),
            .live_entry_size = @sizeOf(LiveEntry),
            .size_classes_stride = @sizeOf([size_class_count]u64),
            .layer_counts_stride = @sizeOf([layer_capacity]LayerCounts),
            .site_counts_stride = @sizeOf([site_capacity]SiteCounts),
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

    // A locked read-modify-write only when the value would change: a peak or
    // a size bound is rarely moved, and a plain load keeps the cache line shared.
    fn raiseTo(field: *u64, value: u64) void {
        if (@atomicLoad(u64, field, .monotonic) < value) _ = @atomicRmw(u64, field, .Max, value, .monotonic);
    }

    /// Lowers a minimum that is 0 until set.
    fn lowerTo(field: *u64, value: u64) void {
        var seen = @atomicLoad(u64, field, .monotonic);
        while (seen == 0 or seen > value) seen = @cmpxchgWeak(u64, field, seen, value, .monotonic, .monotonic) orelse return;
    }

    /// What this thread's shard counted of a layer.
    fn layerCounts(region: Region, layer: u64) *LayerCounts {
        return &region.layer_counts[Shard.mine()][layer];
    }

    /// What this thread's shard counted at a site.
    fn siteCounts(region: Region, site: u64) *SiteCounts {
        return &region.site_counts[Shard.mine()][site];
    }

    fn lose(count: *u64, bytes: *u64, size: u64) void {
        add(count, 1);
        add(bytes, size);
    }

    fn layerIndex(region: Region, alloc_fn: u64) ?u64 {
        for (region.layer_fns, 0..) |*layer_fn, index| {
            const seen = @atomicLoad(u64, layer_fn, .acquire);
            if (seen == alloc_fn) return index;
            if (seen == empty_slot) {
                const raced = @cmpxchgStrong(u64, layer_fn, empty_slot, alloc_fn, .acq_rel, .acquire) orelse return index;
                if (raced == alloc_fn) return index;
            }
        }
        return null;
    }

    /// The site for a stack in a layer, made on first use; null when the
    /// table has no room (the caller counts the loss).
    fn siteIndex(region: Region, frames: *const [site_depth]u64, layer: u64, parent_layer: u64) ?u64 {
        var hash = std.hash.Wyhash.init(layer);
        hash.update(std.mem.asBytes(frames));
        hash.update(std.mem.asBytes(&parent_layer));
        // 0 and 1 are the empty and tombstone markers.
        const key = hash.final() | 2;
        var slot = reduce(key, region.sites.len);
        for (0..@min(site_probe_limit, region.sites.len)) |_| {
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
                    @atomicStore(u64, &site.ready, 1, .release);
                    return slot;
                }
            }
            slot = nextSlot(slot, region.sites.len);
        }
        return null;
    }

    /// `hash` mapped onto `0..len` by a multiply and a shift (Lemire's
    /// reduction): a division per hooked call costs more than the rest of a probe.
    fn reduce(hash: u64, len: usize) usize {
        return @intCast((@as(u128, hash) * len) >> 64);
    }

    fn nextSlot(slot: usize, len: usize) usize {
        return if (slot + 1 == len) 0 else slot + 1;
    }

    fn liveKey(address: u64, layer: u64) u64 {
        // User-space addresses fit in 48 bits on the 64-bit targets Zig supports.
        return address | ((layer + 1) << 48);
    }

    fn layerOfKey(key: u64) u64 {
        return (key >> 48) - 1;
    }

    fn liveSlot(region: Region, key: u64) u64 {
        // A Fibonacci hash of every bit: small blocks can be 1, 2 or 4 bytes
        // apart, and neighbours sharing a home slot would form long chains.
        return (key *% 0x9e3779b97f4a7c15) >> region.live_shift;
    }

    /// Starts loading the live-table slot of `key`. The table is far larger
    /// than the cache and its slots are hashed, so the first probe is a miss
    /// that the hook's other work (counters, the call site) can overlap.
    fn prefetchLive(region: Region, key: u64) void {
        @prefetch(&region.live[region.liveSlot(key)], .{ .rw = .write });
    }

    /// Records a live block owned by `site`. An entry with the same address
    /// is a block its allocator handed out again without a free: it was
    /// released en bloc (an arena reset, a buffer rewound), so its owner is
    /// credited and its layer counts the release.
    fn track(region: Region, key: u64, size: u64, site: u64) void {
        const target = region.claim(key) orelse {
            lose(&region.losses.live_table_full, &region.losses.live_table_full_bytes, size);
            return;
        };
        // Only the owner of the block reads these, after the program has handed
        // the block over with its own synchronisation.
        @atomicStore(u64, &target.size, size, .release);
        @atomicStore(u64, &target.site, site, .release);
    }

    /// The entry that holds `key` (its block re-issued, and released here) or
    /// a free one claimed for it; null when its probe chain has no room.
    ///
    /// Slots only ever go from empty to a key, and between a key and a
    /// tombstone (`untrack` never empties one), so every slot between a key's
    /// home and its entry stays in use for as long as the entry holds it:
    /// `find`, and the scan below, always reach a live key. That scan goes on
    /// past the first tombstone to the first empty slot (or the probe limit),
    /// so it would see `key` if the table held it; only then is the first
    /// tombstone or empty slot claimed, by a compare-and-swap that fails if
    /// another thread took it first. No other thread claims the same key
    /// meanwhile: an allocator hands an address to one caller at a time, again
    /// only after the free that took it out of the table, or (released en
    /// bloc) while its entry is still there to be found. So no key is held
    /// twice. Tombstones never turning empty costs probe length, not
    /// room: every probe stays within `live_probe_limit` slots, a tombstone
    /// is as good as an empty slot to a new block, and a block is lost
    /// (counted in `Losses.live_table_full`) only when that many slots from
    /// its home hold live blocks, or when other threads win the slots it
    /// found `claim_attempts` times in a row.
    fn claim(region: Region, key: u64) ?*LiveEntry {
        // Another thread may claim the free slot between our look and our
        // compare-and-swap: then we look again, a bounded number of times.
        for (0..claim_attempts) |_| {
            var slot = region.liveSlot(key);
            var reusable: ?*LiveEntry = null;
            const free_entry, const free_key = for (0..@min(live_probe_limit, region.live.len)) |_| {
                const entry = &region.live[slot];
                const seen = @atomicLoad(u64, &entry.key, .acquire);
                if (seen == key) {
                    region.release(key, @atomicLoad(u64, &entry.size, .acquire), @atomicLoad(u64, &entry.site, .acquire));
                    return entry;
                }
                if (seen == tombstone and reusable == null) reusable = entry;
                if (seen == empty_slot) break if (reusable) |found| .{ found, tombstone } else .{ entry, empty_slot };
                slot = nextSlot(slot, region.live.len);
            } else if (reusable) |found| .{ found, tombstone } else return null;
            if (@cmpxchgStrong(u64, &free_entry.key, free_key, key, .acq_rel, .monotonic) == null) return free_entry;
        }
        return null;
    }

    /// A live block given out again without a free: it no longer counts.
    fn release(region: Region, key: u64, size: u64, site: u64) void {
        const counts = region.layerCounts(layerOfKey(key));
        add(&counts.reissues, 1);
        add(&counts.reissued_bytes, size);
        sub(&region.layers[layerOfKey(key)].live_bytes, size);
        add(&region.siteCounts(site).free_bytes, size);
    }

    fn find(region: Region, key: u64) ?*LiveEntry {
        var slot = region.liveSlot(key);
        for (0..@min(live_probe_limit, region.live.len)) |_| {
            const entry = &region.live[slot];
            const seen = @atomicLoad(u64, &entry.key, .acquire);
            if (seen == key) return entry;
            if (seen == empty_slot) return null;
            slot = nextSlot(slot, region.live.len);
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
        // Always a tombstone, never `empty_slot`, even when the next slot is
        // empty: another thread whose probe chain ran through this slot may
        // claim that next slot between our look at it and our store, and an
        // empty slot here would then end its chain early: `find` would miss
        // the block (its free uncredited), and the next block at its address
        // would read as re-issued, marking the whole layer as releasing en
        // bloc. No load and store, nor compare-and-swap, of one slot can rule
        // that out, so a used slot never becomes empty again (see `claim`).
        @atomicStore(u64, &entry.key, tombstone, .release);
        return taken;
    }

    fn recordAlloc(region: Region, call: Call, address: u64, size: u64) void {
        if (region.call_sites) region.prefetchLive(liveKey(address, call.layer));
        const calls = region.layerCounts(call.layer).calls(call.parent_layer);
        add(&calls.allocs, 1);
        add(&calls.alloc_bytes, size);
        growLive(&region.layers[call.layer], size);
        if (call.parent_layer == no_layer) add(&region.size_classes[Shard.mine()][sizeClass(size)], 1);
        if (!region.call_sites) return;

        const site_index = region.siteIndex(&call.frames, call.layer, call.parent_layer) orelse {
            lose(&region.losses.sites_dropped, &region.losses.sites_dropped_bytes, size);
            return;
        };
        const site = region.siteCounts(site_index);
        add(&site.allocs, 1);
        add(&site.alloc_bytes, size);
        raiseTo(&site.max_size, size);
        lowerTo(&site.min_size, size);
        region.track(liveKey(address, call.layer), size, site_index);
    }

    fn recordFree(region: Region, layer_index: u64, address: u64, size: u64, parent_layer: u64) void {
        if (region.call_sites) region.prefetchLive(liveKey(address, layer_index));
        const calls = region.layerCounts(layer_index).calls(parent_layer);
        add(&calls.frees, 1);
        add(&calls.free_bytes, size);
        sub(&region.layers[layer_index].live_bytes, size);
        if (!region.call_sites) return;
        const block = region.untrack(liveKey(address, layer_index)) orelse {
            lose(&region.losses.untracked_frees, &region.losses.untracked_free_bytes, size);
            return;
        };
        const site = region.siteCounts(block.site);
        add(&site.frees, 1);
        add(&site.free_bytes, block.size);
    }

    /// A block changed size, in place or moved by a remap (`block` is its live
    /// entry, already taken out of the table, or null if it was not tracked).
    /// The layer counts the difference. The block changes hands as if freed
    /// and allocated again: its old size is credited to its owner and its new
    /// size charged to the site that resized it, so growth in place is
    /// retained where it happens.
    fn recordResized(region: Region, call: Call, block: ?LiveEntry, address: u64, old_size: u64, new_size: u64) void {
        const layer = &region.layers[call.layer];
        const calls = region.layerCounts(call.layer).calls(call.parent_layer);
        if (new_size >= old_size) {
            add(&calls.alloc_bytes, new_size - old_size);
            growLive(layer, new_size - old_size);
        } else {
            add(&calls.free_bytes, old_size - new_size);
            sub(&layer.live_bytes, old_size - new_size);
        }
        if (!region.call_sites) return;
        const resizer = region.siteIndex(&call.frames, call.layer, call.parent_layer);
        if (block) |owned| {
            if (resizer) |index| {
                add(&region.siteCounts(owned.site).free_bytes, owned.size);
                add(&region.siteCounts(index).alloc_bytes, new_size);
                raiseTo(&region.siteCounts(index).max_size, new_size);
                region.track(liveKey(address, call.layer), new_size, index);
            } else {
                // No room for the resizing site: the owner keeps the block.
                const site = region.siteCounts(owned.site);
                if (new_size >= old_size) add(&site.alloc_bytes, new_size - old_size) else add(&site.free_bytes, old_size - new_size);
                region.track(liveKey(address, call.layer), new_size, owned.site);
            }
        } else if (resizer) |index| {
            // An untracked block: only the difference can be charged, and the
            // block stays untracked (its free is credited to nobody).
            const site = region.siteCounts(index);
            if (new_size >= old_size) add(&site.alloc_bytes, new_size - old_size) else add(&site.free_bytes, old_size - new_size);
        }
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
    /// The layer whose hooked call this one was made from, on this thread;
    /// `no_layer` for a call from program code.
    parent_layer: u64,
    frames: [site_depth]u64,
};

/// Which shard of the counters this thread writes. Threads take the shards
/// in turn as they first call an allocator, so two threads share one only in
/// a process with more than `shard_count` threads, and then the atomics keep
/// their counts exact.
const Shard = struct {
    const unassigned = std.math.maxInt(u8);
    threadlocal var index: u8 = unassigned;
    var next: std.atomic.Value(u32) = .init(0);

    fn mine() usize {
        if (index == unassigned) index = @intCast(next.fetchAdd(1, .monotonic) % shard_count);
        return index;
    }
};

/// The layer of the innermost hooked call running on this thread, so that a
/// call an allocator makes to its backing allocator names it as the parent.
threadlocal var current_layer: u64 = no_layer;

const State = enum(u8) { detached, attaching, attached, disabled };
var state: std.atomic.Value(State) = .init(.detached);
var region_storage: Region = undefined;

fn attachedRegion() ?Region {
    switch (state.load(.acquire)) {
        .attached => return if (ForkGuard.intact()) region_storage else detachForkedChild(),
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

/// In a child forked after the attach: the shared mapping came along, but the
/// child's allocations are not the server's, so it counts none of them.
fn detachForkedChild() ?Region {
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
    const pid: u64 = @intCast(std.os.linux.getpid());
    // A program a server execs inherits ZPROF_SHM; the file is the first attacher's.
    if (!Region.claimFile(@ptrCast(bytes.ptr), pid) or !ForkGuard.arm()) {
        std.posix.munmap(bytes);
        return null;
    }
    const limits: Limits = if (std.posix.getenv(limits_env_var)) |text| .parse(text) else .{};
    return Region.init(bytes, pid, limits);
}

/// Tells the process that attached from a child it forks afterwards, at the
/// cost of one load per hooked call: a private page the kernel hands a forked
/// child zeroed (MADV_WIPEONFORK, Linux 4.14), marked in the attaching process.
const ForkGuard = struct {
    var mark: ?*align(std.heap.page_size_min) u64 = null;
    /// Without MADV_WIPEONFORK, the process compares its pid instead.
    var attached_pid: std.os.linux.pid_t = 0;

    fn arm() bool {
        attached_pid = std.os.linux.getpid();
        const page = std.posix.mmap(null, std.heap.page_size_min, std.posix.PROT.READ | std.posix.PROT.WRITE, .{ .TYPE = .PRIVATE, .ANONYMOUS = true }, -1, 0) catch return false;
        std.posix.madvise(page.ptr, page.len, std.posix.MADV.WIPEONFORK) catch {
            std.posix.munmap(page);
            return true;
        };
        const word: *align(std.heap.page_size_min) u64 = @ptrCast(page.ptr);
        word.* = magic;
        mark = word;
        return true;
    }

    fn intact() bool {
        if (mark) |word| return @atomicLoad(u64, word, .monotonic) == magic;
        return std.os.linux.getpid() == attached_pid;
    }
};

/// The stack of the allocation: the API's `ret_addr`, then the return
/// addresses found by following frame pointers from the hook's caller. Zig
/// keeps frame pointers in ReleaseFast on x86-64 and aarch64; the walk stops
/// at anything that does not look like a caller's frame, and never reads
/// outside the current thread's stack: a frame without a frame pointer (C
/// code, a library built without them) leaves any value in that register.
inline fn captureFrames(ret_addr: usize) [site_depth]u64 {
    var frames: [site_depth]u64 = @splat(0);
    frames[0] = ret_addr;
    var frame_pointer = @frameAddress();
    const stack = StackRange.holding(frame_pointer) orelse return frames;
    var depth: usize = 1;
    while (depth < site_depth) : (depth += 1) {
        // A frame record: the caller's frame pointer, then the return address.
        const record: *const [2]usize = @ptrFromInt(frame_pointer);
        if (record[1] == 0) break;
        frames[depth] = record[1];
        const caller_frame = record[0];
        if (caller_frame <= frame_pointer or !stack.holdsRecord(caller_frame)) break;
        frame_pointer = caller_frame;
    }
    return frames;
}

/// The memory a thread's frame records lie in: from the bottom of its stack
/// to the end of its outermost frame record (the thread's entry, where the
/// chain of frame pointers ends). Everything between a running frame and that
/// record is live stack, so a walk that stays inside never reads memory that
/// may be unmapped. Found on a thread's first hooked call, by a walk bounded
/// by the mapping that holds the stack in /proc/self/maps (read through a
/// small buffer on the stack: the hook never allocates); found again only
/// when a walk starts outside it (a frame nearer the entry than the first
/// one saw, or a signal handler's stack). The mapping itself is no bound to
/// keep: the kernel merges it with neighbouring anonymous memory, which a
/// heap may unmap later.
pub const StackRange = struct {
    low: usize,
    high: usize,

    /// Frames the first walk of a thread follows at most to find its entry.
    const max_depth = 1 << 16;

    threadlocal var known: StackRange = .{ .low = 0, .high = 0 };

    /// The range that holds `frame` (a frame of the running thread), or
    /// null when none can be found: then the walk records no callers.
    fn holding(frame: usize) ?StackRange {
        if (known.contains(frame)) return known;
        const mapping = mappingOf(frame) orelse return null;
        if (!mapping.holdsRecord(frame)) return null;
        known = .{ .low = mapping.low, .high = outermostRecord(frame, mapping) + 2 * @sizeOf(usize) };
        return known;
    }

    /// The last frame record of the chain that starts at `frame` and stays inside `mapping`.
    fn outermostRecord(frame: usize, mapping: StackRange) usize {
        var record_address = frame;
        for (0..max_depth) |_| {
            const record: *const [2]usize = @ptrFromInt(record_address);
            if (record[1] == 0 or record[0] <= record_address or !mapping.holdsRecord(record[0])) break;
            record_address = record[0];
        }
        return record_address;
    }

    fn contains(range: StackRange, address: usize) bool {
        return address >= range.low and address < range.high;
    }

    /// Whether a two-word frame record at `address` lies wholly inside.
    pub fn holdsRecord(range: StackRange, address: usize) bool {
        return address % @alignOf(usize) == 0 and address >= range.low and range.high - range.low >= 2 * @sizeOf(usize) and
            address <= range.high - 2 * @sizeOf(usize);
    }
};

/// The readable mapping of this process that holds `address`.
fn mappingOf(address: usize) ?StackRange {
    if (builtin.os.tag != .linux) return null;
    const fd = std.posix.openZ("/proc/self/maps", .{ .ACCMODE = .RDONLY, .CLOEXEC = true }, 0) catch return null;
    defer std.posix.close(fd);
    var buffer: [512]u8 = undefined;
    var line: MapsLine = .{};
    while (true) {
        const n = std.posix.read(fd, &buffer) catch return null;
        if (n == 0) return null;
        for (buffer[0..n]) |byte| {
            const mapping = line.feed(byte) orelse continue;
            if (mapping.readable and mapping.range.contains(address)) return mapping.range;
        }
    }
}

/// Reads /proc/self/maps a byte at a time: `low-high perms ...`, one mapping a line.
pub const MapsLine = struct {
    field: enum { low, high, perms, rest, invalid } = .low,
    low: usize = 0,
    high: usize = 0,
    readable: bool = false,

    const Mapping = struct { range: StackRange, readable: bool };

    /// Takes the next byte; at the end of a well-formed line, the mapping it names.
    pub fn feed(line: *MapsLine, byte: u8) ?Mapping {
        if (byte == '\n') {
            defer line.* = .{};
            if (line.field != .rest or line.high <= line.low) return null;
            return .{ .range = .{ .low = line.low, .high = line.high }, .readable = line.readable };
        }
        switch (line.field) {
            .low, .high => |field| {
                const end: u8 = if (field == .low) '-' else ' ';
                if (byte == end) {
                    line.field = if (field == .low) .high else .perms;
                    return null;
                }
                const digit = std.fmt.charToDigit(byte, 16) catch {
                    line.field = .invalid;
                    return null;
                };
                const value = if (field == .low) &line.low else &line.high;
                value.* = std.math.mul(usize, value.*, 16) catch {
                    line.field = .invalid;
                    return null;
                };
                value.* += digit;
            },
            .perms => {
                line.readable = byte == 'r';
                line.field = .rest;
            },
            .rest, .invalid => {},
        }
        return null;
    }
};

/// The call in progress, or null when its allocator has no room in the layer
/// table (the call is then only counted as lost).
inline fn beginCall(region: Region, a: Allocator, ret_addr: usize, asked_bytes: u64) ?Call {
    const layer = region.layerIndex(@intFromPtr(a.vtable.alloc)) orelse {
        Region.lose(&region.losses.layers_dropped, &region.losses.layers_dropped_bytes, asked_bytes);
        return null;
    };
    const frames = if (region.call_sites) captureFrames(ret_addr) else @as([site_depth]u64, @splat(0));
    return .{ .layer = layer, .parent_layer = current_layer, .frames = frames };
}

const Nesting = struct {
    saved: u64,
    fn enter(layer: u64) Nesting {
        const saved = current_layer;
        current_layer = layer;
        return .{ .saved = saved };
    }
    fn leave(nesting: Nesting) void {
        current_layer = nesting.saved;
    }
};

inline fn countedAlloc(a: Allocator, len: usize, alignment: Alignment, ret_addr: usize) ?[*]u8 {
    const region = attachedRegion() orelse return a.vtable.alloc(a.ptr, len, alignment, ret_addr);
    const call = beginCall(region, a, ret_addr, len) orelse return a.vtable.alloc(a.ptr, len, alignment, ret_addr);
    const nesting: Nesting = .enter(call.layer);
    const result = a.vtable.alloc(a.ptr, len, alignment, ret_addr);
    nesting.leave();
    if (result) |memory| {
        region.recordAlloc(call, @intFromPtr(memory), len);
    } else {
        Region.add(&region.layerCounts(call.layer).calls(call.parent_layer).alloc_failures, 1);
    }
    return result;
}

inline fn countedFree(a: Allocator, memory: []u8, alignment: Alignment, ret_addr: usize) void {
    if (attachedRegion()) |region| {
        if (region.layerIndex(@intFromPtr(a.vtable.alloc))) |layer| {
            // Forget the block before it is released: once released, another
            // thread may be handed the same address.
            region.recordFree(layer, @intFromPtr(memory.ptr), memory.len, current_layer);
            const nesting: Nesting = .enter(layer);
            defer nesting.leave();
            return a.vtable.free(a.ptr, memory, alignment, ret_addr);
        }
        Region.lose(&region.losses.layers_dropped, &region.losses.layers_dropped_bytes, 0);
    }
    a.vtable.free(a.ptr, memory, alignment, ret_addr);
}

inline fn countedResize(a: Allocator, memory: []u8, alignment: Alignment, new_len: usize, ret_addr: usize) bool {
    const region = attachedRegion() orelse return a.vtable.resize(a.ptr, memory, alignment, new_len, ret_addr);
    const call = beginCall(region, a, ret_addr, 0) orelse return a.vtable.resize(a.ptr, memory, alignment, new_len, ret_addr);
    const calls = region.layerCounts(call.layer).calls(call.parent_layer);
    const address = @intFromPtr(memory.ptr);
    if (region.call_sites) region.prefetchLive(Region.liveKey(address, call.layer));
    const nesting: Nesting = .enter(call.layer);
    const resized = a.vtable.resize(a.ptr, memory, alignment, new_len, ret_addr);
    nesting.leave();
    if (!resized) {
        Region.add(&calls.resizes_refused, 1);
        return false;
    }
    Region.add(&calls.resizes_in_place, 1);
    const block = if (region.call_sites) region.untrack(Region.liveKey(address, call.layer)) else null;
    region.recordResized(call, block, address, memory.len, new_len);
    return true;
}

inline fn countedRemap(a: Allocator, memory: []u8, alignment: Alignment, new_len: usize, ret_addr: usize) ?[*]u8 {
    const region = attachedRegion() orelse return a.vtable.remap(a.ptr, memory, alignment, new_len, ret_addr);
    const call = beginCall(region, a, ret_addr, 0) orelse return a.vtable.remap(a.ptr, memory, alignment, new_len, ret_addr);
    const calls = region.layerCounts(call.layer).calls(call.parent_layer);
    const old_address = @intFromPtr(memory.ptr);
    // Taken out first: a moving remap releases the old address inside the call.
    const block = if (region.call_sites) region.untrack(Region.liveKey(old_address, call.layer)) else null;
    const nesting: Nesting = .enter(call.layer);
    const result = a.vtable.remap(a.ptr, memory, alignment, new_len, ret_addr);
    nesting.leave();
    const new_memory = result orelse {
        Region.add(&calls.remaps_refused, 1);
        if (block) |kept| region.track(kept.key, kept.size, kept.site);
        return null;
    };
    const new_address = @intFromPtr(new_memory);
    Region.add(if (new_address == old_address) &calls.remaps_in_place else &calls.remaps_moved, 1);
    region.recordResized(call, block, new_address, memory.len, new_len);
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

/// A zeroed region with the given limits, for the tests below.
fn testRegion(limits: Limits) !struct { Region, []align(8) u8 } {
    const bytes = try std.testing.allocator.alignedAlloc(u8, .@"8", Region.total_size);
    @memset(bytes, 0);
    return .{ Region.init(bytes, 1, limits), bytes };
}

fn testCall(layer: u64, parent_layer: u64, first_frame: u64) Call {
    var frames: [site_depth]u64 = @splat(0);
    frames[0] = first_frame;
    return .{ .layer = layer, .parent_layer = parent_layer, .frames = frames };
}

/// What this thread counted at the site of `call`.
fn siteOf(region: Region, call: Call) *SiteCounts {
    return region.siteCounts(region.siteIndex(&call.frames, call.layer, call.parent_layer).?);
}

test "a freed block is charged to the site that allocated it" {
    const region, const bytes = try testRegion(.{});
    defer std.testing.allocator.free(bytes);
    try std.testing.expectEqual(magic, region.header.magic);

    const layer = region.layerIndex(0x1000).?;
    try std.testing.expectEqual(layer, region.layerIndex(0x1000).?);
    const call = testCall(layer, no_layer, 0x4242);
    region.recordAlloc(call, 0x10000, 48);
    region.recordAlloc(call, 0x20000, 16);
    region.recordFree(layer, 0x10000, 48, no_layer);
    region.recordFree(layer, 0x30000, 8, no_layer); // never seen: counted, not charged

    const site = siteOf(region, call);
    try std.testing.expectEqual(@as(u64, 2), site.allocs);
    try std.testing.expectEqual(@as(u64, 64), site.alloc_bytes);
    try std.testing.expectEqual(@as(u64, 48), site.free_bytes);
    try std.testing.expectEqual(@as(u64, 16), site.min_size);
    try std.testing.expectEqual(@as(u64, 48), site.max_size);
    try std.testing.expectEqual(@as(u64, 1), region.losses.untracked_frees);
    try std.testing.expectEqual(@as(u64, 8), region.losses.untracked_free_bytes);
    try std.testing.expectEqual(@as(u64, 8), region.layers[layer].live_bytes);
    try std.testing.expectEqual(@as(u64, 64), region.layers[layer].peak_live_bytes);
    try std.testing.expectEqual(@as(u64, 1), region.size_classes[Shard.mine()][sizeClass(16)]);
}

test "a resize hands the block to the site that resized it" {
    const region, const bytes = try testRegion(.{});
    defer std.testing.allocator.free(bytes);
    const layer = region.layerIndex(0x1000).?;
    const allocator_site = testCall(layer, no_layer, 7);
    const grower = testCall(layer, no_layer, 8);
    region.recordAlloc(allocator_site, 0x10000, 32);
    region.recordResized(grower, region.untrack(Region.liveKey(0x10000, layer)), 0x10000, 32, 96);
    try std.testing.expectEqual(@as(u64, 96), region.find(Region.liveKey(0x10000, layer)).?.size);
    try std.testing.expectEqual(@as(u64, 96), region.layers[layer].live_bytes);
    // The allocating site holds nothing now; the growing one holds all 96 bytes.
    try std.testing.expectEqual(siteOf(region, allocator_site).alloc_bytes, siteOf(region, allocator_site).free_bytes);
    try std.testing.expectEqual(@as(u64, 96), siteOf(region, grower).alloc_bytes);
    region.recordFree(layer, 0x10000, 96, no_layer);
    try std.testing.expectEqual(@as(u64, 96), siteOf(region, grower).free_bytes);
    try std.testing.expectEqual(@as(u64, 0), region.layers[layer].live_bytes);
    try std.testing.expectEqual(@as(u64, 0), region.losses.untracked_frees);
}

test "an address handed out again without a free is a release en bloc" {
    const region, const bytes = try testRegion(.{});
    defer std.testing.allocator.free(bytes);
    const layer = region.layerIndex(0x1000).?;
    const call = testCall(layer, no_layer, 9);
    // A bump allocator rewound after each request: the same two addresses every time.
    for (0..3) |_| {
        region.recordAlloc(call, 0x50000, 40);
        region.recordAlloc(call, 0x50028, 24);
    }
    const site = siteOf(region, call);
    try std.testing.expectEqual(@as(u64, 64), site.alloc_bytes - site.free_bytes);
    try std.testing.expectEqual(@as(u64, 4), region.layerCounts(layer).reissues);
    try std.testing.expectEqual(@as(u64, 128), region.layerCounts(layer).reissued_bytes);
    try std.testing.expectEqual(@as(u64, 64), region.layers[layer].live_bytes);
}

test "nested calls name their immediate parent layer" {
    const region, const bytes = try testRegion(.{});
    defer std.testing.allocator.free(bytes);
    const arena = region.layerIndex(0x1000).?;
    const gpa = region.layerIndex(0x2000).?;
    const outer: Nesting = .enter(arena);
    const middle: Nesting = .enter(gpa);
    try std.testing.expectEqual(gpa, current_layer);
    middle.leave();
    try std.testing.expectEqual(arena, current_layer);
    outer.leave();
    try std.testing.expectEqual(no_layer, current_layer);
}

test "full tables count what they lost, call by call and byte by byte" {
    const region, const bytes = try testRegion(Limits.parse("layers=1,sites=1,live=2"));
    defer std.testing.allocator.free(bytes);
    try std.testing.expectEqual(@as(u64, 1), region.header.site_capacity);
    const layer = region.layerIndex(0x1000).?;
    try std.testing.expectEqual(null, region.layerIndex(0x2000));
    region.recordAlloc(testCall(layer, no_layer, 1), 0x10000, 8);
    region.recordAlloc(testCall(layer, no_layer, 1), 0x20000, 16);
    region.recordAlloc(testCall(layer, no_layer, 1), 0x30000, 32); // both live slots are taken
    region.recordAlloc(testCall(layer, no_layer, 2), 0x40000, 64); // the one site slot is taken
    try std.testing.expectEqual(@as(u64, 1), region.losses.live_table_full);
    try std.testing.expectEqual(@as(u64, 32), region.losses.live_table_full_bytes);
    try std.testing.expectEqual(@as(u64, 1), region.losses.sites_dropped);
    try std.testing.expectEqual(@as(u64, 64), region.losses.sites_dropped_bytes);
    try std.testing.expectEqual(@as(u64, 4), region.layerCounts(layer).program.allocs);
    try std.testing.expectEqual(Limits{ .layers = 2, .sites = site_capacity, .live = 512 }, Limits.parse("layers=2,live=1000,bogus=3,sites=0"));
    try std.testing.expectEqual(Limits{ .sites = 0, .call_sites = false }, Limits.parse("sites=off"));
}

test "counters only: exact totals, no call site, no block tracked" {
    const region, const bytes = try testRegion(Limits.parse("sites=off"));
    defer std.testing.allocator.free(bytes);
    const layer = region.layerIndex(0x1000).?;
    region.recordAlloc(testCall(layer, no_layer, 1), 0x10000, 48);
    region.recordAlloc(testCall(layer, no_layer, 1), 0x20000, 16);
    region.recordFree(layer, 0x10000, 48, no_layer);
    region.recordResized(testCall(layer, no_layer, 1), null, 0x20000, 16, 40);
    try std.testing.expectEqual(@as(u64, 2), region.layerCounts(layer).program.allocs);
    try std.testing.expectEqual(@as(u64, 40), region.layers[layer].live_bytes);
    try std.testing.expectEqual(@as(u64, 64 + 24), region.layerCounts(layer).program.alloc_bytes);
    try std.testing.expectEqual(@as(u64, 0), region.header.site_capacity);
    try std.testing.expectEqual(std.mem.zeroes(Losses), region.losses.*);
}

test "threads tracking neighbouring small blocks at once lose none" {
    const region, const bytes = try testRegion(Limits.parse("live=65536"));
    defer std.testing.allocator.free(bytes);
    const layer = region.layerIndex(0x1000).?;
    const threads = 4;
    const blocks_per_thread = 8000;
    const Tracker = struct {
        fn run(r: Region, l: u64, first: u64) void {
            // Blocks 2 bytes apart, the threads' blocks interleaved, as a
            // thread-safe allocator hands out neighbouring slots.
            for (0..blocks_per_thread) |i| r.track(Region.liveKey(0x700000 + 2 * (i * threads + first), l), 2, 0);
        }
    };
    var workers: [threads]std.Thread = undefined;
    for (&workers, 0..) |*worker, first| worker.* = try std.Thread.spawn(.{}, Tracker.run, .{ region, layer, first });
    for (workers) |worker| worker.join();
    try std.testing.expectEqual(@as(u64, 0), region.losses.live_table_full);
    for (0..threads * blocks_per_thread) |i| {
        try std.testing.expect(region.find(Region.liveKey(0x700000 + 2 * i, layer)) != null);
    }
}

test "threads allocating, resizing and freeing at reused addresses at once keep every count exact" {
    // A small table, so that the threads' probe chains run through each
    // other's slots all the time; at most 64 blocks live, so that no probe
    // (of at most `live_probe_limit` slots) finds only live blocks.
    const region, const bytes = try testRegion(Limits.parse("live=128"));
    defer std.testing.allocator.free(bytes);
    const layer = region.layerIndex(0x1000).?;
    const threads = 4;
    const blocks_per_thread = 16;
    const steps = 100_000;
    const Churn = struct {
        /// What one thread did, to hold the shim's counts against.
        const Done = struct {
            allocs: u64 = 0,
            frees: u64 = 0,
            alloc_bytes: u64 = 0,
            free_bytes: u64 = 0,
            /// Each block's size, 0 while it is not allocated.
            sizes: [blocks_per_thread]u64 = @splat(0),
        };

        fn address(first: u64, block: u64) u64 {
            // The threads' blocks interleaved, as a thread-safe allocator
            // hands out neighbouring slots; a freed address is handed out again.
            return 0x700000 + 16 * (block * threads + first);
        }

        fn run(r: Region, l: u64, first: u64, done: *Done, started: *std.atomic.Value(u32)) void {
            var prng: std.Random.DefaultPrng = .init(first);
            const random = prng.random();
            // All at once, for as long as each runs.
            _ = started.fetchAdd(1, .acq_rel);
            while (started.load(.acquire) < threads) std.atomic.spinLoopHint();
            for (0..steps) |_| {
                const block = random.uintLessThan(usize, blocks_per_thread);
                const at = address(first, block);
                const size = &done.sizes[block];
                const new_size = 1 + random.uintLessThan(u64, 16);
                if (size.* == 0) {
                    r.recordAlloc(testCall(l, no_layer, 0x55), at, new_size);
                    done.allocs += 1;
                    done.alloc_bytes += new_size;
                } else if (random.uintLessThan(u8, 4) == 0) {
                    // A resize in place, as `countedResize` records it.
                    r.recordResized(testCall(l, no_layer, 0x55), r.untrack(Region.liveKey(at, l)), at, size.*, new_size);
                    if (new_size >= size.*) done.alloc_bytes += new_size - size.* else done.free_bytes += size.* - new_size;
                } else {
                    r.recordFree(l, at, size.*, no_layer);
                    done.frees += 1;
                    done.free_bytes += size.*;
                    size.* = 0;
                    continue;
                }
                size.* = new_size;
            }
        }
    };
    var done: [threads]Churn.Done = @splat(.{});
    var started: std.atomic.Value(u32) = .init(0);
    var workers: [threads]std.Thread = undefined;
    for (&workers, &done, 0..) |*worker, *mine, first| worker.* = try std.Thread.spawn(.{}, Churn.run, .{ region, layer, first, mine, &started });
    for (workers) |worker| worker.join();

    var expected: Churn.Done = .{};
    var live_bytes: u64 = 0;
    for (done, 0..) |thread, first| {
        expected.allocs += thread.allocs;
        expected.frees += thread.frees;
        expected.alloc_bytes += thread.alloc_bytes;
        expected.free_bytes += thread.free_bytes;
        for (thread.sizes, 0..) |size, block| {
            live_bytes += size;
            const entry = region.find(Region.liveKey(Churn.address(first, block), layer));
            if (size == 0) {
                try std.testing.expectEqual(null, entry);
            } else {
                try std.testing.expectEqual(size, entry.?.size);
            }
        }
    }
    const site = region.siteIndex(&testCall(layer, no_layer, 0x55).frames, layer, no_layer).?;
    var counted: Churn.Done = .{};
    var site_counted: Churn.Done = .{};
    var reissues: u64 = 0;
    var reissued_bytes: u64 = 0;
    for (region.layer_counts, region.site_counts) |layer_shard, site_shard| {
        const calls = layer_shard[layer].program;
        counted.allocs += calls.allocs;
        counted.frees += calls.frees;
        counted.alloc_bytes += calls.alloc_bytes;
        counted.free_bytes += calls.free_bytes;
        reissues += layer_shard[layer].reissues;
        reissued_bytes += layer_shard[layer].reissued_bytes;
        site_counted.allocs += site_shard[site].allocs;
        site_counted.frees += site_shard[site].frees;
        site_counted.alloc_bytes += site_shard[site].alloc_bytes;
        site_counted.free_bytes += site_shard[site].free_bytes;
    }
    // No block was lost to a probe chain, so none was released en bloc and
    // the layer's retained bytes are counted.
    try std.testing.expectEqual(std.mem.zeroes(Losses), region.losses.*);
    try std.testing.expectEqual(@as(u64, 0), reissues);
    try std.testing.expectEqual(@as(u64, 0), reissued_bytes);
    try std.testing.expectEqual(expected.allocs, counted.allocs);
    try std.testing.expectEqual(expected.frees, counted.frees);
    try std.testing.expectEqual(expected.alloc_bytes, counted.alloc_bytes);
    try std.testing.expectEqual(expected.free_bytes, counted.free_bytes);
    try std.testing.expectEqual(live_bytes, region.layers[layer].live_bytes);
    try std.testing.expectEqual(expected.allocs, site_counted.allocs);
    try std.testing.expectEqual(expected.frees, site_counted.frees);
    try std.testing.expectEqual(live_bytes, site_counted.alloc_bytes - site_counted.free_bytes);
}

test "threads count on their own shards, and the shards add up exactly" {
    const region, const bytes = try testRegion(.{});
    defer std.testing.allocator.free(bytes);
    const layer = region.layerIndex(0x1000).?;
    const threads = 2 * shard_count + 3; // more threads than shards: some share one
    const blocks_per_thread = 2000;
    const Allocating = struct {
        fn run(r: Region, l: u64, first: u64) void {
            for (0..blocks_per_thread) |i| {
                const address = 0x900000 + 16 * (i * threads + first);
                r.recordAlloc(testCall(l, no_layer, 0x77), address, 16);
                if (i % 2 == 1) r.recordFree(l, address, 16, no_layer);
            }
        }
    };
    var workers: [threads]std.Thread = undefined;
    for (&workers, 0..) |*worker, first| worker.* = try std.Thread.spawn(.{}, Allocating.run, .{ region, layer, first });
    for (workers) |worker| worker.join();
    const site = region.siteIndex(&testCall(layer, no_layer, 0x77).frames, layer, no_layer).?;
    var allocs: u64 = 0;
    var frees: u64 = 0;
    var layer_allocs: u64 = 0;
    var shards_used: usize = 0;
    for (region.site_counts, region.layer_counts) |site_shard, layer_shard| {
        allocs += site_shard[site].allocs;
        frees += site_shard[site].frees;
        layer_allocs += layer_shard[layer].program.allocs;
        if (site_shard[site].allocs != 0) shards_used += 1;
    }
    try std.testing.expectEqual(@as(u64, threads * blocks_per_thread), allocs);
    try std.testing.expectEqual(@as(u64, threads * blocks_per_thread / 2), frees);
    try std.testing.expectEqual(allocs, layer_allocs);
    try std.testing.expectEqual(@as(usize, shard_count), shards_used);
    try std.testing.expectEqual(@as(u64, 16 * threads * blocks_per_thread / 2), region.layers[layer].live_bytes);
    try std.testing.expectEqual(@as(u64, 0), region.losses.untracked_frees);
}

test "the first process to attach owns the counter file" {
    var header: Header = std.mem.zeroes(Header);
    try std.testing.expect(Region.claimFile(&header, 41));
    try std.testing.expect(Region.claimFile(&header, 41));
    // A child that exec'd a program built with the shim, with ZPROF_SHM inherited.
    try std.testing.expect(!Region.claimFile(&header, 42));
    try std.testing.expectEqual(@as(u64, 41), header.attached_pid);
}

test "maps lines give each mapping's range and whether it can be read" {
    const maps =
        \\55d0c0000000-55d0c0021000 r--p 00000000 fe:01 1234 /usr/bin/minikv
        \\7f0000000000-7f0000001000 ---p 00000000 00:00 0
        \\7f0000001000-7f0000081000 rw-p 00000000 00:00 0
        \\not a mapping
        \\7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
        \\
    ;
    var line: MapsLine = .{};
    var found: [4]MapsLine.Mapping = undefined;
    var count: usize = 0;
    for (maps) |byte| if (line.feed(byte)) |mapping| {
        found[count] = mapping;
        count += 1;
    };
    try std.testing.expectEqual(@as(usize, 4), count);
    try std.testing.expect(!found[1].readable);
    try std.testing.expectEqual(StackRange{ .low = 0x7f0000001000, .high = 0x7f0000081000 }, found[2].range);
    try std.testing.expectEqual(StackRange{ .low = 0x7ffd00000000, .high = 0x7ffd00021000 }, found[3].range);
    try std.testing.expect(found[3].readable);
}

test "the frame walk stays inside the thread's stack, up to its entry" {
    const here = @frameAddress();
    const stack = StackRange.holding(here).?;
    try std.testing.expect(stack.contains(here));
    try std.testing.expect(stack.holdsRecord(here));
    try std.testing.expect(!stack.holdsRecord(stack.high - @sizeOf(usize)));
    try std.testing.expect(!stack.holdsRecord(stack.high));
    try std.testing.expect(!stack.holdsRecord(here + 1));
    // The outermost record ends the chain: its caller frame is not inside.
    const outermost: *const [2]usize = @ptrFromInt(stack.high - 2 * @sizeOf(usize));
    try std.testing.expect(outermost[0] <= stack.high - 2 * @sizeOf(usize) or !stack.holdsRecord(outermost[0]));
    const frames = captureFrames(@returnAddress());
    try std.testing.expect(frames[1] != 0);
}

test "a frame pointer that leads off the stack ends the walk" {
    const Walk = struct {
        /// Called with a frame record of its own making as its caller's: a
        /// readable record whose caller frame may not be read.
        noinline fn from(bogus: *[2]usize) [site_depth]u64 {
            const record: *[2]usize = @ptrFromInt(@frameAddress());
            const saved = record.*;
            defer record.* = saved;
            record[0] = @intFromPtr(bogus);
            return captureFrames(0x1);
        }
    };
    // Within 1 MiB above this frame where there is room, as a stray frame pointer might point.
    const pages = for (1..16) |step| {
        const wanted = std.mem.alignForward(usize, @frameAddress() + step * 64 * 1024, std.heap.page_size_min);
        if (std.posix.mmap(@ptrFromInt(wanted), 2 * std.heap.page_size_min, std.posix.PROT.READ | std.posix.PROT.WRITE, .{ .TYPE = .PRIVATE, .ANONYMOUS = true, .FIXED_NOREPLACE = true }, -1, 0)) |found| break found else |_| {}
    } else try std.posix.mmap(null, 2 * std.heap.page_size_min, std.posix.PROT.READ | std.posix.PROT.WRITE, .{ .TYPE = .PRIVATE, .ANONYMOUS = true }, -1, 0);
    defer std.posix.munmap(pages);
    try std.posix.mprotect(@alignCast(pages[std.heap.page_size_min..]), std.posix.PROT.NONE);
    const bogus: *[2]usize = @ptrCast(pages.ptr);
    bogus.* = .{ @intFromPtr(pages.ptr) + std.heap.page_size_min, 0xdead };
    const frames = Walk.from(bogus);
    for (frames) |frame| try std.testing.expect(frame != 0xdead);
}
