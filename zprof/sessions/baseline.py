"""The suite `zprof baseline save` stores and `zprof regress` runs again, and the store of
baselines in the target's `.zprof/baselines/`.

For every command of the suite, three measurements, each by the session of its own command:
allocations per request with the shim (`zprof allocs`), instructions per request under callgrind
for a fixed number of requests (`zprof flame --engine callgrind`; `perf stat -e instructions:u`
where valgrind cannot run the target and the machine has hardware counters), and calibrated trials
of throughput and latency (`zprof bench`'s trials, against Redis in the same trials when asked).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from zprof import artifact
from zprof.analysis.callgrind import parse_callgrind
from zprof.analysis.symbols import display_path
from zprof.builder.project import SourceRoots, load_project
from zprof.collect import valgrind
from zprof.collect.machine import machine_info
from zprof.collect.perf_stat import INSTRUCTIONS, PerfCounter, event_unavailable
from zprof.errors import EXIT_TARGET, ZprofError
from zprof.git import git_state
from zprof.load.driver import Workload
from zprof.load.probe import probe
from zprof.load.redis_benchmark import redis_benchmark_path
from zprof.load.workloads import DEFAULT_KEYSPACE, with_hits, workload_for
from zprof.model.allocs import AllocsRun
from zprof.model.baseline import (
    CALLGRIND,
    PERF_STAT,
    AllocSignals,
    AllocSite,
    Baseline,
    CommandSignals,
    FunctionCost,
    GitState,
    InstructionSignals,
    NoisySignals,
    RegressThresholds,
    SuiteSettings,
    TrialSample,
)
from zprof.model.bench import BENCHMARK, REDIS, TARGET, RunRecord
from zprof.model.common import Note
from zprof.progress import Prefixed, Reporter
from zprof.server import HOST, ServerSpec
from zprof.sessions.allocs import AllocsOptions, measure_allocs
from zprof.sessions.bench import (
    REDIS_START_COMMAND,
    AlternatingTrials,
    Side,
    check_config_get,
    plan_load,
    reference_server,
)
from zprof.sessions.flame import FlameOptions, record_flame
from zprof.sessions.target import (
    TargetOptions,
    build_target,
    probe_for,
    probed_server,
    run_directory,
    run_fixed,
    server_spec,
    write_keys_fixed,
)

DEFAULT_COMMANDS = ("SET", "GET", "HSET", "ZADD")
DEFAULT_REQUESTS = 2000
DEFAULT_TRIALS = 5
# Functions kept per command: the heaviest by their own instructions, down to this share of the total.
MAX_FUNCTIONS = 100
MIN_FUNCTION_SHARE = 1e-4
# zprof allocs' load, and zprof bench's, where the project's zprof.toml sets none.
ALLOCS_LOAD, TRIALS_LOAD = (4, 1), (50, 16)
STORE = Path(".zprof") / "baselines"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
WORKING_TREE = "working tree"


@dataclass(frozen=True)
class SuiteOptions:
    target: TargetOptions
    settings: SuiteSettings


def suite_settings(target: TargetOptions, commands: list[str] | None, requests: int | None, trials: int | None,
                   against: str | None, min_trial_seconds: float | None) -> SuiteSettings:
    """The suite: the flags, then the project's [baseline] table, then zprof's defaults."""
    table = target.config.baseline
    names = commands or table.get("commands") or [name for name in DEFAULT_COMMANDS
                                                  if target.config.commands is None or name in target.config.commands]
    if not names:
        raise ZprofError("none of the suite's default commands (" + ", ".join(DEFAULT_COMMANDS) + ") is among those "
                         "zprof.toml says the server answers", detail="Name them with --commands or in [baseline].")
    names = list(dict.fromkeys(name.upper() for name in names))
    for name in names:
        workload_for(name, None)  # a command without a request template is bad input, before anything runs
    requests = requests or table.get("requests") or DEFAULT_REQUESTS
    clients, pipeline = (target.config.workload.get("clients", ALLOCS_LOAD[0]),
                         target.config.workload.get("pipeline", ALLOCS_LOAD[1]))
    against = against if against is not None else table.get("against")
    return SuiteSettings(
        commands=names, requests=requests, warmup=max(1000, requests // 4),
        trials=trials if trials is not None else table.get("trials", DEFAULT_TRIALS),
        against=None if against in (None, "none") else against,
        min_trial_seconds=min_trial_seconds or table.get("min_trial_seconds", 1.0),
        clients=clients, pipeline=pipeline)


# The suite ------------------------------------------------------------------------------------
def run_suite(options: SuiteOptions, name: str, progress: Reporter) -> Baseline:
    """Every signal of every command; ZprofError when the target cannot be measured at all."""
    settings, target = options.settings, options.target
    redis = reference_server(None) if settings.against == REDIS else None  # missing: bad input, before building
    timed = [workload_for(command, None, DEFAULT_KEYSPACE) for command in settings.commands]
    workloads = with_hits(timed)  # the exact signals of a read on hits too, each its own row
    measured = datetime.now(UTC).isoformat(timespec="seconds")
    notes: list[Note] = []
    allocs: dict[str, AllocsRun] = {}
    for index, workload in enumerate(workloads, 1):
        where = Prefixed(progress, f"{workload.label} ({index}/{len(workloads)}) allocations")
        run = measure_allocs(AllocsOptions(target, workload, settings.requests, settings.clients, settings.pipeline,
                                           settings.warmup), where)
        allocs[workload.label] = run
        _add(notes, run.notes)
        if run.load.errors:
            notes.append(Note("baseline.error-replies", {"command": workload.label, "errors": run.load.errors,
                                                         "requests": run.requests,
                                                         "first_error": run.load.first_error}))
    counter = InstructionCounter(target, settings.requests)
    instructions = {workload.label: counter.measure(workload, progress) for workload in workloads}
    noisy: dict[str, NoisySignals | str] = {}
    if settings.trials:
        noisy, trial_notes = _trials(options, timed, redis, progress)
        _add(notes, trial_notes)
    first = allocs[workloads[0].label]
    return Baseline(
        name=name, measured=measured, git=git_state(Path(target.project)), target=first.target,
        machine=machine_info(), settings=settings,
        commands=[_signals(workload, allocs[workload.label], instructions[workload.label],
                           noisy.get(workload.label)) for workload in workloads],
        instruction_source=counter.source, instructions_absent=counter.absent,
        redis_version=redis[1] if redis else None, notes=notes)


def regress_thresholds(target: TargetOptions) -> RegressThresholds:
    """[regress] from zprof.toml, with [bench]'s unstable CV and acceptable throughput."""
    config = target.config
    return replace(config.regress, unstable_cv_percent=config.thresholds.unstable_cv,
                   redis_floor_percent=config.thresholds.throughput_acceptable)


