"""A baseline and the current run of the same suite, compared metric by metric.

Deterministic signals are counts that repeat exactly from run to run, so they are compared as
counts: any increase of allocations per request is a regression (one allocation more over the whole
run is enough); bytes allocated or retained per request, and instructions per request, regress
beyond a percentage (2% by default).

Noisy signals (throughput, p50 and p99 latency) move from trial to trial, so the gate asks two
questions before it calls a change a regression: is it significant (Welch's t-test on the
logarithms of the trials' figures, which handles unequal trial counts and unequal spreads; or
Mann-Whitney U), and is it larger than a minimum effect (5%)? A significant change between 3% and
5% is minor. A side whose trials spread by more than 10% (CV), or during whose trials other
processes took more than 30% of a core, is unstable: reported, never a regression. What the
trials cannot see, a machine that was slower all through one run and not the other, the Redis
ratio cancels: both servers ran in the same trials, alternating, so that ratio is compared too, and
a throughput under 70% of Redis' blocks.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from zprof.analysis.stats import paired_ratio
from zprof.model.baseline import (
    FAIL,
    INCONCLUSIVE,
    MINOR,
    NONE,
    NOT_COMPARABLE,
    NOT_MEASURED,
    PASS,
    REGRESSION,
    UNDECIDED,
    UNMEASURED,
    UNSTABLE,
    AllocSignals,
    Baseline,
    Check,
    CommandChanges,
    CommandSignals,
    FunctionChange,
    InstructionSignals,
    NoisySignals,
    Place,
    RegressThresholds,
    SiteChange,
    TrialSample,
)
from zprof.model.common import MachineInfo, Note, RatioEstimate
from zprof.units import human_bytes

WELCH, MANN_WHITNEY = "welch", "mann-whitney"
TESTS = (WELCH, MANN_WHITNEY)
# Functions listed under a command whose instructions grew.
TOP_FUNCTIONS = 5
# A function's own instructions must move by this many per request to be listed.
MIN_FUNCTION_DELTA = 0.5


_GENERATED_SUFFIX = re.compile(r"__(anon|struct|union|enum|opaque)_\d+")


def stable_name(function: str) -> str:
    """A function's name without the numbers Zig gives generic instances and anonymous types
    (`spawn__anon_8017`, `Writer__struct_17141`): they change with any edit elsewhere in the program,
    which would make one function look like two, one gone and one new."""
    return _GENERATED_SUFFIX.sub("", function)


def fingerprint(machine: MachineInfo) -> str:
    """What makes absolute times comparable between two runs: the CPU, how many, and the kernel."""
    return f"{machine.model}, {machine.cores} cores, {machine.kernel}"


# Statistics -------------------------------------------------------------------------------------
def cv_percent(values: Sequence[float]) -> float | None:
    """Coefficient of variation in percent; None with fewer than two values."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    return 100 * statistics.stdev(values) / mean if mean > 0 else None


def p_value(baseline: Sequence[float], current: Sequence[float], test: str = WELCH) -> float | None:
    """Two-sided p-value that the two samples come from one distribution; None with fewer than two
    values on a side. Welch's t-test runs on logarithms: a slowdown is a factor, and the logarithm
    makes the figures' spread alike at every speed."""
    if len(baseline) < 2 or len(current) < 2 or min(*baseline, *current) <= 0:
        return None
    from scipy import stats as scipy_stats  # here: importing it takes most of a second, and few runs need it

    if test == MANN_WHITNEY:
        return float(scipy_stats.mannwhitneyu(baseline, current, alternative="two-sided").pvalue)
    before, after = [math.log(value) for value in baseline], [math.log(value) for value in current]
    if statistics.pvariance(before) == 0 and statistics.pvariance(after) == 0:
        return 1.0 if statistics.fmean(before) == statistics.fmean(after) else 0.0
    return float(scipy_stats.ttest_ind(before, after, equal_var=False).pvalue)


def change_percent(baseline: float | None, current: float | None) -> float | None:
    if baseline is None or current is None or baseline == 0:
        return None
    return 100 * (current - baseline) / baseline


@dataclass(frozen=True)
class Samples:
    """One noisy metric of one side: its figure in each trial, and the other processes' CPU then."""

    values: list[float]
    other_cpu: list[float | None]

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None


