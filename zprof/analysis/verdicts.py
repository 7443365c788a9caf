"""From raw trials to verdicts: each command's throughput and p99 latency, and
the memory per key, as a percentage of Redis', judged against thresholds.

The default thresholds are Zoltraak's performance standards:

| | excellent | acceptable | unacceptable |
|---|---|---|---|
| throughput | >= 90% of Redis' | >= 70% | < 70% |
| p99 latency | <= 110% of Redis' | <= 125% | > 125% |
| RSS per 1M keys | <= 120% of Redis' | <= 150% | > 150% |

A project overrides them with the keys of `Thresholds` (percentages), in
`zprof.toml` (at its top level, or in a `[bench]` table) or in the `[tool.zprof]`
table of its `pyproject.toml` (or `[tool.zprof.bench]`); `zprof.toml` wins.

Each command gets a status per metric, one of `STATUSES`: `failed` when a
server answered it with errors (or lost messages, or never completed a
request); `load-bound` when the load generator used most of its core or the
machine's CPUs were full during a trial, so that the generator, not the server,
may have set the pace (a conclusively `unacceptable` verdict stands: a
bound generator only pulls the ratios toward 100%); `unstable` when a server's
figure for that metric (throughput, or p99 latency) varied by more than
`unstable_cv` percent (CV) over the trials and the ratio's 95% interval is not
wholly inside one level; otherwise the level.

Memory per key is a verdict only from `MIN_KEYS_FOR_VERDICT` keys on: below
that, the RSS per key extrapolates the allocator's fixed costs, and the status
is `indicative`.
"""

from __future__ import annotations

import math
import statistics
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

from zprof.analysis.stats import RatioEstimate, Summary, paired_ratio, summarize
from zprof.errors import ZprofError
from zprof.load.benchmark_runs import REDIS, TARGET, CommandFailure, MemoryRecord, RunRecord

EXCELLENT, ACCEPTABLE, UNACCEPTABLE = "excellent", "acceptable", "unacceptable"
UNSTABLE, FAILED, LOAD_BOUND, INDICATIVE = "unstable", "failed", "load-bound", "indicative"
LEVELS = (EXCELLENT, ACCEPTABLE, UNACCEPTABLE)
STATUSES = (EXCELLENT, ACCEPTABLE, UNACCEPTABLE, UNSTABLE, LOAD_BOUND, FAILED)
MEMORY_STATUSES = (EXCELLENT, ACCEPTABLE, UNACCEPTABLE, INDICATIVE, FAILED)
# A load generator using this much of its one core was likely the bottleneck.
GENERATOR_BOUND_PERCENT = 90.0
MACHINE_SATURATED_PERCENT = 95.0
# Memory per key is judged from this many keys on; below, it is indicative.
MIN_KEYS_FOR_VERDICT = 100_000


@dataclass(frozen=True)
class Thresholds:
    """Percentages of Redis' figure; throughput must reach, latency and memory must not exceed."""

    throughput_excellent: float = 90.0
    throughput_acceptable: float = 70.0
    latency_excellent: float = 110.0
    latency_acceptable: float = 125.0
    memory_excellent: float = 120.0
    memory_acceptable: float = 150.0
    # Coefficient of variation of a server's throughput over the trials above which a command is unstable.
    unstable_cv: float = 10.0
    source: str = "zprof's defaults (Zoltraak's performance standards)"


def load_thresholds(directory: Path) -> Thresholds:
    """`zprof.toml` first, then `pyproject.toml`'s `[tool.zprof]`, then the defaults."""
    for name, path_in_file in (("zprof.toml", ()), ("pyproject.toml", ("tool", "zprof"))):
        path = directory / name
        if not path.is_file():
            continue
        try:
            table: object = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as error:
            raise ZprofError(f"cannot read {path}: {error}") from error
        for key in path_in_file:
            table = table.get(key) if isinstance(table, dict) else None
        if not isinstance(table, dict):
            continue
        # The table may hold other commands' settings: only threshold-like keys are read (and checked) here.
        top = {key: value for key, value in table.items() if key.startswith(_THRESHOLD_PREFIXES)}
        bench = table.get("bench", {})
        if not isinstance(bench, dict):
            raise ZprofError(f"{path}: {'.'.join((*path_in_file, 'bench'))} must be a table")
        if not top and not bench:
            continue
        sections = ([f"[{'.'.join(path_in_file)}]" if path_in_file else "top level"] if top else []) + (
            [f"[{'.'.join((*path_in_file, 'bench'))}]"] if bench else [])
        return _thresholds_from({**top, **bench}, f"{path} {' and '.join(sections)}")
    return Thresholds()


