"""The report of a `zprof validate` run, laid out as Zoltraak's validation procedure asks
(../REPORT.md): Executive Summary, 1. Zig Performance Profile, 2. Redis Benchmark Comparison,
3. Optimization Recommendations, 4. Performance Regression Check, 5. Final Verdict, Appendix.

Every figure comes from the run's own measurements; a section whose measurement failed says why
instead. Paths are relative to the project, so the report reads the same wherever it is rendered.
"""

from __future__ import annotations

import shlex
from collections import Counter

from zprof.analysis.entries import entry_sentence
from zprof.model.allocs import AllocsRun
from zprof.model.baseline import MINOR, REGRESSION, UNMEASURED, UNSTABLE
from zprof.model.bench import ACCEPTABLE, EXCELLENT, LOAD_BOUND, UNACCEPTABLE, BenchRun, CommandComparison
from zprof.model.memory import MemoryRun
from zprof.model.validate import (
    APPROVED,
    APPROVED_MINOR,
    NEEDS_WORK,
    NOT_JUDGED,
    NOT_MEASURED,
    OVERALL_ACCEPTABLE,
    OVERALL_EXCELLENT,
    Part,
    Recommendation,
    ValidateRun,
    VsRedis,
)
from zprof.report.bench import add_paired_ratio_note
from zprof.report.common import add_notes, short_name
from zprof.report.document import Document, Span
from zprof.report.flame import kernel_breakdown
from zprof.report.notes import sentence
from zprof.report.regress import add_check, describe_baseline, outcome_sentence
from zprof.units import human_bytes

MARKS = {OVERALL_EXCELLENT: "✅", OVERALL_ACCEPTABLE: "⚠️", EXCELLENT: "✅", ACCEPTABLE: "⚠️", UNACCEPTABLE: "❌",
         APPROVED: "✅", APPROVED_MINOR: "⚠️", NEEDS_WORK: "❌"}
VERDICT_WORDS = {APPROVED: "PERFORMANCE APPROVED", APPROVED_MINOR: "APPROVED WITH MINOR REGRESSIONS",
                 NEEDS_WORK: "NEEDS WORK",
                 NOT_JUDGED: "NOT JUDGED: figures the verdict needs were not conclusive (see section 2)",
                 NOT_MEASURED: "NOT MEASURED: the comparison with Redis did not run (see section 2)"}
TOP_SITES = 5
DEBUG_WORDS = ("Debug: the CPU time, throughput and latency here are a Debug build's, not representative of a "
               "release build (allocation counts hold); see the first recommendation")
TOP_FUNCTIONS = 5
SUMMARY_RECOMMENDATIONS = 8


def project_path(file: str | None, line: int | None, project: str | None) -> str:
    """A source location relative to the project (std's and packages' as zprof names them)."""
    if not file:
        return "?"
    if project and file.startswith(project.rstrip("/") + "/"):
        file = file[len(project.rstrip("/")) + 1:]
    elif "/zig/p/" in file:
        file = file.split("/zig/p/", 1)[1]
    return f"{file}:{line}" if line else file


def _mark(level: str | None) -> str:
    return MARKS.get(level or "", "")


def _status(status: str | None) -> str:
    if status is None:
        return "not measured"
    if status == LOAD_BOUND:
        return "load-bound (inconclusive)"
    mark = _mark(status)
    return f"{mark} {status}" if mark else status


def _band(summary: VsRedis, run: ValidateRun) -> str:
    thresholds = run.bench.thresholds if run.bench else None
    if thresholds is None:
        return summary.level
    if summary.metric == "throughput":
        bands = {EXCELLENT: f"{thresholds.throughput_excellent:g}% or more",
                 ACCEPTABLE: f"{thresholds.throughput_acceptable:g}-{thresholds.throughput_excellent:g}%",
                 UNACCEPTABLE: f"under {thresholds.throughput_acceptable:g}%"}
    else:
        bands = {EXCELLENT: f"within {thresholds.latency_excellent - 100:g}% of Redis",
                 ACCEPTABLE: f"within {thresholds.latency_acceptable - 100:g}%",
                 UNACCEPTABLE: f"more than {thresholds.latency_acceptable - 100:g}% slower"}
    return f"{summary.level}: {bands[summary.level]}"


