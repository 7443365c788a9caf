"""zprof allocs CMD: allocations per request of one command, by layer, size and line."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from zprof.analysis.allocations import Keys, Window, analyse
from zprof.analysis.symbols import Symbolizer
from zprof.artifacts import AllocsRun, LoadInfo, MemoryGrowth, TargetInfo
from zprof.collect import process
from zprof.collect.shim_counters import ShimCounters, create_counter_file
from zprof.commands._target import TargetOptions, build_target, run_directory, server_spec, target_options
from zprof.errors import EXIT_TARGET, ZprofError
from zprof.load.calibration import rate
from zprof.load.driver import LoadError, LoadResult, LoadSession, Workload
from zprof.load.probe import check_command, probe
from zprof.load.workloads import DEFAULT_KEYSPACE, workload_for
from zprof.report.terminal import make_console, render_allocs
from zprof.server import HOST, Server
from zprof.target.build import cache_root
from zprof.target.shim import ENV_VAR

LOAD_TIMEOUT_S = 600.0
MAX_IDLE_WINDOW_S = 3.0
MIN_IDLE_WINDOW_S = 0.5


@dataclass
class Measurement:
    window: Window
    load: LoadResult
    warmup: int
    rss_before: int | None
    rss_after: int | None
    bias: int
    halves: tuple[int, int] | None  # requests before and after the halfway snapshot
    keys: Keys | None
    flush_error: str | None  # why FLUSHALL gave nothing to compare with; None when it did
    error: ZprofError | None = None


@click.command("allocs")
@click.argument("command")
@target_options
@click.option("--requests", default=10_000, show_default=True, type=click.IntRange(1, 100_000_000),
              help="Requests in the measured run.")
@click.option("--clients", default=4, show_default=True, type=click.IntRange(1, 1000))
@click.option("--pipeline", default=1, show_default=True, type=click.IntRange(1, 1000))
@click.option("--args", "template", default=None,
              help="The request, with __rand_int__ placeholders (default: a redis-benchmark-like one).")
@click.option("--keyspace", default=DEFAULT_KEYSPACE, show_default=True, type=click.IntRange(1, 10**12),
              help="__rand_int__ takes values below this.")
@click.option("--warmup", default=None, type=click.IntRange(0, 100_000_000),
              help="Requests before the measured run (default: max(5000, requests/4)).")
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the report as JSON (the format is described in the README).")
def allocs_command(
    command: str,
    target: TargetOptions,
    requests: int,
    clients: int,
    pipeline: int,
    template: str | None,
    keyspace: int,
    warmup: int | None,
    json_path: Path | None,
) -> None:
    """Allocations per request of COMMAND, measured with the shim under load."""
    warmup = warmup if warmup is not None else max(5000, requests // 4)
    workload = workload_for(command, template, keyspace)
    if json_path is not None and not json_path.parent.is_dir():
        raise ZprofError(f"cannot write --json {json_path}: {json_path.parent} is not a directory")
    console = make_console()

    project, built = build_target(target, console, with_shim=True)
    notes: list[str] = []
    with run_directory("allocs") as run_dir:
        counters = ShimCounters(create_counter_file(run_dir / "counters.shm"))
        spec = server_spec(target, built.binary, {ENV_VAR: str(counters.path)})
        with Server(spec, run_dir) as server:
            capabilities = probe(HOST, server.port, clients, pipeline)
            notes.extend(capabilities.notes)
            clients, pipeline = capabilities.adapt(clients, pipeline)
            check_command(HOST, server.port, workload)
            measurement = asyncio.run(
                _measure(server, counters, workload, requests, warmup, clients, pipeline, built.binary, console)
            )
        counters.close()

    load = measurement.load
    if load.requests and load.errors == load.requests:
        raise ZprofError(
            f"every one of the {load.requests:,} measured {workload.command} requests got an error reply, so "
            f"their allocations are not the command's cost; the first: {load.first_error}",
            detail="Check the request (--args) against what the server implements.", exit_code=EXIT_TARGET)
    with Symbolizer(built.binary, cache_root() / "symbols") as symbolizer:
        if not symbolizer.has_debug_info:
            notes.append("The binary has no DWARF debug info: call sites show function names only.")
        analysis = analyse(measurement.window, load.requests, symbolizer, measurement.bias, measurement.halves,
                           measurement.keys, measurement.warmup)
    if measurement.flush_error is not None:
        notes.append(f"FLUSHALL could not show which retained bytes were stored data ({measurement.flush_error}): "
                     "growth flags then count stored data too.")
    run = AllocsRun(
        command=workload.command,
        args=[arg.decode() for arg in workload.args],
        requests=load.requests,
        target=TargetInfo(project=str(project.root), binary=str(built.binary), zig_version=built.zig_version,
                          build_cached=built.cached, build_seconds=round(built.seconds, 2),
                          build_warnings=built.warnings),
        load=LoadInfo(clients=clients, pipeline=pipeline, warmup_requests=measurement.warmup,
                      seconds=round(load.seconds, 4), requests_per_second=_rounded(rate(load.requests, load.seconds)),
                      errors=load.errors, error_share=round(load.errors / load.requests, 4) if load.requests else 0.0,
                      first_error=load.first_error, idle_seconds=round(measurement.window.idle_seconds, 3)),
        analysis=analysis,
        growth=MemoryGrowth(
            live_bytes=round(analysis.per_request.bytes_retained * load.requests),
            rss_bytes=(measurement.rss_after - measurement.rss_before)
            if measurement.rss_after is not None and measurement.rss_before is not None else None,
        ),
        notes=notes,
        complete=measurement.error is None,
    )
    render_allocs(run, console)
    if json_path is not None:
        run.write_json(json_path)
        console.print(f"JSON report written to {json_path}")
    if measurement.error is not None:
        raise measurement.error


def _rounded(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


async def _measure(
    server: Server,
    counters: ShimCounters,
    workload: Workload,
    requests: int,
    warmup: int,
    clients: int,
    pipeline: int,
    binary: Path,
    console: Console,
) -> Measurement:
    """Warm up, watch the idle server, then measure in two halves on keys the warm-up never
    made; let the server settle, count its keys, and see what FLUSHALL gives back. All on one
    set of connections, so that neither connection set-up nor teardown lands in a window."""
    session = LoadSession(HOST, server.port, clients)
    await session.connect()
    error: ZprofError | None = None
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=console, transient=True) as bar:
            expected_seconds = 1.0
            origin = counters.settled_snapshot() if counters.attached() else None
            if warmup:
                task = bar.add_task("warm-up", total=warmup)
                try:
                    warm = await _run(session, workload.with_key_range(0), warmup, pipeline, server,
                                      lambda n: bar.advance(task, n))
                except _Interrupted as interrupted:
                    raise interrupted.error from None
                expected_seconds = warm.seconds * requests / max(warm.requests, 1)
            if not counters.attached():
                raise ZprofError(
                    "the server never wrote to zprof's counter file: it was not built by zprof with the shim",
                    detail=f"Is {binary} the server, and does it allocate through std.mem.Allocator?",
                )
            bias = process.load_bias(server.pid, binary)

            idle_seconds = min(max(expected_seconds, MIN_IDLE_WINDOW_S), MAX_IDLE_WINDOW_S)
            bar.add_task(f"idle for {idle_seconds:.1f} s", total=None)
            idle_before = counters.snapshot()
            await asyncio.sleep(idle_seconds)
            idle_after = counters.snapshot()

            keys_before = await session.key_count()
            rss_before = _rss(server)
            measured = workload.with_key_range(1)
            task = bar.add_task(f"{workload.command} x {requests:,}", total=requests)
            before = counters.snapshot()
            result, middle = LoadResult(batch_size=pipeline), before
            halves = (requests // 2, requests - requests // 2)
            for half, count in enumerate(halves):
                try:
                    result.add(await _run(session, measured, count, pipeline, server,
                                          lambda n: bar.advance(task, n)))
                except _Interrupted as interrupted:
                    result.add(interrupted.result)
                    error = interrupted.error
                    break
                if half == 0:
                    middle = counters.snapshot()
            after = counters.settled_snapshot()
            rss_after = _rss(server)
            flushed, keys, flush_error = None, None, "the run was cut short"
            if error is None:
                keys_after = await session.key_count()
                keys = Keys(keys_before, keys_after) if keys_before is not None and keys_after is not None else None
                try:
                    flush_error = await session.flushall()
                except LoadError as failure:
                    flush_error = str(failure)
                flushed = counters.settled_snapshot() if flush_error is None else None
    finally:
        await session.close()
    complete_halves = halves if error is None else None
    window = Window(before=before, after=after, idle_before=idle_before, idle_after=idle_after,
                    middle=middle if complete_halves else None, origin=origin, flushed=flushed)
    return Measurement(window, result, warmup, rss_before, rss_after, bias, complete_halves, keys, flush_error,
                       error)


class _Interrupted(Exception):
    def __init__(self, result: LoadResult, error: ZprofError) -> None:
        self.result, self.error = result, error


async def _run(session: LoadSession, workload: Workload, requests: int, pipeline: int, server: Server,
               progress: Callable[[int], None]) -> LoadResult:
    """One load run; a crash or a stall keeps what was measured (`_Interrupted`)."""
    try:
        return await asyncio.wait_for(session.run(workload, requests, pipeline, progress), LOAD_TIMEOUT_S)
    except LoadError as failure:
        if server.exited_within(1.0):
            raise _Interrupted(failure.result, server.crashed(
                f"crashed after {failure.result.requests:,} of {requests:,} requests")) from failure
        raise _Interrupted(failure.result, ZprofError(
            f"{failure} after {failure.result.requests:,} of {requests:,} requests",
            detail=server.log_tail(), exit_code=EXIT_TARGET)) from failure
    except TimeoutError as timeout:
        raise ZprofError(f"the load run did not finish within {LOAD_TIMEOUT_S:.0f} s",
                         exit_code=EXIT_TARGET) from timeout


def _rss(server: Server) -> int | None:
    sample = process.sample(server.pid)
    return sample.rss_bytes if sample else None

