"""The `zprof` command: subcommands, and the one place errors become exit codes."""

from __future__ import annotations

import os
import sys

import click
from rich.console import Console

from zprof import __version__
from zprof.commands.allocs import allocs_command
from zprof.commands.bench import bench_command
from zprof.commands.build import build_command
from zprof.commands.doctor import doctor_command
from zprof.commands.flame import flame_command
from zprof.commands.init import init_command
from zprof.commands.memory import memory_command
from zprof.commands.report import report_command
from zprof.errors import EXIT_USAGE, ZprofError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="zprof")
def cli() -> None:
    """Performance validation for Zig servers such as Zoltraak."""


cli.add_command(allocs_command)
cli.add_command(bench_command)
cli.add_command(build_command)
cli.add_command(doctor_command)
cli.add_command(flame_command)
cli.add_command(init_command)
cli.add_command(memory_command)
cli.add_command(report_command)


def main(argv: list[str] | None = None) -> int:
    errors = Console(stderr=True, highlight=False)
    try:
        result = cli.main(args=argv, prog_name="zprof", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except ZprofError as error:
        errors.print(f"[bold red]zprof:[/] {error.message}", soft_wrap=True)
        if error.detail:
            errors.print(error.detail, markup=False, soft_wrap=True)
        return error.exit_code
    except click.exceptions.Abort:
        errors.print("zprof: interrupted")
        return 130
    except click.ClickException as error:
        error.show(file=sys.stderr)
        return error.exit_code if error.exit_code else EXIT_USAGE
    except KeyboardInterrupt:
        errors.print("zprof: interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (`zprof report ... | head`): nothing more to say to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