def _vs_redis_text(summary: VsRedis | None, run: ValidateRun, what: str) -> str:
    if summary is None:
        return f"{what} not judged (no command had a conclusive comparison; see section 2)"
    compared = len(run.bench.commands) if run.bench else summary.commands
    judged = (f"median of the {summary.commands} commands judged, from {summary.low_percent:g}% to "
              f"{summary.high_percent:g}%" if summary.commands > 1 else "the one command judged")
    if compared > summary.commands:
        judged += f"; {compared - summary.commands} not judged"
    debug = ", a Debug build" if run.target.optimize == "Debug" else ""
    return (f"{what} {summary.median_percent:g}% of Redis ({judged}; {_band(summary, run)}{debug}) "
            f"{_mark(summary.level)}")


def _failed_part(run: ValidateRun, name: str) -> Part | None:
    return next((part for part in run.parts if part.name == name and part.error), None)


def _not_measured(document: Document, run: ValidateRun, name: str, what: str) -> None:
    part = _failed_part(run, name)
    reason = part.error if part else "it did not run"
    document.paragraph(Span(f"{what} was not measured: {reason}", "yellow"))


def _priority_of(run: ValidateRun) -> dict[tuple[str | None, str | None], int]:
    """Each recommended function (and command) to its priority number."""
    priorities: dict[tuple[str | None, str | None], int] = {}
    for number, recommendation in enumerate(run.recommendations, 1):
        for command in (recommendation.command or "").split(", "):
            priorities.setdefault((recommendation.function, command or None), number)
        priorities.setdefault((recommendation.function, None), number)
    return priorities


# Executive summary ---------------------------------------------------------------
def _summary(document: Document, run: ValidateRun) -> None:
    document.heading("Executive Summary", 1)
    critical = sum(r.critical for r in run.recommendations)
    document.paragraph("- ", Span("Overall Performance: ", "bold"), f"{run.overall} {_mark(run.overall)}".strip())
    if run.target.optimize == "Debug":
        document.paragraph("- ", Span("Build: ", "bold"), Span(DEBUG_WORDS, "bold yellow"))
    document.paragraph("- ", Span("vs Redis: ", "bold"), _vs_redis_text(run.throughput, run, "throughput"), "; ",
                       _vs_redis_text(run.p99, run, "p99 latency"))
    document.paragraph("- ", Span("Critical Issues: ", "bold"), str(critical))
    document.paragraph("- ", Span("Optimization Opportunities: ", "bold"), str(len(run.recommendations) - critical))
    document.paragraph("- ", Span("Verdict: ", "bold"), f"{VERDICT_WORDS[run.verdict]} {_mark(run.verdict)}".strip())
    for note in run.notes:
        document.paragraph(Span(sentence(note), "yellow"))


# 1. Zig performance profile -------------------------------------------------------
def _allocations(document: Document, run: ValidateRun) -> None:
    document.heading("Memory Allocations", 2)
    priorities = _priority_of(run)
    project = run.target.project
    for allocs in run.allocs:
        per_request = allocs.analysis.per_request
        document.paragraph(Span(allocs.command, "bold"), f": {per_request.allocs:.2f} allocations per request "
                           f"({human_bytes(per_request.bytes_allocated)} allocated, "
                           f"{human_bytes(per_request.bytes_retained)} retained per request, over "
                           f"{allocs.requests:,} requests)")
        rows = []
        # The program's own calls (not an allocator's calls to the one behind it) that happen at all per request.
        sites = [site for site in allocs.analysis.sites if site.nested_in is None
                 and (site.allocs_per_request >= 0.005 or site.retained_bytes_per_request >= 0.05)]
        for site in sorted(sites, key=lambda s: -s.allocs_per_request)[:TOP_SITES]:
            priority = priorities.get((site.function, allocs.command))
            assessment = (Span(f"OPTIMIZATION OPPORTUNITY (priority {priority})", "bold red") if priority
                          else "necessary")
            rows.append([short_name(site.function), project_path(site.file, site.line, project), site.layer,
                         f"{site.allocs_per_request:.2f}", human_bytes(site.average_bytes),
                         human_bytes(site.retained_bytes_per_request), assessment])
        if rows:
            document.table("", [("allocation", "left"), ("where", "left"), ("layer", "left"), ("per request", "right"),
                                ("average size", "right"), ("retained/req", "right"), ("assessment", "left")], rows)
        document.paragraph(_allocation_analysis(allocs))
    for part in run.parts:
        if part.name.startswith("allocs ") and part.error and not any(
                f"allocs {a.command}" == part.name for a in run.allocs):
            document.paragraph(Span(f"{part.name}: not measured: {part.error}", "yellow"))


