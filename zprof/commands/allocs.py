"""zprof allocs CMD: allocations per request of one command, by layer, size and line."""

from __future__ import annotations

from pathlib import Path

import click

from zprof.commands.options import Outputs, load_shape, measure_and_report, output_options, target_options
from zprof.load.workloads import DEFAULT_KEYSPACE, workload_for
from zprof.report.common import make_console
from zprof.sessions.allocs import AllocsOptions, measure_allocs
from zprof.sessions.target import TargetOptions


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
              help="__rand_int__ takes this many values (the measured run's keys differ from the warm-up's).")
@click.option("--warmup", default=None, type=click.IntRange(0, 100_000_000),
              help="Requests before the measured run (default: max(5000, requests/4)).")
@output_options
def allocs_command(command: str, target: TargetOptions, requests: int, clients: int, pipeline: int,
                   template: str | None, keyspace: int, warmup: int | None, output: Path | None,
                   json_path: Path | None) -> None:
    """Allocations per request of COMMAND, measured with the shim under load."""
    clients, pipeline = load_shape(target, clients, pipeline)
    options = AllocsOptions(target, workload_for(command, template, keyspace), requests, clients, pipeline,
                            warmup if warmup is not None else max(5000, requests // 4))
    outputs = Outputs.prepare("allocs", output, json_path)
    measure_and_report(lambda progress: measure_allocs(options, progress), outputs, make_console())
