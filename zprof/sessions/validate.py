"""zprof validate's session: the validation procedure's measurements, one after another, each saved as
the run its own command would save; then the recommendations and the verdict drawn from them.

A measurement that fails leaves its part of the report saying why; the others go on.
"""

from __future__ import annotations

import shlex
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from zprof import artifact
from zprof.analysis.hotspots import allocator_shares, debug_capture_share
from zprof.analysis.judgement import judge_validation
from zprof.analysis.recommendations import (
    ErrorReplies,
    Evidence,
    ProfileCosts,
    ServerCrash,
    profile_costs,
    recommend,
)
from zprof.analysis.stacks import StackProfile
from zprof.collect.crash import CrashStack
from zprof.errors import EveryRequestFailed, PartialRun, ZprofError
from zprof.git import git_state
from zprof.load.workloads import DEFAULT_KEYSPACE, bench_workload, mixed_workload, workload_for
from zprof.model.allocs import AllocsRun
from zprof.model.baseline import Baseline, RegressRun
from zprof.model.bench import EXCELLENT, UNACCEPTABLE, BenchRun, CommandComparison, Thresholds
from zprof.model.common import Note
from zprof.model.flame import FlameRun
from zprof.model.memory import MemoryRun
from zprof.model.syscalls import SyscallsRun
from zprof.model.validate import (
    Part,
    Recommendation,
    ValidateRun,
    VsRedis,
)
from zprof.progress import Prefixed, Reporter
from zprof.report.memory import write_memory_pictures
from zprof.report.profile_files import write_outputs
from zprof.sessions.allocs import AllocsOptions, measure_allocs
from zprof.sessions.baseline import locate_baseline, project_root, read_baseline, saved_names
from zprof.sessions.bench import BenchOptions, run_bench
from zprof.sessions.flame import DEFAULT_FREQUENCY_HZ, FlameOptions, Profiled, record_flame
from zprof.sessions.memory import MemoryOptions, measure_memory
from zprof.sessions.regress import check_regression
from zprof.sessions.syscalls import SyscallsOptions, measure_syscalls
from zprof.sessions.target import TargetOptions

RunT = TypeVar("RunT")


@dataclass(frozen=True)
class Effort:
    """How much each measurement does: the full procedure, or --quick (a first look: three trials of half a
    second, and no p99.9 pass; from two, Student's t of 12.7 leaves most intervals too wide to judge)."""

    allocs_requests: int
    allocs_warmup: int
    flame_seconds: float
    memory_seconds: float
    bench_trials: int
    bench_requests: int
    bench_warmup: int
    bench_keys: int
    min_trial_seconds: float
    p999_pass: bool
    syscalls_requests: int = 2000


FULL = Effort(allocs_requests=10_000, allocs_warmup=5_000, flame_seconds=20, memory_seconds=30, bench_trials=3,
              bench_requests=100_000, bench_warmup=10_000, bench_keys=100_000, min_trial_seconds=1.0, p999_pass=True)
QUICK = Effort(allocs_requests=2_000, allocs_warmup=1_000, flame_seconds=5, memory_seconds=4, bench_trials=3,
               bench_requests=10_000, bench_warmup=2_000, bench_keys=10_000, min_trial_seconds=0.5, p999_pass=False,
               syscalls_requests=1000)


@dataclass(frozen=True)
class ValidateOptions:
    target: TargetOptions
    commands: list[str]
    quick: bool
    redis_server: str | None = None
    baseline: str | None = None  # the baseline to check against; None: the newest saved, if any
    redis_persistence: str = "off"  # how Redis persists in the comparison (zprof.sessions.bench.REDIS_PERSISTENCE)

    @property
    def effort(self) -> Effort:
        return QUICK if self.quick else FULL