def _allocation_analysis(allocs: AllocsRun) -> str:
    analysis = allocs.analysis
    scoped = sum(layer.allocs_per_request for layer in analysis.by_layer if layer.releases_en_bloc)
    parts = [f"{scoped:.2f} of the {analysis.per_request.allocs:.2f} allocations per request come from memory "
             "released en bloc (arenas, rewound buffers)"]
    if analysis.retained_bytes_per_new_key is not None and analysis.keys is not None:
        parts.append(f"the run added {analysis.keys.new:,} keys, {human_bytes(analysis.retained_bytes_per_new_key)} "
                     "retained per new key")
    if analysis.kept_bytes_per_request is not None:
        kept = analysis.kept_bytes_per_request
        parts.append(f"after FLUSHALL the server still held {human_bytes(kept)} per request" if kept >= 0.5
                     else "FLUSHALL gave back what the requests added")
    return "Analysis: " + "; ".join(parts) + "."


def _hot_paths(document: Document, run: ValidateRun) -> None:
    document.heading("Hot Path Analysis", 2)
    flame = run.flame
    if flame is None:
        _not_measured(document, run, "flame", "The CPU profile")
        return
    summary = flame.summary
    document.paragraph(f"{summary.total:,} CPU samples over {flame.duration_s:g} s of the mixed load "
                       f"({flame.load}).")
    priorities = _priority_of(run)
    rows = []
    for share in summary.by_self[:TOP_FUNCTIONS]:
        priority = priorities.get((share.function, None))
        assessment = (Span(f"OPTIMIZATION TARGET (priority {priority})", "bold red") if priority
                      else "expected and acceptable")
        rows.append([short_name(share.function), project_path(share.file, share.line, run.target.project),
                     share.kind, f"{share.self_share:.1%}", f"{share.total_share:.1%}", assessment])
    document.table("Top functions by CPU time (self, outside the kernel)",
                   [("function", "left"), ("where", "left"), ("kind", "left"), ("self", "right"), ("total", "right"),
                    ("assessment", "left")], rows)
    document.paragraph(f"Analysis: {summary.kernel_share:.1%} of the samples were in the kernel (system calls and "
                       f"page faults, all of them), {summary.idle_share:.1%} switched out.")
    if (parts := kernel_breakdown(summary)) is not None:
        document.paragraph(parts)
    _syscalls(document, run)
    for file in flame.files:
        if file.endswith("flame.svg"):
            document.picture("flame/flame.svg", "Flame graph under the mixed load")


# System calls shown per command in the report (the run's JSON keeps them all).
SYSCALLS_SHOWN = 4


def _syscalls(document: Document, run: ValidateRun) -> None:
    """Each command's system calls per request (zprof syscalls, one client, no pipelining), largest first."""
    if not run.syscalls:
        return
    rows = []
    for traced in run.syscalls:
        shown = [row for row in traced.rows if row.per_request >= 0.01][:SYSCALLS_SHOWN]
        calls = ", ".join(f"{row.name}{' to ' + row.target if row.target and row.target != 'socket' else ''} "
                          f"{row.per_request:.2f}" for row in shown)
        top = next((site for row in shown for site in row.sites if site.file), None)
        rows.append([traced.command, f"{traced.per_request:.2f}", calls or "none",
                     project_path(top.file, top.line, run.target.project) if top else "-"])
    document.table("System calls per request (one client, no pipelining)",
                   [("command", "left"), ("calls", "right"), ("largest", "left"), ("first call site", "left")], rows)


