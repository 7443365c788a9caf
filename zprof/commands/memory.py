"""zprof memory: memory over time under load, growth and leaks (the shim), or
the heap's peak by call site (valgrind's massif)."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import click
import psutil
from rich.console import Console

from zprof.analysis.growth import (
    AFTER_FLUSH,
    IDLE,
    LOAD,
    WARMUP,
    MassifRun,
    MemoryLoad,
    MemoryRun,
    Phase,
    RawSample,
    Recording,
    analyse,
    held_by_site,
    massif_peak,
    program_allocations,
)
from zprof.analysis.symbols import Symbolizer
from zprof.artifacts import TargetInfo
from zprof.collect import massif, process, valgrind
from zprof.collect.shim_counters import ShimCounters, ShimSnapshot, create_counter_file
from zprof.commands._target import (
    TargetOptions,
    build_target,
    fresh_output_dir,
    min_trial_seconds_option,
    run_directory,
    server_spec,
    target_options,
)
from zprof.errors import EXIT_TARGET, ZprofError
from zprof.load.calibration import MIN_TRIAL_SECONDS
from zprof.load.driver import BATCH_TIMEOUT_S, LoadError, LoadResult, LoadSession, Workload, run_requests
from zprof.load.probe import check_command, probe
from zprof.load.workloads import DEFAULT_KEYSPACE, MIXED_COMMANDS, workload_for
from zprof.report.memory_report import render_massif, render_memory, write_massif_pictures, write_memory_pictures
from zprof.report.terminal import make_console
from zprof.server import HOST, Server
from zprof.target import shim
from zprof.target.build import BuildResult, cache_root
from zprof.target.project import ZigProject

MIN_INTERVAL_S = 0.01
# Every sample is kept (for the picture and the JSON): a bound on memory and file size.
MAX_SAMPLES = 50_000
# Idle, warm-up and after-FLUSHALL phases: a tenth of the load each, within these bounds.
SIDE_PHASE_S = (1.0, 5.0)
# The hook attaches on the server's first allocator call; probes have made some by now.
ATTACH_WAIT_S = 2.0
JSON_FILE = "memory.json"


@dataclass(frozen=True)
class _Step:
    label: str
    kind: str
    command: str | None
    workloads: list[Workload]
    seconds: float


def plan_phases(workloads: list[Workload], mixed: bool, duration: float, interval: float,
                min_trial_seconds: float = MIN_TRIAL_SECONDS) -> list[_Step]:
    """Idle, warm-up, one load phase per command (the whole mix in the warm-up), after FLUSHALL.

    Every phase lasts at least two intervals, so each has samples of its own, and every load phase
    at least `min_trial_seconds`. Each load phase writes keys no phase before it made, so that what
    a new key costs shows in it (`Workload.with_key_range`).
    """
    side = max(min(max(duration / 10, SIDE_PHASE_S[0]), SIDE_PHASE_S[1]), 2 * interval)
    steps = [_Step(IDLE, IDLE, None, [], side),
             _Step(WARMUP, WARMUP, None, [w.with_key_range(0) for w in workloads], side)]
    share = max(duration / len(workloads) if mixed else duration, 2 * interval, min_trial_seconds)
    steps += [_Step(f"{LOAD} {w.command}", LOAD, w.command, [w.with_key_range(index)], share)
              for index, w in enumerate(workloads, 1)]
    steps.append(_Step(AFTER_FLUSH, AFTER_FLUSH, None, [], side))
    return steps


@click.command("memory")
@target_options
@click.option("--command", "command", default=None, help="Load with one command (default: the mixed workload).")
@click.option("--workload", type=click.Choice(["mixed"]), default=None,
              help="mixed: " + ", ".join(MIXED_COMMANDS) + ", one phase each.")
@click.option("--args", "template", default=None, help="The request for --command, with __rand_int__ placeholders.")
@click.option("--keyspace", default=DEFAULT_KEYSPACE, show_default=True, type=click.IntRange(1, 10**12))
@click.option("--duration", default=60.0, show_default=True, type=click.FloatRange(1, 3600),
              help="Seconds of load, over all load phases (1 to 3600).")
@click.option("--interval", default=0.1, show_default=True, type=float,
              help=f"Seconds between samples ({MIN_INTERVAL_S:g} up to --duration).")
@click.option("--clients", default=4, show_default=True, type=click.IntRange(1, 1000))
@click.option("--pipeline", default=1, show_default=True, type=click.IntRange(1, 1000))
@click.option("--output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for the outputs (default: zprof-out/memory-<time>; must not exist).")
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the report as JSON (the format is described in the README).")
@click.option("--engine", type=click.Choice(["shim", "massif"]), default="shim", show_default=True,
              help="massif: run --requests requests under valgrind's massif and report the heap's peak.")
@click.option("--requests", default=2000, show_default=True, type=click.IntRange(1, 10_000_000),
              help="Requests to run under --engine massif.")
@min_trial_seconds_option
def memory_command(target: TargetOptions, command: str | None, workload: str | None, template: str | None,
                   keyspace: int, duration: float, interval: float, clients: int, pipeline: int,
                   output: Path | None, json_path: Path | None, engine: str, requests: int,
                   min_trial_seconds: float) -> None:
    """Memory over time under load: live bytes and RSS by phase, growth, leaks; or massif's peak."""
    if command and workload:
        raise ZprofError("pass --command or --workload, not both")
    workloads = ([workload_for(command, template, keyspace)] if command else
                 [workload_for(name, None, keyspace) for name in MIXED_COMMANDS])
    label = command.upper() if command else "mixed"
    if json_path is not None and not json_path.parent.is_dir():
        raise ZprofError(f"cannot write --json {json_path}: {json_path.parent} is not a directory")
    console = make_console()
    if engine == "massif":
        valgrind.valgrind_path()
        massif.vgdb_path()
        _massif(target, workloads, label, requests, clients, pipeline, fresh_output_dir(output, "memory"),
                json_path, console)
        return
    if interval < MIN_INTERVAL_S:
        raise ZprofError(f"--interval {interval:g} s is under {MIN_INTERVAL_S * 1000:.0f} ms",
                         detail="Reading the shim's counters takes a few milliseconds; sample less often.")
    if interval > duration:
        raise ZprofError(f"--interval {interval:g} s is longer than --duration {duration:g} s",
                         detail="The load would not be sampled; pass a shorter --interval or a longer --duration.")
    if duration / interval > MAX_SAMPLES:
        raise ZprofError(f"--interval {interval:g} s over --duration {duration:g} s makes more than "
                         f"{MAX_SAMPLES:,} samples", detail=f"Pass --interval {duration / MAX_SAMPLES:.3g} or more.")
    out_dir = fresh_output_dir(output, "memory")
    project, built = build_target(target, console, with_shim=True)
    steps = plan_phases(workloads, command is None, duration, interval, min_trial_seconds)

    notes: list[str] = []
    asked = duration / len(workloads) if command is None else duration
    if (lengthened := [step for step in steps if step.kind == LOAD and step.seconds > asked]):
        notes.append(f"Each load phase lasted {lengthened[0].seconds:g} s rather than {asked:g} s (--duration over "
                     f"{len(workloads)} phases), so that none is shorter than --min-trial-seconds or two intervals.")
    with run_directory("memory") as run_dir:
        counters = ShimCounters(create_counter_file(run_dir / "counters.shm"))
        spec = server_spec(target, built.binary, {shim.ENV_VAR: str(counters.path)})
        with Server(spec, run_dir) as server:
            capabilities = probe(HOST, server.port, clients, pipeline)
            notes.extend(capabilities.notes)
            clients, pipeline = capabilities.adapt(clients, pipeline)
            for each in workloads:
                check_command(HOST, server.port, each)
            _wait_until_attached(counters, server, built.binary, target.start_command)
            bias = process.load_bias(server.pid, built.binary)
            recorder = _Recorder(server, counters, interval, console)
            asyncio.run(recorder.record(steps, clients, pipeline))
        counters.close()

    if recorder.final is None:
        assert recorder.error is not None
        raise recorder.error
    load = recorder.load
    if load.requests and load.errors == load.requests:
        raise ZprofError(f"every one of the {load.requests:,} requests got an error reply, so the memory they "
                         f"moved is not the workload's; the first: {load.first_error}",
                         detail="Check the request (--args) against what the server implements.", exit_code=EXIT_TARGET)
    recording = Recording(recorder.samples, recorder.phases, recorder.final, recorder.flushall_error)
    with Symbolizer(built.binary, cache_root() / "symbols") as symbolizer:
        if not symbolizer.has_debug_info:
            notes.append("The binary has no DWARF debug info: call sites show function names only.")
        analysis = analyse(recording, symbolizer, bias)
    run = MemoryRun(
        command=label, target=_target_info(project, built),
        load=MemoryLoad(description=f"zprof's driver, {clients} client(s), pipeline {pipeline}", clients=clients,
                        pipeline=pipeline, requests=load.requests, errors=load.errors, first_error=load.first_error,
                        seconds=round(load.seconds, 3), interval=interval,
                        error_share=round(load.errors / load.requests, 4) if load.requests else 0.0),
        analysis=analysis, notes=notes, complete=recorder.error is None,
    )
    written = [*write_memory_pictures(run, out_dir), *_write_json(run, out_dir, json_path)]
    render_memory(run, written, console)
    if recorder.error is not None:
        raise recorder.error