class _Validation:
    def __init__(self, options: ValidateOptions, out_dir: Path, progress: Reporter) -> None:
        self.options, self.out_dir, self.progress = options, out_dir, progress
        self.parts: list[Part] = []
        self.failed_requests: list[ErrorReplies] = []  # measurements that got nothing but error replies
        self.crashed: list[ServerCrash] = []  # measurements the target's crash ended
        self.total_parts = len(options.commands) + len(traced_commands(options.commands)) + 4

    def target_args(self) -> list[str]:
        """The target options as the user gave them, for the command line of each part."""
        target = self.options.target
        args = ["--project", target.project]
        if target.server_args:
            args += ["--server-args", target.server_args]
        for build_arg in target.build_args:
            args += ["--build-arg", build_arg]
        if target.optimize:
            args += ["--optimize", target.optimize]
        return args

    def _crashed(self, name: str, failure: ZprofError) -> None:
        stack = getattr(failure, "stack", None)
        if isinstance(stack, CrashStack):
            self.crashed.append(ServerCrash(f"zprof {name}", failure.message, stack.how, stack))

    def measure(self, name: str, directory: str, command_line: list[str],
                measure: Callable[[Path, Reporter], RunT]) -> RunT | None:
        """One part: its run saved in its own directory, or its failure kept for the report."""
        part_dir = self.out_dir / directory
        part_dir.mkdir()
        progress = Prefixed(self.progress, f"[{len(self.parts) + 1}/{self.total_parts}] {name}:", " ")
        started = time.perf_counter()
        full_line = ["zprof", *command_line, *self.target_args(), "--output", str(part_dir)]
        run: RunT | None = None
        error: str | None = None
        try:
            run = measure(part_dir, progress)
        except PartialRun as partial:
            run, error = partial.run, partial.message  # type: ignore[assignment]
            self._crashed(name, partial)
        except EveryRequestFailed as failure:
            error = failure.message
            self.failed_requests.append(ErrorReplies(failure.command, f"zprof {name}",
                                                     failure.requests, failure.requests, failure.first_error))
        except ZprofError as failure:
            error = failure.message
            self._crashed(name, failure)
        if run is not None:
            artifact.write(run, part_dir / artifact.RUN_FILE)  # type: ignore[arg-type]
        self.parts.append(Part(name, full_line, directory, round(time.perf_counter() - started, 1), error))
        return run


def traced_commands(commands: list[str]) -> list[str]:
    """The commands whose system calls a validation traces: a write and a read (SET and GET where the suite has
    them, else its first two), since a server's calls per request differ by those far more than by command."""
    chosen = [command for command in ("SET", "GET") if command in commands]
    return chosen or commands[:2]


