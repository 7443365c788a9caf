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

Other processes on the machine (neither a server nor the load generator) take CPU from whichever side
runs beside them, and nothing says they take it evenly: a Redis compared with itself while another
program used a core came out at half its own speed. A side cannot gain more CPU time than they used: its
server and generator spent S + G percent of a core on a fixed amount of work per request, so with the
others' O% as well they could have served at most (S + G + O) / (S + G) times the requests
(`interference`). A verdict is conclusive only when the 95% interval, widened by both sides' factors,
still lies in one level: a ZADD at 2% of Redis stays a conclusive unacceptable on a busy machine, a Redis
at 51% of itself does not.

Memory per key is a verdict only from `MIN_KEYS_FOR_VERDICT` keys on: below
that, the RSS per key extrapolates the allocator's fixed costs, and the status
is `indicative`.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

from zprof.analysis.stats import paired_ratio, summarize
from zprof.config import load_config
from zprof.model.bench import (
    ACCEPTABLE,
    EXCELLENT,
    FAILED,
    INDICATIVE,
    LEVELS,
    LOAD_BOUND,
    REDIS,
    TARGET,
    UNACCEPTABLE,
    UNSTABLE,
    CommandComparison,
    CommandFailure,
    MemoryComparison,
    MemoryRecord,
    RunRecord,
    ServerFigures,
    Thresholds,
    Verdict,
)
from zprof.model.common import Note, RatioEstimate

# A load generator using this much of its one core was likely the bottleneck.
GENERATOR_BOUND_PERCENT = 90.0
MACHINE_SATURATED_PERCENT = 95.0
# Said in the run's limitations from this interference factor on (other processes could have taken a tenth).
NOTED_INTERFERENCE = 1.1
# Memory per key is judged from this many keys on; below, it is indicative.
MIN_KEYS_FOR_VERDICT = 100_000


def load_thresholds(directory: Path) -> Thresholds:
    """The project's thresholds (`zprof.config`), or the defaults."""
    return load_config(directory).thresholds


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


def overall_verdict(commands: Sequence[CommandComparison],
                    memory: MemoryComparison | None) -> tuple[str | None, bool | None]:
    """The worst level among the findings (verdicts whose status is their level), and False when
    one at that level has a 95% interval reaching a better level."""
    findings = [verdict for command in commands for _, verdict in command.findings()]
    if memory is not None and memory.verdict is not None and memory.status == memory.verdict.level:
        findings.append(memory.verdict)
    level = worst([verdict.level for verdict in findings])
    if level is None:
        return None, None
    return level, all(verdict.conclusive is not False for verdict in findings if verdict.level == level)


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
    )


def interference(records: Sequence[RunRecord], cores: int) -> float:
    """How many times faster a side could have run without the other processes on the machine: the most,
    over its trials, of the CPU its server and load generator could have had (theirs and the others') over
    the CPU they had; 1.0 when nothing else ran."""
    factor = 1.0
    for record in records:
        others = record.cpu.others_percent(cores)
        used = (record.cpu.server_percent or 0.0) + record.cpu.load_generator_percent
        if others and used > 0:
            factor = max(factor, (used + others) / used)
    return round(factor, 2)


def _widened(estimate: RatioEstimate | None, low_by: float, high_by: float) -> RatioEstimate | None:
    if estimate is None or estimate.ci95 is None or (low_by == 1.0 and high_by == 1.0):
        return estimate
    low, high = estimate.ci95
    return RatioEstimate(estimate.percent, (round(low / low_by, 2), round(high * high_by, 2)), estimate.pairs)


