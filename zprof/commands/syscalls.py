"""zprof syscalls CMD: the system calls one command makes per request, by name, with their time and call sites."""

from __future__ import annotations

from pathlib import Path

import click

from zprof.commands.options import Outputs, load_shape, measure_and_report, output_options, target_options
from zprof.load.workloads import DEFAULT_KEYSPACE, workload_for
from zprof.report.common import make_console
from zprof.sessions.syscalls import SyscallsOptions, measure_syscalls
from zprof.sessions.target import TargetOptions


@click.command("syscalls")
@click.argument("command")
@target_options
@click.option("--requests", default=2000, show_default=True, type=click.IntRange(1, 10_000_000),
              help="Requests in the traced run.")
@click.option("--clients", default=1, show_default=True, type=click.IntRange(1, 1000),
              help="1: each request's own calls; more: what a server that batches its I/O saves.")
@click.option("--pipeline", default=1, show_default=True, type=click.IntRange(1, 1000))
@click.option("--args", "template", default=None,
              help="The request, with __rand_int__ placeholders (default: a redis-benchmark-like one).")
@click.option("--keyspace", default=DEFAULT_KEYSPACE, show_default=True, type=click.IntRange(1, 10**12))
@click.option("--warmup", default=1000, show_default=True, type=click.IntRange(0, 100_000_000),
              help="Requests before the traced run.")
@click.option("--call-graph", type=click.Choice(["fp", "dwarf"]), default="fp", show_default=True,
              help="How perf walks the stack at each call: fp (frame pointers) or dwarf (code without them).")
@output_options
def syscalls_command(command: str, target: TargetOptions, requests: int, clients: int, pipeline: int,
                     template: str | None, keyspace: int, warmup: int, call_graph: str, output: Path | None,
                     json_path: Path | None) -> None:
    """System calls per request of COMMAND under load, traced with perf: each by name and descriptor, with
    its time and the call sites in the program that make it."""
    clients, pipeline = load_shape(target, clients, pipeline)
    options = SyscallsOptions(target, workload_for(command, template, keyspace), requests, clients, pipeline, warmup,
                              call_graph)
    outputs = Outputs.prepare("syscalls", output, json_path)
    measure_and_report(lambda progress: measure_syscalls(options, progress), outputs, make_console())
