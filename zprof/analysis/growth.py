"""Memory over time: what the program holds, phase by phase; growth, leaks and RSS.

The sampler records, for every call site of the shim's table, the bytes it
holds (allocated minus freed or released). Which sites count is decided
afterwards, once their stacks are symbolised, with the retained-bytes rule of
`allocations` (`RetainedRule`), so that every byte counts once whatever the
shape of the program's allocators.

A leak is growth that FLUSHALL does not give back and that keeps coming with
the requests: a cache filled once, or a buffer that grew to its working size,
stays after FLUSHALL too, but not in proportion to the requests.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from zprof.analysis.allocations import GROWTH_FLAG_BYTES, SiteNames, losses_of
from zprof.analysis.symbols import Symbolizer, display_path, is_library_file
from zprof.collect.massif import MassifNode, MassifOutput
from zprof.collect.shim_counters import ShimSnapshot
from zprof.model.memory import (
    AFTER_FLUSH,
    IDLE,
    LOAD,
    WARMUP,
    Growth,
    KeyHolder,
    Leak,
    LeakSite,
    MassifPeak,
    MemoryAnalysis,
    PeakSite,
    Phase,
    PhaseGrowth,
    RssReport,
    Sample,
    Verdict,
)

# A call site leaks when the bytes it kept after FLUSHALL, and its growth in
# both halves of some load phase, reach this per request.
LEAK_SITE_BYTES_PER_REQUEST = 0.25
# A leak is reported from this many bytes per request over all such sites.
LEAK_BYTES_PER_REQUEST = GROWTH_FLAG_BYTES
# RSS is "far above" live bytes when, after FLUSHALL, the process keeps at
# least this much more beyond what the program holds than it did when idle...
RSS_KEPT_MIN_BYTES = 1 << 20
# ...and that is at least this share of what the RSS grew under load.
RSS_KEPT_MIN_SHARE = 0.5
# Live growth during load below this many bytes per request is "flat".
FLAT_BYTES_PER_REQUEST = 0.5
# The idle level is "reached again" within this share of the load's growth;
# FLUSHALL "gives back" the load's growth from this share of it.
GIVEN_BACK_TOLERANCE = 0.1
RETAINED_SITES = 5


# What the command records ---------------------------------------------------
@dataclass(frozen=True)
class RawSample:
    """One reading of the counters and the process, before the analysis knows which sites count."""

    time: float
    phase: str
    requests: int  # workload requests answered since the recording started
    # Site index -> bytes it allocated minus bytes freed of them, for the sites
    # whose figure changed since the previous sample (a long run stays small).
    held_changes: dict[int, int]
    allocations: int  # allocator calls made by program code so far
    layer_peaks: tuple[int, ...]
    rss_bytes: int | None
    anon_rss_bytes: int | None  # RSS without file-backed pages (the binary, zprof's counter file)


@dataclass
class Recording:
    samples: list[RawSample]
    phases: list[Phase]
    final: ShimSnapshot  # the last snapshot: every site, with its stack
    # FLUSHALL's error reply, or None when it succeeded or was never sent.
    flushall_error: str | None = None


def held_by_site(snapshot: ShimSnapshot) -> dict[int, int]:
    return {index: site.alloc_bytes - site.free_bytes for index, site in snapshot.sites.items()}


def program_allocations(snapshot: ShimSnapshot) -> int:
    return sum(layer.allocs for layer in snapshot.layers)


# Which sites count -------------------------------------------------------------
class _Sites(SiteNames):
    """The final snapshot's sites, named, and those whose held bytes count as the program's."""

    def __init__(self, snapshot: ShimSnapshot, symbolizer: Symbolizer, bias: int) -> None:
        super().__init__(snapshot, symbolizer, bias)
        self.counted = {index for index, site in snapshot.sites.items() if self.counts(site)}


# The analysis -----------------------------------------------------------------
def _slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope; 0 when x does not move."""
    if len(xs) < 2:
        return 0.0
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx


def _phase_points(raw: list[RawSample], phase: Phase) -> list[int]:
    """Indices of a phase's samples, led by the last sample before it (its starting point)."""
    inside = [i for i, s in enumerate(raw) if s.phase == phase.label]
    if inside and inside[0] > 0:
        inside.insert(0, inside[0] - 1)
    return inside


def _phase_growth(phase: Phase, points: list[int], samples: list[Sample]) -> PhaseGrowth:
    chosen = [samples[i] for i in points]
    if not chosen:
        return PhaseGrowth(phase.label, phase.command, phase.end - phase.start, phase.requests, 0, 0, 0.0, 0.0)
    live = [s.live_bytes for s in chosen]
    new_keys = (phase.keys_after - phase.keys_before
                if phase.keys_before is not None and phase.keys_after is not None else None)
    return PhaseGrowth(
        phase=phase.label, command=phase.command, seconds=round(phase.end - phase.start, 3), requests=phase.requests,
        start_bytes=live[0], end_bytes=live[-1],
        bytes_per_second=_slope([s.time for s in chosen], live),
        bytes_per_request=_slope([s.requests for s in chosen], live),
        new_keys=new_keys,
        bytes_per_new_key=(live[-1] - live[0]) / new_keys if new_keys else None,
    )


