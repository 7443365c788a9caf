"""One `zprof compare`: the project built at two revisions (the working tree by default for the second),
both run on this machine now, alternately, in rounds. A round is two pairs of runs on fresh servers, in the
order A B then B A (bench's alternating trials), so that whatever favours a run's place in a pair falls on
both builds alike; each round gives, per command, the mean log-ratio of B to A of its throughput, p50 and
p99. After every round a group-sequential test (zprof.analysis.sequential) decides each figure: within
the threshold (pass), beyond it (regression), or not yet; the rounds stop when every figure is decided,
when the planned rounds are done, or when the budget is spent (inconclusive, with the smallest change the
rounds could have seen).

Then, exactly: allocations per request of each build (the shim), and for a command whose CPU figure
regressed, a CPU profile of each build under the same load, whose shares name the functions that moved."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

from zprof.analysis.hotspots import share_changes
from zprof.analysis.sequential import HIGHER_IS_BETTER, INCONCLUSIVE, LOWER_IS_BETTER, Decision, Design, decide, plan
from zprof.builder.revisions import Revision, revision
from zprof.errors import EXIT_USAGE, ZprofError
from zprof.load.driver import Workload
from zprof.load.probe import probe
from zprof.load.redis_benchmark import redis_benchmark_path
from zprof.model.bench import BENCHMARK, RunRecord
from zprof.model.common import Note
from zprof.model.compare import (
    METRICS,
    NOT_MEASURED,
    PASS,
    REGRESSION,
    CommandChange,
    CompareRun,
    CompareSettings,
    FigureChange,
)
from zprof.model.compare import Side as ComparedSide
from zprof.progress import Prefixed, Reporter
from zprof.server import HOST, NeverStarted
from zprof.sessions.allocs import AllocsOptions, measure_allocs
from zprof.sessions.bench import AlternatingTrials, Side, check_config_get, plan_load
from zprof.sessions.flame import FlameOptions, record_flame
from zprof.sessions.target import TargetOptions, build_target, run_directory, server_spec

BEFORE, AFTER = "before", "after"
# Rounds at the most, whatever the plan says: a figure that needs more is inconclusive, and says what it could see.
MAX_ROUNDS = 60
# An allocation more every other request is a change of the code, not of the run.
ALLOCATIONS_CHANGE = 0.5
ALLOCS_REQUESTS = 2000
PROFILE_SECONDS = 5.0
FUNCTIONS_NAMED = 5


@dataclass(frozen=True)
class CompareOptions:
    target: TargetOptions
    before: str  # a revision
    after: str | None  # a revision, or None: the working tree
    workloads: list[Workload]
    threshold: float = 5.0  # percent of throughput
    latency_threshold: float = 10.0  # percent of p50 and p99
    alpha: float = 0.05
    power: float = 0.8
    noise: float = 3.0  # percent: the spread of one round's log-ratio the rounds are planned for
    budget: float = 600.0  # seconds of rounds
    clients: int = 50
    pipeline: int = 16
    requests: int = 20_000
    warmup: int = 2_000
    min_trial_seconds: float = 0.5
    allocations: bool = True


def _designs(options: CompareOptions) -> dict[str, Design]:
    family = len(options.workloads) * len(METRICS)
    base = Design(threshold_percent=options.threshold, alpha=options.alpha, family=family, power=options.power)
    rounds = min(plan(base, math.log1p(options.noise / 100)).max_rounds, MAX_ROUNDS)
    latency = replace(base, threshold_percent=options.latency_threshold, direction=LOWER_IS_BETTER)
    latency_rounds = min(plan(latency, math.log1p(options.noise / 100)).max_rounds, MAX_ROUNDS)
    rounds = max(rounds, latency_rounds, base.min_rounds)
    return {"throughput": replace(base, direction=HIGHER_IS_BETTER, max_rounds=rounds),
            "p50": replace(latency, max_rounds=rounds), "p99": replace(latency, max_rounds=rounds)}


def _figure(record: RunRecord, metric: str) -> float | None:
    return record.rps if metric == "throughput" else getattr(record.latency_ms, metric)


def _round_ratios(records: list[RunRecord], command: str) -> dict[str, float]:
    """The round's mean log-ratio, after to before, of each figure both builds measured in both pairs."""
    by_trial: dict[int, dict[str, RunRecord]] = {}
    for record in records:
        if record.command == command:
            by_trial.setdefault(record.trial, {})[record.server] = record
    ratios: dict[str, float] = {}
    for metric in METRICS:
        logs = []
        for pair in by_trial.values():
            before = _figure(pair[BEFORE], metric) if BEFORE in pair else None
            after = _figure(pair[AFTER], metric) if AFTER in pair else None
            if before and after:
                logs.append(math.log(after / before))
        if len(logs) == len(by_trial) and logs:
            ratios[metric] = sum(logs) / len(logs)
    return ratios


