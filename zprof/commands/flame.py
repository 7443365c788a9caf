"""zprof flame: where the server spends its CPU under load (perf, or callgrind)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict
from pathlib import Path

import click
from rich.console import Console

from zprof.analysis.callgrind import build_callgrind_profile
from zprof.analysis.hotspots import share_changes, summarise
from zprof.analysis.perf_script import build_profile, parse_perf_script
from zprof.analysis.stacks import StackProfile, folded_lines, profile_from_json, profile_to_json
from zprof.analysis.symbols import Symbolizer
from zprof.collect import perf, valgrind
from zprof.commands._target import (
    TargetOptions,
    build_target,
    fresh_output_dir,
    run_directory,
    server_spec,
    target_options,
)
from zprof.errors import EXIT_TARGET, ZprofError
from zprof.load.driver import BackgroundLoad, LoadError, Workload, run_requests
from zprof.load.probe import Capabilities, check_command, probe
from zprof.load.redis_benchmark import RedisBenchmarkLoad, redis_benchmark_path
from zprof.load.workloads import DEFAULT_KEYSPACE, MIXED_COMMANDS, workload_for
from zprof.report.pprof import write_pprof
from zprof.report.speedscope import write_speedscope
from zprof.report.svg import render_flame_svg
from zprof.report.terminal import make_console, render_build_warnings, render_flame, render_flame_diff
from zprof.server import HOST, Server
from zprof.target.build import cache_root

# A prime, so sampling does not fall into lock-step with periodic work.
DEFAULT_FREQUENCY_HZ = 997
PROFILE_FILE = "profile.zprof.json"
WARMUP_S = 0.5


@click.command("flame")
@target_options
@click.option("--duration", default=30.0, show_default=True, type=click.FloatRange(1, 3600),
              help="Seconds of recording under load (1 to 3600).")
@click.option("--command", "command", default=None, help="Profile one command (default: the mixed workload).")
@click.option("--workload", type=click.Choice(["mixed"]), default=None,
              help="mixed: " + ", ".join(MIXED_COMMANDS) + ".")
@click.option("--args", "template", default=None, help="The request for --command, with __rand_int__ placeholders.")
@click.option("--keyspace", default=DEFAULT_KEYSPACE, show_default=True, type=click.IntRange(1, 10**12))
@click.option("--clients", default=16, show_default=True, type=click.IntRange(1, 1000))
@click.option("--pipeline", default=16, show_default=True, type=click.IntRange(1, 1000))
@click.option("--frequency", default=DEFAULT_FREQUENCY_HZ, show_default=True, type=click.IntRange(1, 50_000),
              help="Samples per second.")
@click.option("--call-graph", type=click.Choice(["fp", "dwarf"]), default="fp", show_default=True,
              help="fp: frame pointers (Zig keeps them in ReleaseFast); dwarf: for code without them.")
@click.option("--output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for the outputs (default: zprof-out/flame-<time>; must not exist).")
@click.option("--top", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option("--shim", is_flag=True, help="Build with the allocation shim (off: it would skew the profile).")
@click.option("--engine", type=click.Choice(["perf", "callgrind"]), default="perf", show_default=True,
              help="callgrind: count instructions under valgrind for --requests requests (repeatable, slow).")
@click.option("--requests", default=2000, show_default=True, type=click.IntRange(1, 10_000_000),
              help="Requests to run under --engine callgrind.")
@click.option("--diff", nargs=2, type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              metavar="BEFORE AFTER", help="Compare two earlier flame outputs instead of recording.")
def flame_command(target: TargetOptions, duration: float, command: str | None, workload: str | None,
                  template: str | None, keyspace: int, clients: int, pipeline: int, frequency: int,
                  call_graph: str, output: Path | None, top: int, shim: bool, engine: str, requests: int,
                  diff: tuple[Path, Path] | None) -> None:
    """Record the server under load with Linux perf; write flame graphs and the hottest functions."""
    console = make_console()
    if diff is not None:
        _diff(diff[0], diff[1], fresh_output_dir(output, "flame-diff"), top, console)
        return
    if command and workload:
        raise ZprofError("pass --command or --workload, not both")
    workloads = ([workload_for(command, template, keyspace)] if command else
                 [workload_for(name, None, keyspace) for name in MIXED_COMMANDS])
    if engine == "callgrind":
        _callgrind(target, workloads, requests, clients, pipeline, shim, fresh_output_dir(output, "flame"), top,
                   console, command)
        return
    perf.check_perf()
    project, built = build_target(target, console, with_shim=shim)
    out_dir = fresh_output_dir(output, "flame")

    error: ZprofError | None = None
    with run_directory("flame") as run_dir, Server(server_spec(target, built.binary, {}), run_dir) as server:
        capabilities = probe(HOST, server.port, clients, pipeline)
        clients, pipeline = capabilities.adapt(clients, pipeline)
        for each in workloads:
            check_command(HOST, server.port, each)
        load = background_load(server.port, clients, workloads, pipeline, capabilities)
        load.start()
        try:
            time.sleep(WARMUP_S)
            with console.status(f"perf record -F {frequency} --call-graph {call_graph} for {duration:g} s..."):
                recording = perf.record(server.pid, duration, frequency, call_graph, out_dir / "perf.data")
        finally:
            load.stop()
        if server.exited_within(0.5):
            error = server.crashed("exited during the recording; the profile covers the time before it")
        elif load.error is not None:
            capabilities.notes.append(f"The load stopped early: {load.error}")

    with console.status("Reading the samples..."):
        profile = read_profile(recording.data, built.binary, frequency_hz=frequency, duration_s=duration)
    summary = summarise(profile, top)
    name = f"{project.name} {command.upper() if command else 'mixed'}"
    written = write_outputs(profile, name, out_dir)
    (out_dir / "summary.json").write_text(json.dumps({
        "command": command.upper() if command else "mixed", "load": load.description,
        "frequency_hz": frequency, "call_graph": call_graph, "notes": capabilities.notes + summary.notes,
        **asdict(summary),
    }, indent=2) + "\n")
    render_build_warnings(built.warnings, console)
    render_flame(summary, written, console, notes=capabilities.notes, load=load.description)
    if error is not None:
        raise error


def _callgrind(target: TargetOptions, workloads: list[Workload], requests: int, clients: int, pipeline: int,
               shim: bool, out_dir: Path, top: int, console: Console, command: str | None) -> None:
    """The same outputs from instruction counts: callgrind runs a fixed number of requests."""
    valgrind.valgrind_path()
    project, built = build_target(target, console, with_shim=shim, extra_args=(f"-Dcpu={valgrind.VALGRIND_CPU}",))
    counts = out_dir / "callgrind.out"
    spec = server_spec(target, built.binary, {})
    spec.start_command = valgrind.callgrind_start_command(spec.start_command, counts)
    spec.ready_timeout = max(spec.ready_timeout, valgrind.READY_TIMEOUT_S)
    spec.stop_timeout = 30.0  # callgrind writes its last counts on the way out
    with run_directory("callgrind") as run_dir:
        try:
            with Server(spec, run_dir) as server:
                capabilities = probe(HOST, server.port, clients, pipeline, timeout=valgrind.PROBE_TIMEOUT_S)
                clients, pipeline = capabilities.adapt(clients, pipeline)
                for each in workloads:
                    check_command(HOST, server.port, each, timeout=valgrind.PROBE_TIMEOUT_S)
                # Count only the measured requests, not start-up and probes.
                valgrind.callgrind_control("-z", server.pid)
                with console.status(f"{requests:,} requests under callgrind..."):
                    try:
                        result = asyncio.run(run_requests(HOST, server.port, clients, workloads, requests, pipeline))
                    except LoadError as failure:
                        if server.exited_within(1.0):
                            raise server.crashed(f"died after {failure.result.requests:,} requests") from failure
                        raise ZprofError(str(failure), exit_code=EXIT_TARGET) from failure
                valgrind.callgrind_control("-d", server.pid)
        except ZprofError as error:
            if error.exit_code == EXIT_TARGET:  # the target failed under valgrind, not the input
                log_file = run_dir / "server.log"
                log = log_file.read_text(errors="replace") if log_file.exists() else ""
                raise ZprofError(
                    f"valgrind could not run the target: {error.message}",
                    detail=valgrind.valgrind_report(log) + "\nSome threaded Zig programs crash under valgrind: "
                    "profile with perf instead (zprof flame without --engine).",
                    exit_code=error.exit_code,
                ) from error
            raise
    dumps = sorted(out_dir.glob("callgrind.out.*"))
    if not dumps:
        raise ZprofError("callgrind wrote no counts", exit_code=EXIT_TARGET)
    profile = build_callgrind_profile(dumps[-1].read_text(errors="replace"), thread=project.name)
    summary = summarise(profile, top)
    written = write_outputs(profile, f"{project.name} {command.upper() if command else 'mixed'} (callgrind)", out_dir)
    description = f"zprof's driver, {result.requests:,} requests, {clients} client(s), pipeline {pipeline}"
    (out_dir / "summary.json").write_text(json.dumps({
        "command": command.upper() if command else "mixed", "engine": "callgrind", "load": description,
        "notes": capabilities.notes, **asdict(summary)}, indent=2) + "\n")
    render_build_warnings(built.warnings, console)
    render_flame(summary, written, console, notes=capabilities.notes, load=description)


def background_load(port: int, clients: int, workloads: list[Workload], pipeline: int,
                    capabilities: Capabilities) -> BackgroundLoad | RedisBenchmarkLoad:
    """redis-benchmark when the server can take it (it leaves the CPU to the server), else zprof's driver."""
    if redis_benchmark_path() and capabilities.concurrent_clients and capabilities.pipelining:
        return RedisBenchmarkLoad(HOST, port, clients, workloads, pipeline)
    return BackgroundLoad(HOST, port, clients, workloads, pipeline)


