"""A `zprof memory` run: memory over time by phase, growth and leaks; or massif's peak."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zprof.model.common import Loss, Note, TargetInfo

IDLE, WARMUP, LOAD, AFTER_FLUSH = "idle", "warm-up", "load", "after FLUSHALL"


@dataclass(frozen=True)
class Phase:
    label: str  # "idle", "warm-up", "load SET", "after FLUSHALL"
    kind: str  # IDLE, WARMUP, LOAD or AFTER_FLUSH
    command: str | None
    start: float
    end: float
    requests: int
    # The server's key count (DBSIZE) when a load phase began and ended; None when not asked or not answered.
    keys_before: int | None = None
    keys_after: int | None = None


@dataclass
class Sample:
    time: float
    live_bytes: int
    rss_bytes: int | None
    anon_rss_bytes: int | None
    allocations: int
    requests: int
    phase: str


@dataclass
class PhaseGrowth:
    phase: str
    command: str | None
    seconds: float
    requests: int
    start_bytes: int
    end_bytes: int
    bytes_per_second: float
    bytes_per_request: float
    new_keys: int | None = None  # keys the phase added (DBSIZE), when the server answers DBSIZE
    # What the phase's live bytes grew by, over its new keys; None without new keys.
    bytes_per_new_key: float | None = None


@dataclass
class Growth:
    """Live bytes: the idle level, under load, and after FLUSHALL."""

    idle_bytes: int
    load_end_bytes: int
    after_flush_bytes: int | None
    # Slopes over the load phases (least squares), warm-up excluded.
    bytes_per_second: float
    bytes_per_request: float
    given_back_bytes: int | None
    peak_bytes: int
    peak_time: float
    # The shim's own high-water mark, the largest of the layers' peaks: it also
    # sees peaks that fall between two samples, but a layer's peak counts the
    # blocks it served to other allocators too (GPA slabs from the page allocator).
    shim_peak_bytes: int
    phases: list[PhaseGrowth]


@dataclass
class LeakSite:
    function: str
    file: str | None
    line: int | None
    inlined: list[str]
    layer: str
    bytes_per_request: float
    retained_bytes: int


@dataclass
class Leak:
    checked: bool  # FLUSHALL was answered, so what it left behind is known
    detected: bool
    bytes_per_request: float  # of the leaking sites; 0 when none
    retained_bytes: int  # live bytes after FLUSHALL above the idle level, leak or not
    one_time_bytes: int  # of those, what did not grow with the requests
    requests: int
    sites: list[LeakSite]  # the leak's call sites
    # The call sites holding most of what FLUSHALL left, leak or not.
    retained_sites: list[LeakSite] = field(default_factory=list)


@dataclass
class RssReport:
    """Anonymous RSS (the process's private memory) against live bytes."""

    idle_bytes: int | None
    load_end_bytes: int | None
    after_flush_bytes: int | None
    ratio_load: float | None  # anonymous RSS / live bytes at the end of the load
    ratio_after_flush: float | None
    kept_bytes: int | None  # after FLUSHALL, held beyond live bytes more than when idle
    far_above_live: bool


@dataclass
class Verdict:
    """One finding about the run's memory, with its figures; the reporter writes the sentence.

    `kind`: flat | given-back | leak | once | no-leak | rss | unchecked."""

    kind: str
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class KeyHolder:
    """A call site whose held bytes grew while the load phases added keys: where the memory per key is."""

    function: str
    file: str | None
    line: int | None
    inlined: list[str]  # the frames inlined at the site, innermost last ("hash_map.(...).grow (std/...:N)")
    layer: str
    grew_bytes: int  # over the load phases
    bytes_per_new_key: float


@dataclass
class EntryLayout:
    """What one entry of the container that holds the memory per key is made of, from the binary's DWARF: the
    slot's size, its largest element (a hash map's value, an array list's item), the member chain that makes
    that element large, and what boxing the chain's first member (a pointer in its place) would save per key."""

    function: str  # the holder's call site
    file: str | None
    line: int | None
    container: str  # "hash_map.HashMapUnmanaged([]const u8,keyspace.Value,hash_map.StringContext,80)"
    slot_bytes: int  # one entry: key + value + the map's metadata byte, or one item
    bytes_per_new_key: float  # the holder's
    slots_per_new_key: float  # bytes_per_new_key / slot_bytes: the container's capacity per key
    element: str  # the type that makes the slot large, as Zig spells it ("keyspace.Value")
    element_bytes: int
    cause: list[str]  # the chain that makes the element large: "sketch: keyspace.Sketch (4,096 B)", ...
    boxed_bytes: int | None  # the element's size with the chain's first member boxed
    saving_per_key: float | None  # slots_per_new_key * (element_bytes - boxed_bytes)
    layout: list[str] = field(default_factory=list)  # the element's layout, pahole-like


@dataclass
class MemoryAnalysis:
    samples: list[Sample]
    phases: list[Phase]
    growth: Growth
    leak: Leak
    rss: RssReport
    verdicts: list[Verdict]
    losses: list[Loss] = field(default_factory=list)
    # The sites whose held bytes grew with the new keys, most first.
    holders: list[KeyHolder] = field(default_factory=list)


@dataclass
class PeakSite:
    function: str
    file: str | None
    line: int | None
    inlined: list[str]
    bytes: int


@dataclass
class MassifPeak:
    heap_bytes: int
    time: float
    time_unit: str
    snapshot: int
    sites: list[PeakSite]
    timeline: list[tuple[float, int]]  # (time, heap bytes) of every snapshot


@dataclass
class MemoryLoad:
    description: str  # what drove the load
    clients: int
    pipeline: int
    requests: int
    errors: int
    first_error: str | None
    seconds: float  # of load, warm-up included
    interval: float  # between samples (the shim engine), or 0
    error_share: float = 0.0  # of the requests, those answered with an error


@dataclass
class MemoryRun:
    command: str  # the command, or "mixed"
    target: TargetInfo
    load: MemoryLoad
    analysis: MemoryAnalysis
    notes: list[Note] = field(default_factory=list)
    complete: bool = True
    error: str | None = None  # what cut the run short
    files: list[str] = field(default_factory=list)  # the pictures and data the run wrote
    # The layout of the entries of the containers that hold the memory per key (zprof.analysis.entries).
    entries: list[EntryLayout] = field(default_factory=list)


@dataclass
class MassifRun:
    command: str
    target: TargetInfo
    load: MemoryLoad
    peak: MassifPeak
    notes: list[Note] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # the pictures and massif's own output
