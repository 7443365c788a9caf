"""zprof init: find how to build, start and drive a project's server, and write it to zprof.toml."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from zprof.commands.options import target_options
from zprof.config import CONFIG_FILE, render_config
from zprof.errors import ZprofError
from zprof.files import write_text_atomically
from zprof.progress import LiveProgress
from zprof.report.common import make_console
from zprof.sessions.init import COMMENTS, config_sections, discover
from zprof.sessions.target import TargetOptions


@click.command("init")
@target_options
@click.option("--force", is_flag=True, help=f"Replace an existing {CONFIG_FILE}.")
@click.option("--dry-run", is_flag=True, help=f"Print what {CONFIG_FILE} would say, and write nothing.")
def init_command(target: TargetOptions, force: bool, dry_run: bool) -> None:
    """Find how the project's server builds, starts and takes load, and write it to zprof.toml."""
    path = Path(target.project) / CONFIG_FILE
    if path.exists() and not (force or dry_run):
        raise ZprofError(f"{path} exists; zprof init never overwrites it", detail="Pass --force to replace it.")
    start_given = click.get_current_context().get_parameter_source("start_command") is not ParameterSource.DEFAULT
    console = make_console()
    with LiveProgress(make_console(stderr=True)) as progress:
        found = discover(target, start_given, progress)
    text = render_config(config_sections(found, target), COMMENTS)
    console.print(f"{CONFIG_FILE} for {found.built.project.root}:", style="bold")
    console.print(text, markup=False, highlight=False, soft_wrap=True)
    if found.start_crashes:
        console.print(f"note: the server crashed during start-up in {found.start_crashes} start(s); zprof started "
                      "it again each time.", style="yellow")
    if dry_run:
        console.print("(--dry-run: nothing written)")
        return
    try:
        write_text_atomically(path, text)
    except OSError as error:
        raise ZprofError(f"cannot write {path}: {error.strerror or error}") from error
    console.print(f"Written: {path}")