def compare_command(command: str, args: str, records: Sequence[RunRecord], failure: CommandFailure | None,
                    thresholds: Thresholds, cores: int) -> CommandComparison:
    """Pairs the target's and Redis' runs trial by trial (only trials where both ran); `cores`: the machine's,
    to tell what other processes used."""
    by_side = {side: {r.trial: r for r in records if r.server == side} for side in (TARGET, REDIS)}
    figures_of = {side: server_figures(list(runs.values())) if runs else None for side, runs in by_side.items()}
    tool = next((record.tool for record in records), None)
    trials = sorted(set(by_side[TARGET]) & set(by_side[REDIS]))
    target = [by_side[TARGET][t] for t in trials]
    redis = [by_side[REDIS][t] for t in trials]
    if not trials:
        failed = FAILED if failure is not None else None
        return CommandComparison(command, args, tool, figures_of[TARGET], figures_of[REDIS], None, None, None, None,
                                 failed, failed, False, False, False, False, failure)
    target_figures, redis_figures = server_figures(target), server_figures(redis)
    throughput = paired_ratio([r.rps for r in target], [r.rps for r in redis])
    p99 = paired_ratio([r.latency_ms.p99 or 0.0 for r in target], [r.latency_ms.p99 or 0.0 for r in redis])
    slowed_target, slowed_redis = interference(target, cores), interference(redis, cores)
    # Throughput (target / Redis): a slowed target hides a higher ratio, a slowed Redis a lower one. p99: the
    # other way round.
    throughput_verdict = None if throughput is None else judge(
        _widened(throughput, slowed_redis, slowed_target), thresholds.throughput_excellent,  # type: ignore[arg-type]
        thresholds.throughput_acceptable, higher_is_better=True)
    latency_verdict = None if p99 is None else judge(
        _widened(p99, slowed_target, slowed_redis), thresholds.latency_excellent,  # type: ignore[arg-type]
        thresholds.latency_acceptable, higher_is_better=False)
    figures = (target_figures, redis_figures)
    unstable = any(f.rps.cv_percent is not None and f.rps.cv_percent > thresholds.unstable_cv for f in figures)
    latency_unstable = any(f.p99_cv_percent is not None and f.p99_cv_percent > thresholds.unstable_cv
                           for f in figures)
    generator_bound = any(f.load_generator_cpu_percent >= GENERATOR_BOUND_PERCENT for f in figures)
    saturated = any(f.machine_cpu_percent >= MACHINE_SATURATED_PERCENT for f in figures)
    failed = failure is not None
    return CommandComparison(
        command=command, args=args, tool=tool, target=target_figures, redis=redis_figures,
        throughput=throughput, p99=p99, throughput_verdict=throughput_verdict, latency_verdict=latency_verdict,
        throughput_status=status_of(throughput_verdict, failed, unstable, generator_bound or saturated),
        latency_status=status_of(latency_verdict, failed, latency_unstable, generator_bound or saturated),
        unstable=unstable, latency_unstable=latency_unstable, load_generator_bound=generator_bound,
        machine_saturated=saturated, failure=failure, target_interference=slowed_target,
        redis_interference=slowed_redis,
    )


def status_of(verdict: Verdict | None, failed: bool, unstable: bool, load_bound: bool) -> str | None:
    """One of STATUSES, by the rules of this module's docstring (None: not measured)."""
    if failed:
        return FAILED
    if verdict is None:
        return None
    if load_bound and not (verdict.level == UNACCEPTABLE and verdict.conclusive):
        return LOAD_BOUND
    return UNSTABLE if unstable and not verdict.conclusive else verdict.level


def compare_memory(keys: int, target: MemoryRecord | None, redis: MemoryRecord | None,
                   thresholds: Thresholds) -> MemoryComparison:
    ours = target.rss_per_million_keys if target else None
    theirs = redis.rss_per_million_keys if redis else None
    # A server whose DBSIZE says it holds other than `keys` keys makes "per key" meaningless.
    lost = any(record is not None and record.keys_stored not in (None, keys) for record in (target, redis))
    if lost or not ours or not theirs or ours <= 0 or theirs <= 0:
        return MemoryComparison(keys, target, redis, None, None, FAILED)
    # One measurement per server: no interval, so the verdict is not called conclusive.
    estimate = RatioEstimate(round(100 * ours / theirs, 2), None, 1)
    verdict = judge(estimate, thresholds.memory_excellent, thresholds.memory_acceptable, higher_is_better=False)
    return MemoryComparison(keys, target, redis, estimate.percent, verdict,
                            verdict.level if keys >= MIN_KEYS_FOR_VERDICT else INDICATIVE)


def comparison_limitations(commands: Sequence[CommandComparison], memory: MemoryComparison | None,
                           thresholds: Thresholds, trials: int) -> list[Note]:
    """What makes these comparisons less certain than they look."""
    notes: list[Note] = []

    def listed(flag: str) -> list[str]:
        return [command.command for command in commands if getattr(command, flag)]

    if trials < 2:
        notes.append(Note("bench.single-trial"))
    for flag, what in (("unstable", "throughput"), ("latency_unstable", "p99 latency")):
        if unstable := listed(flag):
            notes.append(Note("bench.unstable", {"metric": what, "cv": thresholds.unstable_cv, "commands": unstable}))
    if bound := listed("load_generator_bound"):
        notes.append(Note("bench.generator-bound", {"percent": GENERATOR_BOUND_PERCENT, "commands": bound}))
    if saturated := listed("machine_saturated"):
        notes.append(Note("bench.machine-saturated", {"percent": MACHINE_SATURATED_PERCENT, "commands": saturated}))
    disturbed = {command.command: max(command.target_interference, command.redis_interference) for command in commands
                 if max(command.target_interference, command.redis_interference) >= NOTED_INTERFERENCE}
    if disturbed:
        notes.append(Note("bench.interference", {"commands": list(disturbed), "most": max(disturbed.values())}))
    if memory is not None and memory.status == INDICATIVE:
        notes.append(Note("bench.memory-indicative", {"keys": memory.keys, "minimum": MIN_KEYS_FOR_VERDICT}))
    if memory is not None:
        for name, record in ((TARGET, memory.target), (REDIS, memory.redis)):
            if record is not None and not record.errors and record.keys_stored not in (None, record.keys):
                notes.append(Note("bench.keys-lost", {"server": name, "stored": record.keys_stored,
                                                      "keys": record.keys}))
    return notes
