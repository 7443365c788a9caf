"""zprof bench: the target against redis-server, command by command, with verdicts."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from zprof.analysis.verdicts import MIN_KEYS_FOR_VERDICT
from zprof.commands.options import (
    Outputs,
    measure_and_report,
    min_trial_seconds_option,
    output_options,
    redis_persistence_option,
    target_options,
)
from zprof.errors import ZprofError
from zprof.load.workloads import DEFAULT_DATA_SIZE, DEFAULT_KEYSPACE, TIERS, bench_command_names, bench_workload
from zprof.report.common import make_console
from zprof.sessions.bench import BenchOptions, bench_failure, reference_server, run_bench
from zprof.sessions.target import TargetOptions

DEFAULT_WARMUP = 10_000


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
              help="Requests per command in each measured run, at least (runs are lengthened to "
                   "--min-trial-seconds).")
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
@click.option("--no-p999", "no_p999", is_flag=True,
              help="Skip the pass of zprof's driver after each redis-benchmark run that measures p99.9.")
@redis_persistence_option
@min_trial_seconds_option
@output_options
def bench_command(target: TargetOptions, tier: str, command_list: str | None, trials: int, requests: int,
                  warmup: int | None, clients: int, pipeline: int, keyspace: int, keys: int, redis_server: str | None,
                  target_binary: Path | None, deadline: float | None, subscribers: int, data_size: int,
                  min_trial_seconds: float, no_p999: bool, redis_persistence: str, output: Path | None,
                  json_path: Path | None) -> None:
    """Compare the target with redis-server: throughput, latency, CPU and memory, with verdicts."""
    context = click.get_current_context()
    if command_list is not None and context.get_parameter_source("tier") is not ParameterSource.DEFAULT:
        raise ZprofError("pass --tier or --commands, not both")
    names = bench_command_names(tier, command_list, target.config.commands)
    workloads = [bench_workload(name, keyspace, data_size) for name in names]
    reference_server(redis_server)  # a missing redis-server is bad input, before anything is built
    options = BenchOptions(
        target=target, workloads=workloads, trials=trials, requests=requests,
        warmup=min(DEFAULT_WARMUP, requests) if warmup is None else warmup, clients=clients, pipeline=pipeline,
        keyspace=keyspace, keys=keys, subscribers=subscribers, deadline=deadline,
        min_trial_seconds=min_trial_seconds, redis_server=redis_server, target_binary=target_binary,
        start_command_given=context.get_parameter_source("start_command") is not ParameterSource.DEFAULT,
        p999_pass=not no_p999, redis_persistence=redis_persistence)
    outputs = Outputs.prepare("bench", output, json_path)
    run = measure_and_report(lambda progress: run_bench(options, progress), outputs, make_console())
    if (failure := bench_failure(run)) is not None:
        raise failure
