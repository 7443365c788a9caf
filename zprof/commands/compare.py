"""zprof compare [BEFORE] [AFTER]: two revisions of the project (default HEAD against the working tree) measured
alternately on this machine now, until each figure's change is shown within the threshold or beyond it;
exit 0 pass, 1 regression, 3 inconclusive, 2 could not measure."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from zprof.commands.options import Outputs, measure_and_report, output_options, target_options
from zprof.errors import ZprofError
from zprof.load.workloads import DEFAULT_KEYSPACE, bench_workload
from zprof.report.common import make_console
from zprof.sessions.compare import CompareOptions, measure_compare
from zprof.sessions.target import TargetOptions


@click.command("compare")
@click.argument("before", default="HEAD")
@click.argument("after", required=False)
@target_options
@click.option("--commands", "command_list", default="SET,GET", show_default=True, metavar="CMD,CMD",
              help="The commands to compare.")
@click.option("--threshold", default=5.0, show_default=True, type=click.FloatRange(0.5, 100),
              help="Percent of throughput: a loss this large is detected with 80% power at a 5% family-wise "
                   "false-positive rate.")
@click.option("--latency-threshold", default=10.0, show_default=True, type=click.FloatRange(0.5, 1000),
              help="The same, for p50 and p99 latency.")
@click.option("--alpha", default=0.05, show_default=True, type=click.FloatRange(0.0001, 0.5),
              help="The family-wise false-positive rate over every figure of every command.")
@click.option("--noise", default=3.0, show_default=True, type=click.FloatRange(0.1, 50),
              help="Percent: the spread of one round's ratio the rounds are planned for (more noise, more rounds).")
@click.option("--budget", default=600.0, show_default=True, type=click.FloatRange(10, 86_400),
              help="Seconds of rounds at most; a figure still undecided then is inconclusive.")
@click.option("--clients", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--pipeline", default=16, show_default=True, type=click.IntRange(1, 1000))
@click.option("--no-allocations", is_flag=True, help="Leave out the allocations per request (two shim builds).")
@click.option("--no-instructions", is_flag=True,
              help="Leave out the instructions per request (counted under callgrind, or with hardware counters).")
@click.option("--no-profile", is_flag=True,
              help="Leave out the profiles of both builds that name the functions behind a CPU regression.")
@output_options
def compare_command(before: str, after: str | None, target: TargetOptions, command_list: str, threshold: float,
                    latency_threshold: float, alpha: float, noise: float, budget: float, clients: int, pipeline: int,
                    no_allocations: bool, no_instructions: bool, no_profile: bool, output: Path | None,
                    json_path: Path | None) -> int:
    """Compare BEFORE (default HEAD) with AFTER (default: the working tree), both built from the project and
    run alternately on this machine: per command, the change of throughput, p50 and p99 with its 95%
    interval, allocations per request, and the functions behind a CPU regression."""
    commands = [name.strip().upper() for name in command_list.split(",") if name.strip()]
    if not commands:
        raise ZprofError("--commands is empty")
    options = CompareOptions(target, before, after, [bench_workload(name, DEFAULT_KEYSPACE) for name in commands],
                             threshold=threshold, latency_threshold=latency_threshold, alpha=alpha, noise=noise,
                             budget=budget,
                             clients=clients, pipeline=pipeline, allocations=not no_allocations,
                             instructions=not no_instructions, profiles=not no_profile)
    outputs = Outputs.prepare("compare", output, json_path)
    options = replace(options, files=outputs.directory)
    run = measure_and_report(lambda progress: measure_compare(options, progress), outputs, make_console())
    return run.exit_code
