"""zprof baseline save|list|show|history: the project's saved baselines, in `.zprof/baselines/`."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from zprof.commands.options import fresh_output_dir, suite_options, target_options
from zprof.config import load_config
from zprof.errors import ZprofError
from zprof.progress import LiveProgress
from zprof.report.baseline import baseline_document, history_document, list_document, write_history_pictures
from zprof.report.common import make_console
from zprof.report.render import to_terminal
from zprof.sessions.baseline import (
    SuiteOptions,
    all_baselines,
    check_name,
    default_name,
    git_state,
    in_commit_order,
    load_baseline,
    project_root,
    refuse_existing,
    run_suite,
    save_baseline,
    suite_settings,
    zprof_dir,
)
from zprof.sessions.regress import keep_builds
from zprof.sessions.target import TargetOptions

PROJECT_HELP = "The Zig project whose baselines these are (a directory with build.zig)."


@click.group("baseline")
def baseline_group() -> None:
    """The project's saved baselines (.zprof/baselines/NAME.json), which zprof regress compares with."""


@baseline_group.command("save")
@click.argument("name", required=False)
@target_options
@suite_options
@click.option("--force", is_flag=True, help="Replace a baseline of the same name.")
def save_command(name: str | None, target: TargetOptions, commands: list[str] | None, requests: int | None,
                 trials: int | None, against: str | None, min_trial_seconds: float, force: bool) -> None:
    """Run the suite and save every raw value as baseline NAME (default: the short git commit, -dirty
    when tracked files changed)."""
    root = project_root(target.project)
    context = click.get_current_context()
    explicit_seconds = context.get_parameter_source("min_trial_seconds") is not click.core.ParameterSource.DEFAULT
    settings = suite_settings(target, commands, requests, trials, against,
                              min_trial_seconds if explicit_seconds else None)
    name = check_name(name or default_name(git_state(root)))
    if not force:
        refuse_existing(root, name)
    with LiveProgress(Console(stderr=True)) as progress:
        baseline = run_suite(SuiteOptions(target, settings), name, progress)
        baseline.binaries = keep_builds(target, baseline, zprof_dir(root), progress)
    path = save_baseline(baseline, root, force=force)
    console = make_console()
    to_terminal(baseline_document(baseline), console)
    console.print(f"Saved baseline {name} to {path}", soft_wrap=True)


@baseline_group.command("list")
@click.option("--project", default=".", show_default=True, type=click.Path(file_okay=False), help=PROJECT_HELP)
def list_command(project: str) -> None:
    """The saved baselines, and any file there that is not a readable one."""
    root = project_root(project)
    to_terminal(list_document(root, list(all_baselines(root))), make_console())


@baseline_group.command("show")
@click.argument("name")
@click.option("--project", default=".", show_default=True, type=click.Path(file_okay=False), help=PROJECT_HELP)
def show_command(name: str, project: str) -> None:
    """Every figure baseline NAME holds."""
    to_terminal(baseline_document(load_baseline(project_root(project), name)), make_console())


@baseline_group.command("history")
@click.option("--project", default=".", show_default=True, type=click.Path(file_okay=False), help=PROJECT_HELP)
@click.option("--output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for the pictures (default: zprof-out/baseline-history-<time>; must not exist).")
def history_command(project: str, output: Path | None) -> None:
    """Allocations and instructions per request and the ratio to Redis across the saved baselines, in
    commit order: tables, and a picture (SVG and PNG)."""
    root = project_root(project)
    entries = list(all_baselines(root))
    readable = [entry for _, entry in entries if not isinstance(entry, ZprofError)]
    if not readable:
        raise ZprofError(f"no readable baseline in {root}/.zprof/baselines",
                         detail="Save some first: zprof baseline save (one per commit).")
    baselines = in_commit_order(readable)
    directory = fresh_output_dir(output, "baseline-history")
    floor = load_config(root).thresholds.throughput_acceptable
    pictures = write_history_pictures(baselines, directory, floor)
    console = make_console()
    to_terminal(history_document(baselines, pictures), console)
    for name, entry in entries:
        if isinstance(entry, ZprofError):
            console.print(f"[yellow]skipped {name}: {entry.message}[/]", soft_wrap=True)