def _last_of(raw: list[RawSample], kind: str, phases: list[Phase]) -> int | None:
    labels = {p.label for p in phases if p.kind == kind}
    found = [i for i, s in enumerate(raw) if s.phase in labels]
    return found[-1] if found else None


def _halves(raw: list[RawSample], phase: Phase) -> list[tuple[int, int]]:
    """A load phase's two halves, as (first, last) sample indices; one span when it has few samples."""
    points = _phase_points(raw, phase)
    if len(points) < 2:
        return []
    if len(points) < 3:
        return [(points[0], points[-1])]
    middle = points[len(points) // 2]
    return [(points[0], middle), (middle, points[-1])]


def _replay(raw: list[RawSample], counted: set[int], wanted: set[int]) -> tuple[list[int], dict[int, dict[int, int]]]:
    """Live bytes at every sample, and every site's held bytes at the wanted samples."""
    held: dict[int, int] = {}
    live, lives, held_at = 0, [], {}
    for position, sample in enumerate(raw):
        for index, value in sample.held_changes.items():
            if index in counted:
                live += value - held.get(index, 0)
            held[index] = value
        lives.append(live)
        if position in wanted:
            held_at[position] = dict(held)
    return lives, held_at


def _growing_sites(raw: list[RawSample], phases: list[Phase], candidates: set[int],
                   held_at: dict[int, dict[int, int]]) -> set[int]:
    """Sites whose held bytes grew with the requests in both halves of some load phase."""
    growing: set[int] = set()
    for phase in phases:
        halves = _halves(raw, phase) if phase.kind == LOAD else []
        for index in candidates if halves else ():
            rates = []
            for start, end in halves:
                requests = raw[end].requests - raw[start].requests
                grew = held_at[end].get(index, 0) - held_at[start].get(index, 0)
                rates.append(grew / requests if requests else 0.0)
            if min(rates) >= LEAK_SITE_BYTES_PER_REQUEST:
                growing.add(index)
    return growing


def analyse(recording: Recording, symbolizer: Symbolizer, bias: int = 0) -> MemoryAnalysis:
    sites = _Sites(recording.final, symbolizer, bias)
    raw, phases = recording.samples, recording.phases
    wanted = {i for kind in (IDLE, AFTER_FLUSH) if (i := _last_of(raw, kind, phases)) is not None}
    wanted |= {i for phase in phases if phase.kind == LOAD for span in _halves(raw, phase) for i in span}
    lives, held_at = _replay(raw, sites.counted, wanted)
    samples = [
        Sample(time=round(s.time, 4), live_bytes=live, rss_bytes=s.rss_bytes, anon_rss_bytes=s.anon_rss_bytes,
               allocations=s.allocations, requests=s.requests, phase=s.phase)
        for s, live in zip(raw, lives, strict=True)
    ]
    growth = _growth(raw, samples, phases)
    leak = _leak(recording, samples, sites, held_at)
    rss = _rss(raw, samples, phases)
    losses = losses_of(recording.final)
    return MemoryAnalysis(samples, phases, growth, leak, rss, _verdicts(growth, leak, rss, recording), losses,
                          _holders(raw, phases, sites, recording.final, held_at))


def _holders(raw: list[RawSample], phases: list[Phase], sites: _Sites, final: ShimSnapshot,
             held_at: dict[int, dict[int, int]]) -> list[KeyHolder]:
    """The sites whose held bytes grew over the load phases that added keys, by bytes per new key."""
    grew: dict[int, int] = {}
    new_keys = 0
    for phase in phases:
        points = _phase_points(raw, phase) if phase.kind == LOAD else []
        if len(points) < 2 or phase.keys_before is None or phase.keys_after is None:
            continue
        new_keys += phase.keys_after - phase.keys_before
        start, end = held_at[points[0]], held_at[points[-1]]
        for index in sites.counted:
            grew[index] = grew.get(index, 0) + end.get(index, 0) - start.get(index, 0)
    if new_keys <= 0:
        return []
    grown = {index: value for index, value in grew.items() if value > 0}
    return [KeyHolder(site.function, site.file, site.line, site.inlined, site.layer, site.retained_bytes,
                      site.bytes_per_request)
            for site in _group_sites(set(grown), grown, sites, final, 1 / new_keys)[:RETAINED_SITES]]


def _growth(raw: list[RawSample], samples: list[Sample], phases: list[Phase]) -> Growth:
    idle = _last_of(raw, IDLE, phases)
    load_end = _last_of(raw, LOAD, phases)
    after = _last_of(raw, AFTER_FLUSH, phases)
    load_points = sorted({i for p in phases if p.kind == LOAD for i in _phase_points(raw, p)})
    load = [samples[i] for i in load_points]
    peak = max(samples, key=lambda s: s.live_bytes)
    idle_bytes = samples[idle].live_bytes if idle is not None else samples[0].live_bytes
    load_end_bytes = samples[load_end].live_bytes if load_end is not None else samples[-1].live_bytes
    after_bytes = samples[after].live_bytes if after is not None else None
    return Growth(
        idle_bytes=idle_bytes, load_end_bytes=load_end_bytes, after_flush_bytes=after_bytes,
        bytes_per_second=_slope([s.time for s in load], [s.live_bytes for s in load]),
        bytes_per_request=_slope([s.requests for s in load], [s.live_bytes for s in load]),
        given_back_bytes=load_end_bytes - after_bytes if after_bytes is not None else None,
        peak_bytes=peak.live_bytes, peak_time=peak.time,
        shim_peak_bytes=max((max(s.layer_peaks, default=0) for s in raw), default=0),
        phases=[_phase_growth(p, _phase_points(raw, p), samples) for p in phases if p.kind in (WARMUP, LOAD)],
    )


def _leak(recording: Recording, samples: list[Sample], sites: _Sites, held_at: dict[int, dict[int, int]]) -> Leak:
    raw, phases = recording.samples, recording.phases
    idle, after = _last_of(raw, IDLE, phases), _last_of(raw, AFTER_FLUSH, phases)
    if idle is None or after is None or recording.flushall_error is not None:
        return Leak(False, False, 0.0, 0, 0, 0, [])
    requests = raw[after].requests - raw[idle].requests
    retained = samples[after].live_bytes - samples[idle].live_bytes
    kept = {i: held_at[after].get(i, 0) - held_at[idle].get(i, 0) for i in sites.counted}
    per = 1.0 / max(requests, 1)
    candidates = {i for i, kept_bytes in kept.items() if kept_bytes * per >= LEAK_SITE_BYTES_PER_REQUEST}
    leak_sites = _group_sites(_growing_sites(raw, phases, candidates, held_at), kept, sites, recording.final, per)
    leaked = sum(s.retained_bytes for s in leak_sites)
    detected = leaked * per >= LEAK_BYTES_PER_REQUEST
    holding = _group_sites({i for i, kept_bytes in kept.items() if kept_bytes > 0}, kept, sites, recording.final, per)
    return Leak(
        checked=True, detected=detected, bytes_per_request=leaked * per if detected else 0.0,
        retained_bytes=retained, one_time_bytes=retained - leaked if detected else retained, requests=requests,
        sites=leak_sites if detected else [], retained_sites=holding[:RETAINED_SITES],
    )


def _group_sites(indices: set[int], kept: dict[int, int], sites: _Sites, final: ShimSnapshot,
                 per: float) -> list[LeakSite]:
    """Sites grouped by the line they are charged to, as `zprof allocs` groups them; most bytes first."""
    grouped: dict[tuple, LeakSite] = {}
    for index in indices:
        site = final.sites[index]
        frame, chain = sites.attribute(site)
        key = (frame.function, frame.file, frame.line, sites.layer(site.layer) or "unknown")
        entry = grouped.setdefault(key, LeakSite(*key[:3], chain, key[3], 0.0, 0))
        entry.retained_bytes += kept[index]
        entry.bytes_per_request = entry.retained_bytes * per
    return sorted(grouped.values(), key=lambda s: -s.retained_bytes)


def _rss(raw: list[RawSample], samples: list[Sample], phases: list[Phase]) -> RssReport:
    def at(kind: str) -> tuple[int | None, int]:
        index = _last_of(raw, kind, phases)
        return (raw[index].anon_rss_bytes, samples[index].live_bytes) if index is not None else (None, 0)

    (idle_rss, idle_live), (load_rss, load_live), (after_rss, after_live) = at(IDLE), at(LOAD), at(AFTER_FLUSH)
    kept = None
    far_above = False
    if idle_rss is not None and after_rss is not None:
        kept = (after_rss - after_live) - (idle_rss - idle_live)
        grew = (load_rss - idle_rss) if load_rss is not None else 0
        far_above = kept >= RSS_KEPT_MIN_BYTES and kept >= RSS_KEPT_MIN_SHARE * grew
    return RssReport(
        idle_bytes=idle_rss, load_end_bytes=load_rss, after_flush_bytes=after_rss,
        ratio_load=load_rss / load_live if load_rss is not None and load_live > 0 else None,
        ratio_after_flush=after_rss / after_live if after_rss is not None and after_live > 0 else None,
        kept_bytes=kept, far_above_live=far_above,
    )


def _verdicts(growth: Growth, leak: Leak, rss: RssReport, recording: Recording) -> list[Verdict]:
    verdicts = []
    grew = growth.load_end_bytes - growth.idle_bytes
    if abs(growth.bytes_per_request) < FLAT_BYTES_PER_REQUEST:
        verdicts.append(Verdict("flat", {"bytes_per_request": growth.bytes_per_request, "grew_bytes": grew}))
    if not leak.checked:
        verdicts.append(Verdict("unchecked", {"flushall_error": recording.flushall_error}))
        return verdicts
    assert growth.after_flush_bytes is not None and growth.given_back_bytes is not None
    if grew > 0 and growth.given_back_bytes >= GIVEN_BACK_TOLERANCE * grew:
        verdicts.append(Verdict("given-back", {
            "given_back_bytes": growth.given_back_bytes, "grew_bytes": grew,
            "share": min(growth.given_back_bytes / grew, 1.0),
            "back_to_idle": growth.after_flush_bytes - growth.idle_bytes <= GIVEN_BACK_TOLERANCE * grew,
        }))
    if leak.detected:
        top = leak.sites[0]
        verdicts.append(Verdict("leak", {
            "bytes_per_request": leak.bytes_per_request, "retained_bytes": leak.retained_bytes,
            "requests": leak.requests, "function": top.function, "function_bytes_per_request": top.bytes_per_request,
        }))
    elif leak.retained_bytes >= min(RSS_KEPT_MIN_BYTES, LEAK_BYTES_PER_REQUEST * leak.requests):
        most = leak.retained_sites[0] if leak.retained_sites else None
        verdicts.append(Verdict("once", {
            "retained_bytes": leak.retained_bytes, "function": most.function if most else None,
            "function_bytes": most.retained_bytes if most else None,
        }))
    else:
        verdicts.append(Verdict("no-leak", {"retained_bytes": leak.retained_bytes}))
    if rss.far_above_live and rss.kept_bytes is not None:
        verdicts.append(Verdict("rss", {"kept_bytes": rss.kept_bytes, "ratio_after_flush": rss.ratio_after_flush}))
    return verdicts


# massif's peak, by call site ----------------------------------------------------
def _is_library_frame(node: MassifNode) -> bool:
    return node.file is not None and (is_library_file(node.file) or node.file.endswith("/zprof_hooks.zig"))


class _Names:
    """Zig's qualified names for massif's frames: valgrind names an inlined frame
    by its short DWARF name (`init`), zprof's symbolizer by its whole one."""

    def __init__(self, tree: MassifNode, symbolizer: Symbolizer | None, bias: int) -> None:
        addresses: set[int] = set()
        stack = [tree]
        while stack:
            node = stack.pop()
            stack.extend(node.children)
            if node.address is not None:
                addresses.add(node.address - bias)  # massif prints return addresses less one, as zprof looks them up
        self._locations = symbolizer.locate(addresses) if symbolizer else {}
        self._bias = bias

    def function(self, node: MassifNode) -> str:
        if node.address is not None and node.file is not None:
            for frame in self._locations.get(node.address - self._bias, ()):
                if frame.line == node.line and frame.file == display_path(node.file):
                    return frame.function
        return node.function

    def text(self, node: MassifNode) -> str:
        return f"{self.function(node)} ({display_path(node.file or '?')}:{node.line})"


def _charged(node: MassifNode, chain: list[MassifNode]) -> Iterator[tuple[MassifNode, list[MassifNode]]]:
    """Each allocation path charged to its first frame outside Zig's std and the dependencies, as `attribute` does."""
    for child in node.children:
        if child.below_threshold is None and _is_library_frame(child) and child.children:
            yield from _charged(child, [*chain, child])
        else:
            yield child, chain


def massif_peak(output: MassifOutput, symbolizer: Symbolizer | None = None, bias: int = 0) -> MassifPeak | None:
    peak = output.peak
    if peak is None or peak.tree is None:
        return None
    names = _Names(peak.tree, symbolizer, bias)
    grouped: dict[tuple, PeakSite] = {}
    for node, chain in _charged(peak.tree, []):
        key = (names.function(node), display_path(node.file) if node.file else None, node.line)
        entry = grouped.setdefault(key, PeakSite(*key, [names.text(c) for c in chain], 0))
        entry.bytes += node.bytes
    return MassifPeak(
        heap_bytes=peak.heap_bytes, time=peak.time, time_unit=output.time_unit, snapshot=peak.index,
        sites=sorted(grouped.values(), key=lambda s: -s.bytes),
        timeline=[(s.time, s.heap_bytes) for s in output.snapshots],
    )


# Saved runs --------------------------------------------------------------------