def _unsteady(side: str, samples: Samples, thresholds: RegressThresholds) -> str | None:
    """Why one side's trials cannot carry a verdict, or None."""
    spread = cv_percent(samples.values)
    if spread is not None and spread > thresholds.unstable_cv_percent:
        return f"{side} trials spread by {spread:.0f}% (CV over {thresholds.unstable_cv_percent:g}%)"
    busiest = max((other for other in samples.other_cpu if other is not None), default=None)
    if busiest is not None and busiest > thresholds.busy_cpu_percent:
        return (f"other processes used {busiest:.0f}% of a core during the {side} trials (over "
                f"{thresholds.busy_cpu_percent:g}%)")
    return None


@dataclass(frozen=True)
class NoisyComparison:
    """One noisy metric of one command, before and after, to be judged with the others of the check
    (`judge_noisy`). `shown`: the figures the row prints, when not the medians."""

    command: str
    metric: str
    unit: str
    baseline: Samples
    current: Samples
    higher_is_better: bool
    shown: tuple[float | None, float | None] | None = None
    remark: str | None = None  # said after the basis of the assessment, whatever it is

    def unsteady(self, thresholds: RegressThresholds) -> list[str]:
        return [why for side, samples in (("baseline", self.baseline), ("current", self.current))
                if (why := _unsteady(side, samples, thresholds)) is not None]

    def p_value(self, thresholds: RegressThresholds) -> float | None:
        """None when the trials cannot be tested: too few, or unsteady."""
        if self.unsteady(thresholds):
            return None
        return p_value(self.baseline.values, self.current.values, thresholds.test)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: with them, the chance that any of the
    tests calls a change significant when nothing changed stays under alpha, whatever their number."""
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, index in enumerate(sorted(range(len(p_values)), key=p_values.__getitem__)):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def judge_noisy(comparisons: list[NoisyComparison], thresholds: RegressThresholds) -> list[Check]:
    """Every noisy metric of a check, tested together: a check of 4 commands makes 12 tests or more,
    and at alpha 0.05 each, one of them would pass by chance in a good share of checks of an unchanged
    tree; Holm's correction keeps that share under alpha for the whole check."""
    raw = [comparison.p_value(thresholds) for comparison in comparisons]
    tested = [index for index, p in enumerate(raw) if p is not None]
    adjusted = dict(zip(tested, holm([raw[index] for index in tested]), strict=True))  # type: ignore[misc]
    return [assess_noisy(comparison, thresholds, raw[index], adjusted.get(index), len(tested))
            for index, comparison in enumerate(comparisons)]


def assess_noisy(comparison: NoisyComparison, thresholds: RegressThresholds, p: float | None = None,
                 adjusted: float | None = None, tests: int = 1) -> Check:
    """A regression only when the trials differ significantly (`adjusted`, Holm's p over the check's
    `tests`; alone, the test's own) and by more than the minimum effect, in the worse direction, on two
    steady sides."""
    baseline, current = comparison.baseline, comparison.current
    before, after = comparison.shown or (baseline.median, current.median)
    change = change_percent(before, after)
    if p is None and tests == 1:
        p = comparison.p_value(thresholds)
    if adjusted is None:
        adjusted = p

    def check(assessment: str, basis: str) -> Check:
        if comparison.remark:
            basis = f"{basis}; {comparison.remark}"
        return Check(comparison.command, comparison.metric, comparison.unit, before, after, _rounded(change),
                     assessment, basis, _rounded(p, 6), _rounded(adjusted, 6) if tests > 1 else None)

    unsteady = comparison.unsteady(thresholds)
    if unsteady:
        return check(UNSTABLE, "; ".join(unsteady))
    if p is None or adjusted is None or change is None:
        fewest = min(len(baseline.values), len(current.values))
        return check(NONE, f"{fewest} trial(s) on a side: too few to test")
    test = "Welch" if thresholds.test == WELCH else "Mann-Whitney"
    stated = f"{test} p={p:.2g}" + (f", Holm {adjusted:.2g} over {tests} tests" if tests > 1 else "")
    worse = change < 0 if comparison.higher_is_better else change > 0
    if adjusted >= thresholds.alpha:
        return check(NONE, f"not significant ({stated})")
    if not worse:
        return check(NONE, f"better ({stated})")
    size = abs(change)
    if size > thresholds.min_effect_percent:
        return check(REGRESSION, f"significant ({stated}) and over {thresholds.min_effect_percent:g}%")
    if size >= thresholds.minor_effect_percent:
        return check(MINOR, f"significant ({stated}), {thresholds.minor_effect_percent:g}-"
                            f"{thresholds.min_effect_percent:g}%")
    return check(NONE, f"significant ({stated}) but under {thresholds.minor_effect_percent:g}%")


