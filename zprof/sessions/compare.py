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
from zprof.builder.revisions import revision
from zprof.errors import ZprofError
from zprof.files import write_text_atomically
from zprof.load.driver import Workload
from zprof.load.probe import probe
from zprof.load.redis_benchmark import redis_benchmark_path
from zprof.load.workloads import with_hits
from zprof.model.bench import BENCHMARK, RunRecord
from zprof.model.common import Note, TargetInfo
from zprof.model.compare import (
    ALLOCATIONS,
    INSTRUCTIONS,
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
from zprof.report.svg import render_flame_svg
from zprof.server import HOST
from zprof.sessions.allocs import AllocsOptions, measure_allocs
from zprof.sessions.baseline import InstructionCounter, count_change
from zprof.sessions.bench import AlternatingTrials, Side, check_config_get, plan_load
from zprof.sessions.flame import FlameOptions, record_flame
from zprof.sessions.target import TargetOptions, build_target, gate_measurement, run_directory, server_spec

BEFORE, AFTER = "before", "after"
# Rounds at the most, whatever the plan says: a figure that needs more is inconclusive, and says what it could see.
MAX_ROUNDS = 60
# An allocation more every other request is a change of the code, not of the run.
ALLOCATIONS_CHANGE = 0.5
ALLOCS_REQUESTS = 2000
INSTRUCTION_REQUESTS = 2000
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
    instructions: bool = True  # counted where callgrind or hardware counters can
    instructions_threshold: float = 2.0  # percent more instructions per request: a regression
    rounds: bool = True  # False: only the exact signals (regress --trials 0)
    profiles: bool = True  # a profile of each build for a command whose CPU regressed
    files: Path | None = None  # where the differential flame graphs go (None: not written)


def _designs(options: CompareOptions) -> dict[str, Design]:
    family = len(options.workloads) * len(METRICS)
    base = Design(threshold_percent=options.threshold, alpha=options.alpha, family=family, power=options.power)
    rounds = min(plan(base, math.log1p(options.noise / 100)).max_rounds, MAX_ROUNDS)
    latency = replace(base, threshold_percent=options.latency_threshold, direction=LOWER_IS_BETTER)
    latency_rounds = min(plan(latency, math.log1p(options.noise / 100)).max_rounds, MAX_ROUNDS)
    rounds = max(rounds, latency_rounds, base.min_rounds)
    return {"throughput": replace(base, direction=HIGHER_IS_BETTER, max_rounds=rounds),
            "p50": replace(latency, max_rounds=rounds), "p99": replace(latency, max_rounds=rounds)}


def _afforded(designs: dict[str, Design], round_seconds: float, deadline: float) -> dict[str, Design]:
    """The designs with as many rounds as the budget affords at the first round's pace (at least the planned
    ones, at most MAX_ROUNDS): fixed after the first round, from its time alone, never from its figures, and
    before any look can decide (min_rounds), so the test keeps its false-positive rate."""
    affordable = 1 + int(max(deadline - time.monotonic(), 0.0) / max(round_seconds, 0.1))
    rounds = min(MAX_ROUNDS, max(designs["throughput"].max_rounds, affordable))
    return {metric: replace(design, max_rounds=rounds) for metric, design in designs.items()}


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


@dataclass(frozen=True)
class Contender:
    """One of the two builds: how the report names it, its commit, and how to build (or find) and start it."""

    label: str
    commit: str | None
    target: TargetOptions

    @property
    def short(self) -> str:
        return self.commit[:12] if self.commit else self.label

    @property
    def display(self) -> str:
        return self.label if self.commit is None else f"{self.label} ({self.short})"


def measure_compare(options: CompareOptions, progress: Reporter) -> CompareRun:
    """The comparison of two revisions (zprof compare)."""
    project = Path(options.target.project)
    revisions = (revision(project, options.before), revision(project, options.after))
    before, after = (Contender(rev.label, rev.commit, replace(options.target, project=str(rev.project)))
                     for rev in revisions)
    return compare_builds(options, (before, after), progress)


def compare_builds(options: CompareOptions, contenders: tuple[Contender, Contender], progress: Reporter) -> CompareRun:
    """The comparison of two builds; one that crashes in every start could not be measured (exit 2, not 1: the
    gate cannot say whether the change regressed)."""
    with gate_measurement():
        return _compare(options, contenders, progress)


@dataclass
class Rounds:
    """What the rounds showed: per command, each noisy figure's change, and what stopped them."""

    changes: list[CommandChange]  # throughput, p50 and p99 of each command (no figures without rounds)
    rounds: int
    max_rounds: int
    clients: int
    pipeline: int
    load: str
    notes: list[Note]
    targets: tuple[TargetInfo, TargetInfo]  # what each build is, as the report names it


def run_rounds(options: CompareOptions, contenders: tuple[Contender, Contender], progress: Reporter) -> Rounds:
    """Rounds of A B B A on fresh servers until every figure is decided, the planned rounds are done or the
    budget is spent (none when `options.rounds` is off: then only the load is planned). The rounds planned for
    --noise are a floor: the first round's time sets how many the budget affords."""
    builds = [build_target(contender.target, progress, with_shim=False) for contender in contenders]
    designs = _designs(options)
    commands = [workload.command for workload in options.workloads]
    series: dict[tuple[str, str], list[float]] = {(command, metric): [] for command in commands for metric in METRICS}
    failures: dict[str, str] = {}
    notes: list[Note] = []
    decisions: dict[tuple[str, str], Decision] = {}
    rounds = 0
    with run_directory("compare") as run_dir:
        sides = tuple(Side(name, contender.display, server_spec(contender.target, built.binary, {}), run_dir / name)
                      for name, contender, built in zip((BEFORE, AFTER), contenders, builds, strict=True))
        for side in sides:
            side.run_dir.mkdir()
        load = _load_plan(sides[1], options, progress)
        calibrated: dict[tuple[str, str], int] = {}
        first_round = time.monotonic()
        deadline = first_round + options.budget
        while options.rounds:
            progress.status(f"round {rounds + 1}")
            runner = AlternatingTrials((sides[0], sides[1]), [w for w in options.workloads
                                                               if w.command not in failures],
                                       load, 2, run_dir, Prefixed(progress, f"round {rounds + 1}:", " "),
                                       min_trial_seconds=options.min_trial_seconds)
            runner.calibrated = calibrated
            runner.run()  # a crash of either build ends the comparison: exit 1, with the crash
            calibrated = runner.calibrated
            rounds += 1
            if rounds == 1:
                designs = _afforded(designs, time.monotonic() - first_round, deadline)
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
                                       for metric in METRICS] if options.rounds else [], failure=failures.get(command))
               for command in commands]
    return Rounds(changes, rounds, designs["throughput"].max_rounds if options.rounds else 0, load.clients,
                  load.pipeline, load.description,
                  notes + [note for side in sides if (note := side.start_note())],
                  (builds[0].info(options.target.start_command), builds[1].info(options.target.start_command)))