def _add(notes: list[Note], more: list[Note]) -> None:
    notes.extend(note for note in more if note not in notes)


def _signals(workload: Workload, run: AllocsRun, instructions: InstructionSignals | str,
             noisy: NoisySignals | str | None) -> CommandSignals:
    per = run.analysis.per_request
    sites = [AllocSite(site.function, site.file, site.line, site.layer, site.nested_in, site.allocs_per_request,
                       site.bytes_per_request) for site in run.analysis.sites]
    return CommandSignals(
        command=workload.label, args=[arg.decode() for arg in workload.args],
        allocs=AllocSignals(run.requests, per.allocs, per.frees, per.bytes_allocated, per.bytes_retained, sites,
                            round(run.analysis.idle_resolution, 4)),
        instructions=instructions if isinstance(instructions, InstructionSignals) else None,
        instructions_absent=instructions if isinstance(instructions, str) else None,
        noisy=noisy if isinstance(noisy, NoisySignals) else None,
        noisy_absent=noisy if isinstance(noisy, str) else None)


class InstructionCounter:
    """Counts instructions with the first source that works here, chosen once for the whole suite:
    callgrind, else perf stat with hardware counters; `absent` says why neither could."""

    def __init__(self, target: TargetOptions, requests: int) -> None:
        self.target, self.requests = target, requests
        self.source: str | None = None
        self.absent: str | None = None
        self._reasons: list[str] = []

    def measure(self, workload: Workload, progress: Reporter) -> InstructionSignals | str:
        where = Prefixed(progress, f"{workload.label} instructions")
        if self.source in (None, CALLGRIND) and not self._reasons:
            try:
                signals = callgrind_instructions(self.target, workload, self.requests, where)
            except ZprofError as error:
                if error.exit_code != EXIT_TARGET and "valgrind" not in error.message:
                    raise
                self._reasons.append(f"callgrind: {error.message}")
            else:
                self.source = CALLGRIND
                return signals
        if self.source in (None, PERF_STAT) and len(self._reasons) < 2:
            unavailable = event_unavailable(INSTRUCTIONS)
            if unavailable is None:
                total, requests = perf_stat_count(self.target, workload, self.requests, INSTRUCTIONS, where)
                self.source = PERF_STAT
                return InstructionSignals(PERF_STAT, requests, total, round(total / requests, 2))
            self._reasons.append(f"perf stat: {unavailable}")
        self.absent = "; ".join(self._reasons)
        return self.absent