def _rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


# Deterministic signals ------------------------------------------------------------------------
def assess_allocs(command: str, baseline: AllocSignals, current: AllocSignals) -> Check:
    """Any increase is a regression: one allocation more over the run is more than rounding, unless the idle
    server allocates in bursts (a timer), whose one more or fewer in a window is no change of the code."""
    rounding = 0.5 / min(baseline.requests, current.requests)
    idle = baseline.resolution + current.resolution
    tolerance = max(rounding, idle)
    delta = current.allocs - baseline.allocs
    if delta > tolerance:
        assessment, basis = REGRESSION, f"{delta:+.2f} per request (any increase" + (
            f" beyond the idle work's ±{idle:.3f})" if idle > rounding else ")")
    elif delta < -tolerance:
        assessment, basis = NONE, f"{delta:+.2f} per request (fewer)"
    elif abs(delta) > rounding:
        assessment, basis = NONE, (f"{delta:+.3f} per request, within the idle work's ±{idle:.3f} (the idle server "
                                   "allocates in bursts)")
    else:
        assessment, basis = NONE, "the same count"
    return Check(command, "allocations/request", "", baseline.allocs, current.allocs,
                 _rounded(change_percent(baseline.allocs, current.allocs)), assessment, basis)


def assess_growth(command: str, metric: str, unit: str, baseline: float, current: float, limit_percent: float,
                  describe: Callable[[float], str]) -> Check:
    """A count that regresses beyond `limit_percent` of the baseline's (or from nothing to something)."""
    change = change_percent(baseline, current)
    delta = current - baseline
    if baseline <= 0:
        grew = current >= 1
        basis = f"{describe(delta)} from none" if grew else "none before, none now"
    else:
        grew = change is not None and change > limit_percent
        basis = (f"{describe(delta)}, over {limit_percent:g}%" if grew else
                 "the same count" if delta == 0 else f"{describe(delta)}, within {limit_percent:g}%")
    return Check(command, metric, unit, baseline, current, _rounded(change), REGRESSION if grew else NONE, basis)


def _signed_bytes(delta: float) -> str:
    return ("+" if delta >= 0 else "-") + human_bytes(abs(delta)) + " per request"


def _signed_count(delta: float) -> str:
    return f"{delta:+,.0f} per request"


