"""Reading the shim's shared counter file while the server runs.

The layout is defined by `zig_hooks/zprof_hooks.zig`; the hook writes the
header (with every offset and size) when it attaches, so this side only
mirrors the field order of each record and checks the layout version. The
counters every call writes are kept per shard (a thread writes one shard), and
a snapshot adds the shards up.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from dataclasses import dataclass, fields
from pathlib import Path

from zprof.errors import EXIT_TARGET, ZprofError

MAGIC = 0x314853464F52505A  # "ZPROFSH1"
LAYOUT_VERSION = 3
# Sparse: only the pages the hook touches use memory or disk.
FILE_SIZE = 256 * 1024 * 1024
NO_LAYER = (1 << 64) - 1
# Settling: the server is quiet once its allocators saw no call for this long.
SETTLE_QUIET_S = 0.1
SETTLE_POLL_S = 0.02
SETTLE_LIMIT_S = 2.0


@dataclass(frozen=True)
class Header:
    """`Header` in zprof_hooks.zig, field for field."""

    magic: int
    version: int
    header_size: int
    total_size: int
    attached_pid: int
    layer_capacity: int
    site_capacity: int
    site_depth: int
    live_capacity: int
    size_class_count: int
    shard_count: int
    losses_offset: int
    size_classes_offset: int
    layer_fns_offset: int
    layers_offset: int
    layer_counts_offset: int
    sites_offset: int
    site_counts_offset: int
    live_offset: int
    layer_size: int
    layer_counts_size: int
    site_size: int
    site_counts_size: int
    live_entry_size: int
    size_classes_stride: int
    layer_counts_stride: int
    site_counts_stride: int


@dataclass(frozen=True)
class LayerCounters:
    """One allocator layer: its `alloc_fn`, then `LayerCounts` in zprof_hooks.zig summed over
    the shards and flattened (the calls from program code, then, as `nested_*`, the calls
    other allocators made to this one), then its `Layer` (live bytes) and its releases en bloc."""

    alloc_fn: int
    allocs: int
    alloc_bytes: int  # with what blocks grew by in resizes and remaps
    alloc_failures: int
    frees: int
    free_bytes: int  # with what blocks shrank by in resizes and remaps
    resizes_in_place: int
    resizes_refused: int
    remaps_in_place: int
    remaps_moved: int
    remaps_refused: int
    nested_allocs: int
    nested_alloc_bytes: int
    nested_alloc_failures: int
    nested_frees: int
    nested_free_bytes: int
    nested_resizes_in_place: int
    nested_resizes_refused: int
    nested_remaps_in_place: int
    nested_remaps_moved: int
    nested_remaps_refused: int
    live_bytes: int
    peak_live_bytes: int
    # Blocks handed out again at a live block's address without a free: released en bloc.
    reissues: int
    reissued_bytes: int


@dataclass(frozen=True)
class SiteCounters:
    layer: int
    parent_layer: int | None
    frames: tuple[int, ...]
    allocs: int
    alloc_bytes: int
    frees: int
    free_bytes: int
    min_size: int
    max_size: int


@dataclass(frozen=True)
class LossCounters:
    """`Losses` in zprof_hooks.zig: what the shim's tables could not hold, as calls and bytes."""

    untracked_frees: int
    untracked_free_bytes: int
    live_table_full: int
    live_table_full_bytes: int
    sites_dropped: int
    sites_dropped_bytes: int
    layers_dropped: int
    layers_dropped_bytes: int


@dataclass(frozen=True)
class Capacities:
    """How many layers, sites and live blocks the shim's tables hold in this run."""

    layers: int
    sites: int
    live: int


@dataclass(frozen=True)
class ShimSnapshot:
    pid: int
    layers: list[LayerCounters]
    sites: dict[int, SiteCounters]
    size_classes: list[int]
    losses: LossCounters
    capacities: Capacities
    time: float = 0.0  # time.monotonic() when it was read


