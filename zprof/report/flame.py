"""The report of a `zprof flame` run, and of a comparison of two."""

from __future__ import annotations

from zprof.model.flame import FlameDiffRun, FlameRun, FunctionShare, ProfileSummary
from zprof.report.common import add_build_warnings, add_notes, add_title, short_name, short_path
from zprof.report.document import Document, Span


def _share_rows(rows: list[FunctionShare]) -> list:
    return [[str(rank), f"{row.self_share:.1%}", f"{row.total_share:.1%}", row.kind,
             (Span(short_name(row.function), "bold red"), Span("  over 10% of samples", "red")) if row.flagged
             else short_name(row.function), Span(short_path(row.file, row.line), "dim")]
            for rank, row in enumerate(rows, 1)]


_COLUMNS = [("#", "right"), ("self", "right"), ("total", "right"), ("kind", "left"), ("function", "left"),
            ("where", "left")]


# Kernel causes under this share of all samples are left out of the sentence (the JSON keeps them).
KERNEL_PART_SHOWN = 0.005


def kernel_breakdown(summary: ProfileSummary) -> str | None:
    """The kernel's share by cause, in a sentence: which system calls, page faults, interrupts."""
    shown = [part for part in summary.kernel_parts if part.share >= KERNEL_PART_SHOWN]
    if not shown:
        return None
    named = [f"{part.cause}{'' if part.cause in ('page faults', 'interrupts', 'other') else '(2)'} {part.share:.1%}"
             for part in shown]
    return "In the kernel, by cause: " + ", ".join(named) + " (of all samples; `zprof syscalls CMD` counts the calls)."


def flame_document(run: FlameRun) -> Document:
    summary = run.summary
    document = Document(f"zprof flame {run.command}")
    add_title(document, document.title, run.target)
    add_build_warnings(document, run.target)
    if summary.unit == "samples":
        document.paragraph(Span(f"{summary.total:,} samples", "bold"), f"; {summary.kernel_share:.1%} in the "
                           f"kernel, {summary.idle_share:.1%} switched out; load: {run.load}")
        if (parts := kernel_breakdown(summary)) is not None:
            document.paragraph(parts)
    else:
        document.paragraph(Span(f"{summary.total:,} {summary.unit}", "bold"), f" (user space only); load: {run.load}")
    document.table("Hottest functions by self time (outside the kernel)", _COLUMNS, _share_rows(summary.by_self))
    document.table("Hottest functions by total time", _COLUMNS, _share_rows(summary.by_total))
    add_notes(document, run.notes + summary.notes)
    if run.error:
        document.paragraph(Span(f"The recording stopped early: {run.error}", "red"))
    document.paragraph("Written: " + ", ".join(run.files))
    for file in run.files:
        if file.endswith("flame.svg"):
            document.picture("flame.svg", f"Flame graph of {run.command}")
    return document


def flame_diff_document(run: FlameDiffRun) -> Document:
    document = Document(f"zprof flame --diff {run.before} {run.after}")
    document.table("Functions whose share of samples moved most (own code first, then with what they call)",
                   [("own code", "right"), ("before", "right"), ("after", "right"), ("change", "right"),
                    ("kind", "left"), ("function", "left")],
                   [[Span(f"{change.self_delta * 100:+.1f} pts", "red" if change.self_delta > 0 else "green"),
                     f"{change.before:.1%}", f"{change.after:.1%}",
                     Span(f"{change.delta * 100:+.1f} pts", "red" if change.delta > 0 else "green"), change.kind,
                     short_name(change.function)] for change in run.changes])
    document.paragraph(f"Differential flame graph: {run.svg} (red grew, blue shrank)")
    return document
