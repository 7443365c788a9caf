"""Allocation maths: counter snapshots in, allocations per request out.

A measured window is `after - before`, minus what the idle server allocated
over the same length of time. Layers are the allocator implementations the
shim saw; sites are stacks, attributed to the first frame of the project's own
code (outside Zig's std and the project's dependencies).

Retained bytes are the bytes the program holds at the end of a window that it
did not hold at its start, counted once whatever the shape of its allocators
(`RetainedRule`): a program's own blocks from an allocator that frees block by
block, and the blocks an allocator that releases en bloc (an arena, a
`FixedBufferAllocator`, a `stackFallback` buffer, a bump allocator) took from
the allocator behind it. Never the blocks handed out by an en-bloc allocator
(it gives them back all at once, without a free), and never the blocks a
block-by-block allocator takes from its own backing allocator (GPA slabs from
the page allocator): both would count the same bytes twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace

from zprof.analysis.symbols import SourceFrame, Symbolizer, is_library_file, is_std_file
from zprof.collect.shim_counters import LayerCounters, LossCounters, ShimSnapshot, SiteCounters
from zprof.model.allocs import (
    RETAINED,
    TEMPORARY,
    AllocationAnalysis,
    CallSite,
    Flag,
    Keys,
    LayerUsage,
    PerRequest,
    SizeClass,
)
from zprof.model.common import Loss

SMALL_BYTES = 64
LARGE_BYTES = 1 << 20
# A function is flagged for small allocations from this many per request.
SMALL_FLAG_PER_REQUEST = 1.0
# Retained bytes per request below this are noise (a hash map growing once).
GROWTH_FLAG_BYTES = 1.0
# A site that retains more than this share of the bytes it allocates keeps blocks (when blocks were not counted).
KEPT_SHARE = 0.01
# A large allocation is flagged when it recurs, from this many per request (not a table that grew once).
LARGE_FLAG_PER_REQUEST = 0.01

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


@dataclass(frozen=True)
class RetainedRule:
    """Which blocks count as held by the program (see the module's docstring).

    A layer releases en bloc when it is an arena, or when the shim saw it hand
    out a live block's address again without a free: the signal every arena,
    rewound buffer and bump allocator gives after its first reset.
    """

    en_bloc: frozenset[int]

    @classmethod
    def of(cls, snapshot: ShimSnapshot, names: list[str]) -> RetainedRule:
        return cls(frozenset(index for index, layer in enumerate(snapshot.layers)
                             if names[index] == ARENA or layer.reissues > 0))

    def counts(self, layer: int, parent_layer: int | None) -> bool:
        if layer in self.en_bloc:
            return False
        return parent_layer is None or parent_layer in self.en_bloc


_LAYER_COUNTS = [f.name for f in fields(LayerCounters) if f.name not in ("alloc_fn", "live_bytes", "peak_live_bytes")]
_SITE_COUNTS = ["allocs", "alloc_bytes", "frees", "free_bytes"]
_LOSS_COUNTS = [f.name for f in fields(LossCounters)]


def _rows(snapshot: ShimSnapshot, table: str) -> dict[int, object]:
    rows = getattr(snapshot, table)
    return rows if isinstance(rows, dict) else dict(enumerate(rows))


def _difference(end: object, start: object | None, names: list[str]) -> dict[str, float]:
    return {name: getattr(end, name) - (getattr(start, name) if start is not None else 0) for name in names}


# How much a timer's rate may shift while the server is busy, as a share of the idle work taken off a run.
IDLE_RATE_SHIFT = 0.25


def allocation_calls(snapshot: ShimSnapshot) -> int:
    """Allocations of every layer, the program's and the allocators' own (nested)."""
    return sum(layer.allocs + layer.nested_allocs for layer in snapshot.layers)


@dataclass(frozen=True)
class Window:
    """Snapshots around a measured run: before it, halfway, after it (once the
    server settled), and an idle stretch whose rate is taken off every span in
    proportion to its length. `origin` is before the warm-up and `flushed` after
    a FLUSHALL that followed the run: what the program holds then, that it did
    not hold at the origin, is neither temporary nor stored data."""

    before: ShimSnapshot
    after: ShimSnapshot
    idle_before: ShimSnapshot | None = None
    idle_after: ShimSnapshot | None = None
    middle: ShimSnapshot | None = None
    origin: ShimSnapshot | None = None
    flushed: ShimSnapshot | None = None
    # The most allocations (every layer) the idle server made between two looks a few ms apart: one burst of
    # its idle work (a timer's tick), which the idle window and the run may each catch once more or less.
    idle_burst: int = 0

    def idle_resolution(self, requests: int) -> float:
        """How far a count per request may be off through the idle work: a burst more or fewer in the run
        and in the idle window (scaled to the run's length), and the idle rate itself, which a busy server's
        timer need not keep (IDLE_RATE_SHIFT of what is taken off)."""
        if not self.idle_burst or not requests or not self.idle_before or not self.idle_after:
            return 0.0
        scale = self.seconds / self.idle_seconds if self.idle_seconds > 0 else 0.0
        taken_off = (allocation_calls(self.idle_after) - allocation_calls(self.idle_before)) * scale
        return (self.idle_burst * (1 + scale) + IDLE_RATE_SHIFT * taken_off) / requests

    @property
    def seconds(self) -> float:
        return self.after.time - self.before.time

    @property
    def idle_seconds(self) -> float:
        return self.idle_after.time - self.idle_before.time if self.idle_before and self.idle_after else 0.0

    def deltas(self, table: str, names: list[str], start: ShimSnapshot | None = None,
               end: ShimSnapshot | None = None) -> dict[int, dict[str, float]]:
        """Per row of a table (layers or sites): end - start - the idle allowance for that span."""
        start, end = start or self.before, end or self.after
        scale = (end.time - start.time) / self.idle_seconds if self.idle_seconds > 0 else 0.0
        idle_rows = _rows(self.idle_after, table) if self.idle_after and scale else {}
        idle_before = _rows(self.idle_before, table) if self.idle_before else {}
        begun = _rows(start, table)
        result = {}
        for index, row in _rows(end, table).items():
            delta = _difference(row, begun.get(index), names)
            if index in idle_rows:
                idle = _difference(idle_rows[index], idle_before.get(index), names)
                delta = {name: value - idle[name] * scale for name, value in delta.items()}
            result[index] = delta
        return result

    def layer_deltas(self) -> dict[int, dict[str, float]]:
        return self.deltas("layers", _LAYER_COUNTS)

    def site_deltas(self, start: ShimSnapshot | None = None, end: ShimSnapshot | None = None) -> dict[int, dict]:
        """Sites where anything moved: allocations, frees, or bytes alone (a block resized in place)."""
        return {index: delta for index, delta in self.deltas("sites", _SITE_COUNTS, start, end).items()
                if any(abs(value) > 1e-9 for value in delta.values())}

    def size_class_deltas(self) -> list[float]:
        scale = self.seconds / self.idle_seconds if self.idle_seconds > 0 else 0.0
        result = []
        for index, count in enumerate(self.after.size_classes):
            idle = 0.0
            if self.idle_before and self.idle_after and scale:
                idle = (self.idle_after.size_classes[index] - self.idle_before.size_classes[index]) * scale
            result.append(count - self.before.size_classes[index] - idle)
        return result


def _size_class_bounds(index: int) -> tuple[int, int]:
    return (0, 0) if index == 0 else (1 << (index - 1), (1 << index) - 1)


def _frame_text(frame: SourceFrame) -> str:
    return f"{frame.function} ({frame.where})"


def is_shim_or_api(frame: SourceFrame) -> bool:
    return bool(frame.file) and (
        frame.file.endswith("/zprof_hooks.zig") or frame.file.endswith("std/mem/Allocator.zig")  # type: ignore[union-attr]
    )


def attribute(site: SiteCounters, locations: dict[int, tuple[SourceFrame, ...]]) -> tuple[SourceFrame, list[str]]:
    """The frame a site is charged to (the first of the project's own, outside std and the packages it depends
    on: a dependency's allocation is the project's call into it) and the frames on the way there."""
    logical: list[SourceFrame] = []
    for address in site.frames[1:]:  # frames[0] is the API's ret_addr, a duplicate of a walked frame
        logical.extend(frame for frame in locations.get(address - 1, ()) if not is_shim_or_api(frame))
    if not logical:
        fallback = locations.get(site.frames[0] - 1, ()) if site.frames else ()
        logical = [frame for frame in fallback if not is_shim_or_api(frame)] or [SourceFrame("?", None, None)]
    # A stack with no project frame (a dependency's own thread) is charged to the dependency.
    for library in (is_library_file, is_std_file):
        for depth, frame in enumerate(logical):
            if not library(frame.file):
                return frame, [_frame_text(f) for f in logical[:depth]]
    return logical[0], []


class SiteNames:
    """Symbolised call sites of one snapshot: layer names, the retained rule, and each site's line."""

    def __init__(self, snapshot: ShimSnapshot, symbolizer: Symbolizer, bias: int,
                 sites: Iterable[int] | None = None) -> None:
        self.snapshot, self.bias = snapshot, bias
        self.symbols = [symbolizer.symbol(layer.alloc_fn - bias) or hex(layer.alloc_fn) for layer in snapshot.layers]
        self.layers = [layer_name(symbolizer.symbol(layer.alloc_fn - bias)) for layer in snapshot.layers]
        self.rule = RetainedRule.of(snapshot, self.layers)
        wanted = snapshot.sites if sites is None else sites
        self.locations = symbolizer.locate(
            {frame - 1 - bias for index in wanted for frame in snapshot.sites[index].frames if frame})

    def layer(self, index: int | None) -> str | None:
        return self.layers[index] if index is not None and index < len(self.layers) else None

    def counts(self, site: SiteCounters) -> bool:
        return self.rule.counts(site.layer, site.parent_layer)

    def attribute(self, site: SiteCounters) -> tuple[SourceFrame, list[str]]:
        return attribute(replace(site, frames=tuple(frame - self.bias for frame in site.frames)), self.locations)

    def key(self, site: SiteCounters) -> tuple[str, str | None, int | None, str, str | None]:
        frame, _ = self.attribute(site)
        layer = self.layer(site.layer) or "unknown"
        return frame.function, frame.file, frame.line, layer, self.layer(site.parent_layer)


def _retained(deltas: dict[int, dict], names: SiteNames) -> dict[int, float]:
    return {index: delta["alloc_bytes"] - delta["free_bytes"] for index, delta in deltas.items()
            if names.counts(names.snapshot.sites[index])}


def analyse(window: Window, requests: int, symbolizer: Symbolizer, bias: int = 0,
            halves: tuple[int, int] | None = None, keys: Keys | None = None,
            warmup: int = 0) -> AllocationAnalysis:
    """`halves` are the requests before and after `window.middle`; `warmup` the requests between
    `window.origin` and `window.before`."""
    after = window.after
    deltas = window.site_deltas()
    kept_deltas = window.site_deltas(window.origin, window.flushed) if window.origin and window.flushed else None
    names = SiteNames(window.flushed or after, symbolizer, bias, {*deltas, *(kept_deltas or {})})
    per = 1.0 / max(requests, 1)
    per_kept = 1.0 / max(requests + warmup, 1)
    layer_deltas = window.layer_deltas()

    by_layer = []
    for index, delta in layer_deltas.items():
        layer = after.layers[index]
        live_before = window.before.layers[index].live_bytes if index < len(window.before.layers) else 0
        by_layer.append(LayerUsage(
            layer=names.layers[index],
            symbol=names.symbols[index],
            allocs_per_request=delta["allocs"] * per,
            nested_allocs_per_request=delta["nested_allocs"] * per,
            # Every byte and free this layer served, its users' backing calls included.
            bytes_per_request=(delta["alloc_bytes"] + delta["nested_alloc_bytes"]) * per,
            frees_per_request=(delta["frees"] + delta["nested_frees"]) * per,
            resizes_per_request=sum(delta[f"{kind}resizes_{how}"] for kind in ("", "nested_")
                                    for how in ("in_place", "refused")) * per,
            remaps_per_request=sum(delta[f"{kind}remaps_{how}"] for kind in ("", "nested_")
                                   for how in ("in_place", "moved", "refused")) * per,
            live_bytes_growth=_signed(layer.live_bytes) - _signed(live_before),
            peak_live_bytes=layer.peak_live_bytes,
            releases_en_bloc=index in names.rule.en_bloc,
            releases_per_request=delta["reissues"] * per,
        ))
    by_layer.sort(key=lambda usage: -(usage.allocs_per_request + usage.nested_allocs_per_request))

    retained = _retained(deltas, names)
    halves_retained = None
    if window.middle is not None and halves is not None:
        halves_retained = (_retained(window.site_deltas(window.before, window.middle), names),
                           _retained(window.site_deltas(window.middle, window.after), names))
    kept = _retained(kept_deltas, names) if kept_deltas is not None else None

    grouped: dict[tuple, dict] = defaultdict(lambda: {"allocs": 0.0, "alloc_bytes": 0.0, "retained": 0.0, "max": 0,
                                                      "inlined": None, "halves": [0.0, 0.0], "kept": 0.0, "held": 0})
    # Counted over the site's whole life, at the end of the run (before any FLUSHALL): blocks still held.
    at_end: dict[int, SiteCounters] = _rows(after, "sites")  # type: ignore[assignment]
    for index in {*deltas, *(kept or {})}:
        site = names.snapshot.sites[index]
        delta = deltas.get(index, {"allocs": 0.0, "alloc_bytes": 0.0})
        key = names.key(site)
        entry = grouped[key]
        if (ended := at_end.get(index)) is not None:
            entry["held"] += max(ended.allocs - ended.frees, 0)
        entry["allocs"] += delta["allocs"]
        entry["alloc_bytes"] += delta["alloc_bytes"]
        entry["retained"] += retained.get(index, 0.0)
        if halves_retained is not None:
            entry["halves"][0] += halves_retained[0].get(index, 0.0)
            entry["halves"][1] += halves_retained[1].get(index, 0.0)
        if kept is not None:
            entry["kept"] += kept.get(index, 0.0)
        entry["max"] = max(entry["max"], site.max_size)
        _, chain = names.attribute(site)
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
            retained_halves=(entry["halves"][0] / max(halves[0], 1), entry["halves"][1] / max(halves[1], 1))
            if halves_retained is not None and halves is not None else None,
            kept_bytes_per_request=entry["kept"] * per_kept if kept is not None else None,
            held_blocks=entry["held"],
        )
        for (function, file, line, layer, parent), entry in grouped.items()
        if entry["allocs"] > 0.5 or abs(entry["retained"]) > 0 or abs(entry["kept"]) >= 1
    ]
    # Ties in the figures are ordered by place, so that two runs print the same table.
    sites.sort(key=lambda s: (-s.allocs_per_request, -s.bytes_per_request, s.function, s.file or "", s.line or 0,
                              s.layer, s.nested_in or ""))

    program = list(layer_deltas.values())
    program_bytes = sum(d["alloc_bytes"] for d in program)
    retained_total = sum(retained.values())
    classes = window.size_class_deltas()
    size_classes = [
        SizeClass(*_size_class_bounds(i), count * per) for i, count in enumerate(classes) if count > 0.5
    ]
    per_request = PerRequest(
        allocs=sum(d["allocs"] for d in program) * per,
        frees=sum(d["frees"] for d in program) * per,
        resizes=sum(d["resizes_in_place"] + d["resizes_refused"] for d in program) * per,
        remaps=sum(d["remaps_in_place"] + d["remaps_moved"] + d["remaps_refused"] for d in program) * per,
        bytes_allocated=program_bytes * per,
        bytes_retained=retained_total * per,
        bytes_temporary=max(program_bytes - max(retained_total, 0.0), 0.0) * per,
        nested_allocs=sum(d["nested_allocs"] for d in program) * per,
    )
    small = sum(c * per for i, c in enumerate(classes) if i > 0 and _size_class_bounds(i)[1] < SMALL_BYTES)
    large = sum(c * per for i, c in enumerate(classes) if _size_class_bounds(i)[0] >= LARGE_BYTES)
    return AllocationAnalysis(
        per_request=per_request,
        by_layer=by_layer,
        size_classes=size_classes,
        small_allocs_per_request=small,
        large_allocs_per_request=large,
        sites=sites,
        flags=find_flags(sites, per_request),
        losses=losses_of(window.after, window.before),
        kept_bytes_per_request=sum(kept.values()) * per_kept if kept is not None else None,
        keys=keys,
        retained_bytes_per_new_key=retained_total / keys.new if keys is not None and keys.new > 0 else None,
        idle_resolution=window.idle_resolution(requests),
    )


