"""One `zprof allocs` measurement: the target built with the shim, warmed up, watched
idle, then measured in two halves on keys its warm-up never made (a read's hits: on keys
written before the idle window); the server left to
settle, its keys counted, and FLUSHALL sent to see what stays (DBSIZE and FLUSHALL only
where the server does them: `zprof.load.support`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from zprof.analysis.allocations import Window, allocation_calls, analyse
from zprof.builder.shim import ENV_VAR
from zprof.collect import process
from zprof.collect.shim_counters import SETTLE_POLL_S, ShimCounters, ShimSnapshot, activity, create_counter_file
from zprof.errors import EveryRequestFailed, PartialRun, ZprofError
from zprof.load.calibration import rate
from zprof.load.driver import LoadError, LoadResult, LoadSession, Workload
from zprof.model.allocs import AllocsRun, Keys, LoadInfo, MemoryGrowth
from zprof.model.common import Note
from zprof.progress import Reporter
from zprof.server import HOST, Server
from zprof.sessions.target import (
    STOP_GRACE_AFTER_MEASURING_S,
    LoadInterrupted,
    Probed,
    TargetOptions,
    build_target,
    load_counter,
    probe_for,
    probed_server,
    run_directory,
    run_load,
    server_spec,
    warm_up,
    write_keys,
)


@dataclass(frozen=True)
class AllocsOptions:
    target: TargetOptions
    workload: Workload
    requests: int
    clients: int
    pipeline: int
    warmup: int


@dataclass
class _Measurement:
    window: Window
    load: LoadResult
    rss_before: int | None
    rss_after: int | None
    bias: int
    halves: tuple[int, int] | None  # requests before and after the halfway snapshot
    keys: Keys | None
    flush_error: str | None  # why FLUSHALL gave nothing to compare with; None when it did
    error: ZprofError | None = None


def measure_allocs(options: AllocsOptions, progress: Reporter) -> AllocsRun:
    """The run; PartialRun with what was measured when the server failed during the load."""
    built = build_target(options.target, progress, with_shim=True)
    notes: list[Note] = []
    workload = options.workload
    with run_directory("allocs") as run_dir:
        counters = ShimCounters(create_counter_file(run_dir / "counters.shm"))
        spec = server_spec(options.target, built.binary, {ENV_VAR: str(counters.path)})
        spec.before_start = lambda: create_counter_file(counters.path)  # a fresh file for a restart
        spec.stop_timeout = STOP_GRACE_AFTER_MEASURING_S  # the counters are read before the server stops
        with probed_server(spec, run_dir, notes, lambda server: probe_for(
                server, [workload], options.clients, options.pipeline, relied_on=("FLUSHALL", "DBSIZE"))) \
                as (server, probed):
            notes.extend(probed.notes)
            clients, pipeline = probed.clients, probed.pipeline
            measured = asyncio.run(_measure(server, counters, options, probed, built.binary, progress))
        counters.close()

    load = measured.load
    if load.requests and load.errors == load.requests:
        raise EveryRequestFailed(workload.command, load.requests, load.first_error,
                                 "their allocations are not the command's cost")
    progress.status("Reading the call sites...")
    with built.symbolizer() as symbolizer:
        if not symbolizer.has_debug_info:
            notes.append(Note("target.no-debug-info"))
        analysis = analyse(measured.window, load.requests, symbolizer, measured.bias, measured.halves,
                           measured.keys, options.warmup)
    if measured.flush_error is not None:
        notes.append(Note("allocs.no-flushall", {"reason": measured.flush_error}))
    if (uncounted := probed.without("DBSIZE")) is not None:
        notes.append(Note("allocs.no-dbsize", {"reason": uncounted}))
    run = AllocsRun(
        command=workload.command,
        args=[arg.decode() for arg in workload.args],
        requests=load.requests,
        target=built.info(options.target.start_command),
        load=LoadInfo(clients=clients, pipeline=pipeline, keyspace=workload.keyspace, warmup_requests=options.warmup,
                      seconds=round(load.seconds, 4), requests_per_second=_rounded(rate(load.requests, load.seconds)),
                      errors=load.errors, error_share=round(load.errors / load.requests, 4) if load.requests else 0.0,
                      first_error=load.first_error, idle_seconds=round(measured.window.idle_seconds, 3)),
        analysis=analysis,
        growth=MemoryGrowth(
            live_bytes=round(analysis.per_request.bytes_retained * load.requests),
            rss_bytes=(measured.rss_after - measured.rss_before)
            if measured.rss_after is not None and measured.rss_before is not None else None,
        ),
        notes=notes,
        complete=measured.error is None,
        error=measured.error.message if measured.error else None,
    )
    if measured.error is not None:
        raise PartialRun(measured.error, run)
    return run


def _rounded(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


async def _measure(server: Server, counters: ShimCounters, options: AllocsOptions, probed: Probed,
                   binary: Path, progress: Reporter) -> _Measurement:
    """All on one set of connections, so that neither connection set-up nor teardown lands in a window. Keys
    are counted where the server does DBSIZE, and what stays is seen where it does FLUSHALL (`probed`)."""
    pipeline = probed.pipeline
    session = LoadSession(HOST, server.port, probed.clients)
    await session.connect()
    workload, requests, warmup = options.workload, options.requests, options.warmup
    error: ZprofError | None = None
    try:
        origin = counters.settled_snapshot() if counters.attached() else None
        warm = await warm_up(session, workload, warmup, requests, pipeline, server, progress)
        if not counters.attached():
            raise ZprofError(
                "the server never wrote to zprof's counter file: it was not built by zprof with the shim",
                detail=f"Is {binary} the server, and does it allocate through std.mem.Allocator?",
            )
        bias = process.load_bias(server.pid, binary)
        measured = workload.with_key_range(1)
        await write_keys(session, measured, pipeline, server, progress)  # a read's hits: before any window

        idle_seconds = warm.idle_seconds
        progress.status(f"idle for {idle_seconds:.1f} s")
        idle_before, idle_after, idle_burst, idle_calls = await _watch_idle(counters, idle_seconds)

        counts_keys = probed.supports("DBSIZE")
        keys_before = await session.key_count() if counts_keys else None
        rss_before = _rss(server)
        progress.status(f"{workload.command} x {requests:,}")
        count = load_counter(progress, requests)
        before = counters.snapshot()
        result, middle = LoadResult(batch_size=pipeline), before
        halves = (requests // 2, requests - requests // 2)
        for half, share in enumerate(halves):
            try:
                result.add(await run_load(session, measured, share, pipeline, server, count, warm.rate))
            except LoadInterrupted as interrupted:
                result.add(interrupted.result)
                error = interrupted.error
                break
            if half == 0:
                middle = counters.snapshot()
        after = counters.settled_snapshot(idle_burst=idle_calls)
        rss_after = _rss(server)
        flushed, keys, flush_error = None, None, "the run was cut short"
        if error is None:
            keys_after = await session.key_count() if counts_keys else None
            keys = Keys(keys_before, keys_after) if keys_before is not None and keys_after is not None else None
            # A FLUSHALL the server rejects or fakes is not sent: nothing it "gave back" would mean anything.
            flush_error = probed.without("FLUSHALL")
            if flush_error is None:
                try:
                    flush_error = await session.flushall()
                except LoadError as failure:
                    flush_error = str(failure)
            flushed = counters.settled_snapshot(idle_burst=idle_calls) if flush_error is None else None
    finally:
        await session.close()
    complete_halves = halves if error is None else None
    window = Window(before=before, after=after, idle_before=idle_before, idle_after=idle_after,
                    middle=middle if complete_halves else None, origin=origin, flushed=flushed,
                    idle_burst=idle_burst)
    return _Measurement(window, result, rss_before, rss_after, bias, complete_halves, keys, flush_error, error)


# How often the idle server's counters are looked at: as often as settling after the run looks, so that a burst
# seen idle is what settling may ignore between two of its looks.
IDLE_LOOK_S = SETTLE_POLL_S


async def _watch_idle(counters: ShimCounters, seconds: float) -> tuple[ShimSnapshot, ShimSnapshot, int, int]:
    """The idle window's first and last snapshots, and the most allocations and allocator calls the server
    made between two looks: one burst of its idle work (a timer's tick), the resolution of every count the
    idle rate is taken off, and what settling after the run may ignore."""
    first = last = counters.snapshot()
    allocations = calls = 0
    deadline = first.time + seconds
    while last.time < deadline:
        await asyncio.sleep(min(IDLE_LOOK_S, max(deadline - last.time, 0.0)))
        now = counters.snapshot()
        allocations = max(allocations, allocation_calls(now) - allocation_calls(last))
        calls = max(calls, activity(now) - activity(last))
        last = now
    return first, last, allocations, calls


def _rss(server: Server) -> int | None:
    sample = process.sample(server.pid)
    return sample.rss_bytes if sample else None
