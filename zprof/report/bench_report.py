"""`zprof bench`'s run as one artifact: its JSON form and its terminal tables."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from zprof.analysis.stats import RatioEstimate
from zprof.analysis.verdicts import (
    ACCEPTABLE,
    EXCELLENT,
    FAILED,
    INDICATIVE,
    LOAD_BOUND,
    UNACCEPTABLE,
    UNSTABLE,
    CommandComparison,
    MemoryComparison,
    ServerFigures,
    Thresholds,
    Verdict,
    worst,
)
from zprof.collect.machine import MachineInfo
from zprof.load.benchmark_runs import KEY_BYTES, REDIS, TARGET, VALUE_BYTES, MemoryRecord, RunRecord
from zprof.load.calibration import MIN_TRIAL_SECONDS
from zprof.report.terminal import human_bytes, render_build_warnings

SCHEMA = "zprof.bench/3"
STYLE = {EXCELLENT: "green", ACCEPTABLE: "yellow", UNACCEPTABLE: "bold red", UNSTABLE: "magenta", FAILED: "bold red",
         LOAD_BOUND: "magenta", INDICATIVE: "yellow"}


@dataclass
class TargetDescription:
    name: str
    binary: str
    project: str | None
    zig_version: str | None
    build_cached: bool | None
    start_command: str
    build_warnings: list[str] = field(default_factory=list)


@dataclass
class ReferenceDescription:
    binary: str
    version: str
    start_command: str


@dataclass
class BenchSettings:
    commands: list[str]
    trials: int
    requests: int
    warmup_requests: int
    clients: int
    pipeline: int
    keyspace: int
    keys: int
    tool: str
    load: str
    deadline_s: float | None
    subscribers: int | None = None  # PUBLISH's, when it was compared
    min_trial_seconds: float = MIN_TRIAL_SECONDS


@dataclass
class BenchReport:
    target: TargetDescription
    reference: ReferenceDescription
    settings: BenchSettings
    thresholds: Thresholds
    commands: list[CommandComparison]
    memory: MemoryComparison | None
    limitations: list[str]
    machine: MachineInfo
    load_average_after: tuple[float, float, float] | None
    trials: list[RunRecord]
    # Per server ("target", "redis"): {"starts": n, "start_crashes": n}.
    starts: dict[str, dict[str, int]] = field(default_factory=dict)
    error: str | None = None

    def verdicts(self) -> list[tuple[str, Verdict]]:
        """Every verdict of the run, named: "SET throughput", "SET p99", "memory"; those marked unstable or
        failed are left out (their level is not a finding)."""
        named = [finding for command in self.commands for finding in command.findings()]
        if self.memory and self.memory.verdict and self.memory.status == self.memory.verdict.level:
            named.append(("memory", self.memory.verdict))
        return named

    @property
    def verdict(self) -> str | None:
        return worst([verdict.level for _, verdict in self.verdicts()])

    @property
    def verdict_conclusive(self) -> bool | None:
        """False when a verdict at the overall level has a 95% interval reaching a better level."""
        if self.verdict is None:
            return None
        return all(verdict.conclusive is not False for _, verdict in self.verdicts() if verdict.level == self.verdict)

    @property
    def failed(self) -> list[CommandComparison]:
        return [command for command in self.commands if command.failed]

    def to_json(self) -> dict:
        return {
            "schema": SCHEMA,
            "verdict": self.verdict,
            "verdict_conclusive": self.verdict_conclusive,
            "complete": self.error is None,
            "error": self.error,
            "target": asdict(self.target),
            "reference": asdict(self.reference),
            "settings": asdict(self.settings),
            "thresholds": asdict(self.thresholds),
            "commands": [_command_json(command) for command in self.commands],
            "memory": _memory_json(self.memory) if self.memory else None,
            "limitations": self.limitations,
            "machine": {**asdict(self.machine), "load_average_after": self.load_average_after},
            "starts": self.starts,
            "trials": [asdict(record) for record in self.trials],
        }

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")


def _ratio_json(estimate: RatioEstimate | None) -> dict | None:
    if estimate is None:
        return None
    return {"value": estimate.percent, "ci95": list(estimate.ci95) if estimate.ci95 else None,
            "pairs": estimate.pairs}


def _fraction(estimate: RatioEstimate | None) -> float | None:
    return None if estimate is None else round(estimate.percent / 100, 4)


def _fraction_ci(estimate: RatioEstimate | None) -> list[float] | None:
    return None if estimate is None or estimate.ci95 is None else [round(b / 100, 4) for b in estimate.ci95]


def _trial_json(record: RunRecord) -> dict:
    latency = record.latency_ms
    figures = {"trial": record.trial, "rps": record.rps, "p50_ms": latency.p50, "p95_ms": latency.p95,
               "p99_ms": latency.p99, "p999_ms": latency.p999, "cpu_pct": record.cpu.server_percent,
               "errors": record.errors, "requests": record.requests, "seconds": record.seconds,
               "driver": record.tool, "p999_source": record.p999_source, "p999_requests": record.p999_requests,
               "tool_rps": record.tool_rps}
    if record.subscribers is not None:
        figures.update(subscribers=record.subscribers, deliveries=record.deliveries,
                       expected_deliveries=record.expected_deliveries)
    return figures


def _side_json(figures: ServerFigures | None, errors: int) -> dict:
    """The contract's per-server object: medians over the server's successful trials. A server without
    one (its command failed) has rps 0 and no latencies."""
    if figures is None:
        return {"rps": 0.0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "p999_ms": None, "cpu_pct": None,
                "errors": errors, "trials": []}
    rps = figures.rps
    return {
        "rps": round(rps.median, 1),
        **{f"{name}_ms": figures.latency_ms[name] for name in ("p50", "p95", "p99", "p999")},
        "cpu_pct": figures.cpu_percent,
        "errors": errors,
        "trials": [_trial_json(record) for record in figures.records],
        "rps_stats": {"median": rps.median, "min": rps.min, "max": rps.max, "cv_pct": rps.cv_percent, "n": rps.n},
        "avg_ms": figures.latency_ms["avg"],
        "max_ms": figures.latency_ms["max"],
        "load_generator_cpu_pct": figures.load_generator_cpu_percent,
        "machine_cpu_pct": figures.machine_cpu_percent,
    }


def _command_json(command: CommandComparison) -> dict:
    return {
        "command": command.command,
        "args": command.args,
        "driver": command.tool,
        "redis": _side_json(command.redis, command.errors(REDIS)),
        "target": _side_json(command.target, command.errors(TARGET)),
        "throughput_ratio": _fraction(command.throughput),
        "throughput_ratio_ci95": _fraction_ci(command.throughput),
        "p99_ratio": _fraction(command.p99),
        "p99_ratio_ci95": _fraction_ci(command.p99),
        "throughput_status": command.throughput_status,
        "latency_status": command.latency_status,
        "throughput_percent_of_redis": _ratio_json(command.throughput),
        "p99_percent_of_redis": _ratio_json(command.p99),
        "throughput_verdict": asdict(command.throughput_verdict) if command.throughput_verdict else None,
        "latency_verdict": asdict(command.latency_verdict) if command.latency_verdict else None,
        "unstable": command.unstable,
        "latency_unstable": command.latency_unstable,
        "load_generator_bound": command.load_generator_bound,
        "machine_saturated": command.machine_saturated,
        "first_error": command.failure.first_error if command.failure else None,
        "failure": asdict(command.failure) if command.failure else None,
    }


def _server_memory_json(record: MemoryRecord | None) -> dict | None:
    if record is None:
        return None
    return {**asdict(record), "rss_per_million_keys": record.rss_per_million_keys,
            "bytes_per_key": record.bytes_per_key}


def _memory_json(memory: MemoryComparison) -> dict:
    return {"keys": memory.keys, "key_bytes": KEY_BYTES, "value_bytes": VALUE_BYTES,
            "target": _server_memory_json(memory.target), "redis": _server_memory_json(memory.redis),
            "ratio": None if memory.percent_of_redis is None else round(memory.percent_of_redis / 100, 4),
            "percent_of_redis": memory.percent_of_redis, "status": memory.status,
            "verdict": asdict(memory.verdict) if memory.verdict else None}


# Terminal


def _verdict_text(verdict: Verdict | None) -> Text:
    if verdict is None:
        return Text("-", style="dim")
    # "?": the 95% interval reaches into a neighbouring level.
    return Text(verdict.level + ("?" if verdict.conclusive is False else ""), style=STYLE[verdict.level])


def _percent(estimate: RatioEstimate | None) -> str:
    return "-" if estimate is None else f"{estimate.percent:.1f}%"


def _interval(estimate: RatioEstimate | None) -> str:
    if estimate is None or estimate.ci95 is None:
        return "-"
    low, high = estimate.ci95
    digits = 1 if high < 10 else 0  # "2.2-2.3%", not "2-2%"
    return f"{low:.{digits}f}-{high:.{digits}f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _latencies(figures: ServerFigures | None) -> str:
    if figures is None:
        return "-"
    return " / ".join(_ms(figures.latency_ms[name]) for name in ("p50", "p99", "p999"))


def _status_text(command: CommandComparison, status: str | None, verdict: Verdict | None) -> Text:
    if status is None:
        return Text("-", style="dim")
    # "?": the 95% interval reaches into a neighbouring level.
    doubt = "?" if status in (EXCELLENT, ACCEPTABLE, UNACCEPTABLE) and verdict and verdict.conclusive is False else ""
    return Text(status + doubt, style=STYLE[status])


def _cv(figures: ServerFigures | None) -> str:
    return "-" if figures is None or figures.rps.cv_percent is None else f"{figures.rps.cv_percent:.1f}%"


def _cpu(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def render_bench(report: BenchReport, console: Console) -> None:
    settings, target, reference = report.settings, report.target.name, "redis"
    machine = report.machine
    console.print(f"[bold]zprof bench[/]: [cyan]{target}[/] ({report.target.binary}) against "
                  f"[cyan]redis-server {report.reference.version}[/]")
    console.print(f"load: {settings.load}; {settings.trials} trial(s) of at least {settings.requests:,} requests and "
                  f"{settings.min_trial_seconds:g} s per command, fresh servers alternating in pairs, after a "
                  f"discarded warm-up of {settings.warmup_requests:,}")
    after = f", {report.load_average_after[0]} after" if report.load_average_after else ""
    console.print(f"machine: {machine.cores} cores ({machine.model}), {machine.kernel}, "
                  f"load average {machine.load_average[0]} before{after}")
    render_build_warnings(report.target.build_warnings, console)

    shown = [command for command in report.commands if command.failed or (command.target and command.redis)]
    if shown:
        _throughput_table(shown, target, reference, console)
        _latency_table(shown, target, reference, settings, console)
    if report.memory is not None:
        _memory_table(report.memory, target, reference, console)
    for command in report.failed:
        failure = command.failure
        assert failure is not None
        server = target if failure.server == "target" else reference
        count = (f"{failure.errors:,} error(s) in {failure.requests:,} requests"
                 if failure.errors is not None and failure.requests is not None else "stopped at the first error")
        console.print(Text.assemble(("failed ", "bold red"), f"{command.command} on {server} (trial {failure.trial}): "
                                    f"{count}; first: {failure.first_error}"))
    for limitation in report.limitations:
        console.print(Text("limitation: " + limitation, style="yellow"))
    verdict = report.verdict
    if verdict is not None:
        # Name what set the overall level, unless everything is excellent.
        causes = [name + ("?" if item.conclusive is False else "") for name, item in report.verdicts()
                  if item.level == verdict and verdict != EXCELLENT]
        console.print(Text.assemble(
            "Verdict: ", _verdict_text(Verdict(verdict, report.verdict_conclusive)),
            f" ({', '.join(causes)})" if causes else "",
            ("  ? = the 95% interval reaches into another level" if report.verdict_conclusive is False else "", "dim")))
    if report.error:
        console.print(Text("The run did not finish: these figures cover what was measured before.", style="red"))


def _throughput_table(commands: list[CommandComparison], target: str, reference: str, console: Console) -> None:
    table = Table(title="Throughput (req/s, median over trials)", title_justify="left")
    for column in ("Command", "Redis", "Target", "% of Redis", "Status", "95% CI", f"CV {reference}/{target}",
                   f"CPU % {reference}/{target}/load"):
        table.add_column(column, justify="left" if column in ("Command", "Status") else "right")
    for command in commands:
        redis, ours = command.redis, command.target
        load = [f.load_generator_cpu_percent for f in (redis, ours) if f is not None]
        table.add_row(
            command.command, _rps(redis), _rps(ours), _percent(command.throughput),
            _status_text(command, command.throughput_status, command.throughput_verdict),
            _interval(command.throughput), f"{_cv(redis)} / {_cv(ours)}",
            f"{_cpu(redis.cpu_percent if redis else None)} / {_cpu(ours.cpu_percent if ours else None)} / "
            f"{_cpu(max(load) if load else None)}",
        )
    console.print(table)


def _rps(figures: ServerFigures | None) -> str:
    return "-" if figures is None else f"{figures.rps.median:,.0f}"


def _latency_table(commands: list[CommandComparison], target: str, reference: str, settings: BenchSettings,
                   console: Console) -> None:
    per = f", per batch of {settings.pipeline}" if settings.pipeline > 1 else ""
    if settings.tool == "redis-benchmark":
        source = f"p50 / p99, p99.9 from zprof's driver{per}"
    else:
        source = f"p50 / p99 / p99.9 from zprof's driver{per}"
    table = Table(title=f"Latency (ms, median over trials: {source})", title_justify="left")
    for column in ("Command", "Redis", "Target", "p99 % of Redis", "Status", "95% CI", "p50/p99 by"):
        table.add_column(column, justify="left" if column in ("Command", "Status", "p50/p99 by") else "right")
    for command in commands:
        table.add_row(command.command, _latencies(command.redis), _latencies(command.target), _percent(command.p99),
                      _status_text(command, command.latency_status, command.latency_verdict), _interval(command.p99),
                      command.tool or "-")
    console.print(table)


def _memory_table(memory: MemoryComparison, target: str, reference: str, console: Console) -> None:
    table = Table(title=f"Memory: RSS empty, then with {memory.keys:,} keys "
                        f"({KEY_BYTES}-byte names, {VALUE_BYTES}-byte values)", title_justify="left")
    for column in ("Metric", "Redis", "Target", "% of Redis", "Status"):
        table.add_column(column, justify="left" if column in ("Metric", "Status") else "right")

    def size(value: float | None) -> str:
        return "-" if value is None else human_bytes(value)

    def row(name: str, show: Callable[[MemoryRecord], str]) -> list[str]:
        return [name, *("-" if record is None else show(record) for record in (memory.redis, memory.target))]

    table.add_row(*row("RSS empty", lambda r: size(r.rss_empty_bytes)), "", "")
    table.add_row(*row("RSS loaded", lambda r: size(r.rss_loaded_bytes)), "", "")
    table.add_row(*row("RSS per 1M keys", lambda r: size(r.rss_per_million_keys)),
                  "-" if memory.percent_of_redis is None else f"{memory.percent_of_redis:.1f}%",
                  Text(memory.status, style=STYLE[memory.status]))
    table.add_row(*row("bytes per key", lambda r: "-" if r.bytes_per_key is None else f"{r.bytes_per_key:.1f}"),
                  "", "")
    table.add_row(*row("keys stored (DBSIZE)", lambda r: "-" if r.keys_stored is None else f"{r.keys_stored:,}"),
                  "", "")
    console.print(table)
    for name, record in ((target, memory.target), (reference, memory.redis)):
        if record is not None and record.errors:
            console.print(Text(f"{name}: loading the keys failed ({record.first_error})", style="red"))
