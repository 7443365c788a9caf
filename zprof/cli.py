"""The `zprof` command: subcommands, and the one place errors and signals become exit codes."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import traceback
from types import FrameType
from typing import Any

import click
from rich.console import Console

from zprof import __version__, registry
from zprof.commands.allocs import allocs_command
from zprof.commands.baseline import baseline_group
from zprof.commands.bench import bench_command
from zprof.commands.build import build_command
from zprof.commands.compare import compare_command
from zprof.commands.doctor import doctor_command
from zprof.commands.flame import flame_command
from zprof.commands.init import init_command
from zprof.commands.memory import memory_command
from zprof.commands.regress import regress_command
from zprof.commands.report import report_command
from zprof.commands.syscalls import syscalls_command
from zprof.commands.validate import validate_command
from zprof.errors import EXIT_INTERNAL, EXIT_USAGE, ZprofError

# Signals that end zprof cleanly: what it started is stopped, a run cut short leaves no output behind.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_debug = False


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="zprof")
@click.option("--debug", is_flag=True, help="Show Python's traceback with an error (for reporting a bug in zprof).")
def cli(debug: bool) -> None:
    """Performance validation for Zig servers such as Zoltraak."""
    global _debug
    _debug = _debug or debug


cli.add_command(allocs_command)
cli.add_command(baseline_group)
cli.add_command(bench_command)
cli.add_command(build_command)
cli.add_command(compare_command)
cli.add_command(doctor_command)
cli.add_command(flame_command)
cli.add_command(init_command)
cli.add_command(memory_command)
cli.add_command(regress_command)
cli.add_command(report_command)
cli.add_command(syscalls_command)
cli.add_command(validate_command)


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C), SIGTERM or SIGHUP, raised where zprof was, so that every `finally` on the way out
    stops what it started. A KeyboardInterrupt, so that asyncio and click treat it as one."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Signals:
    """Turns the first stop signal into Interrupted; later ones are noted, never raised, so that they
    cannot cut the clean-up short (it is bounded: SIGKILL follows SIGTERM after a grace period)."""

    RESEND_S = 0.5

    def __init__(self) -> None:
        self.received: int | None = None
        self._raising = True
        self._delivered = threading.Event()
        self._resender: threading.Thread | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        self._raising = False
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = self.received or signum
        if self._delivered.is_set() or not self._raising:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._deliver(signum)
            return
        # Inside the event loop: raised from a callback of its own rather than from whichever task was
        # running, so that asyncio.run cancels every task and each closes its connections as it ends. A
        # loop that finishes before it runs the callback drops it: the signal is then sent again.
        loop.call_soon_threadsafe(self._deliver, signum)
        if self._resender is None:
            self._resender = threading.Thread(target=self._resend, args=(signum,), daemon=True)
            self._resender.start()

    def _deliver(self, signum: int) -> None:
        if self._delivered.is_set() or not self._raising:
            return
        self._delivered.set()
        # Tasks cut short now end with whatever their connections saw last; asyncio would log each one.
        logging.getLogger("asyncio").setLevel(logging.CRITICAL + 1)
        raise Interrupted(signum)

    def _resend(self, signum: int) -> None:
        while not self._delivered.wait(self.RESEND_S) and self._raising:
            os.kill(os.getpid(), signum)

    def quiet(self) -> None:
        self._raising = False


def _signal_exit(signum: int) -> int:
    return 128 + signum


def _interrupted(cause: BaseException | None, signals: _Signals) -> int:
    """The exit code for a run a signal stopped; what it says is printed once everything is stopped."""
    signum = cause.signum if isinstance(cause, Interrupted) else signals.received or signal.SIGINT
    return _signal_exit(signum)


def _show_traceback(errors: Console, error: BaseException) -> None:
    if _debug:
        errors.print("".join(traceback.format_exception(error)), markup=False, highlight=False, soft_wrap=True)


def _run(argv: list[str] | None, errors: Console, signals: _Signals) -> int:
    try:
        for leftovers in registry.sweep():
            if not leftovers.anything:  # a run that died having left nothing behind: nothing to say
                continue
            errors.print(f"zprof: note: {registry.describe(leftovers)}", markup=False, soft_wrap=True)
        result = cli.main(args=argv, prog_name="zprof", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except ZprofError as error:
        _show_traceback(errors, error)
        errors.print(f"[bold red]zprof:[/] {error.message}", soft_wrap=True)
        if error.detail:
            errors.print(error.detail, markup=False, soft_wrap=True)
        return error.exit_code
    except click.exceptions.Abort as abort:
        return _interrupted(abort.__cause__, signals)
    except click.ClickException as error:
        error.show(file=sys.stderr)
        return error.exit_code if error.exit_code else EXIT_USAGE
    except KeyboardInterrupt as interrupt:
        return _interrupted(interrupt, signals)
    except BrokenPipeError:
        # The reader went away (`zprof report ... | head`): nothing more to say to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as error:
        # The machine refused something (a full disk, a directory zprof may not write): the user's to fix.
        _show_traceback(errors, error)
        where = f" ({error.filename})" if error.filename else ""
        errors.print(f"[bold red]zprof:[/] {error.strerror or error}{where}", soft_wrap=True)
        return EXIT_USAGE
    except Exception as error:
        _show_traceback(errors, error)
        errors.print(f"[bold red]zprof: internal error:[/] {type(error).__name__}: {error}", soft_wrap=True)
        if not _debug:
            errors.print("This is a bug in zprof; `zprof --debug ...` shows where it happened.")
        return EXIT_INTERNAL


def _finish(errors: Console) -> bool:
    """Stops whatever is still running of what this run started: normally nothing is, since every part
    of zprof stops what it starts; a server that daemonized itself out of its process group is.
    False when something would not stop."""
    left, stubborn = registry.finish()
    if left:
        errors.print("zprof: stopped what was still running at exit: "
                     + ", ".join(f"{process.name} (pid {process.pid})" for process in left), markup=False)
    if stubborn:
        errors.print("zprof: could not stop: " + ", ".join(f"{process.name} (pid {process.pid})"
                                                          for process in stubborn), markup=False)
    return not stubborn


def main(argv: list[str] | None = None) -> int:
    global _debug
    _debug = bool(os.environ.get("ZPROF_DEBUG"))
    errors = Console(stderr=True, highlight=False)
    code = EXIT_INTERNAL
    with _Signals() as signals:
        try:
            code = _run(argv, errors, signals)
        finally:
            signals.quiet()
            stopped = _finish(errors)
    if code > 128:
        how = "Ctrl-C" if code == _signal_exit(signal.SIGINT) else signal.Signals(code - 128).name
        errors.print(f"zprof: interrupted ({how})" + ("; everything it had started is stopped" if stopped else ""))
    return code
