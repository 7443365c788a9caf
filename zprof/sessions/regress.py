"""zprof regress's check: the baseline's own builds, kept beside it (`zprof.builder.stored`), run again now
beside the current tree, so that the machine's mood of the day falls on both alike.

- The exact signals (allocations per request with the shim, instructions per request where callgrind or
  hardware counters can count) of both builds, measured now by the suite and compared as counts.
- The noisy ones (throughput, p50, p99): rounds of A B B A on fresh servers with zprof compare's sequential
  test, until each figure is shown within the threshold or beyond it, or the budget is spent.

Only where the baseline's builds cannot run here (none kept, a file missing or changed, another machine's)
are the figures it recorded when it was saved used, and the check says so."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from zprof.analysis.regression import compare, cpu_checked, outcome_of
from zprof.builder.stored import VALGRIND_ARGS, StoredBuild, keep
from zprof.load.workloads import DEFAULT_KEYSPACE, with_hits, workload_for
from zprof.model.baseline import (
    CALLGRIND,
    NONE,
    NOT_COMPARABLE,
    REGRESSION,
    SERVER_BUILD,
    SHIM_BUILD,
    SIDE_BY_SIDE,
    UNDECIDED,
    UNMEASURED,
    VALGRIND_BUILD,
    Baseline,
    Check,
    RegressRun,
    StoredBinary,
    SuiteSettings,
)
from zprof.model.common import Note
from zprof.model.compare import INCONCLUSIVE, PASS, FigureChange
from zprof.progress import Prefixed, Reporter
from zprof.sessions.baseline import (
    WORKING_TREE,
    CountedChange,
    InstructionCounter,
    SuiteOptions,
    count_change,
    regress_thresholds,
    run_suite,
)
from zprof.sessions.compare import CompareOptions, Contender, run_rounds
from zprof.sessions.target import TargetOptions, build_target, gate_measurement

DEFAULT_BUDGET_S = 600.0
# The rounds' figures, as the check names them (the past figures' names, so that both read alike).
ROUND_METRICS = {"throughput": "throughput", "p50": "p50 latency", "p99": "p99 latency"}
ASSESSMENTS = {PASS: NONE, REGRESSION: REGRESSION, INCONCLUSIVE: UNDECIDED}
INSTRUCTIONS_METRIC = "instructions/request"


def keep_builds(target: TargetOptions, baseline: Baseline, store: Path, progress: Reporter) -> list[StoredBinary]:
    """The builds the suite measured (all in zprof's build cache by now): the server, its shim build, and its
    build for valgrind where callgrind counted; kept in the project's .zprof/ for regress to run again."""
    builds = [(SERVER_BUILD, False, ()), (SHIM_BUILD, True, ())]
    if baseline.instruction_source == CALLGRIND:
        builds.append((VALGRIND_BUILD, False, VALGRIND_ARGS))
    return [keep(build_target(target, progress, with_shim=with_shim, extra_args=extra).result, role, store)
            for role, with_shim, extra in builds]


def kept_builds(baseline: Baseline, file: Path) -> tuple[StoredBuild | None, str | None]:
    """The baseline's kept builds, from the .zprof/ its file is in, or why they cannot run here."""
    kept = StoredBuild(file.absolute().parent.parent, tuple(baseline.binaries))
    reason = kept.why_not_runnable()
    return (None, reason) if reason else (kept, None)


def check_regression(target: TargetOptions, baseline: Baseline, file: Path, settings: SuiteSettings,
                     progress: Reporter, budget: float = DEFAULT_BUDGET_S) -> RegressRun:
    """The check: side by side when the baseline's builds can run here, else against its recorded figures; a
    build that never starts could not be measured (exit 2)."""
    with gate_measurement():
        return _check(target, baseline, file, settings, progress, budget)


def _check(target: TargetOptions, baseline: Baseline, file: Path, settings: SuiteSettings, progress: Reporter,
           budget: float) -> RegressRun:
    thresholds = regress_thresholds(target)
    kept, why_not = kept_builds(baseline, file)
    if kept is None:
        current = run_suite(SuiteOptions(target, settings), WORKING_TREE, progress)
        checks, changes, warnings, outcome = compare(baseline, current, thresholds)
        warnings.insert(0, Note("regress.past-figures", {"reason": why_not, "measured": baseline.measured}))
        return RegressRun(baseline, current, thresholds, checks, changes, warnings, outcome,
                          cpu_checked=cpu_checked(checks, [change.command for change in changes]))
    reference_target = replace(target, stored=kept)
    exact = replace(settings, trials=0)
    reference = run_suite(SuiteOptions(reference_target, exact), baseline.name,
                          Prefixed(progress, f"baseline {baseline.name}:", " "))
    reference = replace(reference, git=baseline.git, measured=baseline.measured, binaries=baseline.binaries)
    # Trials of the current tree only to hold it against Redis' floor; the comparison itself is the rounds'.
    current = run_suite(SuiteOptions(target, settings if settings.against else exact), WORKING_TREE,
                        Prefixed(progress, "working tree:", " "))
    checks, changes, warnings, _ = compare(reference, current, thresholds)
    checks = _recounted(checks, reference, current, (reference_target, target), settings, progress)
    rounds = 0
    if settings.trials:
        options = CompareOptions(target, baseline.name, None,
                                 [workload_for(command, None, DEFAULT_KEYSPACE) for command in settings.commands],
                                 threshold=thresholds.min_effect_percent, alpha=thresholds.alpha, budget=budget,
                                 allocations=False, instructions=False)
        commit = baseline.git.commit if baseline.git else None
        measured = run_rounds(options, (Contender(f"baseline {baseline.name}", commit, reference_target),
                                        Contender(WORKING_TREE, None, target)), progress)
        rounds = measured.rounds
        warnings += measured.notes
        checks += [_round_check(change.command, figure, change.failure)
                   for change in measured.changes for figure in change.figures]
    cpu = cpu_checked(checks, settings.commands)
    return RegressRun(reference, current, thresholds, checks, changes, warnings, outcome_of(checks, cpu=cpu),
                      compared=SIDE_BY_SIDE, rounds=rounds, cpu_checked=cpu)


def _recounted(checks: list[Check], reference: Baseline, current: Baseline,
               targets: tuple[TargetOptions, TargetOptions], settings: SuiteSettings, progress: Reporter
               ) -> list[Check]:
    """The instruction rows whose counts differ, counted again on both builds (B then A): a difference that
    does not repeat on the same build (work timed by the clock) is not exact, and the row says so."""
    workloads = {workload.label: workload for workload in
                 with_hits([workload_for(command, None, DEFAULT_KEYSPACE) for command in settings.commands])}
    counters = (InstructionCounter(targets[0], settings.requests), InstructionCounter(targets[1], settings.requests))
    rows = []
    for check in checks:
        before, after = reference.command(check.command), current.command(check.command)
        if (check.metric != INSTRUCTIONS_METRIC or check.assessment == NOT_COMPARABLE or before is None
                or after is None or before.instructions is None or after.instructions is None
                or before.instructions.per_request == after.instructions.per_request
                or check.command not in workloads):
            rows.append(check)
            continue
        counted = count_change(counters, workloads[check.command],
                               Prefixed(progress, f"{check.command} instructions again:", " "),
                               first=(before.instructions, after.instructions))
        rows.append(check if isinstance(counted, str) or counted.repeats else
                    _interval_check(check, counted))
    return rows


def _interval_check(check: Check, counted: CountedChange) -> Check:
    """An instruction row whose counts did not repeat on the same build: not exact, so neither a pass nor a
    regression (the rounds, where they run, judge the CPU)."""
    return replace(check, change_percent=round(counted.estimate, 2), assessment=UNDECIDED,
                   basis=f"counted twice on each build, between {counted.low:+.1f}% and {counted.high:+.1f}%: the "
                         "same build counts differently from run to run (work timed by the clock), not exact here")


def _round_check(command: str, figure: FigureChange, failure: str | None) -> Check:
    """A figure of the rounds as a row of the check: its change after against before, with its interval."""
    metric = ROUND_METRICS[figure.metric]
    if failure is not None or figure.estimate_percent is None:
        return Check(command, metric, "%", None, None, None, UNMEASURED, failure or "not measured in the rounds")
    interval = (f" [{figure.interval_percent[0]:+.1f}%, {figure.interval_percent[1]:+.1f}%]"
                if figure.interval_percent else "")
    basis = {PASS: f"within {figure.threshold_percent:g}%", REGRESSION: "worse, beyond no change",
             INCONCLUSIVE: f"undecided: {figure.detectable_percent:.1f}% or more could have been seen"
             if figure.detectable_percent is not None else "undecided"}[figure.outcome]
    return Check(command, metric, "%", None, None, figure.estimate_percent, ASSESSMENTS[figure.outcome],
                 f"{figure.rounds} rounds side by side: {figure.estimate_percent:+.1f}%{interval}, {basis}")