def _memory_usage(document: Document, run: ValidateRun) -> None:
    document.heading("Memory Usage", 2)
    bench = run.bench
    comparison = bench.memory if bench else None
    if comparison is not None and comparison.target is not None and comparison.target.rss_loaded_bytes is not None:
        target, redis = comparison.target, comparison.redis
        line = (f"RSS with {comparison.keys:,} keys: {human_bytes(target.rss_loaded_bytes)}, "
                f"{target.bytes_per_key} bytes per key")
        if redis is not None and redis.bytes_per_key is not None and comparison.percent_of_redis is not None:
            line += (f" against Redis' {redis.bytes_per_key} ({comparison.percent_of_redis:.1f}% of Redis per key); "
                     f"status {_status(comparison.status)}")
        document.paragraph(line + ".")
    else:
        _not_measured(document, run, "bench", "Memory per key against Redis")
    _memory_run(document, run.memory, run)


def _memory_run(document: Document, memory: MemoryRun | None, run: ValidateRun) -> None:
    if memory is None:
        _not_measured(document, run, "memory", "Memory over time")
        return
    growth, leak = memory.analysis.growth, memory.analysis.leak
    text = (f"Over {memory.load.requests:,} requests of {memory.command} ({memory.load.seconds:.0f} s): live bytes "
            f"{human_bytes(growth.idle_bytes)} idle, {human_bytes(growth.load_end_bytes)} at the end of the load")
    if growth.after_flush_bytes is not None:
        text += f", {human_bytes(growth.after_flush_bytes)} after FLUSHALL"
    if leak.checked:
        text += ("; leak check: " + (f"{human_bytes(leak.bytes_per_request)} per request never given back, at "
                                     + ", ".join(short_name(site.function) for site in leak.sites)
                                     if leak.detected else "nothing held after FLUSHALL grew with the requests"))
    document.paragraph(text + ".")
    for entry in memory.entries[:1]:
        document.paragraph("Per key: " + entry_sentence(entry))
        document.code("\n".join(entry.layout))
    for file in memory.files:
        if file.endswith(".svg"):
            document.picture("memory/" + file.rsplit("/", 1)[-1], "Memory over time")
            break


# 2. Redis benchmark comparison ------------------------------------------------------
def _comparison(document: Document, run: ValidateRun) -> None:
    document.heading("2. Redis Benchmark Comparison", 1)
    bench = run.bench
    if bench is None:
        _not_measured(document, run, "bench", "The comparison with Redis")
        return
    settings = bench.settings
    document.heading("Test Configuration", 2)
    for text in (f"Redis version: {bench.reference.version}",
                 f"Target build mode: {run.target.optimize or 'as given'}",
                 f"Commands: {', '.join(settings.commands)}",
                 f"Requests per command: at least {settings.requests:,} and {settings.min_trial_seconds:g} s per "
                 f"trial, {settings.trials} trial(s), fresh servers alternating",
                 f"Clients: {settings.clients}; pipeline: {settings.pipeline}; load: {settings.load}"):
        document.paragraph("- " + text)
    document.heading("Throughput Results", 2)
    compared = [command for command in bench.commands if not command.failed]
    document.table("", [("Command", "left"), ("Redis (req/s)", "right"), ("Target (req/s)", "right"),
                        ("% of Redis", "right"), ("Status", "left")],
                   [[c.command, _rps(c, "redis"), _rps(c, "target"),
                     f"{c.throughput.percent:.1f}%" if c.throughput else "-", _status(c.throughput_status)]
                    for c in compared])
    add_paired_ratio_note(document, compared)
    document.paragraph(_vs_redis_text(run.throughput, run, "Overall: throughput"))
    document.heading("Latency Results (p99 in ms)", 2)
    document.table("", [("Command", "left"), ("Redis p99", "right"), ("Target p99", "right"),
                        ("Difference", "right"), ("Status", "left")],
                   [[c.command, _p99(c, "redis"), _p99(c, "target"),
                     f"{c.p99.percent - 100:+.1f}%" if c.p99 else "-", _status(c.latency_status)] for c in compared])
    document.paragraph(_vs_redis_text(run.p99, run, "Overall: p99 latency"))
    for command in bench.commands:
        if command.failed and command.failure is not None:
            document.paragraph(Span(f"{command.command} failed on {command.failure.server}: "
                                    f"{command.failure.first_error}", "yellow"))
    _memory_table(document, bench)


def _rps(command: CommandComparison, server: str) -> str:
    figures = command.target if server == "target" else command.redis
    return f"{figures.rps.median:,.0f}" if figures else "-"