def measure_compare(options: CompareOptions, progress: Reporter) -> CompareRun:
    """The comparison; a build that crashes in every start could not be measured (exit 2, not 1: the gate
    cannot say whether the change regressed)."""
    try:
        return _compare(options, progress)
    except NeverStarted as never:
        raise ZprofError(f"could not measure: {never.message}", detail=never.detail, exit_code=EXIT_USAGE) from never


def _compare(options: CompareOptions, progress: Reporter) -> CompareRun:
    started = time.monotonic()
    project = Path(options.target.project)
    revisions = (revision(project, options.before), revision(project, options.after))
    builds = [build_target(replace(options.target, project=str(rev.project)), progress, with_shim=False)
              for rev in revisions]
    designs = _designs(options)
    commands = [workload.command for workload in options.workloads]
    series: dict[tuple[str, str], list[float]] = {(command, metric): [] for command in commands for metric in METRICS}
    failures: dict[str, str] = {}
    notes: list[Note] = []
    rounds = 0
    with run_directory("compare") as run_dir:
        sides = tuple(Side(name, _label(rev), server_spec(options.target, built.binary, {}), run_dir / name)
                      for name, rev, built in zip((BEFORE, AFTER), revisions, builds, strict=True))
        for side in sides:
            side.run_dir.mkdir()
        load = _load_plan(sides[1], options, progress)
        calibrated: dict[tuple[str, str], int] = {}
        deadline = started + options.budget
        while True:
            progress.status(f"round {rounds + 1}")
            runner = AlternatingTrials((sides[0], sides[1]), [w for w in options.workloads
                                                               if w.command not in failures],
                                       load, 2, run_dir, Prefixed(progress, f"round {rounds + 1}:", " "),
                                       min_trial_seconds=options.min_trial_seconds)
            runner.calibrated = calibrated
            runner.run()  # a crash of either build ends the comparison: exit 1, with the crash
            calibrated = runner.calibrated
            rounds += 1
            failures.update({command: f"{failure.server}: {failure.first_error}"
                             for command, failure in runner.failures.items()})
            for command in commands:
                for metric, ratio in _round_ratios(runner.records, command).items():
                    series[(command, metric)].append(ratio)
            decisions = {key: decide(designs[key[1]], values) for key, values in series.items()
                         if key[0] not in failures}
            if not decisions or all(d.outcome != INCONCLUSIVE for d in decisions.values()):
                break
            if rounds >= designs["throughput"].max_rounds or time.monotonic() >= deadline:
                notes.append(Note("compare.stopped", {"rounds": rounds, "planned": designs["throughput"].max_rounds,
                                                      "budget": options.budget,
                                                      "reason": "budget" if time.monotonic() >= deadline else
                                                      "planned rounds"}))
                break
    changes = [CommandChange(command, [_figure_change(metric, designs[metric], decisions.get((command, metric)))
                                       for metric in METRICS], failure=failures.get(command))
               for command in commands]
    if options.allocations:
        _allocations(options, revisions, changes, progress)
    for change, workload in zip(changes, options.workloads, strict=True):
        if any(figure.outcome == REGRESSION and figure.metric in ("throughput", "p50") for figure in change.figures):
            change.functions = _moved_functions(options, revisions, workload, load.clients, load.pipeline, progress)
    return CompareRun(
        before=ComparedSide(revisions[0].label, revisions[0].commit, builds[0].info(options.target.start_command)),
        after=ComparedSide(revisions[1].label, revisions[1].commit, builds[1].info(options.target.start_command)),
        settings=CompareSettings(options.threshold, options.latency_threshold, options.alpha, options.power,
                                 options.noise, designs["throughput"].max_rounds, options.budget, load.clients,
                                 load.pipeline, load.description),
        commands=changes, rounds=rounds, outcome=outcome_of(changes), seconds=round(time.monotonic() - started, 1),
        notes=notes + [note for side in sides if (note := side.start_note())])


