"""zprof allocs CMD: allocations per request of one command, by layer, size and line."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from zprof.analysis.allocations import Window, analyse
from zprof.analysis.symbols import Symbolizer
from zprof.artifacts import AllocsRun, LoadInfo, MemoryGrowth, TargetInfo
from zprof.collect import process
from zprof.collect.shim_counters import ShimCounters, create_counter_file
from zprof.commands._target import TargetOptions, build_target, run_directory, server_spec, target_options
from zprof.errors import EXIT_TARGET, ZprofError
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

    with Symbolizer(built.binary, cache_root() / "symbols") as symbolizer:
        if not symbolizer.has_debug_info:
            notes.append("The binary has no DWARF debug info: call sites show function names only.")
        analysis = analyse(measurement.window, measurement.load.requests, symbolizer, measurement.bias)
    load = measurement.load
    run = AllocsRun(
        command=workload.command,
        args=[arg.decode() for arg in workload.args],
        requests=load.requests,
        target=TargetInfo(project=str(project.root), binary=str(built.binary), zig_version=built.zig_version,
                          build_cached=built.cached, build_seconds=round(built.seconds, 2),
                          build_warnings=built.warnings),
        load=LoadInfo(clients=clients, pipeline=pipeline, warmup_requests=measurement.warmup,
                      seconds=round(load.seconds, 4), requests_per_second=round(load.rps, 1), errors=load.errors,
                      first_error=load.first_error, idle_seconds=round(measurement.window.idle_seconds, 3)),
        analysis=analysis,
        growth=MemoryGrowth(
            live_bytes=sum(u.live_bytes_growth for u in analysis.by_layer if u.layer != "arena"),
            rss_bytes=(measurement.rss_after - measurement.rss_before)
            if measurement.rss_after is not None and measurement.rss_before is not None else None,
        ),
        notes=notes,
        complete=measurement.error is None,
    )
    if load.errors:
        notes.append(f"{load.errors} request(s) got an error reply, the first: {load.first_error}")
    render_allocs(run, console)
    if json_path is not None:
        run.write_json(json_path)
        console.print(f"JSON report written to {json_path}")
    if measurement.error is not None:
        raise measurement.error


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
    """Warm up, watch the idle server, then measure; all on one set of connections,
    so that neither connection set-up nor teardown lands in a window."""
    session = LoadSession(HOST, server.port, clients)
    await session.connect()
    error: ZprofError | None = None
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=console, transient=True) as bar:
            expected_seconds = 1.0
            if warmup:
                task = bar.add_task("warm-up", total=warmup)
                try:
                    warm = await _run(session, workload, warmup, pipeline, server, lambda n: bar.advance(task, n))
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
            started = time.monotonic()
            await asyncio.sleep(idle_seconds)
            idle_after = counters.snapshot()
            idle_seconds = time.monotonic() - started

            rss_before = _rss(server)
            before = counters.snapshot()
            task = bar.add_task(f"{workload.command} x {requests:,}", total=requests)
            try:
                result = await _run(session, workload, requests, pipeline, server, lambda n: bar.advance(task, n))
            except _Interrupted as interrupted:
                result, error = interrupted.result, interrupted.error
            after = counters.snapshot()
            rss_after = _rss(server)
    finally:
        await session.close()
    window = Window(before=before, after=after, seconds=result.seconds, idle_before=idle_before,
                    idle_after=idle_after, idle_seconds=idle_seconds)
    return Measurement(window, result, warmup, rss_before, rss_after, bias, error)


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