def _p99(command: CommandComparison, server: str) -> str:
    figures = command.target if server == "target" else command.redis
    value = figures.latency_ms.get("p99") if figures else None
    return f"{value:.3f}" if value is not None else "-"


def _memory_table(document: Document, bench: BenchRun) -> None:
    document.heading("Memory Efficiency", 2)
    comparison = bench.memory
    if comparison is None or comparison.target is None or comparison.redis is None:
        document.paragraph("Not measured: the comparison stored no keys.")
        return
    target, redis = comparison.target, comparison.redis

    def row(metric: str, redis_value: float | None, target_value: float | None, bytes_: bool = True) -> list:
        shown = [human_bytes(v) if bytes_ and v is not None else (f"{v:,}" if v is not None else "-")
                 for v in (redis_value, target_value)]
        difference = (f"{(target_value / redis_value - 1) * 100:+.1f}%" if redis_value and target_value is not None
                      else "")
        return [metric, *shown, difference, ""]

    rows = [row("RSS empty", redis.rss_empty_bytes, target.rss_empty_bytes),
            row(f"RSS with {comparison.keys:,} keys", redis.rss_loaded_bytes, target.rss_loaded_bytes),
            row("RSS per 1M keys", redis.rss_per_million_keys, target.rss_per_million_keys),
            row("bytes per key", redis.bytes_per_key, target.bytes_per_key, bytes_=False)]
    rows[2][4] = _status(comparison.status)
    document.table("", [("Metric", "left"), ("Redis", "right"), ("Target", "right"), ("Difference", "right"),
                        ("Status", "left")], rows)


# 3. Recommendations -------------------------------------------------------------------
def _recommendations(document: Document, run: ValidateRun) -> None:
    document.heading("3. Optimization Recommendations", 1)
    if not run.recommendations:
        document.paragraph("No rule found an optimisation in what was measured.")
        return
    for number, recommendation in enumerate(run.recommendations, 1):
        _recommendation(document, number, recommendation, run.target.project)


def _recommendation(document: Document, number: int, recommendation: Recommendation, project: str | None) -> None:
    title = ("CRITICAL: " if recommendation.critical else "") + recommendation.title
    document.heading(f"Priority {number}: {title}", 2)
    if recommendation.file:
        document.paragraph("- ", Span("Where: ", "bold"),
                           project_path(recommendation.file, recommendation.line, project))
    document.paragraph("- ", Span("Impact: ", "bold"), f"{recommendation.impact} ({recommendation.impact_reason})")
    document.paragraph("- ", Span("Difficulty: ", "bold"), recommendation.difficulty)
    document.paragraph("- ", Span("Evidence: ", "bold"), recommendation.evidence)
    document.paragraph("- ", Span("Estimated Improvement: ", "bold"), recommendation.bound)
    document.paragraph("- ", Span("Implementation: ", "bold"), recommendation.fix)
    if recommendation.sketch:
        document.code(recommendation.sketch, "zig")


# 4. Regression check ------------------------------------------------------------------
def _regression(document: Document, run: ValidateRun) -> None:
    title = "4. Performance Regression Check"
    if run.regress is None:
        document.heading(title, 1)
        document.paragraph(f"Not measured: {run.regression_missing}.")
        return
    regress = run.regress
    add_check(document, regress, title, 1)
    document.paragraph(f"Against baseline {describe_baseline(regress.baseline)}.")
    add_notes(document, regress.warnings, prefix="warning: ")
    if not regress.current.settings.trials:
        document.paragraph("Throughput and latency were not compared with the baseline (--quick: only the "
                           "deterministic signals, allocations and instructions per request).")
    document.paragraph(*outcome_sentence(regress))


def _regression_text(run: ValidateRun) -> str:
    if run.regress is None:
        return f"Regression: not checked ({run.regression_missing})"
    counts = Counter(check.assessment for check in run.regress.checks)
    found = ", ".join(f"{counts[kind]} {kind}" for kind in (REGRESSION, MINOR, UNSTABLE, UNMEASURED) if counts[kind])
    return f"Regression against {run.regress.baseline.name}: {run.regress.outcome}" + (f" ({found})" if found else "")


