"""The report of a `zprof compare` run."""

from __future__ import annotations

from zprof.model.compare import (
    ALLOCATIONS,
    INCONCLUSIVE,
    INSTRUCTIONS,
    NOT_MEASURED,
    PASS,
    REGRESSION,
    CompareRun,
    FigureChange,
)
from zprof.report.common import add_notes, short_name
from zprof.report.document import Document, Span

OUTCOME_STYLES = {PASS: "green", REGRESSION: "bold red", INCONCLUSIVE: "yellow", NOT_MEASURED: "red"}
OUTCOME_WORDS = {PASS: "PASS", REGRESSION: "REGRESSION", INCONCLUSIVE: "INCONCLUSIVE",
                 NOT_MEASURED: "COULD NOT MEASURE"}


def _change(figure: FigureChange) -> str:
    if figure.metric == ALLOCATIONS:
        return f"{figure.estimate_percent:+.2f} per request (exact)" if figure.estimate_percent is not None else "?"
    if figure.metric == INSTRUCTIONS:
        if figure.estimate_percent is None:
            return "?"
        if figure.interval_percent is None:
            return f"{figure.estimate_percent:+.2f}% (counted)"
        return (f"{figure.estimate_percent:+.2f}% (counted twice on each build: between "
                f"{figure.interval_percent[0]:+.1f}% and {figure.interval_percent[1]:+.1f}%)")
    if figure.estimate_percent is None:
        return "?"
    interval = (f" [{figure.interval_percent[0]:+.1f}%, {figure.interval_percent[1]:+.1f}%]"
                if figure.interval_percent else "")
    return f"{figure.estimate_percent:+.1f}%{interval}"


def _what(figure: FigureChange) -> str:
    if figure.metric == ALLOCATIONS:
        return "an allocation more every other request or more" if figure.outcome == REGRESSION else "unchanged"
    if figure.metric == INSTRUCTIONS:
        if figure.outcome == INCONCLUSIVE:
            return "the same build counts differently from run to run (work timed by the clock): not exact here"
        return (f"more than {figure.threshold_percent:g}% more per request" if figure.outcome == REGRESSION else
                f"within {figure.threshold_percent:g}%")
    if figure.outcome == PASS:
        return ("improved" if figure.improved else "within the threshold" + (", a smaller loss shown"
                                                                              if figure.worse else ""))
    if figure.outcome == REGRESSION:
        return f"worse, beyond no change; powered for {figure.threshold_percent:g}%"
    if figure.outcome == INCONCLUSIVE:
        return (f"undecided: the rounds could have seen {figure.detectable_percent:.1f}% or more"
                if figure.detectable_percent is not None else "undecided")
    return "not measured"


def compare_document(run: CompareRun) -> Document:
    document = Document("zprof compare")
    settings = run.settings
    document.paragraph(Span("zprof compare", "bold"), f" {run.before.label} against {run.after.label} on ",
                       Span(run.project or run.after.target.project or "?", "cyan"),
                       f" (Zig {run.after.target.zig_version}, {run.after.target.optimize})")
    if not settings.max_rounds:
        document.paragraph(f"No rounds (only the exact figures), {run.seconds:.0f} s.")
    else:
        document.paragraph(
            f"{run.rounds} round(s) of A B B A on fresh servers ({settings.load}), {run.seconds:.0f} s; each figure "
            f"tested so that a {settings.threshold_percent:g}% throughput loss (or "
            f"{settings.latency_threshold_percent:g}% more latency) is found with {settings.power:.0%} power at a "
            f"{settings.alpha:.0%} family-wise false-positive rate, in at most {settings.max_rounds} rounds (those "
            f"planned for {settings.noise_percent:g}% of noise per round, or as many as --budget "
            f"{settings.budget_s:g} s afforded at the first round's pace).")
    rows = []
    for command in run.commands:
        if command.failure:
            rows.append([command.command, "-", Span("COULD NOT MEASURE", "red"), command.failure])
            continue
        for figure in command.figures:
            rows.append([command.command, figure.metric, Span(OUTCOME_WORDS[figure.outcome],
                                                              OUTCOME_STYLES[figure.outcome]),
                         f"{_change(figure)}; {_what(figure)}"])
    document.table("After against before", [("command", "left"), ("figure", "left"), ("outcome", "left"),
                                            ("change (95% interval)", "left")], rows)
    for command in run.commands:
        if command.allocations_before is not None:
            document.paragraph(f"{command.command}: {command.allocations_before:.2f} allocations per request before, "
                               f"{command.allocations_after:.2f} after (the shim's count).")
        if command.instructions_before is not None:
            document.paragraph(f"{command.command}: {command.instructions_before:,.0f} instructions per request "
                               f"before, {command.instructions_after:,.0f} after (counted).")
        if command.functions:
            document.table(f"{command.command}: functions whose share of the CPU moved (a profile of each build)",
                           [("function", "left"), ("kind", "left"), ("self before", "right"),
                            ("self after", "right"), ("total before", "right"), ("total after", "right")], [
                [short_name(change.function), change.kind, f"{change.self_before:.1%}", f"{change.self_after:.1%}",
                 f"{change.before:.1%}", f"{change.after:.1%}"] for change in command.functions])
        if command.flame_diff:
            document.paragraph(f"{command.command}: differential flame graph (red: a larger share after) in ",
                               Span(command.flame_diff, "cyan"))
    document.paragraph(Span(f"Outcome: {OUTCOME_WORDS[run.outcome]}", OUTCOME_STYLES[run.outcome]))
    if run.outcome == INCONCLUSIVE:
        document.paragraph("Not a pass: the run could not tell a change within the threshold from one beyond it. "
                           "Run again on a quieter machine, or give the rounds a longer --budget.")
    add_notes(document, run.notes)
    return document
