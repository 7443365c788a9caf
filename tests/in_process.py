"""zprof's command line run in this process, as the tests and the docs' examples run it: `zprof.cli.main`
with the environment, working directory and output of a command line, and a deadline."""

from __future__ import annotations

import io
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from unittest import mock


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str
    directory: Path | None = None  # the run's output directory, when a fixture chose it

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class CliTimeout(Exception):
    """A zprof command run in-process went past the caller's deadline (zprof's own deadlines should end it
    long before)."""


@contextmanager
def environment(env: dict[str, str], cwd: Path, shown_cwd: str | None = None) -> Iterator[None]:
    """os.environ exactly `env`, and the working directory `cwd`, both restored after; `shown_cwd`: what
    zprof takes for its working directory when it shortens paths (the docs' examples)."""
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        with mock.patch("os.getcwd", return_value=shown_cwd) if shown_cwd else nullcontext():
            yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


@contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    if seconds is None:
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise CliTimeout(f"zprof did not finish within {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_cli(argv: list[str] | tuple[str, ...], *, cwd: Path, env: dict[str, str], timeout: float | None = None,
            shown_cwd: str | None = None) -> CliResult:
    """`zprof ARGV`: its exit code (as `python -m zprof` would exit) and what it printed."""
    from zprof import cli

    stdout, stderr = io.StringIO(), io.StringIO()
    with environment(env, cwd, shown_cwd), redirect_stdout(stdout), redirect_stderr(stderr), deadline(timeout):
        try:
            code = cli.main(list(argv))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return CliResult(code, stdout.getvalue(), stderr.getvalue())
