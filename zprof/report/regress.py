"""The report of `zprof regress`: the Performance Regression Check, and what accounts for the changes."""

from __future__ import annotations

from zprof.model.baseline import (
    CALLGRIND,
    FAIL,
    INCONCLUSIVE,
    MINOR,
    NONE,
    NOT_COMPARABLE,
    NOT_MEASURED,
    PASS,
    REGRESSION,
    SIDE_BY_SIDE,
    UNDECIDED,
    UNMEASURED,
    UNSTABLE,
    Baseline,
    Check,
    CommandChanges,
    RegressRun,
)
from zprof.report.common import add_build_warnings, add_notes, short_name, short_path
from zprof.report.document import Document, Line, Span, line
from zprof.units import human_bytes

ASSESSMENT_STYLES = {NONE: "green", MINOR: "yellow", REGRESSION: "bold red", UNSTABLE: "magenta",
                     UNDECIDED: "yellow", UNMEASURED: "red", NOT_COMPARABLE: "dim"}
OUTCOME_LINES = {PASS: ("PASS", "bold green"), FAIL: ("REGRESSION", "bold red"),
                 NOT_MEASURED: ("COULD NOT MEASURE", "bold red"), INCONCLUSIVE: ("INCONCLUSIVE", "bold yellow")}
SECTION = "Performance Regression Check"
SITES_SHOWN = 8


def figure(value: float | None, unit: str) -> str:
    """A metric's value as the check prints it."""
    if value is None:
        return "-"
    if unit == "B":
        return human_bytes(value)
    if unit == "ms":
        return f"{value:.3f} ms"
    if unit == "%":
        return f"{value:.1f}%"
    if unit == "req/s":
        return f"{value:,.0f} req/s"
    return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"


def change(value: float | None, check: Check) -> str:
    if value is None:
        return "new" if check.baseline == 0 and check.current else "-"
    return f"{value:+.1f}%" if abs(value) >= 0.05 else "0.0%"


def describe_baseline(baseline: Baseline) -> str:
    """"a1b2c3d (commit a1b2c3d, 2026-03-01: subject), measured ..."."""
    git = baseline.git
    commit = (f"commit {git.short}{' with uncommitted changes' if git.dirty else ''}, {git.committed[:10]}: "
              f"{git.subject}" if git else "not in a git checkout")
    return f"{baseline.name} ({commit}; measured {baseline.measured[:16].replace('T', ' ')} UTC)"


def instruction_line(baseline: Baseline) -> str:
    if baseline.instruction_source is None:
        return f"Instructions per request: not measured ({baseline.instructions_absent})."
    how = ("callgrind, 1 client, one request at a time" if baseline.instruction_source == CALLGRIND
           else "perf stat -e instructions:u, 1 client, one request at a time")
    return f"Instructions per request: {how}, {baseline.settings.requests:,} requests per command."


def _check_rows(checks: list[Check]) -> list[list[str | Span | Line]]:
    return [[f"{check.command} {check.metric}", figure(check.baseline, check.unit), figure(check.current, check.unit),
             change(check.change_percent, check), Span(check.assessment, ASSESSMENT_STYLES[check.assessment]),
             Span(check.basis, "dim")] for check in checks]


def add_check(document: Document, run: RegressRun, title: str = SECTION, level: int = 2) -> None:
    """The section itself: one row per metric; then what accounts for each change."""
    document.heading(title, level)
    document.table("", [("Metric", "left"), ("Baseline", "right"), ("Current", "right"), ("Change", "right"),
                        ("Assessment", "left"), ("Why", "left")], _check_rows(run.checks))
    regressed = {(check.command, check.metric) for check in run.checks if check.assessment in (REGRESSION, MINOR)}
    for changes in run.changes:
        _add_sites(document, changes)
        if (changes.command, "instructions/request") in regressed:
            _add_functions(document, changes)


