"""The validation's verdict table, in one place: what each measured figure makes of the verdict, and the
verdict's overall level, which therefore never disagrees with it. README.md shows the two tables below as
they are here (tests/test_judgement.py checks it, and checks the tables over every combination of inputs).

<!-- verdict-table -->
| what was measured | outcome |
|---|---|
| throughput or p99 unacceptable, its 95% interval wholly in that band, widened by what others took | blocks |
| memory per key unacceptable, from enough keys for a verdict (100,000) | blocks |
| a command that failed on the target (error replies, lost replies) | blocks |
| a critical finding: a crash, a leak, errors under load, a function behind a blocking figure | blocks |
| a regression against the baseline | blocks |
| unacceptable, but its 95% interval reaches an acceptable level | undecided |
| load-bound or unstable, and not conclusively unacceptable | undecided |
| a command that failed on Redis, or was not compared | undecided |
| excellent or acceptable (the point estimate meets the standard) | passes |
| memory per key from fewer keys (indicative) | passes, said in the limitations |

| verdict | exit status | when (the first that applies) |
|---|---|---|
| NOT MEASURED | 2 | the comparison with Redis did not run |
| NEEDS WORK | 1 | anything blocks |
| NOT JUDGED | 2 | a figure is undecided, or none passed |
| APPROVED WITH MINOR REGRESSIONS | 0 | a minor regression against the baseline (a significant 3-5% loss) |
| PERFORMANCE APPROVED | 0 | every figure passed |
<!-- /verdict-table -->

A saturated load generator does not stop a conclusive unacceptable from blocking: saturation only pulls a
ratio towards 100%, so the true one is further off still. The overall level follows the verdict: NEEDS
WORK for NEEDS WORK, NOT JUDGED for NOT JUDGED and NOT MEASURED, and for an approval EXCELLENT when the
median throughput (and p99, when judged) is excellent, else ACCEPTABLE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from zprof.model.baseline import INCONCLUSIVE, MINOR, REGRESSION, RegressRun
from zprof.model.bench import (
    ACCEPTABLE,
    EXCELLENT,
    REDIS,
    UNACCEPTABLE,
    BenchRun,
    Verdict,
)
from zprof.model.common import RatioEstimate
from zprof.model.validate import (
    APPROVED,
    APPROVED_MINOR,
    NEEDS_WORK,
    NOT_JUDGED,
    NOT_MEASURED,
    OVERALL_ACCEPTABLE,
    OVERALL_EXCELLENT,
    OVERALL_NEEDS_WORK,
    OVERALL_NOT_JUDGED,
    Recommendation,
    VsRedis,
)

BLOCKS, UNDECIDED, PASSES = "blocks", "undecided", "passes"
LEVELS = (EXCELLENT, ACCEPTABLE, UNACCEPTABLE)


@dataclass(frozen=True)
class FigureOutcome:
    """One figure's place in the table: `name` as the report says it ("SET throughput", "memory per key"),
    and why, in words the report prints."""

    name: str
    outcome: str  # BLOCKS, UNDECIDED or PASSES
    why: str


@dataclass(frozen=True)
class Judgement:
    verdict: str
    overall: str
    blockers: list[str]
    undecided: list[str]


def figure_outcome(name: str, estimate: RatioEstimate | None, verdict: Verdict | None, status: str | None,
                   unit_threshold: str) -> FigureOutcome:
    """A command's throughput or p99 against the table: `status` is the bench's (a level, load-bound,
    unstable, failed or None), `verdict` its level and whether the interval lies in it."""
    if estimate is None or verdict is None or status is None:
        return FigureOutcome(name, UNDECIDED, f"{name} was not compared with Redis")
    figure = f"{name} is {estimate.percent:.1f}% of Redis'"
    if status == UNACCEPTABLE and verdict.level == UNACCEPTABLE:
        if verdict.conclusive:
            return FigureOutcome(name, BLOCKS, f"{figure}, {unit_threshold}")
        return FigureOutcome(name, UNDECIDED, f"{figure}, but its 95% interval reaches an acceptable level")
    if status in (EXCELLENT, ACCEPTABLE):
        return FigureOutcome(name, PASSES, f"{figure}: {status}")
    return FigureOutcome(name, UNDECIDED, f"{figure} and {status}: not judged")


def figure_outcomes(bench: BenchRun) -> list[FigureOutcome]:
    """Every figure of the comparison with Redis, in the table's terms."""
    thresholds = bench.thresholds
    outcomes: list[FigureOutcome] = []
    for command in bench.commands:
        if command.failure is not None:
            # The target failing a judged command blocks (and is a critical finding of its own, the error rule's);
            # Redis failing it leaves the command unjudged.
            side, outcome = ("Redis", UNDECIDED) if command.failure.server == REDIS else ("the target", BLOCKS)
            outcomes.append(FigureOutcome(command.command, outcome, f"{command.command} failed on {side}: "
                                          f"{command.failure.first_error}"))
            continue
        outcomes.append(figure_outcome(
            f"{command.command} throughput", command.throughput, command.throughput_verdict,
            command.throughput_status, f"under {thresholds.throughput_acceptable:g}%"))
        outcomes.append(figure_outcome(
            f"{command.command} p99", command.p99, command.latency_verdict, command.latency_status,
            f"over {thresholds.latency_acceptable:g}%"))
    memory = bench.memory
    if memory is not None and memory.verdict is not None and memory.status == UNACCEPTABLE:
        outcomes.append(FigureOutcome("memory per key", BLOCKS,
                                      f"memory per key is {memory.percent_of_redis:.0f}% of Redis', over "
                                      f"{thresholds.memory_acceptable:g}%"))
    return outcomes


