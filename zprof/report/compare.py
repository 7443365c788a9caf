"""The report of a `zprof compare` run."""

from __future__ import annotations

from zprof.model.compare import INCONCLUSIVE, NOT_MEASURED, PASS, REGRESSION, CompareRun, FigureChange
from zprof.report.common import add_notes, short_name
from zprof.report.document import Document, Span

OUTCOME_STYLES = {PASS: "green", REGRESSION: "bold red", INCONCLUSIVE: "yellow", NOT_MEASURED: "red"}
OUTCOME_WORDS = {PASS: "PASS", REGRESSION: "REGRESSION", INCONCLUSIVE: "INCONCLUSIVE",
                 NOT_MEASURED: "COULD NOT MEASURE"}


def _change(figure: FigureChange) -> str:
    if figure.metric == "allocations":
        return f"{figure.estimate_percent:+.2f} per request (exact)" if figure.estimate_percent is not None else "?"
    if figure.estimate_percent is None:
        return "?"
    interval = (f" [{figure.interval_percent[0]:+.1f}%, {figure.interval_percent[1]:+.1f}%]"
                if figure.interval_percent else "")
    return f"{figure.estimate_percent:+.1f}%{interval}"


def _what(figure: FigureChange) -> str:
    if figure.metric == "allocations":
        return "an allocation more every other request or more" if figure.outcome == REGRESSION else "unchanged"
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
                       Span(run.after.target.project or "?", "cyan"),
                       f" (Zig {run.after.target.zig_version}, {run.after.target.optimize})")
    document.paragraph(f"{run.rounds} round(s) of A B B A on fresh servers ({settings.load}), {run.seconds:.0f} s; "
                       f"each figure tested so that a {settings.threshold_percent:g}% throughput loss (or "
                       f"{settings.latency_threshold_percent:g}% more latency) is found with "
                       f"{settings.power:.0%} power at a {settings.alpha:.0%} family-wise false-positive rate, "
                       f"in at most {settings.max_rounds} rounds planned for {settings.noise_percent:g}% of noise "
                       "per round.")
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
        if command.functions:
            document.table(f"{command.command}: functions whose share of the CPU moved (a profile of each build)",
                           [("function", "left"), ("kind", "left"), ("self before", "right"),
                            ("self after", "right"), ("total before", "right"), ("total after", "right")], [
                [short_name(change.function), change.kind, f"{change.self_before:.1%}", f"{change.self_after:.1%}",
                 f"{change.before:.1%}", f"{change.after:.1%}"] for change in command.functions])
    document.paragraph(Span(f"Outcome: {OUTCOME_WORDS[run.outcome]}", OUTCOME_STYLES[run.outcome]))
    if run.outcome == INCONCLUSIVE:
        document.paragraph("Not a pass: the rounds could not tell a change within the threshold from one beyond it. "
                           "Run again on a quieter machine, or plan more rounds: a larger --noise (and a --budget "
                           "long enough for them).")
    add_notes(document, run.notes)
    return document
