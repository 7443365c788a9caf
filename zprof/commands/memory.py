"""zprof memory: memory over time under load, growth and leaks (the shim), or
the heap's peak by call site (valgrind's massif)."""

from __future__ import annotations

from pathlib import Path

import click

from zprof.commands.options import (
    Outputs,
    measure_and_report,
    min_trial_seconds_option,
    output_options,
    target_options,
)
from zprof.errors import ZprofError
from zprof.load.workloads import DEFAULT_KEYSPACE, MIXED_COMMANDS, mixed_workload, workload_for
from zprof.model.memory import MassifRun, MemoryRun
from zprof.report.common import make_console
from zprof.report.memory import write_massif_pictures, write_memory_pictures
from zprof.sessions.massif import SNAPSHOTS_FILE, MassifOptions, measure_massif
from zprof.sessions.memory import MIN_INTERVAL_S, MemoryOptions, check_sampling, measure_memory
from zprof.sessions.target import TargetOptions


@click.command("memory")
@target_options
@click.option("--command", "command", default=None, help="Load with one command (default: the mixed workload).")
@click.option("--workload", type=click.Choice(["mixed"]), default=None,
              help="mixed: " + ", ".join(MIXED_COMMANDS) + ", one phase each.")
@click.option("--args", "template", default=None, help="The request for --command, with __rand_int__ placeholders.")
@click.option("--keyspace", default=DEFAULT_KEYSPACE, show_default=True, type=click.IntRange(1, 10**12))
@click.option("--duration", default=60.0, show_default=True, type=click.FloatRange(1, 3600),
              help="Seconds of load, over all load phases (1 to 3600).")
@click.option("--interval", default=0.1, show_default=True, type=float,
              help=f"Seconds between samples ({MIN_INTERVAL_S:g} up to --duration).")
@click.option("--clients", default=4, show_default=True, type=click.IntRange(1, 1000))
@click.option("--pipeline", default=1, show_default=True, type=click.IntRange(1, 1000))
@click.option("--engine", type=click.Choice(["shim", "massif"]), default="shim", show_default=True,
              help="massif: run --requests requests under valgrind's massif and report the heap's peak.")
@click.option("--requests", default=2000, show_default=True, type=click.IntRange(1, 10_000_000),
              help="Requests to run under --engine massif.")
@min_trial_seconds_option
@output_options
def memory_command(target: TargetOptions, command: str | None, workload: str | None, template: str | None,
                   keyspace: int, duration: float, interval: float, clients: int, pipeline: int, engine: str,
                   requests: int, min_trial_seconds: float, output: Path | None, json_path: Path | None) -> None:
    """Memory over time under load: live bytes and RSS by phase, growth, leaks; or massif's peak."""
    if command and workload:
        raise ZprofError("pass --command or --workload, not both")
    workloads = ([workload_for(command, template, keyspace)] if command else
                 mixed_workload(keyspace, target.config.commands))
    console = make_console()
    if engine == "massif":
        massif_options = MassifOptions(target, workloads, command.upper() if command else "mixed", requests,
                                       clients, pipeline)
        outputs = Outputs.prepare("memory", output, json_path)

        def massif_files(run: MassifRun) -> MassifRun:
            run.files = [str(path) for path in write_massif_pictures(run, outputs.directory)]
            run.files.append(str(outputs.directory / SNAPSHOTS_FILE))
            return run

        measure_and_report(lambda progress: measure_massif(massif_options, outputs.directory, progress), outputs,
                           console, massif_files)
        return
    check_sampling(duration, interval)
    options = MemoryOptions(target, workloads, command is None, duration, interval, clients, pipeline,
                            min_trial_seconds)
    outputs = Outputs.prepare("memory", output, json_path)

    def pictures(run: MemoryRun) -> MemoryRun:
        run.files = [str(path) for path in write_memory_pictures(run, outputs.directory)]
        return run

    measure_and_report(lambda progress: measure_memory(options, progress), outputs, console, pictures)