def _label(rev: Revision) -> str:
    return rev.label if rev.commit is None else f"{rev.label} ({rev.short})"


def _load_plan(after: Side, options: CompareOptions, progress: Reporter):  # type: ignore[no-untyped-def]
    """The load both builds get: redis-benchmark (or zprof's driver), adapted to what the probes found."""
    with after.server() as server:
        progress.status("Probing the server...")
        capabilities = probe(HOST, server.port, options.clients, max(options.pipeline, 2))
        load, _ = plan_load(capabilities, options.clients, options.pipeline, options.requests, options.warmup,
                            None, redis_benchmark_path())
        if load.tool == BENCHMARK:
            load, _ = check_config_get(server.port, load)
    return replace(load, p999_pass=False)


def _figure_change(metric: str, design: Design, decision: Decision | None) -> FigureChange:
    if decision is None:
        return FigureChange(metric, NOT_MEASURED, design.threshold_percent, 0, None, None, None)
    return FigureChange(metric, decision.outcome, design.threshold_percent, decision.rounds,
                        _rounded(decision.estimate_percent),
                        tuple(round(value, 2) for value in decision.interval_percent)  # type: ignore[arg-type]
                        if decision.interval_percent else None,
                        _rounded(decision.detectable_percent), decision.worse, decision.improved)


def _rounded(value: float | None) -> float | None:
    return round(value, 2) if value is not None else None


def _allocations(options: CompareOptions, revisions: tuple[Revision, Revision], changes: list[CommandChange],
                 progress: Reporter) -> None:
    """Allocations per request of each build, with the shim: exact, so any real change shows."""
    for change, workload in zip(changes, options.workloads, strict=True):
        counted = []
        for rev in revisions:
            target = replace(options.target, project=str(rev.project))
            try:
                run = measure_allocs(AllocsOptions(target, workload, ALLOCS_REQUESTS, 4, 1, ALLOCS_REQUESTS // 2),
                                     Prefixed(progress, f"allocs {workload.command} at {rev.short}:", " "))
            except ZprofError:
                counted = []
                break
            counted.append(run.analysis.per_request.allocs)
        if len(counted) == 2:
            change.allocations_before, change.allocations_after = (round(value, 3) for value in counted)
            grew = counted[1] - counted[0]
            change.figures.append(FigureChange("allocations", REGRESSION if grew >= ALLOCATIONS_CHANGE else PASS,
                                               0.0, 1, round(grew, 3), None, None, worse=grew > 0))


def _moved_functions(options: CompareOptions, revisions: tuple[Revision, Revision], workload: Workload,
                     clients: int, pipeline: int, progress: Reporter) -> list:  # type: ignore[type-arg]
    """The functions whose share of the CPU moved most between a profile of each build under the same load."""
    profiles = []
    with run_directory("compare-profiles") as directory:
        for index, rev in enumerate(revisions):
            target = replace(options.target, project=str(rev.project))
            flame = FlameOptions(target, [workload], workload.command, clients, pipeline, FUNCTIONS_NAMED, False,
                                 duration=PROFILE_SECONDS)
            out = directory / str(index)
            out.mkdir()
            profiles.append(record_flame(flame, out, Prefixed(progress, f"profile at {rev.short}:", " ")).profile)
    # The project's functions that grew, their own code's growth first: a regression's cause, not the callers it
    # lifts (whose total grows with it) nor what shrank as the cause took the samples.
    moved = share_changes(profiles[0], profiles[1], top=1000)
    grew = [change for change in moved if change.kind == "project" and (change.self_delta > 0 or change.delta > 0)]
    grew.sort(key=lambda change: (-change.self_delta, -change.delta, change.function))
    return grew[:FUNCTIONS_NAMED]


def outcome_of(changes: list[CommandChange]) -> str:
    """Regression if any figure regressed; pass if every figure of every measured command passed; could not
    measure when no command was; else inconclusive."""
    figures = [figure for change in changes for figure in change.figures]
    if any(figure.outcome == REGRESSION for figure in figures):
        return REGRESSION
    if all(change.failure for change in changes) or not figures:
        return NOT_MEASURED
    if all(figure.outcome == PASS for change in changes if not change.failure for figure in change.figures):
        return PASS
    return INCONCLUSIVE