def _wait_until_attached(counters: ShimCounters, server: Server, binary: Path, start_command: str) -> None:
    deadline = time.monotonic() + ATTACH_WAIT_S
    while not counters.attached():
        if time.monotonic() > deadline or not server.alive():
            raise ZprofError(
                "the server never wrote to zprof's counter file: it was not built by zprof with the shim",
                detail=f"zprof memory reads the counters of the binary zprof builds ({binary}); "
                f"--start-command `{start_command}` must start it (check --start-command and --exe).",
            )
        time.sleep(0.05)


def _target_info(project: ZigProject, built: BuildResult) -> TargetInfo:
    return TargetInfo(project=str(project.root), binary=str(built.binary), zig_version=built.zig_version,
                      build_cached=built.cached, build_seconds=round(built.seconds, 2),
                      build_warnings=built.warnings)


class _Recorder:
    """Runs the phases on one set of connections and samples the counters and the RSS meanwhile."""

    def __init__(self, server: Server, counters: ShimCounters, interval: float, console: Console) -> None:
        self.server, self.counters, self.interval, self.console = server, counters, interval, console
        self.samples: list[RawSample] = []
        self.phases: list[Phase] = []
        self.load = LoadResult()  # all phases together
        self.final: ShimSnapshot | None = None
        self.flushall_error: str | None = None
        self.error: ZprofError | None = None
        self._process = psutil.Process(server.pid)
        self._started = time.monotonic()
        self._held: dict[int, int] = {}

    def _now(self) -> float:
        return time.monotonic() - self._started

    def _sample(self, phase: str, snapshot: ShimSnapshot | None = None) -> None:
        snapshot = snapshot or self.counters.snapshot()
        held = held_by_site(snapshot)
        changes = {index: value for index, value in held.items() if self._held.get(index) != value}
        self._held = held
        try:
            # RSS without file-backed pages: the binary, and zprof's counter file the hook writes to.
            memory = self._process.memory_info()
            rss, anon = memory.rss, memory.rss - memory.shared
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            rss = anon = None
        self.samples.append(RawSample(
            time=self._now(), phase=phase, requests=self.load.requests, held_changes=changes,
            allocations=program_allocations(snapshot),
            layer_peaks=tuple(layer.peak_live_bytes for layer in snapshot.layers), rss_bytes=rss, anon_rss_bytes=anon,
        ))
        self.final = snapshot

    def _count(self, requests: int) -> None:
        self.load.requests += requests

    async def record(self, steps: list[_Step], clients: int, pipeline: int) -> None:
        session = LoadSession(HOST, self.server.port, clients)
        await session.connect()
        try:
            with self.console.status("") as status:
                self._sample(steps[0].label)
                for step in steps:
                    status.update(f"{step.label} for {step.seconds:g} s...")
                    if step.kind == AFTER_FLUSH and not await self._flushall(session):
                        break
                    if not await self._phase(step, session, pipeline):
                        break
        finally:
            await session.close()

    async def _phase(self, step: _Step, session: LoadSession, pipeline: int) -> bool:
        """One phase: load (if any) while sampling; False when the load failed."""
        keys_before = await session.key_count() if step.kind == LOAD else None
        start, requests = self._now(), self.load.requests
        stop = threading.Event()
        task = (asyncio.create_task(session.run(step.workloads, None, pipeline, self._count, stop))
                if step.workloads else None)
        failure: LoadError | TimeoutError | None = None
        deadline, tick = start + step.seconds, start + self.interval
        try:
            while tick < deadline and not (task and task.done()):
                await asyncio.sleep(max(0.0, tick - self._now()))
                self._sample(step.label)
                # A tick missed while sampling is skipped, not made up.
                tick = max(tick + self.interval, self._now())
            if not (task and task.done()):
                await asyncio.sleep(max(0.0, deadline - self._now()))
        finally:
            stop.set()
            if task is not None:
                try:
                    result = await asyncio.wait_for(task, BATCH_TIMEOUT_S + 5)
                    self._add_errors(result)
                except LoadError as error:
                    failure = error
                    self._add_errors(error.result)
                except TimeoutError as error:  # the driver times out each batch sooner; never wait forever
                    task.cancel()
                    failure = error
        if failure is not None:
            self.error = (self.server.crashed(f"crashed during {step.label}; the picture covers the time before")
                          if self.server.exited_within(1.0) else
                          ZprofError(f"{failure or 'the load did not stop'} during {step.label}",
                                     detail=self.server.log_tail(), exit_code=EXIT_TARGET))
        # A phase ends once the server has settled: it may free a request's buffers after replying.
        self._sample(step.label, self.counters.settled_snapshot() if failure is None else None)
        keys_after = await session.key_count() if step.kind == LOAD and failure is None else None
        self.phases.append(Phase(step.label, step.kind, step.command, start, self._now(),
                                 self.load.requests - requests, keys_before, keys_after))
        return failure is None

    def _add_errors(self, result: LoadResult) -> None:
        self.load.errors += result.errors
        self.load.first_error = self.load.first_error or result.first_error
        self.load.seconds += result.seconds

    async def _flushall(self, session: LoadSession) -> bool:
        try:
            self.flushall_error = await session.flushall()
        except LoadError as error:
            self.error = ZprofError(str(error), detail=self.server.log_tail(), exit_code=EXIT_TARGET)
            return False
        return True


