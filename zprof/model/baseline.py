"""A saved baseline (`zprof baseline save`): every raw value of a fixed suite of measurements on
one tree; and a regression check (`zprof regress`): the same suite on the current tree, compared
with a baseline metric by metric.

Deterministic signals (the shim's allocation counts, callgrind's instruction counts) repeat exactly
from run to run and are compared as counts. Noisy signals (throughput and latency) are kept trial by
trial, so that the check can test them with statistics rather than compare two numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zprof.model.common import MachineInfo, Note, TargetInfo

# Where instruction counts come from.
CALLGRIND, PERF_STAT = "callgrind", "perf stat"
# Assessments of one metric.
NONE, MINOR, REGRESSION, UNSTABLE = "none", "minor", "regression", "unstable"
# A figure of the rounds beside each other that the budget left undecided.
UNDECIDED = "inconclusive"
# Not judged: measured on one side only, or not comparable between the two runs.
UNMEASURED, NOT_COMPARABLE = "unmeasured", "not comparable"
ASSESSMENTS = (NONE, MINOR, REGRESSION, UNSTABLE, UNDECIDED, UNMEASURED, NOT_COMPARABLE)
# Outcomes of a check, and the exit code of each. Inconclusive: nothing regressed, but the check could not show
# that nothing did (a figure undecided, unstable or not comparable, or the CPU not checked at all).
PASS, FAIL, NOT_MEASURED, INCONCLUSIVE = "pass", "regression", "could not measure", "inconclusive"
EXIT_CODES = {PASS: 0, FAIL: 1, NOT_MEASURED: 2, INCONCLUSIVE: 3}
# How the baseline's side was measured: its kept builds run now beside the current tree, or the figures it
# recorded when it was saved (only where its builds cannot run here).
SIDE_BY_SIDE, PAST_FIGURES = "side by side", "past figures"


@dataclass(frozen=True)
class GitState:
    """The target's checkout when the suite ran. `dirty`: tracked files differ from the commit (as
    `git describe --dirty` says; untracked files such as `.zprof/` do not count)."""

    commit: str
    short: str
    dirty: bool
    committed: str  # the commit's date (ISO 8601), which orders baselines in history
    subject: str

    @property
    def label(self) -> str:
        """The short commit, `-dirty` when tracked files changed."""
        return f"{self.short}-dirty" if self.dirty else self.short


@dataclass(frozen=True)
class SuiteSettings:
    """What the suite runs, for every command: `requests` requests with the shim (after `warmup`)
    and as many under callgrind (1 client, no pipelining, so that the count repeats); then `trials`
    calibrated trials of at least `min_trial_seconds` each (0: no noisy signals), against Redis too
    when `against` is "redis"."""

    commands: list[str]
    requests: int
    warmup: int
    trials: int
    against: str | None
    min_trial_seconds: float
    clients: int  # the shim's run; the trials use the load the probes allow (`NoisySignals`)
    pipeline: int


@dataclass(frozen=True)
class AllocSite:
    """One call site of the shim's table: program code, or an allocator asking its backing allocator
    (`nested_in`)."""

    function: str
    file: str | None
    line: int | None
    layer: str
    nested_in: str | None
    allocs_per_request: float
    bytes_per_request: float


@dataclass(frozen=True)
class AllocSignals:
    """Per request, from the shim; exact counts divided by `requests`."""

    requests: int
    allocs: float
    frees: float
    bytes_allocated: float
    bytes_retained: float
    sites: list[AllocSite]
    # How far the counts per request may be off through the idle server's bursts (0: exact).
    resolution: float = 0.0


@dataclass(frozen=True)
class FunctionCost:
    """A function's own instructions (its callees' not included), per request."""

    function: str
    file: str | None
    instructions: float


@dataclass(frozen=True)
class InstructionSignals:
    """User-space instructions the server executed for `requests` requests: from callgrind (with the
    heaviest functions by their own count) or from `perf stat -e instructions:u` (totals only)."""

    source: str
    requests: int
    total: int
    per_request: float
    functions: list[FunctionCost] = field(default_factory=list)


@dataclass(frozen=True)
class TrialSample:
    """One server's measured run of one command in one trial. `other_cpu_percent`: CPU that neither
    the server nor the load generator used during the run (other processes), in percent of one core."""

    trial: int
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    load_generator_percent: float
    other_cpu_percent: float | None


@dataclass(frozen=True)
class NoisySignals:
    """The trials of one command; `redis` is empty unless the suite ran against Redis."""

    tool: str
    clients: int
    pipeline: int
    target: list[TrialSample]
    redis: list[TrialSample] = field(default_factory=list)


@dataclass(frozen=True)
class CommandSignals:
    """Every signal of one command. A signal the suite did not ask for is None; one it could not
    measure is None with the reason in `instructions_absent` / `noisy_absent`."""

    command: str
    args: list[str]
    allocs: AllocSignals
    instructions: InstructionSignals | None
    noisy: NoisySignals | None
    instructions_absent: str | None = None
    noisy_absent: str | None = None


# What a kept binary is: the server as the suite measured it, its build with the counting shim, or its build for
# valgrind's CPU (callgrind's instruction counts).
SERVER_BUILD, SHIM_BUILD, VALGRIND_BUILD = "server", "shim", "valgrind"


@dataclass(frozen=True)
class StoredBinary:
    """A build the baseline kept (`zprof.builder.stored`): `.zprof/binaries/SHA256/EXECUTABLE`."""

    role: str  # SERVER_BUILD, SHIM_BUILD or VALGRIND_BUILD
    sha256: str
    size: int
    executable: str
    build_id: str | None  # the ELF build id, where the linker wrote one
    zig_version: str
    optimize: str
    optimize_source: str
    build_key: str
    source_root: str  # the checkout it was compiled in, which its DWARF names
    build_args: list[str] = field(default_factory=list)


@dataclass
class Baseline:
    """One run of the suite. Saved as `.zprof/baselines/NAME.json` (schema zprof.baseline/1); a
    regression check holds its current run in the same form, named "working tree"."""

    name: str
    measured: str  # when the suite ran (ISO 8601, UTC)
    git: GitState | None  # None outside a git checkout
    target: TargetInfo  # the shim's build: Zig version, build mode
    machine: MachineInfo
    settings: SuiteSettings
    commands: list[CommandSignals]
    # Where instructions came from (CALLGRIND, PERF_STAT), or None with the reason.
    instruction_source: str | None
    instructions_absent: str | None
    redis_version: str | None = None
    notes: list[Note] = field(default_factory=list)
    # The builds measured, kept so that regress can run them beside the current tree (empty: none kept).
    binaries: list[StoredBinary] = field(default_factory=list)

    def command(self, name: str) -> CommandSignals | None:
        return next((signals for signals in self.commands if signals.command == name), None)


@dataclass(frozen=True)
class RegressThresholds:
    """When a change is a regression. Percentages are of the baseline's figure."""

    instructions_percent: float = 2.0  # instructions per request: beyond this, a regression
    bytes_percent: float = 2.0  # bytes allocated or retained per request: beyond this, a regression
    min_effect_percent: float = 5.0  # a significant noisy change beyond this is a regression
    minor_effect_percent: float = 3.0  # a significant one beyond this (and within the above) is minor
    alpha: float = 0.05  # significance level of the test over the trials
    test: str = "welch"  # or "mann-whitney"
    busy_cpu_percent: float = 30.0  # other processes using more of a core during a trial: unstable
    # zprof bench's unstable CV and acceptable throughput (`Thresholds`), so that one setting serves both.
    unstable_cv_percent: float = 10.0  # a side whose figure varied more over its trials is unstable
    redis_floor_percent: float = 70.0  # throughput under this share of Redis' blocks
    source: str = "zprof's defaults"


