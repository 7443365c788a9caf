"""The report of a `zprof bench` run."""

from __future__ import annotations

from zprof.load.workloads import KEY_BYTES, VALUE_BYTES
from zprof.model.bench import (
    ACCEPTABLE,
    EXCELLENT,
    FAILED,
    INDICATIVE,
    LOAD_BOUND,
    REDIS,
    UNACCEPTABLE,
    UNSTABLE,
    BenchRun,
    BenchSettings,
    CommandComparison,
    MemoryComparison,
    ServerFigures,
    Verdict,
)
from zprof.model.common import RatioEstimate
from zprof.report.common import add_build_warnings, add_notes
from zprof.report.document import Document, Span
from zprof.units import human_bytes

STYLE = {EXCELLENT: "green", ACCEPTABLE: "yellow", UNACCEPTABLE: "bold red", UNSTABLE: "magenta", FAILED: "bold red",
         LOAD_BOUND: "magenta", INDICATIVE: "yellow"}


def _verdict_span(verdict: Verdict) -> Span:
    # "?": the 95% interval reaches into a neighbouring level.
    return Span(verdict.level + ("?" if verdict.conclusive is False else ""), STYLE[verdict.level])


def _percent(estimate: RatioEstimate | None) -> str:
    return "-" if estimate is None else f"{estimate.percent:.1f}%"


def _interval(estimate: RatioEstimate | None) -> str:
    if estimate is None or estimate.ci95 is None:
        return "-"
    if not estimate.interval_says_something:
        return f"too wide ({estimate.pairs} pairs)"
    low, high = estimate.ci95
    digits = 1 if high < 10 else 0  # "2.2-2.3%", not "2-2%"
    return f"{low:.{digits}f}-{high:.{digits}f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _latencies(figures: ServerFigures | None) -> str:
    if figures is None:
        return "-"
    return " / ".join(_ms(figures.latency_ms[name]) for name in ("p50", "p99", "p999"))


def _status(status: str | None, verdict: Verdict | None) -> Span:
    if status is None:
        return Span("-", "dim")
    doubt = "?" if status in (EXCELLENT, ACCEPTABLE, UNACCEPTABLE) and verdict and verdict.conclusive is False else ""
    return Span(status + doubt, STYLE[status])


def _cv(figures: ServerFigures | None) -> str:
    return "-" if figures is None or figures.rps.cv_percent is None else f"{figures.rps.cv_percent:.1f}%"


