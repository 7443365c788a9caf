"""A `zprof compare` run: two builds of the project (two git revisions, or one and the working tree) measured
alternately on this machine, round by round, until each figure's change is shown within the threshold or
beyond it, or the budget is spent."""

from __future__ import annotations

from dataclasses import dataclass, field

from zprof.errors import EXIT_INCONCLUSIVE, EXIT_TARGET, EXIT_USAGE
from zprof.model.common import Note, TargetInfo
from zprof.model.flame import ShareChange

# Outcomes, of a figure and of the run (the first three are zprof.analysis.sequential's); exit status 0, 1, 3 and 2.
PASS, REGRESSION, INCONCLUSIVE, NOT_MEASURED = "pass", "regression", "inconclusive", "could not measure"
METRICS = ("throughput", "p50", "p99")
# The exact figures, measured once per build: the shim's allocations and counted instructions, per request.
ALLOCATIONS, INSTRUCTIONS = "allocations", "instructions"


@dataclass
class Side:
    label: str  # the revision as asked ("HEAD", "main") or "the working tree"
    commit: str | None
    target: TargetInfo


@dataclass
class FigureChange:
    """One figure of one command, after B against before A: its change and what the rounds showed."""

    metric: str  # throughput, p50, p99 (tested over the rounds), allocations or instructions (exact)
    outcome: str  # PASS, REGRESSION, INCONCLUSIVE or NOT_MEASURED
    threshold_percent: float  # the change in the bad direction the test is powered for
    rounds: int
    estimate_percent: float | None  # after against before; a throughput loss is negative
    interval_percent: tuple[float, float] | None  # 95%, valid at the round the test stopped
    detectable_percent: float | None  # the smallest change the rounds could have seen (inconclusive)
    worse: bool = False  # a change in the bad direction was shown (also when within the threshold)
    improved: bool = False


@dataclass
class CommandChange:
    command: str
    figures: list[FigureChange]
    failure: str | None = None  # why the command could not be measured
    # The functions whose share of the CPU moved most, from a profile of each build under the same load (when a
    # CPU figure regressed).
    functions: list[ShareChange] = field(default_factory=list)
    allocations_before: float | None = None  # per request, from the shim (exact)
    allocations_after: float | None = None
    instructions_before: float | None = None  # per request, counted (callgrind or perf stat)
    instructions_after: float | None = None
    flame_diff: str | None = None  # the differential flame graph's file, in the run's directory


@dataclass
class CompareSettings:
    threshold_percent: float  # throughput
    latency_threshold_percent: float
    alpha: float  # family-wise false-positive rate
    power: float
    noise_percent: float  # the spread per round the rounds were planned for
    max_rounds: int
    budget_s: float
    clients: int
    pipeline: int
    load: str


@dataclass
class CompareRun:
    before: Side
    after: Side
    settings: CompareSettings
    commands: list[CommandChange]
    rounds: int
    outcome: str
    seconds: float
    notes: list[Note] = field(default_factory=list)
    project: str | None = None  # the checkout compared (the builds may come from exported revisions)

    @property
    def exit_code(self) -> int:
        return {REGRESSION: EXIT_TARGET, INCONCLUSIVE: EXIT_INCONCLUSIVE, NOT_MEASURED: EXIT_USAGE}.get(self.outcome, 0)
