"""One `zprof memory` measurement with the shim: the phases of a run (idle, warm-up, one
load phase per command, FLUSHALL, after it), with the shim's counters and the RSS sampled
all along, then the growth and leak analysis. A server that fakes FLUSHALL gets no
after-FLUSHALL phase, and so no leak verdict (`zprof.load.support`)."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from zprof.analysis.entries import entry_layouts
from zprof.analysis.growth import RawSample, Recording, analyse, held_by_site, program_allocations
from zprof.builder.shim import ENV_VAR
from zprof.collect import process
from zprof.collect.shim_counters import ShimCounters, ShimSnapshot, create_counter_file
from zprof.errors import EXIT_TARGET, EveryRequestFailed, PartialRun, ZprofError
from zprof.load.calibration import MIN_TRIAL_SECONDS
from zprof.load.driver import BATCH_TIMEOUT_S, LoadError, LoadResult, LoadSession, Workload
from zprof.model.common import Note
from zprof.model.memory import AFTER_FLUSH, IDLE, LOAD, WARMUP, MemoryLoad, MemoryRun, Phase
from zprof.progress import Reporter
from zprof.server import HOST, Server
from zprof.sessions.target import (
    Probed,
    TargetOptions,
    build_target,
    probe_for,
    probed_server,
    run_directory,
    server_spec,
)

MIN_INTERVAL_S = 0.01
# Every sample is kept (for the picture and the JSON): a bound on memory and file size.
MAX_SAMPLES = 50_000
# Idle, warm-up and after-FLUSHALL phases: a tenth of the load each, within these bounds.
SIDE_PHASE_S = (1.0, 5.0)
# The hook attaches on the server's first allocator call; probes have made some by now.
ATTACH_WAIT_S = 2.0


@dataclass(frozen=True)
class MemoryOptions:
    target: TargetOptions
    workloads: list[Workload]
    mixed: bool  # one load phase per command of the mixed workload
    duration: float
    interval: float
    clients: int
    pipeline: int
    min_trial_seconds: float = MIN_TRIAL_SECONDS

    @property
    def label(self) -> str:
        return "mixed" if self.mixed else self.workloads[0].command


def check_sampling(duration: float, interval: float) -> None:
    """Bad --interval and --duration pairs, before anything is built."""
    if interval < MIN_INTERVAL_S:
        raise ZprofError(f"--interval {interval:g} s is under {MIN_INTERVAL_S * 1000:.0f} ms",
                         detail="Reading the shim's counters takes a few milliseconds; sample less often.")
    if interval > duration:
        raise ZprofError(f"--interval {interval:g} s is longer than --duration {duration:g} s",
                         detail="The load would not be sampled; pass a shorter --interval or a longer --duration.")
    if duration / interval > MAX_SAMPLES:
        raise ZprofError(f"--interval {interval:g} s over --duration {duration:g} s makes more than "
                         f"{MAX_SAMPLES:,} samples", detail=f"Pass --interval {duration / MAX_SAMPLES:.3g} or more.")


@dataclass(frozen=True)
class _Step:
    label: str
    kind: str
    command: str | None
    workloads: list[Workload]
    seconds: float


def plan_phases(workloads: list[Workload], mixed: bool, duration: float, interval: float,
                min_trial_seconds: float = MIN_TRIAL_SECONDS, flushall: bool = True) -> list[_Step]:
    """Idle, warm-up, one load phase per command (the whole mix in the warm-up), after FLUSHALL (unless
    `flushall` is False: the server fakes it, and a phase after it would show a give-back that never was).

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
    if flushall:
        steps.append(_Step(AFTER_FLUSH, AFTER_FLUSH, None, [], side))
    return steps


