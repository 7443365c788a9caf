"""Allocation maths: counter snapshots in, allocations per request out.

A measured window is `after - before`, minus what the idle server allocated
over the same length of time. Layers are the allocator implementations the
shim saw; sites are stacks, attributed to the first frame outside Zig's std.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, fields, replace

from zprof.analysis.symbols import SourceFrame, Symbolizer, is_std_file
from zprof.collect.shim_counters import LayerCounters, ShimSnapshot, SiteCounters

SMALL_BYTES = 64
LARGE_BYTES = 1 << 20
# A function is flagged for small allocations from this many per request.
SMALL_FLAG_PER_REQUEST = 1.0
# Retained bytes per request below this are noise (a hash map growing once).
GROWTH_FLAG_BYTES = 1.0

# Substrings of an allocator's `alloc` symbol, and the layer name zprof gives it.
_LAYER_NAMES = (
    ("arena_allocator", "arena"),
    ("debug_allocator", "debug/GPA"),
    ("GeneralPurposeAllocator", "debug/GPA"),
    ("PageAllocator", "page"),
    ("c_allocator", "c"),
    ("CAllocator", "c"),
    ("raw_c_allocator", "c"),
    ("SmpAllocator", "smp"),
    ("FixedBufferAllocator", "fixed-buffer"),
    ("ThreadSafeAllocator", "thread-safe"),
    ("StackFallbackAllocator", "stack-fallback"),
    ("testing.FailingAllocator", "failing"),
)
ARENA = "arena"


def layer_name(symbol: str | None) -> str:
    if not symbol:
        return "unknown"
    for needle, name in _LAYER_NAMES:
        if needle in symbol:
            return name
    return symbol.rsplit(".", 1)[0]


def _minus(after: object, before: object | None, idle: dict[str, float], names: list[str]) -> dict[str, float]:
    return {
        name: getattr(after, name) - (getattr(before, name) if before else 0) - idle.get(name, 0.0)
        for name in names
    }


def _rows(snapshot: ShimSnapshot, table: str) -> dict[int, object]:
    rows = getattr(snapshot, table)
    return rows if isinstance(rows, dict) else dict(enumerate(rows))


_LAYER_COUNTS = [f.name for f in fields(LayerCounters) if f.name not in ("alloc_fn", "live_bytes", "peak_live_bytes")]
_SITE_COUNTS = ["allocs", "alloc_bytes", "frees", "free_bytes"]


@dataclass(frozen=True)
class Window:
    """Two snapshots around a run, and the idle rate to take off."""

    before: ShimSnapshot
    after: ShimSnapshot
    seconds: float
    idle_before: ShimSnapshot | None = None
    idle_after: ShimSnapshot | None = None
    idle_seconds: float = 0.0

    def _deltas(self, table: str, names: list[str]) -> dict[int, dict[str, float]]:
        """Per row of a table (layers or sites): after - before - idle allowance."""
        after, before = _rows(self.after, table), _rows(self.before, table)
        idle_after = _rows(self.idle_after, table) if self.idle_after else {}
        idle_before = _rows(self.idle_before, table) if self.idle_before else {}
        scale = self.seconds / self.idle_seconds if self.idle_seconds > 0 else 0.0
        deltas = {}
        for index, row in after.items():
            idle = {}
            if scale and index in idle_after:
                idle = {k: v * scale for k, v in _minus(idle_after[index], idle_before.get(index), {}, names).items()}
            deltas[index] = _minus(row, before.get(index), idle, names)
        return deltas

    def layer_deltas(self) -> dict[int, dict[str, float]]:
        return self._deltas("layers", _LAYER_COUNTS)

    def site_deltas(self) -> dict[int, dict[str, float]]:
        return {index: delta for index, delta in self._deltas("sites", _SITE_COUNTS).items()
                if delta["allocs"] > 0 or delta["frees"] > 0}

    def size_class_deltas(self) -> list[float]:
        idle_scale = self.seconds / self.idle_seconds if self.idle_seconds > 0 else 0.0
        result = []
        for index, count in enumerate(self.after.size_classes):
            idle = 0.0
            if self.idle_before and self.idle_after and idle_scale:
                idle = (self.idle_after.size_classes[index] - self.idle_before.size_classes[index]) * idle_scale
            result.append(count - self.before.size_classes[index] - idle)
        return result


@dataclass
class PerRequest:
    allocs: float
    frees: float
    resizes: float
    remaps: float
    bytes_allocated: float
    bytes_retained: float
    bytes_temporary: float
    nested_allocs: float


@dataclass
class LayerUsage:
    layer: str
    symbol: str
    allocs_per_request: float
    nested_allocs_per_request: float
    bytes_per_request: float
    frees_per_request: float
    resizes_per_request: float
    remaps_per_request: float
    live_bytes_growth: int
    peak_live_bytes: int


@dataclass
class SizeClass:
    label: str
    min_bytes: int
    max_bytes: int
    allocs_per_request: float


@dataclass
class CallSite:
    function: str
    file: str | None
    line: int | None
    inlined: list[str]
    layer: str
    nested_in: str | None
    allocs_per_request: float
    bytes_per_request: float
    retained_bytes_per_request: float
    average_bytes: float
    max_bytes: int


@dataclass
class Flag:
    kind: str  # small | large | growth
    function: str
    file: str | None
    line: int | None
    value: float
    message: str


@dataclass
class AllocationAnalysis:
    per_request: PerRequest
    by_layer: list[LayerUsage]
    size_classes: list[SizeClass]
    small_allocs_per_request: float
    large_allocs_per_request: float
    sites: list[CallSite]
    flags: list[Flag]
    losses: dict[str, int] = field(default_factory=dict)


def _size_class_bounds(index: int) -> tuple[int, int]:
    return (0, 0) if index == 0 else (1 << (index - 1), (1 << index) - 1)


def format_bytes(count: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(count) >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count:.0f} B"


def _frame_text(frame: SourceFrame) -> str:
    return f"{frame.function} ({frame.where})"


def is_shim_or_api(frame: SourceFrame) -> bool:
    return bool(frame.file) and (
        frame.file.endswith("/zprof_hooks.zig") or frame.file.endswith("std/mem/Allocator.zig")  # type: ignore[union-attr]
    )


def attribute(site: SiteCounters, locations: dict[int, tuple[SourceFrame, ...]]) -> tuple[SourceFrame, list[str]]:
    """The frame a site is charged to (first outside std) and the frames on the way there."""
    logical: list[SourceFrame] = []
    for address in site.frames[1:]:  # frames[0] is the API's ret_addr, a duplicate of a walked frame
        logical.extend(frame for frame in locations.get(address - 1, ()) if not is_shim_or_api(frame))
    if not logical:
        fallback = locations.get(site.frames[0] - 1, ()) if site.frames else ()
        logical = [frame for frame in fallback if not is_shim_or_api(frame)] or [SourceFrame("?", None, None)]
    for depth, frame in enumerate(logical):
        if not is_std_file(frame.file):
            return frame, [_frame_text(f) for f in logical[:depth]]
    return logical[0], []


def analyse(window: Window, requests: int, symbolizer: Symbolizer, bias: int = 0) -> AllocationAnalysis:
    after = window.after
    names = [layer_name(symbolizer.symbol(layer.alloc_fn - bias)) for layer in after.layers]
    symbols = [symbolizer.symbol(layer.alloc_fn - bias) or hex(layer.alloc_fn) for layer in after.layers]
    before_layers = window.before.layers
    layer_deltas = window.layer_deltas()
    per = 1.0 / max(requests, 1)

    by_layer = []
    for index, delta in layer_deltas.items():
        layer = after.layers[index]
        live_before = before_layers[index].live_bytes if index < len(before_layers) else 0
        by_layer.append(LayerUsage(
            layer=names[index],
            symbol=symbols[index],
            allocs_per_request=delta["allocs"] * per,
            nested_allocs_per_request=delta["nested_allocs"] * per,
            bytes_per_request=delta["alloc_bytes"] * per,
            # Every free this layer served, including its users' backing frees.
            frees_per_request=(delta["frees"] + delta["nested_frees"]) * per,
            resizes_per_request=(delta["resizes_in_place"] + delta["resizes_refused"]) * per,
            remaps_per_request=(delta["remaps_in_place"] + delta["remaps_moved"] + delta["remaps_refused"]) * per,
            live_bytes_growth=_signed(layer.live_bytes) - _signed(live_before),
            peak_live_bytes=layer.peak_live_bytes,
        ))
    by_layer.sort(key=lambda usage: -(usage.allocs_per_request + usage.nested_allocs_per_request))

    # Sites, symbolised (relocated to link-time addresses) and grouped by attributed line.
    deltas = window.site_deltas()
    addresses = {frame - 1 - bias for index in deltas for frame in after.sites[index].frames if frame}
    locations = symbolizer.locate(addresses)
    grouped: dict[tuple, dict] = defaultdict(lambda: {"allocs": 0.0, "alloc_bytes": 0.0, "retained": 0.0,
                                                      "max": 0, "inlined": None})
    for index, delta in deltas.items():
        site = after.sites[index]
        relocated = replace(site, frames=tuple(frame - bias for frame in site.frames))
        frame, chain = attribute(relocated, locations)
        layer = names[site.layer] if site.layer < len(names) else "unknown"
        parent = names[site.parent_layer] if site.parent_layer is not None and site.parent_layer < len(names) else None
        key = (frame.function, frame.file, frame.line, layer, parent)
        entry = grouped[key]
        entry["allocs"] += delta["allocs"]
        entry["alloc_bytes"] += delta["alloc_bytes"]
        if counts_as_retained(layer, parent):
            entry["retained"] += delta["alloc_bytes"] - delta["free_bytes"]
        entry["max"] = max(entry["max"], site.max_size if delta["allocs"] > 0 else 0)
        if entry["inlined"] is None or len(chain) > len(entry["inlined"]):
            entry["inlined"] = chain

    sites = [
        CallSite(
            function=function, file=file, line=line, inlined=entry["inlined"] or [], layer=layer, nested_in=parent,
            allocs_per_request=entry["allocs"] * per,
            bytes_per_request=entry["alloc_bytes"] * per,
            retained_bytes_per_request=entry["retained"] * per,
            average_bytes=entry["alloc_bytes"] / entry["allocs"] if entry["allocs"] > 0 else 0.0,
            max_bytes=entry["max"],
        )
        for (function, file, line, layer, parent), entry in grouped.items()
        if entry["allocs"] > 0.5 or abs(entry["retained"]) > 0
    ]
    sites.sort(key=lambda s: (-s.allocs_per_request, -s.bytes_per_request, s.function))

    program = list(layer_deltas.values())
    allocs = sum(d["allocs"] for d in program)
    # Layer bytes include what allocators took from their backing allocators.
    nested_bytes = sum(d["alloc_bytes"] for i, d in deltas.items() if after.sites[i].parent_layer is not None)
    program_bytes = sum(d["alloc_bytes"] for d in program) - nested_bytes
    retained = sum(s.retained_bytes_per_request for s in sites) / per
    classes = window.size_class_deltas()
    size_classes = [
        SizeClass(_size_label(i), *_size_class_bounds(i), count * per) for i, count in enumerate(classes) if count > 0.5
    ]
    per_request = PerRequest(
        allocs=allocs * per,
        frees=sum(d["frees"] for d in program) * per,
        resizes=sum(d["resizes_in_place"] + d["resizes_refused"] for d in program) * per,
        remaps=sum(d["remaps_in_place"] + d["remaps_moved"] + d["remaps_refused"] for d in program) * per,
        bytes_allocated=program_bytes * per,
        bytes_retained=retained * per,
        bytes_temporary=max(program_bytes - max(retained, 0.0), 0.0) * per,
        nested_allocs=sum(d["nested_allocs"] for d in program) * per,
    )
    small = sum(c * per for i, c in enumerate(classes) if i > 0 and _size_class_bounds(i)[1] < SMALL_BYTES)
    large = sum(c * per for i, c in enumerate(classes) if _size_class_bounds(i)[0] >= LARGE_BYTES)
    losses = {name: value for name, value in after.losses.__dict__.items() if value}
    return AllocationAnalysis(
        per_request=per_request,
        by_layer=by_layer,
        size_classes=size_classes,
        small_allocs_per_request=small,
        large_allocs_per_request=large,
        sites=sites,
        flags=find_flags(sites, per_request),
        losses=losses,
    )


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _size_label(index: int) -> str:
    low, high = _size_class_bounds(index)
    if low < 1024:
        return f"{low}-{high} B" if low != high else f"{low} B"
    return f"{format_bytes(low)}-{format_bytes(high + 1)}"


def counts_as_retained(layer: str, parent: str | None) -> bool:
    """Memory the program holds: its own non-arena blocks, and what arenas hold.

    Arena blocks are released en bloc by a reset, never one by one, and the
    blocks an allocator takes from its backing allocator (GPA slabs from the
    page allocator) would count the same bytes twice.
    """
    if parent is None:
        return layer != ARENA
    return parent == ARENA


def find_flags(sites: list[CallSite], per_request: PerRequest) -> list[Flag]:
    flags: list[Flag] = []
    small: dict[tuple, float] = defaultdict(float)
    for site in sites:
        if site.nested_in is None and site.layer != ARENA and 0 < site.average_bytes < SMALL_BYTES:
            small[(site.function, site.file, site.line)] += site.allocs_per_request
        if site.nested_in is None and site.max_bytes > LARGE_BYTES and site.allocs_per_request > 0:
            flags.append(Flag("large", site.function, site.file, site.line, site.average_bytes,
                              f"{site.allocs_per_request:.2f} allocations of {format_bytes(site.average_bytes)} per "
                              f"request (over {format_bytes(LARGE_BYTES)}) from {site.layer}"))
    for (function, file, line), count in small.items():
        if count >= SMALL_FLAG_PER_REQUEST:
            flags.append(Flag("small", function, file, line, count,
                              f"{count:.1f} allocations under {SMALL_BYTES} B per request from the heap; "
                              "an arena or a stack buffer would avoid them"))
    if per_request.bytes_retained >= GROWTH_FLAG_BYTES:
        keepers = sorted((s for s in sites if s.retained_bytes_per_request > 0),
                         key=lambda s: -s.retained_bytes_per_request)
        for site in keepers[:3]:
            if site.retained_bytes_per_request >= max(GROWTH_FLAG_BYTES, 0.1 * per_request.bytes_retained):
                flags.append(Flag(
                    "growth", site.function, site.file, site.line, site.retained_bytes_per_request,
                    f"keeps {site.retained_bytes_per_request:.1f} B per request that the run did not free"))
    order = {"large": 0, "growth": 1, "small": 2}
    flags.sort(key=lambda flag: (order[flag.kind], -flag.value))
    return flags
