"""Pieces every report shares: names and paths shortened for reading, the build's warnings,
the notes, and the console zprof prints to."""

from __future__ import annotations

import os
import re

from rich.console import Console

from zprof.model.common import Note, TargetInfo
from zprof.report.document import Document, Line, Span, line
from zprof.report.notes import sentence

LONG_NAME = 60


def make_console(stderr: bool = False) -> Console:
    """A console that keeps tables readable when the output is a file or a CI log."""
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        console = Console(stderr=stderr, highlight=False, width=140)
    return console


def short_name(name: str) -> str:
    """Long generic parameter lists folded: `DebugAllocator(.{ ... }).alloc`."""
    if len(name) <= LONG_NAME:
        return name
    return re.sub(r"\(\.\{[^()]*\}\)", "(.{...})", name)


def short_path(path: str | None, line: int | None) -> str:
    if not path:
        return "?"
    cwd = os.getcwd() + "/"
    if path.startswith(cwd):
        path = path[len(cwd) :]
    elif "/zig/p/" in path:  # a package in Zig's global cache
        path = path.split("/zig/p/", 1)[1]
    return f"{path}:{line}" if line else path


def add_title(document: Document, title: str, target: TargetInfo) -> None:
    """The first line of a report on one target: what ran, on which project, built by which Zig, in which mode."""
    mode = f", {target.optimize}" if target.optimize else ""
    document.paragraph(Span(title, "bold"), " on ", Span(target.project or "?", "cyan"),
                       f" ({os.path.basename(target.binary)}, Zig {target.zig_version}{mode})")


def add_error_share(document: Document, errors: int, requests: int, share: float, first_error: str | None) -> None:
    """When some requests got an error reply: how many, first, before any figure."""
    if errors:
        document.paragraph(Span(f"{share:.1%} of the measured requests ({errors:,} of {requests:,}) got an error "
                                f"reply; the first: {first_error}", "bold red"))


def add_build_warnings(document: Document, target: TargetInfo) -> None:
    """The build mode when zprof did not choose it, or when it is Debug (what it means for the figures);
    and what `zig build` reported although it produced the binary (see builder/build.py)."""
    if target.optimize and (target.optimize_source not in (None, "requested") or target.optimize == "Debug"):
        note = Note("target.build-mode", {"mode": target.optimize, "source": target.optimize_source or "requested"})
        document.paragraph(Span(sentence(note), "bold yellow" if target.optimize == "Debug" else "yellow"))
    for warning in target.build_warnings:
        first, *rest = warning.splitlines()
        document.paragraph(Span("build: " + first, "yellow"))
        for more in rest:
            document.paragraph(Span("  " + more, "dim"))


def add_notes(document: Document, notes: list[Note], prefix: str = "note: ") -> None:
    for note in notes:
        document.paragraph(Span(prefix + sentence(note), "yellow"))


def where(function: str, file: str | None, line_number: int | None, inlined: list[str]) -> list[Line]:
    """A call site in a table cell: the function, its file and line, and the std frame it went through."""
    lines = [line(Span(short_name(function), "bold"))]
    if file:
        lines.append(line(Span(short_path(file, line_number), "dim")))
    if inlined:
        lines.append(line(Span("  via " + short_name(inlined[-1]), "dim")))
    return lines