def _cpu(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _rps(figures: ServerFigures | None) -> str:
    return "-" if figures is None else f"{figures.rps.median:,.0f}"


def bench_document(run: BenchRun) -> Document:
    settings, target, reference = run.settings, run.target.name, "redis"
    machine = run.machine
    document = Document(f"zprof bench: {target} against redis-server {run.reference.version}")
    document.paragraph(Span("zprof bench", "bold"), ": ", Span(target, "cyan"), f" ({run.target.binary}) against ",
                       Span(f"redis-server {run.reference.version}", "cyan"))
    document.paragraph(f"load: {settings.load}; {settings.trials} trial(s) of at least {settings.requests:,} requests "
                       f"and {settings.min_trial_seconds:g} s per command, fresh servers alternating in pairs, after a "
                       f"discarded warm-up of {settings.warmup_requests:,}")
    after = f", {run.load_average_after[0]} after" if run.load_average_after else ""
    document.paragraph(f"machine: {machine.cores} cores ({machine.model}), {machine.kernel}, "
                       f"load average {machine.load_average[0]} before{after}")
    add_build_warnings(document, run.target)

    shown = [command for command in run.commands if command.failed or (command.target and command.redis)]
    if shown:
        _throughput_table(document, shown, target, reference)
        _latency_table(document, shown, settings)
    if run.memory is not None:
        _memory_table(document, run.memory, target)
    for command in run.failed:
        failure = command.failure
        assert failure is not None
        server = target if failure.server == "target" else reference
        count = (f"{failure.errors:,} error(s) in {failure.requests:,} requests"
                 if failure.errors is not None and failure.requests is not None else "stopped at the first error")
        document.paragraph(Span("failed ", "bold red"), f"{command.command} on {server} (trial {failure.trial}): "
                           f"{count}; first: {failure.first_error}")
    add_notes(document, run.limitations, prefix="limitation: ")
    if run.verdict is not None:
        # Name what set the overall level, unless everything is excellent.
        causes = [name + ("?" if item.conclusive is False else "") for name, item in run.findings()
                  if item.level == run.verdict and run.verdict != EXCELLENT]
        document.paragraph("Verdict: ", _verdict_span(Verdict(run.verdict, run.verdict_conclusive)),
                           f" ({', '.join(causes)})" if causes else "",
                           Span("  ? = the 95% interval reaches into another level"
                                if run.verdict_conclusive is False else "", "dim"))
    if run.error:
        document.paragraph(Span("The run did not finish: these figures cover what was measured before.", "red"))
    return document


def _throughput_table(document: Document, commands: list[CommandComparison], target: str, reference: str) -> None:
    names = ("Command", "Redis", "Target", "% of Redis", "Status", "95% CI", f"CV {reference}/{target}",
             f"CPU % {reference}/{target}/load")
    rows = []
    for command in commands:
        redis, ours = command.redis, command.target
        load = [f.load_generator_cpu_percent for f in (redis, ours) if f is not None]
        rows.append([
            command.command, _rps(redis), _rps(ours), _percent(command.throughput),
            _status(command.throughput_status, command.throughput_verdict), _interval(command.throughput),
            f"{_cv(redis)} / {_cv(ours)}",
            f"{_cpu(redis.cpu_percent if redis else None)} / {_cpu(ours.cpu_percent if ours else None)} / "
            f"{_cpu(max(load) if load else None)}",
        ])
    document.table("Throughput (req/s, median over trials)",
                   [(name, "left" if name in ("Command", "Status") else "right") for name in names], rows)
    add_paired_ratio_note(document, commands)


def add_paired_ratio_note(document: Document, commands: list[CommandComparison]) -> None:
    """Where "% of Redis" is not the quotient of the columns beside it, why."""
    differing = [command.command for command in commands if _quotient_differs(command)]
    if differing:
        document.paragraph(Span(
            f"% of Redis ({', '.join(differing)}) is the geometric mean of each trial's ratio, the two servers of a "
            "trial measured back to back, so a slow spell of the machine falls on both; it differs from the "
            "quotient of the median columns, which pairs figures from different trials.", "dim"))


def _quotient_differs(command: CommandComparison) -> bool:
    """Whether the paired ratio and the columns' quotient would print differently (by a tenth of a point)."""
    if command.throughput is None or command.target is None or command.redis is None or not command.redis.rps.median:
        return False
    return abs(100 * command.target.rps.median / command.redis.rps.median - command.throughput.percent) >= 0.1


def _latency_table(document: Document, commands: list[CommandComparison], settings: BenchSettings) -> None:
    per = f", per batch of {settings.pipeline}" if settings.pipeline > 1 else ""
    if settings.tool == "redis-benchmark":
        source = f"p50 / p99, p99.9 from zprof's driver{per}"
    else:
        source = f"p50 / p99 / p99.9 from zprof's driver{per}"
    names = ("Command", "Redis", "Target", "p99 % of Redis", "Status", "95% CI", "p50/p99 by")
    document.table(f"Latency (ms, median over trials: {source})",
                   [(name, "left" if name in ("Command", "Status", "p50/p99 by") else "right") for name in names],
                   [[command.command, _latencies(command.redis), _latencies(command.target), _percent(command.p99),
                     _status(command.latency_status, command.latency_verdict), _interval(command.p99),
                     command.tool or "-"] for command in commands])


def _memory_table(document: Document, memory: MemoryComparison, target: str) -> None:
    def size(value: float | None) -> str:
        return "-" if value is None else human_bytes(value)

    records = (memory.redis, memory.target)

    def row(name: str, show) -> list:  # type: ignore[no-untyped-def]
        return [name, *("-" if record is None else show(record) for record in records)]

    document.table(f"Memory: RSS empty, then with {memory.keys:,} keys ({KEY_BYTES}-byte names, "
                   f"{VALUE_BYTES}-byte values)",
                   [("Metric", "left"), ("Redis", "right"), ("Target", "right"), ("% of Redis", "right"),
                    ("Status", "left")], [
        [*row("RSS empty", lambda r: size(r.rss_empty_bytes)), "", ""],
        [*row("RSS loaded", lambda r: size(r.rss_loaded_bytes)), "", ""],
        [*row("RSS per 1M keys", lambda r: size(r.rss_per_million_keys)),
         "-" if memory.percent_of_redis is None else f"{memory.percent_of_redis:.1f}%",
         Span(memory.status, STYLE[memory.status])],
        [*row("bytes per key", lambda r: "-" if r.bytes_per_key is None else f"{r.bytes_per_key:.1f}"), "", ""],
        [*row("keys stored (DBSIZE)", lambda r: "-" if r.keys_stored is None else f"{r.keys_stored:,}"), "", ""],
    ])
    for name, record in ((target, memory.target), (REDIS, memory.redis)):
        if record is not None and record.errors:
            document.paragraph(Span(f"{name}: loading the keys failed ({record.first_error})", "red"))
