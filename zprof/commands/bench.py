"""zprof bench: the target against redis-server, command by command, with verdicts."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import click
from click.core import ParameterSource
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from zprof.analysis.verdicts import (
    MIN_KEYS_FOR_VERDICT,
    compare_command,
    compare_memory,
    comparison_limitations,
    load_thresholds,
)
from zprof.collect.machine import load_average, machine_info, tree_rss_bytes
from zprof.commands._target import (
    TargetOptions,
    build_target,
    min_trial_seconds_option,
    run_directory,
    server_spec,
    target_options,
)
from zprof.errors import EXIT_TARGET, ZprofError
from zprof.load.benchmark_runs import (
    DEFAULT_DATA_SIZE,
    MIX,
    PUBLISH,
    REDIS,
    TARGET,
    AlternatingTrials,
    LoadPlan,
    MemoryRecord,
    Side,
    bench_workload,
    describe,
    fresh_server,
    load_keys,
    load_limitations,
    plan_load,
)
from zprof.load.driver import Workload
from zprof.load.probe import probe
from zprof.load.redis_benchmark import redis_benchmark_path
from zprof.load.workloads import DEFAULT_KEYSPACE, TEMPLATES
from zprof.procs import run_bounded
from zprof.report.bench_report import (
    BenchReport,
    BenchSettings,
    ReferenceDescription,
    TargetDescription,
    render_bench,
)
from zprof.report.terminal import make_console
from zprof.server import HOST, ServerSpec

# Zoltraak's performance standards, tier by tier.
TIERS = {
    "1": ("SET", "GET", "INCR", "LPUSH", "RPUSH", "LPOP", "RPOP", "SADD", "SREM"),
    "2": ("HSET", "HGET", "ZADD", "ZRANGE", "MGET", "MSET"),
    "3": (MIX, PUBLISH),
}
# No persistence, loopback only; its `dir` stays the default, the working
# directory, which Server makes private and removes afterwards.
REDIS_START_COMMAND = '{binary} --port {port} --bind 127.0.0.1 --save "" --appendonly no'
DEFAULT_WARMUP = 10_000
VERSION_TIMEOUT_S = 10


@click.command("bench")
@target_options
@click.option("--tier", type=click.Choice(["1", "2", "3", "all"]), default="all", show_default=True,
              help="1: " + ", ".join(TIERS["1"]) + "; 2: " + ", ".join(TIERS["2"]) + "; 3: MIX (the tier 1 and 2 "
                   "commands interleaved in pipelined batches) and PUBLISH to --subscribers subscribers; all: 1+2+3.")
@click.option("--commands", "command_list", default=None, metavar="CMD,CMD",
              help="Compare these commands instead of a tier, e.g. SET,GET,ZADD,PUBLISH.")
@click.option("--subscribers", default=10, show_default=True, type=click.IntRange(1, 1000),
              help="Connections SUBSCRIBEd to the channel PUBLISH sends to; every delivery is counted.")
@click.option("--trials", default=5, show_default=True, type=click.IntRange(1, 100),
              help="Trials per server; each starts fresh servers.")
@click.option("--requests", default=100_000, show_default=True, type=click.IntRange(1, 10**9),
              help="Requests per command in each measured run.")
@click.option("--warmup", default=None, type=click.IntRange(0, 10**9),
              help=f"Requests per command before each measured run, discarded (default: min({DEFAULT_WARMUP}, "
                   "requests)).")
@click.option("--clients", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--pipeline", default=16, show_default=True, type=click.IntRange(1, 1000))
@click.option("--keyspace", default=DEFAULT_KEYSPACE, show_default=True, type=click.IntRange(1, 10**12),
              help="__rand_int__ takes values below this.")
@click.option("--data-size", default=DEFAULT_DATA_SIZE, show_default=True, type=click.IntRange(1, 1 << 20),
              help="Bytes in each value the requests write (redis-benchmark's -d).")
@click.option("--keys", default=MIN_KEYS_FOR_VERDICT, show_default=True, type=click.IntRange(0, 10**9),
              help=f"Keys stored for the memory comparison (MSET where the target takes it); 0 skips it. Below "
                   f"{MIN_KEYS_FOR_VERDICT:,} the memory status is only indicative.")
@click.option("--redis-server", "redis_server", default=None, metavar="PATH",
              help="The reference server (default: redis-server on PATH).")
@click.option("--target-binary", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Run this server instead of building --project (a redis-server gets Redis' start command).")
@click.option("--deadline", default=None, type=click.FloatRange(1, 86_400),
              help="Seconds a redis-benchmark run may take before zprof kills it and uses its own driver "
                   "(default: 10 times what the warm-up predicts, at least 30).")
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the report as JSON (the format is described in the README).")
@min_trial_seconds_option
def bench_command(target: TargetOptions, tier: str, command_list: str | None, trials: int, requests: int,
                  warmup: int | None, clients: int, pipeline: int, keyspace: int, keys: int, redis_server: str | None,
                  target_binary: Path | None, deadline: float | None, json_path: Path | None,
                  subscribers: int, data_size: int, min_trial_seconds: float) -> None:
    """Compare the target with redis-server: throughput, latency, CPU and memory, with verdicts."""
    context = click.get_current_context()
    if command_list is not None and context.get_parameter_source("tier") is not ParameterSource.DEFAULT:
        raise ZprofError("pass --tier or --commands, not both")
    workloads = [bench_workload(name, keyspace, data_size) for name in _command_names(tier, command_list)]
    redis_binary, redis_version = reference_server(redis_server)
    if json_path is not None and not json_path.parent.is_dir():
        raise ZprofError(f"cannot write --json {json_path}: {json_path.parent} is not a directory")
    thresholds = load_thresholds(Path(target.project))
    warmup = min(DEFAULT_WARMUP, requests) if warmup is None else warmup
    console = make_console()

    description, target, binary = _target(target, target_binary, context.get_parameter_source("start_command"),
                                          console)
    target_spec = server_spec(target, binary, {})
    redis_spec = ServerSpec(binary=redis_binary, start_command=REDIS_START_COMMAND, ready_timeout=target.ready_timeout)
    machine = machine_info()
    with run_directory("bench") as run_dir, TrialProgress(console) as progress:
        sides = (Side(TARGET, description.name, target_spec, run_dir / TARGET),
                 Side(REDIS, "redis", redis_spec, run_dir / REDIS))
        measured = _measure(sides, workloads, clients, pipeline, requests, warmup, deadline, trials, keys, run_dir,
                            progress, subscribers, min_trial_seconds)

    runner, plan, memory = measured.runner, measured.plan, measured.memory
    records = runner.records if runner else []
    failures = runner.failures if runner else {}
    comparisons = [
        compare_command(workload.command, describe(workload),
                        [record for record in records if record.command == workload.command],
                        failures.get(workload.command), thresholds)
        for workload in workloads
    ]
    names = [workload.command for workload in workloads]
    memory_comparison = compare_memory(keys, memory[TARGET], memory[REDIS], thresholds) if keys else None
    final_plan = runner.plan if runner else plan
    error = measured.error
    report = BenchReport(
        target=description,
        reference=ReferenceDescription(str(redis_binary), redis_version, REDIS_START_COMMAND),
        settings=BenchSettings(commands=[w.command for w in workloads], trials=trials, requests=requests,
                               warmup_requests=warmup, clients=final_plan.clients, pipeline=final_plan.pipeline,
                               keyspace=keyspace, keys=keys, tool=final_plan.tool, load=final_plan.description,
                               deadline_s=deadline, subscribers=subscribers if PUBLISH in names else None,
                               min_trial_seconds=min_trial_seconds),
        thresholds=thresholds,
        commands=comparisons,
        memory=memory_comparison,
        limitations=([note for side in sides if (note := side.start_limitation())] + measured.notes
                     + (runner.limitations if runner else []) + load_limitations(final_plan, names)
                     + comparison_limitations(comparisons, memory_comparison, thresholds, trials)),
        machine=machine,
        load_average_after=load_average(),
        trials=records,
        starts={side.name: {"starts": side.starts, "start_crashes": side.start_crashes} for side in sides},
        error=error.message if error else None,
    )
    render_bench(report, console)
    if json_path is not None:
        report.write_json(json_path)
        console.print(f"JSON report written to {json_path}")
    if error is not None:
        raise error
    failed = report.failed
    if failed and len(failed) == len(comparisons):
        raise ZprofError("no successful requests: every command failed, so nothing could be compared",
                         exit_code=EXIT_TARGET)
    if failed:
        raise ZprofError(f"{len(failed)} command(s) failed: " + ", ".join(command.command for command in failed),
                         exit_code=EXIT_TARGET)


@dataclass
class _Measured:
    plan: LoadPlan
    notes: list[str]
    memory: dict[str, MemoryRecord | None]
    runner: AlternatingTrials | None
    error: ZprofError | None = None  # a crash after the plan was made: the report shows what came before


class TrialProgress:
    """A live bar over the runs of all trials, its text saying what runs now."""

    def __init__(self, console: Console) -> None:
        self._bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), console=console, transient=True)
        self._task = self._bar.add_task("Starting the target...", total=None)

    def __enter__(self) -> TrialProgress:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def status(self, text: str) -> None:
        self._bar.update(self._task, description=text)

    def runs(self, done: int, total: int) -> None:
        self._bar.update(self._task, completed=done, total=total)


def _measure(sides: tuple[Side, Side], workloads: list[Workload], clients: int, pipeline: int, requests: int,
             warmup: int, deadline: float | None, trials: int, keys: int, run_dir: Path,
             progress: TrialProgress, subscribers: int, min_trial_seconds: float) -> _Measured:
    """Probe the target and plan the load, compare memory on fresh servers, then run the trials."""
    status = progress.status
    for side in sides:
        side.run_dir.mkdir()
    target, redis = sides
    measured: _Measured | None = None
    try:
        with fresh_server(target) as server:
            rss_empty = tree_rss_bytes(server.pid)
            status("Probing the target...")
            # Always probe pipelining: redis-benchmark pipelines its first commands whatever -P says.
            capabilities = probe(HOST, server.port, clients, max(pipeline, 2))
            plan, notes = plan_load(capabilities, clients, pipeline, requests, warmup, deadline,
                                    redis_benchmark_path())
            measured = _Measured(plan, notes, {TARGET: None, REDIS: None}, None)
            if keys:
                status(f"Loading {keys:,} keys into {target.label}...")
                measured.memory[TARGET] = load_keys(server, target, keys, plan, rss_empty, progress.runs)
        if keys:
            with fresh_server(redis) as server:
                status(f"Loading {keys:,} keys into {redis.label}...")
                measured.memory[REDIS] = load_keys(server, redis, keys, plan, tree_rss_bytes(server.pid),
                                                   progress.runs)
        measured.runner = AlternatingTrials(sides, workloads, plan, trials, run_dir, status, subscribers,
                                            progress.runs, min_trial_seconds)
        measured.runner.run()
    except ZprofError as failure:
        if measured is None:  # nothing measured yet (a port in use, a server that never answered)
            raise
        measured.error = failure
    return measured


def _command_names(tier: str, command_list: str | None) -> list[str]:
    if command_list is None:
        return [name for level in ("1", "2", "3") for name in TIERS[level]] if tier == "all" else list(TIERS[tier])
    names = list(dict.fromkeys(name.strip().upper() for name in command_list.split(",") if name.strip()))
    if not names:
        raise ZprofError("--commands is empty")
    known = {*TEMPLATES, MIX, PUBLISH}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ZprofError(f"zprof bench has no request for {', '.join(unknown)}",
                         detail=f"Commands it can compare: {', '.join(sorted(known))}.")
    return names


def reference_server(explicit: str | None) -> tuple[Path, str]:
    """The redis-server to compare with, and its version; missing is bad input (exit 2)."""
    install = "Install the Debian package redis-server (apt-get install redis-server), or pass --redis-server PATH."
    found = explicit or shutil.which("redis-server")
    if found is None:
        raise ZprofError("redis-server is not installed; zprof bench compares the target with it", detail=install)
    path = Path(found)
    if not path.is_file():
        raise ZprofError(f"--redis-server {found}: no such file", detail=install)
    try:
        done = run_bounded([str(path), "--version"], VERSION_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as failure:
        raise ZprofError(f"cannot run {path} --version: {failure}", detail=install) from failure
    version = re.search(r"\bv=(\S+)", done.stdout)
    if done.returncode != 0 or version is None:
        raise ZprofError(f"{path} does not look like redis-server (its --version printed {done.stdout.strip()!r})",
                         detail=install)
    return path, version.group(1)


def _target(options: TargetOptions, binary: Path | None, start_source: ParameterSource | None,
            console: Console) -> tuple[TargetDescription, TargetOptions, Path]:
    """The server to compare: built from --project, or --target-binary as it is."""
    if binary is None:
        project, built = build_target(options, console, with_shim=False)
        return (TargetDescription(project.name, str(built.binary), str(project.root), built.zig_version,
                                  built.cached, _start_command(options), built.warnings), options, built.binary)
    if not binary.is_file():
        raise ZprofError(f"--target-binary {binary}: no such file")
    binary = binary.absolute()  # not resolve(): a virtualenv's python is a symlink that must stay one
    # A redis-server as the target (Redis against itself) starts like the reference, unless told otherwise.
    if binary.name.startswith("redis-server") and start_source is ParameterSource.DEFAULT:
        options = replace(options, start_command=REDIS_START_COMMAND)
    return (TargetDescription(binary.name, str(binary), None, None, None, _start_command(options)), options, binary)


def _start_command(options: TargetOptions) -> str:
    return f"{options.start_command} {options.server_args}".strip()
