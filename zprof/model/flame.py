"""A `zprof flame` run: where the server's CPU went under load (perf samples or callgrind instructions)."""

from __future__ import annotations

from dataclasses import dataclass, field

from zprof.model.common import Note, TargetInfo

PERF, CALLGRIND = "perf", "callgrind"


@dataclass
class FunctionShare:
    function: str
    file: str | None
    line: int | None
    kind: str
    self_weight: int
    total_weight: int
    self_share: float
    total_share: float
    flagged: bool  # a project function over FLAG_SHARE of all samples


@dataclass
class KernelPart:
    """Kernel samples by what brought the thread there: a system call by name, "page faults", "interrupts"
    or "other"."""

    cause: str
    share: float  # of all samples


@dataclass
class ProfileSummary:
    unit: str
    total: int
    kernel_share: float
    idle_share: float
    unknown_share: float
    by_self: list[FunctionShare]
    by_total: list[FunctionShare]
    notes: list[Note]
    kernel_parts: list[KernelPart] = field(default_factory=list)


@dataclass
class ShareChange:
    function: str
    kind: str
    before: float  # total share: the function and what it calls
    after: float
    self_before: float = 0.0  # self share: the function's own code
    self_after: float = 0.0

    @property
    def delta(self) -> float:
        return self.after - self.before

    @property
    def self_delta(self) -> float:
        return self.self_after - self.self_before


@dataclass
class FlameRun:
    command: str  # the command, or "mixed"
    engine: str  # PERF or CALLGRIND
    target: TargetInfo
    load: str  # what drove the load
    summary: ProfileSummary
    files: list[str]  # the profile's outputs, in the run's directory
    frequency_hz: int | None = None  # perf's
    call_graph: str | None = None  # perf's: fp or dwarf
    duration_s: float | None = None  # perf's recording
    requests: int | None = None  # callgrind's
    notes: list[Note] = field(default_factory=list)
    complete: bool = True
    error: str | None = None  # what cut the run short


@dataclass
class FlameDiffRun:
    before: str  # the two flame outputs compared
    after: str
    changes: list[ShareChange]
    svg: str  # the differential flame graph