_THRESHOLD_PREFIXES = ("throughput_", "latency_", "memory_", "unstable_")


def _thresholds_from(table: object, where: str) -> Thresholds:
    known = [f.name for f in fields(Thresholds) if f.name != "source"]
    if not isinstance(table, dict):
        raise ZprofError(f"{where} must be a table")
    values: dict[str, float] = {}
    for key, value in table.items():
        if key not in known:
            raise ZprofError(f"{where}: unknown key {key!r}", detail=f"Known keys: {', '.join(known)}.")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
            raise ZprofError(f"{where}: {key} must be a positive number of percent, not {value!r}")
        values[key] = float(value)
    thresholds = replace(Thresholds(), source=where, **values)
    if thresholds.throughput_excellent < thresholds.throughput_acceptable:
        raise ZprofError(f"{where}: throughput_excellent must not be below throughput_acceptable")
    for kind in ("latency", "memory"):
        if getattr(thresholds, f"{kind}_excellent") > getattr(thresholds, f"{kind}_acceptable"):
            raise ZprofError(f"{where}: {kind}_excellent must not be above {kind}_acceptable")
    return thresholds


@dataclass(frozen=True)
class Verdict:
    """`conclusive`: the 95% interval lies wholly in the level's band (None: no interval)."""

    level: str
    conclusive: bool | None


def judge(estimate: RatioEstimate, excellent: float, acceptable: float, *, higher_is_better: bool) -> Verdict:
    sign = 1 if higher_is_better else -1

    def level_of(percent: float) -> str:
        if sign * percent >= sign * excellent:
            return EXCELLENT
        return ACCEPTABLE if sign * percent >= sign * acceptable else UNACCEPTABLE

    level = level_of(estimate.percent)
    conclusive = None if estimate.ci95 is None else all(level_of(bound) == level for bound in estimate.ci95)
    return Verdict(level, conclusive)


def worst(levels: Sequence[str | None]) -> str | None:
    present = [level for level in levels if level is not None]
    return max(present, key=LEVELS.index) if present else None


@dataclass(frozen=True)
class ServerFigures:
    """One server's figures for one command: medians over its trials, and the trials themselves."""

    trials: int
    rps: Summary
    latency_ms: dict[str, float | None]
    p99_cv_percent: float | None
    cpu_percent: float | None
    load_generator_cpu_percent: float
    machine_cpu_percent: float
    records: tuple[RunRecord, ...] = ()


