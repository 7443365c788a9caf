"""The report of a `zprof syscalls` run."""

from __future__ import annotations

from zprof.model.syscalls import SyscallRow, SyscallsRun
from zprof.report.common import add_build_warnings, add_error_share, add_notes, add_title, where
from zprof.report.document import Document, Line, Span, line

# Rows below this many per request are rounding noise in a terminal (the JSON keeps them).
SHOWN_PER_REQUEST = 0.01
SITES_SHOWN = 3


def _sites(row: SyscallRow) -> list[Line]:
    lines: list[Line] = []
    for site in row.sites[:SITES_SHOWN]:
        cell = where(site.function, site.file, site.line, [site.via] if site.via else [])
        cell[0] = (Span(f"{site.per_request:.2f}/req ", "cyan"), *cell[0])
        lines += cell
    return lines or [line("?")]


def _micros(value: float | None) -> str:
    return f"{value:,.1f}" if value is not None else "?"


def syscalls_document(run: SyscallsRun) -> Document:
    load = run.load
    document = Document(f"zprof syscalls {run.command}")
    add_error_share(document, load.errors, run.requests, load.error_share, load.first_error)
    add_title(document, document.title, run.target)
    document.paragraph(f"{run.requests:,} requests `{' '.join(run.args)}` over {load.clients} client(s), pipeline "
                       f"{load.pipeline}, in {load.seconds:.2f} s under perf's system-call tracing; "
                       f"{run.per_request:.2f} system calls per request on {run.threads} thread(s)")
    add_build_warnings(document, run.target)
    if not run.complete:
        document.paragraph(Span("The run did not finish: these figures cover the requests that completed.", "red"))
    shown = [row for row in run.rows if row.per_request >= SHOWN_PER_REQUEST]
    document.table("Per request", [("system call", "left"), ("on", "left"), ("per request", "right"),
                                   ("µs per call", "right"), ("µs per request", "right"), ("call sites", "left")], [
        [Span(row.name, "bold"), row.target or "-", f"{row.per_request:.2f}", _micros(row.microseconds_per_call),
         _micros(row.microseconds_per_request), _sites(row)]
        for row in shown])
    idle = (f"While idle ({load.idle_seconds:g} s before the load) the server made {run.idle_per_second:g} system "
            "calls a second")
    document.paragraph(idle + (": none to subtract, the counts are exact." if not run.idle_per_second else
                               "; that rate over the load's duration is subtracted from each row, so a row with "
                               "idle calls is an estimate."))
    document.paragraph(Span("µs per call is wall time inside the call, waiting included: a read that waits for the "
                            "next request counts the wait.", "dim"))
    if run.events_lost:
        document.paragraph(Span(f"perf lost {run.events_lost:,} events: the counts are lower bounds.", "bold red"))
    add_notes(document, run.notes)
    return document