@dataclass(frozen=True)
class Check:
    """One row of the Performance Regression Check. `basis` says in words why the assessment is
    what it is (the count, the test and its p-value, the spread)."""

    command: str
    metric: str
    unit: str
    baseline: float | None
    current: float | None
    change_percent: float | None
    assessment: str
    basis: str
    p_value: float | None = None  # the test's, for a noisy metric
    p_adjusted: float | None = None  # Holm's, over the noisy metrics the check tested (None: only one)


# A file and line.
Place = tuple[str | None, int | None]


@dataclass(frozen=True)
class SiteChange:
    """One function's allocations per request (its sites on one allocator layer, summed), before and
    after; `places` are where the current run's sites are (the baseline's when it has none left)."""

    function: str
    layer: str
    nested_in: str | None
    places: list[Place]
    baseline_allocs: float
    current_allocs: float
    baseline_bytes: float
    current_bytes: float

    @property
    def delta(self) -> float:
        return self.current_allocs - self.baseline_allocs


@dataclass(frozen=True)
class FunctionChange:
    """A function's own instructions per request, before and after."""

    function: str
    file: str | None
    baseline: float
    current: float

    @property
    def delta(self) -> float:
        return self.current - self.baseline


@dataclass(frozen=True)
class CommandChanges:
    """What accounts for a command's change: the call sites whose allocations moved, and the
    functions whose instructions grew most."""

    command: str
    sites: list[SiteChange]
    functions: list[FunctionChange]


@dataclass
class RegressRun:
    baseline: Baseline
    current: Baseline
    thresholds: RegressThresholds
    checks: list[Check]
    changes: list[CommandChanges]
    warnings: list[Note]  # what makes the two runs less comparable
    outcome: str  # PASS, FAIL, NOT_MEASURED or INCONCLUSIVE
    compared: str = PAST_FIGURES  # SIDE_BY_SIDE or PAST_FIGURES
    rounds: int = 0  # of A B B A, side by side
    cpu_checked: bool = True  # instructions counted, or throughput decided side by side

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]