def measure_memory(options: MemoryOptions, progress: Reporter) -> MemoryRun:
    """The run; PartialRun with the time before it when the server failed during the phases."""
    check_sampling(options.duration, options.interval)
    built = build_target(options.target, progress, with_shim=True)
    workloads = options.workloads
    steps = plan_phases(workloads, options.mixed, options.duration, options.interval, options.min_trial_seconds)
    notes: list[Note] = []
    asked = options.duration / len(workloads) if options.mixed else options.duration
    if (lengthened := [step for step in steps if step.kind == LOAD and step.seconds > asked]):
        notes.append(Note("memory.phases-lengthened", {"seconds": lengthened[0].seconds, "asked": asked,
                                                        "phases": len(workloads)}))
    with run_directory("memory") as run_dir:
        counters = ShimCounters(create_counter_file(run_dir / "counters.shm"))
        spec = server_spec(options.target, built.binary, {ENV_VAR: str(counters.path)})
        spec.before_start = lambda: create_counter_file(counters.path)  # a fresh file for a restart
        with probed_server(spec, run_dir, notes, lambda server: probe_for(
                server, workloads, options.clients, options.pipeline, explicit=not options.mixed,
                relied_on=("FLUSHALL", "DBSIZE"))) as (server, probed):
            notes.extend(probed.notes)
            flush_faked = probed.support["FLUSHALL"].unsupported
            if len(probed.workloads) < len(workloads) or flush_faked is not None:
                steps = plan_phases(probed.workloads, options.mixed, options.duration, options.interval,
                                    options.min_trial_seconds, flushall=flush_faked is None)
            notes += _without_notes(probed)
            clients, pipeline = probed.clients, probed.pipeline
            _wait_until_attached(counters, server, built.binary, options.target.start_command)
            bias = process.load_bias(server.pid, built.binary)
            recorder = _Recorder(server, counters, options.interval, progress, probed.supports("DBSIZE"))
            # Recorded as FLUSHALL's failure, so that the analysis gives no leak verdict (Leak.checked is False).
            recorder.flushall_error = flush_faked
            asyncio.run(recorder.record(steps, clients, pipeline))
        counters.close()

    if recorder.final is None:
        assert recorder.error is not None
        raise recorder.error
    load = recorder.load
    if load.requests and load.errors == load.requests:
        raise EveryRequestFailed(options.label, load.requests, load.first_error,
                                 "the memory they moved is not the workload's")
    progress.status("Reading the call sites...")
    recording = Recording(recorder.samples, recorder.phases, recorder.final, recorder.flushall_error)
    with built.symbolizer() as symbolizer:
        if not symbolizer.has_debug_info:
            notes.append(Note("target.no-debug-info"))
        analysis = analyse(recording, symbolizer, bias)
    run = MemoryRun(
        command=options.label, target=built.info(options.target.start_command),
        load=MemoryLoad(description=f"zprof's driver, {clients} client(s), pipeline {pipeline}", clients=clients,
                        pipeline=pipeline, requests=load.requests, errors=load.errors, first_error=load.first_error,
                        seconds=round(load.seconds, 3), interval=options.interval,
                        error_share=round(load.errors / load.requests, 4) if load.requests else 0.0),
        analysis=analysis, notes=notes, complete=recorder.error is None,
        error=recorder.error.message if recorder.error else None,
        entries=entry_layouts(built.binary, analysis.holders),
    )
    if recorder.error is not None:
        raise PartialRun(recorder.error, run)
    return run


def _without_notes(probed: Probed) -> list[Note]:
    """What the run does without, where the server fakes FLUSHALL (no after-FLUSHALL phase, no leak verdict)
    or does not do DBSIZE (no count of new keys). A FLUSHALL it rejects is still sent, and its error is the
    leak verdict's reason, as before."""
    notes = []
    if (flush_faked := probed.support["FLUSHALL"].unsupported) is not None:
        notes.append(Note("memory.no-flushall", {"reason": flush_faked}))
    if (uncounted := probed.without("DBSIZE")) is not None:
        notes.append(Note("memory.no-dbsize", {"reason": uncounted}))
    return notes


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


class _Recorder:
    """Runs the phases on one set of connections and samples the counters and the RSS meanwhile."""

    def __init__(self, server: Server, counters: ShimCounters, interval: float, progress: Reporter,
                 counts_keys: bool = True) -> None:
        self.server, self.counters, self.interval, self.progress = server, counters, interval, progress
        self.counts_keys = counts_keys  # whether the server does DBSIZE
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
            self._sample(steps[0].label)
            for step in steps:
                self.progress.status(f"{step.label} for {step.seconds:g} s...")
                if step.kind == AFTER_FLUSH and not await self._flushall(session):
                    break
                if not await self._phase(step, session, pipeline):
                    break
        finally:
            await session.close()

    async def _phase(self, step: _Step, session: LoadSession, pipeline: int) -> bool:
        """One phase: load (if any) while sampling; False when the load failed."""
        counted = step.kind == LOAD and self.counts_keys
        keys_before = await session.key_count() if counted else None
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
        keys_after = await session.key_count() if counted and failure is None else None
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
