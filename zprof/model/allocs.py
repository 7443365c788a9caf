"""A `zprof allocs` run: allocations per request of one command."""

from __future__ import annotations

from dataclasses import dataclass, field

from zprof.model.common import Loss, Note, TargetInfo


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
    # Gives its blocks back all at once (an arena reset, a rewound buffer), not one by one.
    releases_en_bloc: bool = False
    releases_per_request: float = 0.0


@dataclass
class SizeClass:
    """Program allocations of min_bytes to max_bytes (a power-of-two class), per request."""

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
    # Retained in each half of the run (None without a halfway snapshot); and held after
    # FLUSHALL of what the warm-up and the run added, per request of both (None without FLUSHALL).
    retained_halves: tuple[float, float] | None = None
    kept_bytes_per_request: float | None = None
    # The site's blocks the server still held at the end of the run (allocations less frees since the shim
    # attached): stored data or a leak, since a block freed within its request is gone by then. None: not counted.
    held_blocks: int | None = None


TEMPORARY, RETAINED = "temporary", "retained"


@dataclass
class Flag:
    kind: str  # small | large | growth
    function: str
    file: str | None
    line: int | None
    value: float
    # Per request: for small, allocations; for large, bytes each; for growth, bytes kept.
    layer: str | None = None
    # For small: TEMPORARY (freed within the request) or RETAINED (the server keeps some); None in older runs.
    lifetime: str | None = None


@dataclass
class Keys:
    """The server's key count (DBSIZE) around the measured run, when it answers DBSIZE."""

    before: int
    after: int

    @property
    def new(self) -> int:
        return self.after - self.before


@dataclass
class AllocationAnalysis:
    per_request: PerRequest
    by_layer: list[LayerUsage]
    size_classes: list[SizeClass]
    small_allocs_per_request: float
    large_allocs_per_request: float
    sites: list[CallSite]
    flags: list[Flag]
    losses: list[Loss] = field(default_factory=list)
    # Held after FLUSHALL of what the warm-up and the run added, per request of both: neither
    # temporary nor stored data (None: no FLUSHALL answer).
    kept_bytes_per_request: float | None = None
    keys: Keys | None = None
    # Retained bytes over the keys the run added (None: no new key, or no DBSIZE).
    retained_bytes_per_new_key: float | None = None
    # How far the counts per request may be off through the idle work alone: the idle server's largest burst
    # of allocations (one tick of a timer), missed or caught once more in the idle window and in the run,
    # per request. 0: the idle server allocated nothing, and the counts are exact.
    idle_resolution: float = 0.0


@dataclass
class LoadInfo:
    clients: int
    pipeline: int
    keyspace: int
    warmup_requests: int
    seconds: float
    # None when the run was too short for a rate to mean anything (zprof.load.calibration).
    requests_per_second: float | None
    errors: int
    error_share: float  # of the measured requests, those answered with an error
    first_error: str | None
    idle_seconds: float


@dataclass
class MemoryGrowth:
    """Over the measured run: the bytes the program came to hold (the retained bytes, counted
    once) and the RSS."""

    live_bytes: int
    rss_bytes: int | None


@dataclass
class AllocsRun:
    command: str
    args: list[str]
    requests: int
    target: TargetInfo
    load: LoadInfo
    analysis: AllocationAnalysis
    growth: MemoryGrowth
    notes: list[Note] = field(default_factory=list)
    complete: bool = True
    error: str | None = None  # what cut the run short