# Two counts of the same build this close are the same count (callgrind's repeat to the instruction).
REPEATS_WITHIN = 0.001


@dataclass(frozen=True)
class CountedChange:
    """Instructions per request of two builds, counted once each, and a second time each (in the order
    B then A) when the first counts differ: a count that does not repeat on the same build (work timed by the
    clock, a spin-wait) is not exact, and the change is then only known to lie between `low` and `high`."""

    before: tuple[float, ...]
    after: tuple[float, ...]

    @property
    def estimate(self) -> float:
        before, after = sum(self.before) / len(self.before), sum(self.after) / len(self.after)
        return (after - before) / before * 100 if before else 0.0

    @property
    def low(self) -> float:
        """The least growth the counts allow, in percent."""
        return (min(self.after) - max(self.before)) / max(self.before) * 100 if max(self.before) else 0.0

    @property
    def high(self) -> float:
        return (max(self.after) - min(self.before)) / min(self.before) * 100 if min(self.before) else 0.0

    @property
    def repeats(self) -> bool:
        """Each build counted the same both times (within REPEATS_WITHIN): the counts are exact."""
        return all(max(counts) <= min(counts) * (1 + REPEATS_WITHIN) for counts in (self.before, self.after))


def count_change(counters: tuple[InstructionCounter, InstructionCounter], workload: Workload,
                 progress: Reporter, first: tuple[InstructionSignals, InstructionSignals] | None = None
                 ) -> CountedChange | str:
    """Both builds' instructions per request (A then B, or `first` when the suite counted them already), and
    again B then A when they differ; the reason instead when they cannot be counted alike."""
    counted = list(first) if first else [counter.measure(workload, progress) for counter in counters]
    for signals in counted:
        if not isinstance(signals, InstructionSignals):
            return signals
    if counted[0].source != counted[1].source:
        return f"counted with {counted[0].source} before and {counted[1].source} after"
    before, after = [counted[0].per_request], [counted[1].per_request]
    if before != after:
        again = [counters[1].measure(workload, progress), counters[0].measure(workload, progress)]
        if all(isinstance(signals, InstructionSignals) for signals in again):
            after.append(again[0].per_request)  # type: ignore[union-attr]
            before.append(again[1].per_request)  # type: ignore[union-attr]
    return CountedChange(tuple(before), tuple(after))


def callgrind_instructions(target: TargetOptions, workload: Workload, requests: int,
                           progress: Reporter) -> InstructionSignals:
    """zprof flame's callgrind engine on one command, 1 client, one request at a time (so that the count
    repeats); the counts of every function, read from callgrind's own file."""
    valgrind.valgrind_path()
    with run_directory("baseline-callgrind") as out_dir:
        profiled = record_flame(FlameOptions(target=target, workloads=[workload], label=workload.command, clients=1,
                                             pipeline=1, top=1, shim=False, engine=CALLGRIND, requests=requests),
                                out_dir, progress)
        target_info = profiled.run.target
        roots = SourceRoots(target_info.compiled_in or "", target_info.project or "")
        functions = parse_callgrind(Path(profiled.run.files[-1]).read_text(errors="replace"), roots)
    done = profiled.run.requests or requests
    total = sum(function.self_cost for function in functions.values())
    heaviest = sorted(functions.values(), key=lambda function: (-function.self_cost, function.name))
    kept = [FunctionCost(function.name, display_path(function.file) if function.file not in (None, "???") else None,
                         round(function.self_cost / done, 2))
            for function in heaviest[:MAX_FUNCTIONS] if function.self_cost >= total * MIN_FUNCTION_SHARE]
    return InstructionSignals(CALLGRIND, done, total, round(total / done, 2), kept)