def activity(snapshot: ShimSnapshot) -> int:
    """How many allocator calls the snapshot has seen, of every kind."""
    return sum(layer.allocs + layer.nested_allocs + layer.frees + layer.nested_frees + layer.resizes_in_place
               + layer.nested_resizes_in_place + layer.remaps_in_place + layer.remaps_moved
               + layer.nested_remaps_in_place + layer.nested_remaps_moved for layer in snapshot.layers)


def create_counter_file(path: Path) -> Path:
    """An empty, sparse counter file for the hook to attach to."""
    with open(path, "wb") as handle:
        handle.truncate(FILE_SIZE)
    return path


# `Calls` in zprof_hooks.zig: ten counters, for program code and again for nested calls.
CALLS_FIELDS = 10
LAYER_COUNTS_FIELDS = 2 * CALLS_FIELDS + 2  # then reissues, reissued_bytes
SITE_COUNTS_FIELDS = 6  # allocs, alloc_bytes, frees, free_bytes, min_size, max_size
SITE_IDENTITY_FIELDS = 4  # key, ready, layer, parent_layer; then the frames


def _block(view: mmap.mmap, offset: int, count: int, size: int) -> bytes:
    return view[offset : offset + count * size]


def _per_shard(view: mmap.mmap, count: int, offset: int, stride: int, shards: range) -> list[tuple[int, ...]]:
    """The record of `count` counters at `offset` in the first shard's copy of its table, from every shard."""
    return [struct.unpack_from(f"<{count}Q", view, offset + shard * stride) for shard in shards]


def _sum_columns(rows: list[tuple[int, ...]]) -> list[int]:
    """Adds up per-shard rows column by column, as the hook's wrapping u64 counters do."""
    return [sum(column) & 0xFFFF_FFFF_FFFF_FFFF for column in zip(*rows, strict=True)]


def _n_fields(cls: type) -> int:
    return len(fields(cls))


