"""zprof build: build the target into zprof's cache and print the binary's path."""

from __future__ import annotations

import click
from rich.console import Console

from zprof.commands.options import target_options
from zprof.progress import LiveProgress
from zprof.sessions.target import TargetOptions, build_target


@click.command("build")
@target_options
@click.option("--no-shim", is_flag=True, help="Build without the counting-allocator shim.")
def build_command(target: TargetOptions, no_shim: bool) -> None:
    """Build the project (ReleaseFast, with the shim) outside its checkout; print the server's path."""
    console = Console(stderr=True)
    with LiveProgress(console) as progress:
        result = build_target(target, progress, with_shim=not no_shim).result
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}", markup=True, highlight=False)
    how = "cached" if result.cached else f"built in {result.seconds:.1f} s"
    console.print(f"{how}; executables: {', '.join(result.executables)}", highlight=False)
    click.echo(str(result.binary))