def site_changes(baseline: AllocSignals, current: AllocSignals) -> list[SiteChange]:
    """The call sites whose allocations moved, by function (its sites on one layer summed, so that
    lines shifted by an edit elsewhere in the file do not count as moves) and line."""
    tolerance = 0.5 / min(baseline.requests, current.requests)
    totals: dict[tuple[str, str, str | None], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    places: dict[tuple[str, str, str | None], tuple[list[Place], list[Place]]] = defaultdict(lambda: ([], []))
    for index, signals in enumerate((baseline, current)):
        for site in sorted(signals.sites, key=lambda site: -site.allocs_per_request):
            key = (stable_name(site.function), site.layer, site.nested_in)
            totals[key][index] += site.allocs_per_request
            totals[key][2 + index] += site.bytes_per_request
            if (site.file, site.line) not in places[key][index]:
                places[key][index].append((site.file, site.line))
    changes = [
        SiteChange(function, layer, nested_in, places[key][1] or places[key][0], round(before, 4), round(after, 4),
                   round(bytes_before, 3), round(bytes_after, 3))
        for key, (before, after, bytes_before, bytes_after) in totals.items()
        for function, layer, nested_in in (key,)
        if abs(after - before) > tolerance or abs(bytes_after - bytes_before) >= 1
    ]
    # Program code first (what the per-request counts add up), then allocators' backing calls.
    changes.sort(key=lambda change: (change.nested_in is not None, -change.delta,
                                     -(change.current_bytes - change.baseline_bytes), change.function))
    return changes


def function_changes(baseline: InstructionSignals, current: InstructionSignals,
                     top: int = TOP_FUNCTIONS) -> list[FunctionChange]:
    """The functions whose own instructions per request grew most (a function below the stored list
    counts as none)."""
    def by_name(signals: InstructionSignals) -> dict[str, tuple[str | None, float]]:
        costs: dict[str, tuple[str | None, float]] = {}
        for cost in signals.functions:
            file, instructions = costs.get(stable_name(cost.function), (cost.file, 0.0))
            costs[stable_name(cost.function)] = (file, instructions + cost.instructions)
        return costs

    before, after = by_name(baseline), by_name(current)
    changes = [FunctionChange(name, (after.get(name) or before[name])[0], before.get(name, (None, 0.0))[1],
                              after.get(name, (None, 0.0))[1])
               for name in before.keys() | after.keys()]
    grown = [change for change in changes if change.delta >= MIN_FUNCTION_DELTA]
    grown.sort(key=lambda change: (-change.delta, change.function))
    return grown[:top]


# Noisy signals ------------------------------------------------------------------------------
def _samples(trials: list[TrialSample], figure: Callable[[TrialSample], float | None]) -> Samples:
    kept = [(value, trial.other_cpu_percent) for trial in trials if (value := figure(trial)) is not None]
    return Samples([value for value, _ in kept], [other for _, other in kept])


def _pairs(noisy: NoisySignals) -> list[tuple[TrialSample, TrialSample]]:
    """The target's and Redis' runs of each trial where both ran."""
    redis = {trial.trial: trial for trial in noisy.redis}
    return [(trial, redis[trial.trial]) for trial in noisy.target
            if trial.trial in redis and redis[trial.trial].rps > 0]


def _ratios(noisy: NoisySignals) -> Samples:
    """The target's throughput in percent of Redis' in each trial; the busier of the two runs' other
    processes."""
    pairs = _pairs(noisy)
    return Samples([100 * target.rps / reference.rps for target, reference in pairs],
                   [max((v for v in (target.other_cpu_percent, reference.other_cpu_percent) if v is not None),
                        default=None) for target, reference in pairs])


NOISY_METRICS: tuple[tuple[str, str, Callable[[TrialSample], float | None], bool], ...] = (
    ("throughput", "req/s", lambda trial: trial.rps, True),
    ("p50 latency", "ms", lambda trial: trial.p50_ms, False),
    ("p99 latency", "ms", lambda trial: trial.p99_ms, False),
)


def assess_redis_ratio(command: str, baseline: NoisySignals | None, current: NoisySignals,
                       thresholds: RegressThresholds) -> Check | NoisyComparison:
    """Falling under the floor (70% of Redis' throughput) blocks, unless the trials were too unsteady to
    say and the 95% interval reaches the floor; otherwise, and when the baseline was under the floor in
    any of its trials (the change did not put it there), the ratio is compared with the baseline's like
    any noisy figure. The ratio shown is the geometric mean over the trials' pairs (`paired_ratio`)."""
    metric, floor = "throughput % of Redis", thresholds.redis_floor_percent
    now, estimate = _ratios(current), _estimate(current)
    before = baseline if baseline is not None and baseline.redis else None
    estimate_before = _estimate(before) if before else None
    base_value = estimate_before.percent if estimate_before else None
    change = _rounded(change_percent(base_value, estimate.percent if estimate else None))
    if estimate is None:
        return Check(command, metric, "%", base_value, None, None, UNMEASURED, "no trial where both servers ran")
    if estimate_before is not None and estimate.percent < floor:
        # Falling under the floor needs a baseline that was above it in every one of its trials.
        lowest = min(_ratios(before).values, default=estimate_before.percent)  # type: ignore[arg-type]
        if lowest < floor:
            already = ("as in the baseline" if estimate_before.percent < floor else
                       f"the baseline was under it in a trial ({lowest:.0f}%)")
            return NoisyComparison(command, metric, "%", _ratios(before), now, True,  # type: ignore[arg-type]
                                   (base_value, estimate.percent), remark=f"under {floor:g}% of Redis, {already}")
    if estimate.percent < floor:
        interval = f" (95% CI {estimate.ci95[0]:.0f}-{estimate.ci95[1]:.0f}%)" if estimate.ci95 else ""
        unsteady = _unsteady("current", now, thresholds)
        if unsteady is not None and (estimate.ci95 is None or estimate.ci95[1] >= floor):
            return Check(command, metric, "%", base_value, estimate.percent, change, UNSTABLE,
                         f"{estimate.percent:.0f}% of Redis{interval}, under {floor:g}%, but {unsteady}")
        return Check(command, metric, "%", base_value, estimate.percent, change, REGRESSION,
                     f"{estimate.percent:.0f}% of Redis{interval}: under {floor:g}% blocks")
    if before is None:
        return Check(command, metric, "%", None, estimate.percent, None, NONE,
                     f"at least {floor:g}% of Redis; the baseline has no Redis trials")
    return NoisyComparison(command, metric, "%", _ratios(before), now, True, (base_value, estimate.percent))


def _estimate(noisy: NoisySignals) -> RatioEstimate | None:
    pairs = _pairs(noisy)
    return paired_ratio([target.rps for target, _ in pairs], [reference.rps for _, reference in pairs])


# The whole check ----------------------------------------------------------------------------
def comparability(baseline: Baseline, current: Baseline) -> tuple[list[Note], bool, bool]:
    """Warnings, and whether absolute times and instruction counts can be compared."""
    warnings: list[Note] = []
    times, instructions = True, True
    if fingerprint(baseline.machine) != fingerprint(current.machine):
        warnings.append(Note("regress.other-machine", {"baseline": fingerprint(baseline.machine),
                                                       "current": fingerprint(current.machine)}))
        times = False
    for what, before, after in (("Zig", baseline.target.zig_version, current.target.zig_version),
                                ("build mode", baseline.target.optimize, current.target.optimize)):
        if before != after:
            warnings.append(Note("regress.other-build", {"what": what, "baseline": before, "current": after}))
            times = instructions = False
    if (baseline.instruction_source and current.instruction_source
            and baseline.instruction_source != current.instruction_source):
        warnings.append(Note("regress.other-instruction-source", {"baseline": baseline.instruction_source,
                                                                  "current": current.instruction_source}))
        instructions = False
    before, after = baseline.settings, current.settings
    if (before.requests, before.warmup) != (after.requests, after.warmup):
        warnings.append(Note("regress.other-suite", {"baseline": [before.requests, before.warmup],
                                                     "current": [after.requests, after.warmup]}))
    return warnings, times, instructions


def _command_checks(name: str, before: CommandSignals, after: CommandSignals, current: Baseline,
                    thresholds: RegressThresholds, times: bool, instructions_comparable: bool,
                    ) -> tuple[list[Check | NoisyComparison], CommandChanges]:
    checks: list[Check | NoisyComparison] = [assess_allocs(name, before.allocs, after.allocs),
              assess_growth(name, "bytes allocated/request", "B", before.allocs.bytes_allocated,
                            after.allocs.bytes_allocated, thresholds.bytes_percent, _signed_bytes),
              assess_growth(name, "bytes retained/request", "B", before.allocs.bytes_retained,
                            after.allocs.bytes_retained, thresholds.bytes_percent, _signed_bytes)]
    sites = site_changes(before.allocs, after.allocs)
    functions: list[FunctionChange] = []
    metric = "instructions/request"
    if before.instructions is not None:
        if after.instructions is None:
            checks.append(Check(name, metric, "", before.instructions.per_request, None, None, UNMEASURED,
                                after.instructions_absent or current.instructions_absent or "not measured"))
        elif not instructions_comparable:
            checks.append(Check(name, metric, "", before.instructions.per_request, after.instructions.per_request,
                                _rounded(change_percent(before.instructions.per_request,
                                                        after.instructions.per_request)),
                                NOT_COMPARABLE, "another compiler, build mode or counter (see the warnings)"))
        else:
            checks.append(assess_growth(name, metric, "", before.instructions.per_request,
                                        after.instructions.per_request, thresholds.instructions_percent,
                                        _signed_count))
            functions = function_changes(before.instructions, after.instructions)
    if before.noisy is not None and current.settings.trials:
        checks += _noisy_checks(name, before.noisy, after, thresholds, times)
    elif after.noisy is not None and after.noisy.redis:  # the floor holds without a baseline to compare with
        checks.append(assess_redis_ratio(name, None, after.noisy, thresholds))
    return checks, CommandChanges(name, sites, functions)


def _noisy_checks(name: str, before: NoisySignals, after: CommandSignals, thresholds: RegressThresholds,
                  times: bool) -> list[Check | NoisyComparison]:
    if after.noisy is None:
        return [Check(name, metric, unit, _samples(before.target, figure).median, None, None, UNMEASURED,
                      after.noisy_absent or "not measured") for metric, unit, figure, _ in NOISY_METRICS]
    checks: list[Check | NoisyComparison] = []
    for metric, unit, figure, higher_is_better in NOISY_METRICS:
        old, new = _samples(before.target, figure), _samples(after.noisy.target, figure)
        if not times:
            checks.append(Check(name, metric, unit, old.median, new.median,
                                _rounded(change_percent(old.median, new.median)), NOT_COMPARABLE,
                                "absolute times from another machine or build"))
        elif old.values and new.values:
            checks.append(NoisyComparison(name, metric, unit, old, new, higher_is_better))
    if after.noisy.redis:
        checks.append(assess_redis_ratio(name, before, after.noisy, thresholds))
    return checks


def compare(baseline: Baseline, current: Baseline, thresholds: RegressThresholds) -> tuple[
        list[Check], list[CommandChanges], list[Note], str]:
    """The check's rows, what accounts for the changes, the warnings, and the outcome."""
    warnings, times, instructions = comparability(baseline, current)
    rows: list[Check | NoisyComparison] = []
    changes: list[CommandChanges] = []
    for before in baseline.commands:
        after = current.command(before.command)
        if after is None:
            continue
        command_rows, accounted = _command_checks(before.command, before, after, current, thresholds, times,
                                                  instructions)
        rows += command_rows
        changes.append(accounted)
    noisy = [row for row in rows if isinstance(row, NoisyComparison)]
    judged = dict(zip(map(id, noisy), judge_noisy(noisy, thresholds), strict=True))
    checks = [judged[id(row)] if isinstance(row, NoisyComparison) else row for row in rows]
    missing = [signals.command for signals in baseline.commands if current.command(signals.command) is None]
    if missing:
        warnings.append(Note("regress.commands-not-run", {"commands": missing}))
    compared = {signals.command for signals in baseline.commands}
    extra = [signals.command for signals in current.commands if signals.command not in compared]
    if extra:
        warnings.append(Note("regress.commands-not-in-baseline", {"commands": extra}))
    return checks, changes, warnings, outcome_of(checks, cpu=cpu_checked(checks, [c.command for c in changes]))


def cpu_checked(checks: list[Check], commands: list[str]) -> bool:
    """Whether every command's CPU was checked by a figure that can show it unchanged: instructions counted
    and compared, or throughput decided side by side. Past timings cannot: "not significant" over a few trials
    of another hour is not "within the threshold"."""
    return all(any(check.command == command and check.assessment in (NONE, MINOR, REGRESSION)
                   and (check.metric == "instructions/request" or (check.metric == "throughput" and check.unit == "%"))
                   for check in checks) for command in commands)


def outcome_of(checks: list[Check], *, cpu: bool = True) -> str:
    """Regression if any figure regressed; could not measure when nothing (or a figure of the baseline) was;
    inconclusive when a figure is undecided, unstable or not comparable, or the CPU was not checked; else pass."""
    if any(check.assessment == REGRESSION for check in checks):
        return FAIL
    if not checks or any(check.assessment == UNMEASURED for check in checks):
        return NOT_MEASURED
    if not cpu or any(check.assessment in (UNDECIDED, UNSTABLE, NOT_COMPARABLE) for check in checks):
        return INCONCLUSIVE
    return PASS