def read_profile(data: Path, binary: Path, *, frequency_hz: int, duration_s: float) -> StackProfile:
    """perf.data to a symbolised profile; no samples is an error, never an empty graph."""
    samples = list(parse_perf_script(perf.script(data)))
    if not samples:
        raise ZprofError(
            "perf recorded no samples of the server: it was idle (or exited) during the recording",
            detail="Check that the load reached it (errors, --command), or record for longer.",
            exit_code=EXIT_TARGET,
        )
    with Symbolizer(binary, cache_root() / "symbols") as symbolizer:
        return build_profile(samples, binary, symbolizer, frequency_hz=frequency_hz, duration_s=duration_s)


def write_outputs(profile: StackProfile, name: str, out_dir: Path) -> list[Path]:
    files = {
        "stacks.folded": lambda path: path.write_text("\n".join(folded_lines(profile)) + "\n"),
        "profile.speedscope.json": lambda path: write_speedscope(profile, name, path),
        "flame.svg": lambda path: path.write_text(render_flame_svg(profile, name), encoding="utf-8"),
        "profile.pb.gz": lambda path: write_pprof(profile, path),
        PROFILE_FILE: lambda path: path.write_text(json.dumps(profile_to_json(profile))),
    }
    for file_name, write in files.items():
        write(out_dir / file_name)
    return [out_dir / file_name for file_name in files]


def load_profile(directory: Path) -> StackProfile:
    path = directory / PROFILE_FILE
    try:
        return profile_from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ZprofError(f"{directory} is not a zprof flame output (no {PROFILE_FILE})") from None
    except (ValueError, KeyError, TypeError) as error:
        raise ZprofError(f"cannot read {path}: {error}") from error


def _diff(before_dir: Path, after_dir: Path, out_dir: Path, top: int, console: Console) -> None:
    before, after = load_profile(before_dir), load_profile(after_dir)
    changes = share_changes(before, after, top)
    svg = out_dir / "flame-diff.svg"
    svg.write_text(render_flame_svg(after, f"{after_dir.name} against {before_dir.name}", diff_baseline=before),
                   encoding="utf-8")
    (out_dir / "changes.json").write_text(json.dumps([{**asdict(c), "delta": c.delta} for c in changes], indent=2))
    render_flame_diff(changes, svg, console)