def _compare(options: CompareOptions, contenders: tuple[Contender, Contender], progress: Reporter) -> CompareRun:
    started = time.monotonic()
    measured = run_rounds(options, contenders, progress)
    notes = list(measured.notes)
    # The exact figures of a read on hits too, each its own row (the rounds time the reads as they come).
    exact = with_hits(options.workloads)
    timed = {change.command: change for change in measured.changes}
    changes = [timed.get(workload.label) or CommandChange(workload.label, []) for workload in exact]
    if options.allocations:
        _allocations(contenders, changes, exact, progress)
    if options.instructions:
        notes += _instructions(options, contenders, changes, exact, progress)
    counted = any(figure.metric == INSTRUCTIONS and figure.outcome != INCONCLUSIVE
                  for change in changes for figure in change.figures)
    if not options.rounds:
        notes.append(Note("compare.no-rounds", {"instructions": counted}))
    for change, workload in zip(changes, exact, strict=True):
        cpu_regressed = any(figure.outcome == REGRESSION and figure.metric in ("throughput", "p50", INSTRUCTIONS)
                            for figure in change.figures)
        # A profile times the reads as they come: it goes with the misses' row.
        if cpu_regressed and options.profiles and not workload.fill:
            change.functions, change.flame_diff = _moved_functions(options, contenders, workload, measured.clients,
                                                                   measured.pipeline, progress)
    return CompareRun(
        before=ComparedSide(contenders[0].label, contenders[0].commit, measured.targets[0]),
        after=ComparedSide(contenders[1].label, contenders[1].commit, measured.targets[1]),
        settings=CompareSettings(options.threshold, options.latency_threshold, options.alpha, options.power,
                                 options.noise, measured.max_rounds, options.budget, measured.clients,
                                 measured.pipeline, measured.load),
        commands=changes, rounds=measured.rounds, outcome=outcome_of(changes, cpu_checked=options.rounds or counted),
        seconds=round(time.monotonic() - started, 1), notes=notes,
        project=str(Path(options.target.project).resolve()))


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