def perf_stat_count(target: TargetOptions, workload: Workload, requests: int, event: str,
                    progress: Reporter) -> tuple[int, int]:
    """`perf stat -e EVENT` of the server over `requests` requests (1 client, one at a time): the count
    and the requests that completed."""
    built = build_target(target, progress, with_shim=False)
    spec = server_spec(target, built.binary, {})
    notes: list[Note] = []
    with run_directory("baseline-perf-stat") as run_dir, \
            probed_server(spec, run_dir, notes, lambda server: probe_for(server, [workload], 1, 1)) \
            as (server, probed):
        write_keys_fixed(server, workload, probed)  # a read's hits: its keys, before the count
        progress.status(f"{requests:,} requests under perf stat -e {event}...")
        with PerfCounter(server.pid, event) as counter:
            counter.enable()
            result = run_fixed(server, probed.workloads, requests, probed)
            counter.disable()
    assert counter.count is not None
    return counter.count, result.requests


def _trials(options: SuiteOptions, workloads: list[Workload], redis: tuple[Path, str] | None,
            progress: Reporter) -> tuple[dict[str, NoisySignals | str], list[Note]]:
    """zprof bench's calibrated trials: the target alone, or alternating with Redis on fresh servers."""
    settings, target = options.settings, options.target
    built = build_target(target, progress, with_shim=False)
    config = target.config.workload
    clients, pipeline = config.get("clients", TRIALS_LOAD[0]), config.get("pipeline", TRIALS_LOAD[1])
    with run_directory("baseline-trials") as run_dir:
        sides = [Side(TARGET, built.project.name, server_spec(target, built.binary, {}), run_dir / TARGET)]
        if redis is not None:
            sides.append(Side(REDIS, "redis", ServerSpec(binary=redis[0], start_command=REDIS_START_COMMAND,
                                                         ready_timeout=target.ready_timeout), run_dir / REDIS))
        for side in sides:
            side.run_dir.mkdir()
        with sides[0].server() as server:
            progress.status("Probing the target...")
            capabilities = probe(HOST, server.port, clients, max(pipeline, 2))
            plan, notes = plan_load(capabilities, clients, pipeline, settings.requests,
                                    min(settings.warmup, settings.requests), None, redis_benchmark_path())
            if plan.tool == BENCHMARK:
                plan, config_notes = check_config_get(server.port, plan)
                notes += config_notes
        runner = AlternatingTrials(tuple(sides), workloads, plan, settings.trials, run_dir,  # type: ignore[arg-type]
                                   Prefixed(progress, "trials"), min_trial_seconds=settings.min_trial_seconds)
        runner.run()
    notes = [note for side in sides if (note := side.start_note())] + notes + runner.limitations
    signals: dict[str, NoisySignals | str] = {}
    for workload in workloads:
        failure = runner.failures.get(workload.command)
        if failure is not None:
            signals[workload.command] = f"{failure.server} failed in trial {failure.trial}: {failure.first_error}"
            continue
        records = [record for record in runner.records if record.command == workload.command]
        signals[workload.command] = NoisySignals(
            runner.plan.tool, runner.plan.clients, runner.plan.pipeline,
            [_sample(record) for record in records if record.server == TARGET],
            [_sample(record) for record in records if record.server == REDIS])
    return signals, notes


def _sample(record: RunRecord) -> TrialSample:
    return TrialSample(record.trial, record.rps, record.latency_ms.p50, record.latency_ms.p99,
                       record.cpu.load_generator_percent, record.cpu.others_percent(os.cpu_count() or 1))


# Git ------------------------------------------------------------------------------------------
def default_name(git: GitState | None) -> str:
    """The short commit, `-dirty` when tracked files changed; outside git, the time it is saved."""
    if git is None:
        return "saved-" + datetime.now().strftime("%Y%m%d-%H%M%S")
    return git.label


# The store ------------------------------------------------------------------------------------
def project_root(project: str) -> Path:
    return load_project(project).root


def zprof_dir(root: Path) -> Path:
    """The project's .zprof/: its baselines, and the builds they keep."""
    return root / STORE.parent


def store_of(root: Path) -> Path:
    return root / STORE


def check_name(name: str) -> str:
    if not _NAME.match(name) or name.endswith(".json"):
        raise ZprofError(f"{name!r} is not a baseline name",
                         detail="A name is 1-100 letters, digits, dots, dashes or underscores, not starting with "
                                "a dot or a dash, without .json (e.g. main, v0.3, a1b2c3d-dirty).")
    return name


