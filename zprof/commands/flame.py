"""zprof flame: where the server spends its CPU under load (perf, or callgrind)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from zprof.analysis.hotspots import share_changes
from zprof.commands.options import Outputs, load_shape, measure_and_report, output_options, target_options
from zprof.errors import ZprofError
from zprof.load.workloads import DEFAULT_KEYSPACE, MIXED_COMMANDS, mixed_workload, workload_for
from zprof.model.flame import PERF, FlameDiffRun, FlameRun
from zprof.report.common import make_console
from zprof.report.profile_files import load_profile, write_outputs
from zprof.report.svg import render_flame_svg
from zprof.sessions.flame import DEFAULT_FREQUENCY_HZ, FlameOptions, Profiled, record_flame
from zprof.sessions.target import TargetOptions


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
@click.option("--top", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option("--shim", is_flag=True, help="Build with the allocation shim (off: it would skew the profile).")
@click.option("--engine", type=click.Choice(["perf", "callgrind"]), default="perf", show_default=True,
              help="callgrind: count instructions under valgrind for --requests requests (repeatable, slow).")
@click.option("--requests", default=2000, show_default=True, type=click.IntRange(1, 10_000_000),
              help="Requests to run under --engine callgrind.")
@click.option("--diff", nargs=2, type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              metavar="BEFORE AFTER", help="Compare two earlier flame outputs instead of recording.")
@output_options
def flame_command(target: TargetOptions, duration: float, command: str | None, workload: str | None,
                  template: str | None, keyspace: int, clients: int, pipeline: int, frequency: int, call_graph: str,
                  top: int, shim: bool, engine: str, requests: int, diff: tuple[Path, Path] | None,
                  output: Path | None, json_path: Path | None) -> None:
    """Record the server under load with Linux perf; write flame graphs and the hottest functions."""
    console = make_console()
    if diff is not None:
        outputs = Outputs.prepare("flame-diff", output, json_path)
        measure_and_report(lambda progress: _diff(diff[0], diff[1], outputs.directory, top), outputs, console)
        return
    if command and workload:
        raise ZprofError("pass --command or --workload, not both")
    workloads = ([workload_for(command, template, keyspace)] if command else
                 mixed_workload(keyspace, target.config.commands))
    label = command.upper() if command else "mixed"
    clients, pipeline = load_shape(target, clients, pipeline)
    options = FlameOptions(target, workloads, label, clients, pipeline, top, shim, engine, duration, frequency,
                           call_graph, requests)
    outputs = Outputs.prepare("flame", output, json_path)

    def profile_files(profiled: Profiled) -> FlameRun:
        suffix = " (callgrind)" if engine != PERF else ""
        written = write_outputs(profiled.profile, f"{profiled.run.target.name} {label}{suffix}", outputs.directory)
        profiled.run.files = [*(str(path) for path in written), *profiled.run.files]
        return profiled.run

    measure_and_report(lambda progress: record_flame(options, outputs.directory, progress), outputs, console,
                       profile_files)


def _diff(before_dir: Path, after_dir: Path, out_dir: Path, top: int) -> FlameDiffRun:
    before, after = load_profile(before_dir), load_profile(after_dir)
    changes = share_changes(before, after, top)
    svg = out_dir / "flame-diff.svg"
    svg.write_text(render_flame_svg(after, f"{after_dir.name} against {before_dir.name}", diff_baseline=before),
                   encoding="utf-8")
    rows = [{**asdict(change), "delta": change.delta, "self_delta": change.self_delta} for change in changes]
    (out_dir / "changes.json").write_text(json.dumps(rows, indent=2))
    return FlameDiffRun(str(before_dir), str(after_dir), changes, str(svg))