def losses_of(end: ShimSnapshot, start: ShimSnapshot | None = None) -> list[Loss]:
    """What the shim's tables could not hold between two snapshots (since it attached, without `start`)."""
    deltas = {name: int(value) for name, value in _difference(end.losses, start.losses if start else None,
                                                              _LOSS_COUNTS).items()}
    capacities = end.capacities
    tables = (("layers", "layers_dropped", "layers_dropped_bytes", capacities.layers),
              ("sites", "sites_dropped", "sites_dropped_bytes", capacities.sites),
              ("live", "live_table_full", "live_table_full_bytes", capacities.live),
              ("untracked-frees", "untracked_frees", "untracked_free_bytes", None))
    return [Loss(table, deltas[count], deltas[size], capacity)
            for table, count, size, capacity in tables if deltas[count] > 0]


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def is_growth(site: CallSite, total_kept: float) -> bool:
    """Bytes a site keeps with every request: retained in both halves of the run (a hash
    map that doubled once grows in one half only) and, when FLUSHALL was answered, not
    given back by it (stored data is)."""
    kept = site.kept_bytes_per_request if site.kept_bytes_per_request is not None else site.retained_bytes_per_request
    if kept < max(GROWTH_FLAG_BYTES, 0.1 * total_kept):
        return False
    return site.retained_halves is None or min(site.retained_halves) >= GROWTH_FLAG_BYTES / 2