# massif -------------------------------------------------------------------------
def _massif(target: TargetOptions, workloads: list[Workload], label: str, requests: int, clients: int,
            pipeline: int, out_dir: Path, json_path: Path | None, console: Console) -> None:
    project, built = build_target(target, console, with_shim=True, shim_variant=shim.MASSIF,
                                  extra_args=(f"-Dcpu={valgrind.VALGRIND_CPU}",))
    with Symbolizer(built.binary, cache_root() / "symbols") as symbolizer:
        functions = massif.alloc_fns(symbolizer.function_starts())
    bias = 0
    snapshots = out_dir / "massif.out"
    notes: list[str] = []
    with run_directory("massif") as run_dir:
        spec = server_spec(target, built.binary, {})
        # massif's own file, written only if the target exits; zprof asks for the snapshots instead.
        spec.start_command = massif.massif_start_command(spec.start_command, run_dir / "massif.exit.out", functions)
        spec.ready_timeout = max(spec.ready_timeout, valgrind.READY_TIMEOUT_S)
        try:
            with Server(spec, run_dir) as server:
                capabilities = probe(HOST, server.port, clients, pipeline, timeout=valgrind.PROBE_TIMEOUT_S)
                notes.extend(capabilities.notes)
                clients, pipeline = capabilities.adapt(clients, pipeline)
                for each in workloads:
                    check_command(HOST, server.port, each, timeout=valgrind.PROBE_TIMEOUT_S)
                bias = process.load_bias(server.pid, built.binary)
                with console.status(f"{requests:,} requests under massif..."):
                    try:
                        result = asyncio.run(run_requests(HOST, server.port, clients, workloads, requests, pipeline))
                    except LoadError as failure:
                        if server.exited_within(1.0):
                            raise server.crashed(f"crashed after {failure.result.requests:,} requests") from failure
                        raise ZprofError(str(failure), detail=server.log_tail(), exit_code=EXIT_TARGET) from failure
                massif.request_snapshots(server.pid, snapshots)
        except ZprofError as error:
            if error.exit_code == EXIT_TARGET:  # the target failed under valgrind, not the input
                raise massif.valgrind_failure(
                    error, run_dir / "server.log",
                    "measure with the shim instead (zprof memory without --engine).") from error
            raise
    with Symbolizer(built.binary, cache_root() / "symbols") as symbolizer:
        peak = massif_peak(massif.parse_massif(snapshots.read_text(errors="replace")), symbolizer, bias)
    if peak is None:
        raise ZprofError("massif recorded no heap tree", exit_code=EXIT_TARGET,
                         detail="Was the target built by zprof for massif? Its hooks tell valgrind about each block.")
    run = MassifRun(
        command=label, target=_target_info(project, built),
        load=MemoryLoad(description=f"zprof's driver, {result.requests:,} requests under massif", clients=clients,
                        pipeline=pipeline, requests=result.requests, errors=result.errors,
                        first_error=result.first_error, seconds=round(result.seconds, 3), interval=0.0),
        peak=peak, notes=notes,
    )
    written = [*write_massif_pictures(run, out_dir), snapshots, *_write_json(run, out_dir, json_path)]
    render_massif(run, written, console)


def _write_json(run: MemoryRun | MassifRun, out_dir: Path, json_path: Path | None) -> list[Path]:
    """The report's JSON in the output directory, and at --json too when given."""
    paths = [out_dir / JSON_FILE, *([json_path] if json_path is not None else [])]
    for path in paths:
        run.write_json(path)
    return paths
