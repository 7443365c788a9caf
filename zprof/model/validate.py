"""A `zprof validate` run: every measurement of the validation procedure, the recommendations drawn
from them, and the verdict. The measurements are the runs the other commands save, kept whole, so
the report renders again from this one file."""

from __future__ import annotations

from dataclasses import dataclass, field

from zprof.model.allocs import AllocsRun
from zprof.model.baseline import RegressRun
from zprof.model.bench import BenchRun
from zprof.model.common import Note, TargetInfo
from zprof.model.flame import FlameRun
from zprof.model.memory import MemoryRun
from zprof.model.syscalls import SyscallsRun

# The final verdicts, as the validation procedure names them; and the two zprof gives when it cannot
# judge: the comparison with Redis did not run, or none of its figures was conclusive (load-bound on a
# small machine, or unstable).
APPROVED, APPROVED_MINOR, NEEDS_WORK = "approved", "approved-with-minor-regressions", "needs-work"
NOT_MEASURED, NOT_JUDGED = "not-measured", "not-judged"
# The executive summary's overall level.
OVERALL_EXCELLENT, OVERALL_ACCEPTABLE, OVERALL_NEEDS_WORK, OVERALL_NOT_JUDGED = (
    "EXCELLENT", "ACCEPTABLE", "NEEDS WORK", "NOT JUDGED")


@dataclass(frozen=True)
class Part:
    """One measurement the validation made: the command that makes it on its own, where its run is
    (relative to the validation's directory), and why it failed, if it did."""

    name: str  # "allocs SET", "flame", "memory", "bench", "regress"
    command_line: list[str]
    directory: str
    seconds: float
    error: str | None = None


@dataclass(frozen=True)
class Recommendation:
    """One optimisation, from one rule, with what was measured and the most it can gain."""

    rule: str  # a code from zprof.analysis.recommendations.RULES
    title: str
    critical: bool  # it explains a blocking figure: an unacceptable command, a leak
    impact: str  # High, Medium or Low
    impact_reason: str
    difficulty: str  # Low, Medium or High
    evidence: str  # the measured figures behind it
    bound: str  # the most it can gain, derived from a measured share
    fix: str
    function: str | None = None
    file: str | None = None
    line: int | None = None
    command: str | None = None
    bound_percent: float | None = None  # of the server's CPU, when the bound is a CPU share
    sketch: str | None = None  # a short before/after in Zig


@dataclass(frozen=True)
class VsRedis:
    """A figure over the commands compared with Redis: the median of their ratios, and the range."""

    metric: str  # "throughput" or "p99"
    median_percent: float
    low_percent: float
    high_percent: float
    level: str  # excellent | acceptable | unacceptable (of the median)
    commands: int


@dataclass
class ValidateRun:
    subject: str  # what was validated: the project and its commit
    target: TargetInfo
    commands: list[str]
    quick: bool
    parts: list[Part]
    allocs: list[AllocsRun]
    flame: FlameRun | None
    memory: MemoryRun | None
    bench: BenchRun | None
    recommendations: list[Recommendation]
    throughput: VsRedis | None
    p99: VsRedis | None
    overall: str  # OVERALL_*
    verdict: str  # APPROVED, ...
    blockers: list[str]  # what stands between the change and a commit
    action_items: list[str]
    seconds: float
    commit: str | None = None
    notes: list[Note] = field(default_factory=list)
    # The regression check against a saved baseline, or why it did not run (no baseline, ...).
    regress: RegressRun | None = None
    regression_missing: str | None = None
    # The figures the verdict table left undecided (analysis.judgement): why the verdict is NOT JUDGED.
    undecided: list[str] = field(default_factory=list)
    syscalls: list[SyscallsRun] = field(default_factory=list)