def judge_validation(bench: BenchRun | None, recommendations: Sequence[Recommendation], regress: RegressRun | None,
                     throughput: VsRedis | None, p99: VsRedis | None) -> Judgement:
    """The verdict, the overall level, what blocks and what is left undecided, by the module's table."""
    blockers: list[str] = []
    if regress is not None:
        blockers += [f"regression of {check.command} {check.metric} against baseline {regress.baseline.name}"
                     for check in regress.checks if check.assessment == REGRESSION]
    outcomes = figure_outcomes(bench) if bench is not None else []
    blockers += [outcome.why for outcome in outcomes if outcome.outcome == BLOCKS]
    blockers += [f"critical: {recommendation.title}" for recommendation in recommendations if recommendation.critical]
    undecided = [outcome.why for outcome in outcomes if outcome.outcome == UNDECIDED]
    if regress is not None and regress.outcome == INCONCLUSIVE:
        undecided.append(f"the check against baseline {regress.baseline.name} could not tell whether anything "
                         "regressed" + ("" if regress.cpu_checked else " (the CPU was not checked)"))
    minor = regress is not None and any(check.assessment == MINOR for check in regress.checks)
    if bench is None:
        verdict = NOT_MEASURED
    elif blockers:
        verdict = NEEDS_WORK
    elif undecided or not any(outcome.outcome == PASSES for outcome in outcomes):
        verdict = NOT_JUDGED
    else:
        verdict = APPROVED_MINOR if minor else APPROVED
    return Judgement(verdict, overall_of(verdict, throughput, p99), blockers, undecided)


def overall_of(verdict: str, throughput: VsRedis | None, p99: VsRedis | None) -> str:
    if verdict == NEEDS_WORK:
        return OVERALL_NEEDS_WORK
    if verdict in (NOT_JUDGED, NOT_MEASURED):
        return OVERALL_NOT_JUDGED
    excellent = (throughput is None or throughput.level == EXCELLENT) and (p99 is None or p99.level == EXCELLENT)
    return OVERALL_EXCELLENT if excellent and (throughput or p99) else OVERALL_ACCEPTABLE