def _allocations(contenders: tuple[Contender, Contender], changes: list[CommandChange], workloads: list[Workload],
                 progress: Reporter) -> None:
    """Allocations per request of each build, with the shim: exact, so any real change shows."""
    for change, workload in zip(changes, workloads, strict=True):
        counted = []
        for contender in contenders:
            try:
                run = measure_allocs(AllocsOptions(contender.target, workload, ALLOCS_REQUESTS, 4, 1,
                                                   ALLOCS_REQUESTS // 2),
                                     Prefixed(progress, f"allocs {workload.label} at {contender.short}:", " "))
            except ZprofError:
                counted = []
                break
            counted.append(run.analysis.per_request.allocs)
        if len(counted) == 2:
            change.allocations_before, change.allocations_after = (round(value, 3) for value in counted)
            grew = counted[1] - counted[0]
            change.figures.append(FigureChange(ALLOCATIONS, REGRESSION if grew >= ALLOCATIONS_CHANGE else PASS,
                                               0.0, 1, round(grew, 3), None, None, worse=grew > 0))


def _instructions(options: CompareOptions, contenders: tuple[Contender, Contender], changes: list[CommandChange],
                  workloads: list[Workload], progress: Reporter) -> list[Note]:
    """Instructions per request of each build, counted (callgrind, else perf stat where the machine has
    hardware counters) over the same requests, one at a time: a count that repeats, so a change beyond
    `instructions_threshold` is the code's. Where neither can count, a note says that the CPU signal is the
    noisy one."""
    counters = (InstructionCounter(contenders[0].target, INSTRUCTION_REQUESTS),
                InstructionCounter(contenders[1].target, INSTRUCTION_REQUESTS))
    threshold = options.instructions_threshold
    for change, workload in zip(changes, workloads, strict=True):
        counted = count_change(counters, workload, Prefixed(progress, f"{workload.label} instructions:", " "))
        if isinstance(counted, str):
            return [Note("compare.no-instructions", {"reason": counted, "rounds": options.rounds})]
        change.instructions_before, change.instructions_after = counted.before[0], counted.after[0]
        # Counts that do not repeat on the same build are not exact: the rounds judge the CPU instead.
        outcome = (INCONCLUSIVE if not counted.repeats else REGRESSION if counted.estimate > threshold else PASS)
        change.figures.append(FigureChange(
            INSTRUCTIONS, outcome, threshold, len(counted.before), round(counted.estimate, 2),
            None if counted.repeats else (round(counted.low, 2), round(counted.high, 2)), None,
            worse=counted.low > 0, improved=counted.high < -threshold))
    return []


def _moved_functions(options: CompareOptions, contenders: tuple[Contender, Contender], workload: Workload,
                     clients: int, pipeline: int, progress: Reporter) -> tuple[list, str | None]:  # type: ignore[type-arg]
    """The functions whose share of the CPU moved most between a profile of each build under the same load,
    and the differential flame graph of the two (written where the run's files go). The profiles unwind with
    DWARF: a frame-pointer walk loses the caller of a leaf without frame pointers (the vDSO's clock_gettime
    in a busy loop), which is often the very function that changed."""
    profiles = []
    with run_directory("compare-profiles") as directory:
        for index, contender in enumerate(contenders):
            flame = FlameOptions(contender.target, [workload], workload.command, clients, pipeline, FUNCTIONS_NAMED,
                                 False, duration=PROFILE_SECONDS, call_graph="dwarf")
            out = directory / str(index)
            out.mkdir()
            profiles.append(record_flame(flame, out, Prefixed(progress, f"profile at {contender.short}:", " "))
                            .profile)
    flame_diff = None
    if options.files is not None:
        flame_diff = f"{workload.command.lower()}.diff.svg"
        title = (f"{workload.command}: {contenders[1].display} against {contenders[0].display} "
                 "(red: a larger share after)")
        write_text_atomically(options.files / flame_diff, render_flame_svg(profiles[1], title,
                                                                           diff_baseline=profiles[0]))
    # The project's functions that grew, their own code's growth first: a regression's cause, not the callers it
    # lifts (whose total grows with it) nor what shrank as the cause took the samples.
    moved = share_changes(profiles[0], profiles[1], top=1000)
    grew = [change for change in moved if change.kind == "project" and (change.self_delta > 0 or change.delta > 0)]
    grew.sort(key=lambda change: (-change.self_delta, -change.delta, change.function))
    return grew[:FUNCTIONS_NAMED], flame_diff


def outcome_of(changes: list[CommandChange], *, cpu_checked: bool = True) -> str:
    """Regression if any figure regressed; pass if every figure of every measured command passed and the CPU
    was checked (rounds, or counted instructions: allocations alone never pass); could not measure when no
    command was; else inconclusive."""
    figures = [figure for change in changes for figure in change.figures]
    if any(figure.outcome == REGRESSION for figure in figures):
        return REGRESSION
    if all(change.failure for change in changes) or not figures:
        return NOT_MEASURED
    # Instructions that do not repeat on the same build leave the CPU to the rounds, where there are any.
    timed = any(figure.metric == "throughput" for figure in figures)
    if cpu_checked and all(figure.outcome == PASS or (timed and figure.metric == INSTRUCTIONS)
                           for change in changes if not change.failure for figure in change.figures):
        return PASS
    return INCONCLUSIVE