def _add_sites(document: Document, changes: CommandChanges) -> None:
    if not changes.sites:
        return
    rows = []
    for site in changes.sites[:SITES_SHOWN]:
        where = [line(Span(short_name(site.function), "bold"))]
        where += [line(Span(short_path(file, number), "dim")) for file, number in site.places[:3]]
        layer = site.layer if site.nested_in is None else f"{site.layer} (backing {site.nested_in})"
        rows.append([f"{site.baseline_allocs:.2f}", f"{site.current_allocs:.2f}",
                     Span(f"{site.delta:+.2f}", "bold red" if site.delta > 0 else "green"),
                     f"{human_bytes(site.baseline_bytes)} -> {human_bytes(site.current_bytes)}", layer, where])
    document.table(f"{changes.command}: call sites whose allocations changed (per request)",
                   [("before", "right"), ("after", "right"), ("change", "right"), ("bytes", "right"),
                    ("layer", "left"), ("function and line", "left")], rows)


def _add_functions(document: Document, changes: CommandChanges) -> None:
    if not changes.functions:
        return
    document.table(f"{changes.command}: functions whose own instructions per request grew most",
                   [("before", "right"), ("after", "right"), ("change", "right"), ("function", "left")],
                   [[f"{function.baseline:,.0f}", f"{function.current:,.0f}",
                     Span(f"{function.delta:+,.0f}", "bold red"),
                     [line(Span(short_name(function.function), "bold"))]
                     + ([line(Span(short_path(function.file, None), "dim"))] if function.file else [])]
                    for function in changes.functions])


def outcome_sentence(run: RegressRun) -> list[str | Span]:
    word, style = OUTCOME_LINES[run.outcome]
    regressions = [f"{check.command} {check.metric}" for check in run.checks if check.assessment == REGRESSION]
    unmeasured = [f"{check.command} {check.metric}" for check in run.checks if check.assessment == UNMEASURED]
    if run.outcome == FAIL:
        detail = f": {len(regressions)} regression(s): " + ", ".join(regressions)
    elif run.outcome == NOT_MEASURED:
        detail = (": nothing to compare" if not run.checks else
                  ": measured in the baseline but not now: " + ", ".join(unmeasured))
    elif run.outcome == INCONCLUSIVE:
        open_rows = [f"{check.command} {check.metric}" for check in run.checks
                     if check.assessment in (UNDECIDED, UNSTABLE, NOT_COMPARABLE)]
        reasons = ([f"undecided: {', '.join(open_rows)} (a longer --budget, or a quieter machine)"] if open_rows
                   else [])
        if not run.cpu_checked:
            reasons.append("the CPU was not checked: instructions could not be counted here"
                           + (" and no rounds ran (--trials 0); run zprof regress without --trials 0"
                              if not run.current.settings.trials else
                              ", and past timings cannot show a change within the threshold; save the baseline "
                              "again so that it keeps its build" if run.compared != SIDE_BY_SIDE else ""))
        detail = ": no regression found, but " + "; ".join(reasons)
    else:
        detail = ": no regression"
    return [Span(f"Result: {word}", style), f"{detail} (exit code {run.exit_code})."]


def regress_document(run: RegressRun) -> Document:
    baseline, current = run.baseline, run.current
    document = Document(f"zprof regress: {current.target.name} against baseline {baseline.name}")
    document.paragraph(Span("zprof regress", "bold"), " on ", Span(current.target.project or "?", "cyan"),
                       f" (Zig {current.target.zig_version}, {current.target.optimize})")
    document.paragraph(f"Baseline: {describe_baseline(baseline)}")
    document.paragraph(f"Current: {describe_baseline(current)}")
    if run.compared == SIDE_BY_SIDE:
        document.paragraph("Side by side, now: the baseline's kept build and the current tree, each counted with "
                           "the same suite" + (f", then {run.rounds} round(s) of A B B A on fresh servers"
                                               if run.rounds else "") + ".")
    add_build_warnings(document, current.target)
    add_notes(document, run.warnings, prefix="warning: ")
    add_check(document, run)
    if not current.settings.trials and any(signals.noisy for signals in baseline.commands):
        document.paragraph(Span("Throughput and latency were not measured (--trials 0): only the deterministic "
                                "signals were compared.", "dim"))
    document.paragraph(*outcome_sentence(run))
    document.paragraph(Span(instruction_line(current), "dim"))
    add_notes(document, current.notes)
    return document