def keeps_blocks(site: CallSite) -> bool:
    """The server keeps some of the site's blocks past their request: it still held some at the end of the run
    (a block freed within its request is gone by then). Where that was not counted, from the bytes retained with
    the run, which miss stored values that replace others (a new value freed the old one)."""
    if site.held_blocks is not None:
        return site.held_blocks >= 1
    return site.retained_bytes_per_request > KEPT_SHARE * site.bytes_per_request


def find_flags(sites: list[CallSite], per_request: PerRequest) -> list[Flag]:
    flags: list[Flag] = []
    small: dict[tuple, float] = defaultdict(float)
    small_kept: set[tuple] = set()
    for site in sites:
        if site.nested_in is None and site.layer != ARENA and 0 < site.average_bytes < SMALL_BYTES:
            small[(site.function, site.file, site.line)] += site.allocs_per_request
            if keeps_blocks(site):
                small_kept.add((site.function, site.file, site.line))
        recurring = site.allocs_per_request >= LARGE_FLAG_PER_REQUEST
        if site.nested_in is None and site.max_bytes > LARGE_BYTES and recurring:
            flags.append(Flag("large", site.function, site.file, site.line, site.average_bytes, site.layer))
    for place, count in small.items():
        if count >= SMALL_FLAG_PER_REQUEST:
            # What fits small blocks follows their lifetime: a stack buffer or the request's arena cannot hold
            # what the server keeps.
            flags.append(Flag("small", *place, count, lifetime=RETAINED if place in small_kept else TEMPORARY))
    keepers = [site for site in sites if (site.kept_bytes_per_request if site.kept_bytes_per_request is not None
                                          else site.retained_bytes_per_request) > 0]
    total_kept = sum(site.kept_bytes_per_request if site.kept_bytes_per_request is not None
                     else site.retained_bytes_per_request for site in keepers)
    growing = sorted((site for site in keepers if is_growth(site, total_kept)),
                     key=lambda site: -(site.kept_bytes_per_request or site.retained_bytes_per_request))
    for site in growing[:3]:
        value = site.kept_bytes_per_request if site.kept_bytes_per_request is not None \
            else site.retained_bytes_per_request
        flags.append(Flag("growth", site.function, site.file, site.line, value, site.layer))
    order = {"large": 0, "growth": 1, "small": 2}
    flags.sort(key=lambda flag: (order[flag.kind], -flag.value))
    return flags