def _median_or_none(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return round(statistics.median(present), 3) if present else None


def _cv_or_none(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return summarize(present).cv_percent if present else None


def server_figures(records: Sequence[RunRecord]) -> ServerFigures:
    return ServerFigures(
        trials=len(records),
        rps=summarize([record.rps for record in records]),
        latency_ms={name: _median_or_none([getattr(record.latency_ms, name) for record in records])
                    for name in ("avg", "p50", "p95", "p99", "p999", "max")},
        p99_cv_percent=_cv_or_none([record.latency_ms.p99 for record in records]),
        cpu_percent=_median_or_none([record.cpu.server_percent for record in records]),
        load_generator_cpu_percent=statistics.median(record.cpu.load_generator_percent for record in records),
        machine_cpu_percent=statistics.median(record.cpu.machine_percent for record in records),
        records=tuple(records),
    )


@dataclass(frozen=True)
class CommandComparison:
    """`target` and `redis` cover every successful trial of each server; the ratios, only the
    trials where both ran (pairs)."""

    command: str
    args: str
    tool: str | None
    target: ServerFigures | None
    redis: ServerFigures | None
    throughput: RatioEstimate | None
    p99: RatioEstimate | None
    throughput_verdict: Verdict | None
    latency_verdict: Verdict | None
    verdict: str | None
    # A server's throughput, or p99 latency, varied by more than the unstable CV over the trials.
    unstable: bool
    latency_unstable: bool
    load_generator_bound: bool
    machine_saturated: bool
    failure: CommandFailure | None

    @property
    def failed(self) -> bool:
        return self.failure is not None

    @property
    def load_bound(self) -> bool:
        return self.load_generator_bound or self.machine_saturated

    def status(self, verdict: Verdict | None, unstable: bool) -> str | None:
        """One of STATUSES (None: not measured, which only a run cut short leaves)."""
        if self.failed:
            return FAILED
        if verdict is None:
            return None
        if self.load_bound and not (verdict.level == UNACCEPTABLE and verdict.conclusive):
            return LOAD_BOUND
        return UNSTABLE if unstable and not verdict.conclusive else verdict.level

    @property
    def throughput_status(self) -> str | None:
        return self.status(self.throughput_verdict, self.unstable)

    @property
    def latency_status(self) -> str | None:
        return self.status(self.latency_verdict, self.latency_unstable)

    def findings(self) -> list[tuple[str, Verdict]]:
        """The verdicts whose status is their level ("SET throughput", "SET p99"): the others are not findings."""
        return [(f"{self.command} {what}", verdict)
                for what, verdict, status in (("throughput", self.throughput_verdict, self.throughput_status),
                                              ("p99", self.latency_verdict, self.latency_status))
                if verdict is not None and status == verdict.level]

    def errors(self, server: str) -> int:
        """Error replies counted on `server`: only a failed command has any (redis-benchmark stops at the
        first, so an unknown count is 1)."""
        if self.failure is None or self.failure.server != server:
            return 0
        return self.failure.errors if self.failure.errors is not None else 1


def compare_command(command: str, args: str, records: Sequence[RunRecord], failure: CommandFailure | None,
                    thresholds: Thresholds) -> CommandComparison:
    """Pairs the target's and Redis' runs trial by trial (only trials where both ran)."""
    by_side = {side: {r.trial: r for r in records if r.server == side} for side in (TARGET, REDIS)}
    figures_of = {side: server_figures(list(runs.values())) if runs else None for side, runs in by_side.items()}
    tool = next((record.tool for record in records), None)
    trials = sorted(set(by_side[TARGET]) & set(by_side[REDIS]))
    target = [by_side[TARGET][t] for t in trials]
    redis = [by_side[REDIS][t] for t in trials]
    if not trials:
        return CommandComparison(command, args, tool, figures_of[TARGET], figures_of[REDIS], None, None, None, None,
                                 None, False, False, False, False, failure)
    target_figures, redis_figures = server_figures(target), server_figures(redis)
    throughput = paired_ratio([r.rps for r in target], [r.rps for r in redis])
    p99 = paired_ratio([r.latency_ms.p99 or 0.0 for r in target], [r.latency_ms.p99 or 0.0 for r in redis])
    throughput_verdict = None if throughput is None else judge(
        throughput, thresholds.throughput_excellent, thresholds.throughput_acceptable, higher_is_better=True)
    latency_verdict = None if p99 is None else judge(
        p99, thresholds.latency_excellent, thresholds.latency_acceptable, higher_is_better=False)
    figures = (target_figures, redis_figures)
    return CommandComparison(
        command=command, args=args, tool=tool, target=target_figures, redis=redis_figures,
        throughput=throughput, p99=p99, throughput_verdict=throughput_verdict, latency_verdict=latency_verdict,
        verdict=worst([v.level for v in (throughput_verdict, latency_verdict) if v is not None]),
        unstable=any(f.rps.cv_percent is not None and f.rps.cv_percent > thresholds.unstable_cv for f in figures),
        latency_unstable=any(f.p99_cv_percent is not None and f.p99_cv_percent > thresholds.unstable_cv
                             for f in figures),
        load_generator_bound=any(f.load_generator_cpu_percent >= GENERATOR_BOUND_PERCENT for f in figures),
        machine_saturated=any(f.machine_cpu_percent >= MACHINE_SATURATED_PERCENT for f in figures),
        failure=failure,
    )


@dataclass(frozen=True)
class MemoryComparison:
    keys: int
    target: MemoryRecord | None
    redis: MemoryRecord | None
    percent_of_redis: float | None
    verdict: Verdict | None

    @property
    def status(self) -> str:
        """The verdict's level; `indicative` below MIN_KEYS_FOR_VERDICT keys; `failed` when memory per key
        could not be judged (a load that failed, a server that did not keep the keys)."""
        if self.verdict is None:
            return FAILED
        return self.verdict.level if self.keys >= MIN_KEYS_FOR_VERDICT else INDICATIVE


def compare_memory(keys: int, target: MemoryRecord | None, redis: MemoryRecord | None,
                   thresholds: Thresholds) -> MemoryComparison:
    ours = target.rss_per_million_keys if target else None
    theirs = redis.rss_per_million_keys if redis else None
    # A server whose DBSIZE says it holds other than `keys` keys makes "per key" meaningless.
    lost = any(record is not None and record.keys_stored not in (None, keys) for record in (target, redis))
    if lost or not ours or not theirs or ours <= 0 or theirs <= 0:
        return MemoryComparison(keys, target, redis, None, None)
    # One measurement per server: no interval, so the verdict is not called conclusive.
    estimate = RatioEstimate(round(100 * ours / theirs, 2), None, 1)
    verdict = judge(estimate, thresholds.memory_excellent, thresholds.memory_acceptable, higher_is_better=False)
    return MemoryComparison(keys, target, redis, estimate.percent, verdict)


def comparison_limitations(commands: Sequence[CommandComparison], memory: MemoryComparison | None,
                           thresholds: Thresholds, trials: int) -> list[str]:
    """Plain sentences for what makes these comparisons less certain than they look."""
    notes: list[str] = []

    def listed(flag: str) -> str:
        return ", ".join(command.command for command in commands if getattr(command, flag))

    if trials < 2:
        notes.append("A single trial: no confidence interval and no spread; run 3 trials or more to judge the noise.")
    for flag, what in (("unstable", "throughput"), ("latency_unstable", "p99 latency")):
        if unstable := listed(flag):
            notes.append(f"Unstable {what} (a server's {what} varied by more than {thresholds.unstable_cv:g}% CV over "
                         f"the trials): {unstable}. The machine was noisy; where even the 95% interval lay wholly in "
                         "one level, that level stands, otherwise the status is unstable.")
    if bound := listed("load_generator_bound"):
        notes.append(f"The load generator used {GENERATOR_BOUND_PERCENT:.0f}% or more of its core on {bound}: it may "
                     "have set the pace, which pulls those ratios toward 100%, so their status is load-bound "
                     "(inconclusive) unless the verdict is a conclusive unacceptable.")
    if saturated := listed("machine_saturated"):
        notes.append(f"The machine's CPUs were {MACHINE_SATURATED_PERCENT:.0f}% or more busy during {saturated}: the "
                     "servers shared the cores with the load generator (and anything else running), so their status "
                     "is load-bound (inconclusive) unless the verdict is a conclusive unacceptable.")
    if memory is not None and memory.status == INDICATIVE:
        notes.append(f"Memory per key from {memory.keys:,} keys is indicative, not a verdict: below "
                     f"{MIN_KEYS_FOR_VERDICT:,} keys the servers' fixed costs weigh on the figure per key (--keys).")
    if memory is not None:
        for name, record in ((TARGET, memory.target), (REDIS, memory.redis)):
            if record is not None and not record.errors and record.keys_stored not in (None, record.keys):
                notes.append(f"The {name} reports {record.keys_stored:,} keys (DBSIZE) after {record.keys:,} SETs of "
                             "distinct keys, so zprof does not judge memory per key.")
    return notes
