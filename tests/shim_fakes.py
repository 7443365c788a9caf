"""Hand-made shim snapshots for the analysis' unit tests."""

from __future__ import annotations

from dataclasses import fields

from zprof.analysis.symbols import SourceFrame
from zprof.collect.shim_counters import Capacities, LayerCounters, LossCounters, ShimSnapshot, SiteCounters

GPA, ARENA_FN, PAGE, FIXED = 0x1000, 0x2000, 0x3000, 0x4000
SYMBOLS = {GPA: "heap.debug_allocator.DebugAllocator(.{}).alloc", ARENA_FN: "heap.arena_allocator.ArenaAllocator.alloc",
           PAGE: "heap.PageAllocator.alloc", FIXED: "heap.FixedBufferAllocator.alloc"}


class FakeSymbolizer:
    """Stands in for DWARF: each frame address names one function in app.zig."""

    def symbol(self, address: int) -> str | None:
        return SYMBOLS.get(address)

    def locate(self, addresses):
        return {a: (SourceFrame(f"app.fn{a:x}", "/src/app.zig", a % 100),) for a in addresses}


def layer(fn: int, *, live: int = 0, **counts: int) -> LayerCounters:
    """A layer's counters: any field by name (`allocs`, `nested_allocs`, `reissues`, ...), the rest 0."""
    values = {f.name: 0 for f in fields(LayerCounters)}
    values.update(alloc_fn=fn, live_bytes=live, peak_live_bytes=live, **counts)
    return LayerCounters(**values)


def no_losses() -> LossCounters:
    return LossCounters(*([0] * len(fields(LossCounters))))


def snapshot(layers, sites, size_classes=None, time: float = 0.0) -> ShimSnapshot:
    classes = [0] * 64
    for index, count in (size_classes or {}).items():
        classes[index] = count
    return ShimSnapshot(1, layers, sites, classes, no_losses(), Capacities(16, 16384, 1 << 22), time)


def site(layer_index: int, frame: int, allocs: int, size: int, frees: int = 0, parent=None,
         alloc_bytes: int | None = None, free_bytes: int | None = None) -> SiteCounters:
    return SiteCounters(layer_index, parent, (0, frame + 1), allocs,
                        allocs * size if alloc_bytes is None else alloc_bytes, frees,
                        frees * size if free_bytes is None else free_bytes, size, size)
