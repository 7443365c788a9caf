"""What a session shows while it runs: one line saying what runs now, and how far it got.

Sessions report through this small interface, so they work the same in a
terminal (a transient bar on stderr) and in tests or pipelines (nothing).
"""

from __future__ import annotations

from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


class Reporter(Protocol):
    def status(self, text: str) -> None:
        """What runs now; the count stays until the next `count`."""

    def count(self, done: int, total: int | None) -> None:
        """How far it got, in requests, runs or keys (total None: unknown)."""


class Prefixed:
    """A reporter whose status lines say which part of a longer run is running."""

    def __init__(self, progress: Reporter, prefix: str, separator: str = ": ") -> None:
        self._progress, self._prefix, self._separator = progress, prefix, separator

    def status(self, text: str) -> None:
        self._progress.status(f"{self._prefix}{self._separator}{text}")

    def count(self, done: int, total: int | None) -> None:
        self._progress.count(done, total)


class Silent:
    def status(self, text: str) -> None:
        pass

    def count(self, done: int, total: int | None) -> None:
        pass


class LiveProgress:
    """A transient spinner and bar on a console; use as a context manager. Shown on a terminal
    only: in a pipe or a CI log it would only add blank lines."""

    def __init__(self, console: Console) -> None:
        self._bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), console=console, transient=True, disable=not console.is_terminal)
        self._task = self._bar.add_task("", total=None)

    def __enter__(self) -> LiveProgress:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def status(self, text: str) -> None:
        self._bar.update(self._task, description=text)

    def count(self, done: int, total: int | None) -> None:
        self._bar.update(self._task, completed=done, total=total)
