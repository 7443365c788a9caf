"""One `zprof syscalls` measurement: the target built as it is (no shim), warmed up, then perf tracing
every system call it makes through an idle window and a load of one command, on connections opened
before the recording, so that neither connecting nor closing is in it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from zprof.analysis.syscalls import count, descriptor_kind, read_calls, syscall_names
from zprof.builder.toolchain import find_zig
from zprof.collect import process
from zprof.collect.syscall_trace import SyscallRecorder
from zprof.errors import EveryRequestFailed, PartialRun, ZprofError
from zprof.load.calibration import rate
from zprof.load.driver import LoadResult, LoadSession, Workload
from zprof.model.allocs import LoadInfo
from zprof.model.common import Note
from zprof.model.syscalls import SyscallsRun
from zprof.progress import Reporter
from zprof.server import HOST, Server
from zprof.sessions.target import (
    STOP_GRACE_AFTER_MEASURING_S,
    LoadInterrupted,
    TargetOptions,
    build_target,
    load_counter,
    probe_for,
    probed_server,
    run_directory,
    run_load,
    server_spec,
    warm_up,
)


@dataclass(frozen=True)
class SyscallsOptions:
    target: TargetOptions
    workload: Workload
    requests: int
    clients: int
    pipeline: int
    warmup: int
    call_graph: str = "fp"


@dataclass
class _Traced:
    load: LoadResult
    idle: tuple[float, float]
    window: tuple[float, float]
    descriptors: dict[int, str]
    error: ZprofError | None


def measure_syscalls(options: SyscallsOptions, progress: Reporter) -> SyscallsRun:
    """The run; PartialRun with what was measured when the server failed during the load."""
    built = build_target(options.target, progress, with_shim=False)
    notes: list[Note] = []
    workload = options.workload
    with run_directory("syscalls") as run_dir:
        spec = server_spec(options.target, built.binary, {})
        spec.stop_timeout = STOP_GRACE_AFTER_MEASURING_S
        with probed_server(spec, run_dir, notes, lambda server: probe_for(
                server, [workload], options.clients, options.pipeline)) as (server, probed):
            notes.extend(probed.notes)
            traced, recorder = asyncio.run(_trace(server, run_dir, options, probed.clients, probed.pipeline,
                                                  progress))
            progress.status("Reading the system calls...")
            text = recorder.script()
            lost = recorder.lost_events()
        load = traced.load
        if load.requests and load.errors == load.requests:
            raise EveryRequestFailed(workload.command, load.requests, load.first_error,
                                     "their system calls are not the command's")
        if not load.requests:
            raise traced.error or ZprofError("no request completed")
        names = syscall_names(find_zig(options.target.zig).lib_dir)
        with built.symbolizer() as symbolizer:
            if not symbolizer.has_debug_info:
                notes.append(Note("target.no-debug-info"))
            calls = read_calls(text, built.binary, symbolizer, names, traced.descriptors)
    counted = count(calls, traced.idle, traced.window, load.requests)
    if not counted.threads:
        # Every request crosses the kernel at least to be read: no call at all is a recording that missed them.
        raise ZprofError(f"perf recorded no system call of the server during the {load.requests:,} requests",
                         detail="The recording missed the server's threads; nothing measured is shown.")
    if lost:
        notes.append(Note("syscalls.lost", {"events": lost}))
    run = SyscallsRun(
        command=workload.command, args=[arg.decode() for arg in workload.args], requests=load.requests,
        target=built.info(options.target.start_command),
        load=LoadInfo(clients=probed.clients, pipeline=probed.pipeline, keyspace=workload.keyspace,
                      warmup_requests=options.warmup, seconds=round(load.seconds, 4),
                      requests_per_second=_rounded(rate(load.requests, load.seconds)), errors=load.errors,
                      error_share=round(load.errors / load.requests, 4), first_error=load.first_error,
                      idle_seconds=round(traced.idle[1] - traced.idle[0], 3)),
        rows=counted.rows, per_request=counted.per_request, idle_per_second=counted.idle_per_second,
        threads=counted.threads, events_lost=lost, call_graph=options.call_graph, notes=notes,
        complete=traced.error is None, error=traced.error.message if traced.error else None)
    if traced.error is not None:
        raise PartialRun(traced.error, run)
    return run


def _rounded(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


async def _trace(server: Server, run_dir: Path, options: SyscallsOptions, clients: int, pipeline: int,
                 progress: Reporter) -> tuple[_Traced, SyscallRecorder]:
    """The connections are opened and warmed up before perf attaches, so that a server with a thread per
    connection has started them all; the recording is over (and perf stopped) when this returns."""
    session = LoadSession(HOST, server.port, clients)
    await session.connect()
    error: ZprofError | None = None
    recorder: SyscallRecorder | None = None
    try:
        warm = await warm_up(session, options.workload, options.warmup, options.requests, pipeline, server, progress)
        progress.status("attaching perf to the server's system calls")
        recorder = SyscallRecorder(server.pid, run_dir, options.call_graph)
        recorder.wait_until_recording()
        idle_seconds = warm.idle_seconds
        progress.status(f"idle for {idle_seconds:.1f} s")
        idle_start = time.monotonic()
        await asyncio.sleep(idle_seconds)
        idle = (idle_start, time.monotonic())
        progress.status(f"{options.workload.command} x {options.requests:,}")
        start = time.monotonic()
        try:
            result = await run_load(session, options.workload.with_key_range(1), options.requests, pipeline, server,
                                    load_counter(progress, options.requests), warm.rate)
        except LoadInterrupted as interrupted:
            result, error = interrupted.result, interrupted.error
        window = (start, time.monotonic())
        held = {number: descriptor_kind(link) for number, link in process.descriptors(server.pid).items()}
        recorder.stop()
    finally:
        if recorder is not None:
            recorder.close()
        await session.close()
    return _Traced(result, idle, window, held, error), recorder