class ShimCounters:
    """A read-only view of the counter file of one server run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._map: mmap.mmap | None = None
        self._header: Header | None = None

    def attached(self) -> bool:
        """True once the hook has written a valid header."""
        if self._map is None:
            try:
                with open(self.path, "rb") as handle:
                    if os.fstat(handle.fileno()).st_size < 8:
                        return False
                    self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            except FileNotFoundError:
                return False
        (magic,) = struct.unpack_from("<Q", self._map, 0)
        if magic == 0:
            return False
        if magic != MAGIC:
            raise self._corrupt(f"it starts with {magic:#x}, not zprof's magic number")
        self._header = Header(*struct.unpack_from(f"<{_n_fields(Header)}Q", self._map, 0))
        self._check_layout()
        return True

    def _corrupt(self, why: str) -> ZprofError:
        return ZprofError(f"the shim's counter file {self.path} is corrupt or truncated: {why}", exit_code=EXIT_TARGET)

    def _check_layout(self) -> None:
        header = self._header
        assert header is not None
        if header.version != LAYOUT_VERSION:
            raise self._corrupt(
                f"layout version {header.version}, this zprof reads {LAYOUT_VERSION} (rebuild the target)"
            )
        expected = {
            "layer_size": 64,
            "layer_counts_size": LAYER_COUNTS_FIELDS * 8,
            "site_size": (SITE_IDENTITY_FIELDS + header.site_depth) * 8,
            "site_counts_size": SITE_COUNTS_FIELDS * 8,
            "live_entry_size": 24,
        }
        for name, size in expected.items():
            if getattr(header, name) != size:
                raise self._corrupt(f"{name} is {getattr(header, name)}, expected {size}")
        assert self._map is not None
        if len(self._map) < header.total_size or os.path.getsize(self.path) < header.total_size:
            raise self._corrupt(f"it has {len(self._map)} bytes, the header says {header.total_size}")

    def snapshot(self) -> ShimSnapshot:
        if not self.attached():
            raise ZprofError(
                "the server never attached to zprof's counter file",
                detail="The binary was not built by zprof with the shim (run it through `zprof allocs`).",
                exit_code=EXIT_TARGET,
            )
        assert self._map is not None
        header, view = self._header, self._map
        assert header is not None
        taken = time.monotonic()
        try:
            losses = LossCounters(*struct.unpack_from(f"<{_n_fields(LossCounters)}Q", view, header.losses_offset))
            shards = range(header.shard_count)
            size_classes = _sum_columns(_per_shard(view, header.size_class_count, header.size_classes_offset,
                                                   header.size_classes_stride, shards))
            layers = self._layers(header, view, shards)
            sites = self._sites(header, view, shards)
        except (struct.error, ValueError) as error:
            raise self._corrupt(str(error)) from error
        return ShimSnapshot(
            pid=header.attached_pid, layers=layers, sites=sites, size_classes=size_classes, losses=losses,
            capacities=Capacities(header.layer_capacity, header.site_capacity, header.live_capacity), time=taken,
        )

    @staticmethod
    def _layers(header: Header, view: mmap.mmap, shards: range) -> list[LayerCounters]:
        # Layers fill from the front and are never removed, so index == position.
        alloc_fns = struct.unpack_from(f"<{header.layer_capacity}Q", view, header.layer_fns_offset)
        layers = []
        for index, alloc_fn in enumerate(alloc_fns):
            if alloc_fn == 0:
                break
            counts = _sum_columns(_per_shard(view, LAYER_COUNTS_FIELDS,
                                             header.layer_counts_offset + index * header.layer_counts_size,
                                             header.layer_counts_stride, shards))
            layer_offset = header.layers_offset + index * header.layer_size
            live_bytes, peak_live_bytes = struct.unpack_from("<2Q", view, layer_offset)
            calls, reissues = counts[: 2 * CALLS_FIELDS], counts[2 * CALLS_FIELDS :]
            layers.append(LayerCounters(alloc_fn, *calls, live_bytes, peak_live_bytes, *reissues))
        return layers

    @staticmethod
    def _sites(header: Header, view: mmap.mmap, shards: range) -> dict[int, SiteCounters]:
        sites: dict[int, SiteCounters] = {}
        site_block = _block(view, header.sites_offset, header.site_capacity, header.site_size)
        for index, record in enumerate(struct.iter_unpack(f"<{header.site_size // 8}Q", site_block)):
            key, ready, layer, parent = record[:SITE_IDENTITY_FIELDS]
            if key == 0 or ready != 1:
                continue
            per_shard = _per_shard(view, SITE_COUNTS_FIELDS,
                                   header.site_counts_offset + index * header.site_counts_size,
                                   header.site_counts_stride, shards)
            allocs, alloc_bytes, frees, free_bytes = _sum_columns([row[:4] for row in per_shard])
            # A shard's minimum is 0 until it counted an allocation at the site.
            minimums = [row[4] for row in per_shard if row[4]]
            sites[index] = SiteCounters(
                layer=layer,
                parent_layer=None if parent == NO_LAYER else parent,
                frames=tuple(frame for frame in record[SITE_IDENTITY_FIELDS:] if frame),
                allocs=allocs,
                alloc_bytes=alloc_bytes,
                frees=frees,
                free_bytes=free_bytes,
                min_size=min(minimums, default=0),
                max_size=max(row[5] for row in per_shard),
            )
        return sites

    def settled_snapshot(self, quiet_s: float = SETTLE_QUIET_S, limit_s: float = SETTLE_LIMIT_S,
                         idle_burst: int = 0) -> ShimSnapshot:
        """A snapshot once the server stopped calling its allocators for `quiet_s` (or after
        `limit_s`): a server may free a request's buffers just after it sent the reply. Calls no more than
        `idle_burst` between two looks are the idle server's own (a timer's tick), and count as quiet."""
        deadline = time.monotonic() + limit_s
        previous = self.snapshot()
        quiet_since = previous.time
        while previous.time < deadline:
            time.sleep(SETTLE_POLL_S)
            current = self.snapshot()
            if activity(current) - activity(previous) > idle_burst:
                quiet_since = current.time
            elif current.time - quiet_since >= quiet_s:
                return current
            previous = current
        return previous

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