# 5. Final verdict ---------------------------------------------------------------------
def _verdict(document: Document, run: ValidateRun) -> None:
    document.heading("5. Final Verdict", 1)
    document.paragraph(Span(f"{VERDICT_WORDS[run.verdict]} {_mark(run.verdict)}".strip(), "bold"))
    if run.target.optimize == "Debug":
        document.paragraph(Span(DEBUG_WORDS, "bold yellow"))
    memory = run.bench.memory if run.bench else None
    lines = [_vs_redis_text(run.throughput, run, "Throughput"), _vs_redis_text(run.p99, run, "Latency: p99"),
             (f"Memory: {memory.percent_of_redis:.1f}% of Redis per key ({_status(memory.status)})"
              if memory is not None and memory.percent_of_redis is not None else "Memory: not compared"),
             _regression_text(run)]
    for text in lines:
        document.paragraph("- " + text)
    document.paragraph(Span("Action items:", "bold"))
    for number, item in enumerate(run.action_items, 1):
        document.paragraph(f"{number}. {item}")
    _decision(document, run)
    if run.verdict in (APPROVED, APPROVED_MINOR):
        document.paragraph(Span("Ready for: Commit", "bold green"))


def _decision(document: Document, run: ValidateRun) -> None:
    """What decided the verdict: what blocks, or what was left undecided (analysis.judgement's table)."""
    if run.blockers:
        document.paragraph(Span("Blocked by: " + "; ".join(run.blockers), "bold red"))
    elif run.undecided:
        document.paragraph(Span("Not judged: " + "; ".join(run.undecided), "magenta"))


# Appendix -------------------------------------------------------------------------------
def _appendix(document: Document, run: ValidateRun) -> None:
    document.heading("Appendix: Raw Benchmark Data", 1)
    document.paragraph(f"Each part of this validation, as the command that makes it alone ({run.seconds:.0f} s in "
                       "all); each part's run is saved in its directory:")
    document.code("\n".join(f"{shlex.join(part.command_line)}    # {part.seconds:.0f} s"
                            + (f", failed: {part.error}" if part.error else "") for part in run.parts), "sh")
    if run.bench is None:
        return
    document.table("Every measured run of the comparison, in the order it ran",
                   [("trial", "right"), ("server", "left"), ("command", "left"), ("tool", "left"),
                    ("requests", "right"), ("seconds", "right"), ("req/s", "right"), ("p50 ms", "right"),
                    ("p99 ms", "right")],
                   [[str(record.trial), record.server, record.command, record.tool, f"{record.requests:,}",
                     f"{record.seconds:.2f}", f"{record.rps:,.0f}", _ms(record.latency_ms.p50),
                     _ms(record.latency_ms.p99)] for record in run.bench.trials])


def _ms(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "-"


def validate_document(run: ValidateRun) -> Document:
    document = Document(f"Performance Validation Report: {run.subject}")
    _summary(document, run)
    document.heading("1. Zig Performance Profile", 1)
    _allocations(document, run)
    _hot_paths(document, run)
    _memory_usage(document, run)
    _comparison(document, run)
    _recommendations(document, run)
    _regression(document, run)
    _verdict(document, run)
    _appendix(document, run)
    return document


def validate_summary(run: ValidateRun, directory: str) -> Document:
    """What `zprof validate` prints: the executive summary, the recommendations' titles, the verdict."""
    document = Document(f"Performance Validation Report: {run.subject}")
    document.paragraph(Span(document.title, "bold"))
    _summary(document, run)
    if run.recommendations:
        document.paragraph(Span("Recommendations:", "bold"))
        for number, recommendation in enumerate(run.recommendations[:SUMMARY_RECOMMENDATIONS], 1):
            document.paragraph(f"  {number}. " + ("CRITICAL: " if recommendation.critical else "")
                               + f"{recommendation.title} ({recommendation.impact} impact; "
                               f"{recommendation.bound})")
        if len(run.recommendations) > SUMMARY_RECOMMENDATIONS:
            document.paragraph(f"  ... and {len(run.recommendations) - SUMMARY_RECOMMENDATIONS} more in the report")
    for part in run.parts:
        if part.error:
            document.paragraph(Span(f"{part.name} was not measured: {part.error}", "yellow"))
    _decision(document, run)
    document.paragraph(f"Report: {directory}/report.md, report.html, report.json")
    return document