def baseline_path(root: Path, name: str) -> Path:
    return store_of(root) / f"{check_name(name)}.json"


def refuse_existing(root: Path, name: str) -> None:
    """Before the suite runs: a name taken is bad input, unless --force."""
    path = baseline_path(root, name)
    if path.exists():
        raise ZprofError(f"a baseline named {name} exists already ({path})",
                         detail="zprof never overwrites a baseline: pass --force to replace it, or give another NAME.")


def save_baseline(baseline: Baseline, root: Path, *, force: bool) -> Path:
    """Written atomically; an existing baseline only with `force` (without, even one saved meanwhile
    stays: the new file is linked into place, which fails where a rename would replace)."""
    path = baseline_path(root, baseline.name)
    if force:
        return artifact.write(baseline, path)
    temporary = artifact.write(baseline, path.with_name(f".{path.name}.{os.getpid()}.new"))
    try:
        os.link(temporary, path)
    except FileExistsError:
        refuse_existing(root, baseline.name)
        raise  # gone again meanwhile
    finally:
        temporary.unlink(missing_ok=True)
    return path


def read_baseline(path: Path) -> Baseline:
    """A baseline file, validated; ZprofError (exit 2) for one that is missing, corrupt or not a baseline."""
    run = artifact.read(path)
    if not isinstance(run, Baseline):
        raise ZprofError(f"{path} is a zprof {artifact.kind_of(run).name} run, not a baseline")
    return run


def saved_names(root: Path) -> list[str]:
    store = store_of(root)
    return sorted(path.stem for path in store.glob("*.json")) if store.is_dir() else []


def is_baseline_path(given: str) -> bool:
    """A --baseline that names a file or directory (it has a slash, ends in .json, or exists), not a name."""
    return "/" in given or given.endswith(".json") or Path(given).exists()


def baseline_file(given: str) -> Path:
    """The baseline file a --baseline PATH names: the file itself, or the one newest in a directory (a copy of
    another checkout's .zprof/baselines/, say); bad input when there is none."""
    path = Path(given).expanduser()
    if path.is_dir():
        files = sorted(path.glob("*.json"), key=lambda file: file.stat().st_mtime)
        if not files:
            raise ZprofError(f"no baseline file (*.json) in {path}")
        return files[-1]
    if not path.is_file():
        raise ZprofError(f"no baseline file at {path}")
    return path


def locate_baseline(root: Path, given: str | None) -> Path:
    """The file of the baseline a --baseline gives: a NAME in the project's store, a file or directory from
    anywhere (`baseline_file`), or nothing, the one saved last; ZprofError (exit 2) when there is none."""
    if given is not None and is_baseline_path(given):
        return baseline_file(given)
    names = saved_names(root)
    if given is None:
        if not names:
            raise ZprofError(f"no baseline is saved in {store_of(root)}",
                             detail="Save one first: zprof baseline save (on the tree to compare with).")
        newest = max(names, key=lambda each: (store_of(root) / f"{each}.json").stat().st_mtime)
        return baseline_path(root, newest)
    path = baseline_path(root, check_name(given))
    if not path.is_file():
        saved = f"Saved: {', '.join(names)}." if names else "None is saved yet: zprof baseline save."
        raise ZprofError(f"no baseline named {given} in {store_of(root)}", detail=saved)
    return path


def load_baseline(root: Path, name: str | None) -> Baseline:
    """The baseline NAME, or the one saved last; ZprofError (exit 2) when there is none."""
    return read_baseline(locate_baseline(root, name))


def all_baselines(root: Path) -> Iterator[tuple[str, Baseline | ZprofError]]:
    """Every saved baseline, or why it cannot be read (a listing shows the others)."""
    for name in saved_names(root):
        try:
            yield name, read_baseline(store_of(root) / f"{name}.json")
        except ZprofError as error:
            yield name, error


def in_commit_order(baselines: list[Baseline]) -> list[Baseline]:
    """By their commit's date, then by when they were measured (baselines outside git by the latter)."""

    def when(baseline: Baseline) -> tuple[datetime, datetime]:
        measured = datetime.fromisoformat(baseline.measured)
        return (datetime.fromisoformat(baseline.git.committed) if baseline.git else measured), measured

    return sorted(baselines, key=when)