def validate(options: ValidateOptions, out_dir: Path, progress: Reporter) -> ValidateRun:
    started = time.perf_counter()
    located = _baseline(options)  # a baseline asked for by name and missing is bad input, before anything runs
    baseline = located[0] if located else None
    validation = _Validation(options, out_dir, progress)
    if baseline is None:
        validation.total_parts -= 1
    effort = options.effort
    target = options.target

    allocs: list[AllocsRun] = []
    for command in options.commands:
        workload = workload_for(command, None, DEFAULT_KEYSPACE)
        allocs_options = AllocsOptions(target, workload, effort.allocs_requests, 4, 1, effort.allocs_warmup)
        run = validation.measure(
            f"allocs {command}", f"allocs-{command}",
            ["allocs", command, "--requests", str(effort.allocs_requests), "--warmup", str(effort.allocs_warmup)],
            lambda _dir, progress, o=allocs_options: measure_allocs(o, progress))
        if run is not None:
            allocs.append(run)

    syscalls: list[SyscallsRun] = []
    for command in traced_commands(options.commands):
        syscalls_options = SyscallsOptions(target, workload_for(command, None, DEFAULT_KEYSPACE),
                                           effort.syscalls_requests, 1, 1, effort.syscalls_requests // 2)
        traced = validation.measure(
            f"syscalls {command}", f"syscalls-{command}",
            ["syscalls", command, "--requests", str(effort.syscalls_requests), "--warmup",
             str(effort.syscalls_requests // 2)],
            lambda _dir, progress, o=syscalls_options: measure_syscalls(o, progress))
        if traced is not None:
            syscalls.append(traced)

    profile: StackProfile | None = None

    def flame(directory: Path, progress: Reporter) -> FlameRun:
        nonlocal profile
        flame_options = FlameOptions(target, mixed_workload(DEFAULT_KEYSPACE, options.commands), "mixed", 16, 16,
                                     10, False, "perf", effort.flame_seconds, DEFAULT_FREQUENCY_HZ, "fp", 0)
        try:
            profiled = record_flame(flame_options, directory, progress)
        except PartialRun as partial:
            profiled = partial.run  # type: ignore[assignment]
            _flame_files(profiled, directory)
            profile = profiled.profile
            raise PartialRun(partial, profiled.run) from partial
        _flame_files(profiled, directory)
        profile = profiled.profile
        return profiled.run

    flame_run = validation.measure("flame", "flame", ["flame", "--duration", f"{effort.flame_seconds:g}"], flame)

    memory_command = "SET" if options.quick else None

    def memory(directory: Path, progress: Reporter) -> MemoryRun:
        workloads = ([workload_for(memory_command, None, DEFAULT_KEYSPACE)] if memory_command
                     else mixed_workload(DEFAULT_KEYSPACE, options.commands))
        memory_options = MemoryOptions(target, workloads, memory_command is None, effort.memory_seconds, 0.1, 4, 1)
        try:
            run = measure_memory(memory_options, progress)
        except PartialRun as partial:
            _memory_files(partial.run, directory)  # type: ignore[arg-type]
            raise
        return _memory_files(run, directory)

    memory_run = validation.measure(
        "memory", "memory",
        ["memory", *(["--command", memory_command] if memory_command else []), "--duration",
         f"{effort.memory_seconds:g}"], memory)

    def bench(_directory: Path, progress: Reporter) -> BenchRun:
        bench_options = BenchOptions(
            target=target, workloads=[bench_workload(name, DEFAULT_KEYSPACE) for name in options.commands],
            trials=effort.bench_trials, requests=effort.bench_requests, warmup=effort.bench_warmup,
            clients=50, pipeline=16, keyspace=DEFAULT_KEYSPACE, keys=effort.bench_keys, subscribers=10,
            deadline=None, min_trial_seconds=effort.min_trial_seconds, redis_server=options.redis_server,
            target_binary=None, p999_pass=effort.p999_pass, redis_persistence=options.redis_persistence)
        return run_bench(bench_options, progress)

    bench_run = validation.measure(
        "bench", "bench",
        ["bench", "--commands", ",".join(options.commands), "--trials", str(effort.bench_trials), "--requests",
         str(effort.bench_requests), "--warmup", str(effort.bench_warmup), "--keys", str(effort.bench_keys),
         "--min-trial-seconds", f"{effort.min_trial_seconds:g}", *([] if effort.p999_pass else ["--no-p999"]),
         *(["--redis-persistence", options.redis_persistence] if options.redis_persistence != "off" else [])],
        bench)

    regress = None if located is None else _regression_check(validation, *located)

    costs = profile_costs(profile, options.commands) if profile is not None else ProfileCosts({}, 0.0)
    evidence = Evidence(allocs, flame_run, costs, memory_run, bench_run, validation.failed_requests,
                        debug_capture_share(profile) if profile is not None else None, validation.crashed, syscalls,
                        allocator_shares(profile) if profile is not None else {})
    recommendations = recommend(evidence)
    target_info = evidence.target
    if target_info is None:
        raise ZprofError("no part of the validation could be measured",
                         detail="\n".join(f"{part.name}: {part.error}" for part in validation.parts if part.error))
    commit = state.label if (state := git_state(Path(target.project))) is not None else None
    throughput, p99 = vs_redis(bench_run, "throughput"), vs_redis(bench_run, "p99")
    judgement = judge_validation(bench_run, recommendations, regress, throughput, p99)
    return ValidateRun(
        subject=f"{target_info.name}" + (f" at {commit}" if commit else ""), target=target_info,
        commands=options.commands, quick=options.quick, parts=validation.parts, allocs=allocs, syscalls=syscalls,
        flame=flame_run,
        memory=memory_run, bench=bench_run, recommendations=recommendations, throughput=throughput, p99=p99,
        overall=judgement.overall, verdict=judgement.verdict, blockers=judgement.blockers,
        undecided=judgement.undecided, action_items=_action_items(judgement.blockers, recommendations),
        seconds=round(time.perf_counter() - started, 1), commit=commit,
        notes=[Note("validate.quick", {"trials": QUICK.bench_trials, "seconds": QUICK.min_trial_seconds,
                                         "keys": QUICK.bench_keys})] if options.quick else [], regress=regress,
        regression_missing=_regression_missing(baseline, regress, validation.parts))


def _baseline(options: ValidateOptions) -> tuple[Baseline, Path] | None:
    """The baseline to check against, and its file (whose .zprof/ keeps its builds)."""
    root = project_root(options.target.project)
    if options.baseline is None and not saved_names(root):
        return None
    file = locate_baseline(root, options.baseline)
    return read_baseline(file), file


def _regression_check(validation: _Validation, baseline: Baseline, file: Path) -> RegressRun | None:
    """zprof regress against the baseline, with the baseline's own suite; --quick compares only the
    deterministic signals (no trials), as the pre-commit hook does."""
    suite = baseline.settings
    trials = 0 if validation.options.quick else suite.trials
    settings = replace(suite, trials=trials)
    return validation.measure(
        "regress", "regress", ["regress", "--baseline", baseline.name, "--trials", str(trials)],
        lambda _dir, progress: check_regression(validation.options.target, baseline, file, settings, progress))


def _regression_missing(baseline: Baseline | None, regress: RegressRun | None, parts: list[Part]) -> str | None:
    if baseline is None:
        return "no baseline: `zprof baseline save` records one to compare with"
    if regress is None:
        failed = next((part.error for part in parts if part.name == "regress"), None)
        return f"the check against baseline {baseline.name} failed: {failed}"
    return None


def _flame_files(profiled: Profiled, directory: Path) -> None:
    written = write_outputs(profiled.profile, f"{profiled.run.target.name} mixed", directory)
    profiled.run.files = [*(str(path) for path in written), *profiled.run.files]


def _memory_files(run: MemoryRun, directory: Path) -> MemoryRun:
    run.files = [str(path) for path in write_memory_pictures(run, directory)]
    return run


def _judged(command: CommandComparison, metric: str) -> float | None:
    """The command's ratio to Redis, when its status is a level (not load-bound, unstable or failed)."""
    estimate, status = ((command.throughput, command.throughput_status) if metric == "throughput"
                        else (command.p99, command.latency_status))
    if estimate is None or status not in (EXCELLENT, "acceptable", UNACCEPTABLE):
        return None
    return estimate.percent


def vs_redis(bench: BenchRun | None, metric: str) -> VsRedis | None:
    """The median over the judged commands of their ratio to Redis, with the range, and its level."""
    if bench is None:
        return None
    percents = [p for command in bench.commands if (p := _judged(command, metric)) is not None]
    if not percents:
        return None
    median = statistics.median(percents)
    return VsRedis(metric, round(median, 1), round(min(percents), 1), round(max(percents), 1),
                   _level(median, metric, bench.thresholds), len(percents))


def _level(percent: float, metric: str, thresholds: Thresholds) -> str:
    if metric == "throughput":
        return (EXCELLENT if percent >= thresholds.throughput_excellent else "acceptable"
                if percent >= thresholds.throughput_acceptable else UNACCEPTABLE)
    return (EXCELLENT if percent <= thresholds.latency_excellent else "acceptable"
            if percent <= thresholds.latency_acceptable else UNACCEPTABLE)


def _action_items(blockers: list[str], recommendations: list[Recommendation]) -> list[str]:
    items = [f"Fix {r.title} ({r.file.rsplit('/', 1)[-1] + ':' + str(r.line) if r.file else 'see section 3'})"
             for r in recommendations if r.critical]
    items += [f"Consider {r.title}" for r in recommendations if not r.critical and r.impact == "High"]
    return items or ["None: no critical issue and no high-impact opportunity was measured"]


def command_line_text(part: Part) -> str:
    return shlex.join(part.command_line)
