"""The reports of `zprof baseline`: one baseline, the list of them, and their history in commit
order (tables and a picture, drawn with matplotlib)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from zprof.analysis.regression import cv_percent, fingerprint
from zprof.analysis.stats import paired_ratio
from zprof.errors import ZprofError
from zprof.model.baseline import Baseline, CommandSignals, NoisySignals
from zprof.report.common import add_build_warnings, add_notes
from zprof.report.document import Document, Span
from zprof.report.regress import describe_baseline, instruction_line
from zprof.units import human_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

HISTORY_SVG, HISTORY_PNG = "baseline-history.svg", "baseline-history.png"
PNG_DPI = 120


def redis_percent(noisy: NoisySignals | None) -> float | None:
    """The target's throughput in percent of Redis' over the trials where both ran (geometric mean)."""
    if noisy is None or not noisy.redis:
        return None
    redis = {trial.trial: trial.rps for trial in noisy.redis}
    pairs = [(trial.rps, redis[trial.trial]) for trial in noisy.target if trial.trial in redis]
    estimate = paired_ratio([target for target, _ in pairs], [reference for _, reference in pairs])
    return estimate.percent if estimate else None


def _median(values: list[float | None]) -> float | None:
    kept = [value for value in values if value is not None]
    return statistics.median(kept) if kept else None


def _throughput(noisy: NoisySignals | None) -> str:
    if noisy is None or not noisy.target:
        return "-"
    rates = [trial.rps for trial in noisy.target]
    spread = cv_percent(rates)
    return f"{statistics.median(rates):,.0f}" + (f" (CV {spread:.0f}%, {len(rates)})" if spread is not None else "")


def _latency(noisy: NoisySignals | None) -> str:
    if noisy is None or not noisy.target:
        return "-"
    p50, p99 = (_median([getattr(trial, name) for trial in noisy.target]) for name in ("p50_ms", "p99_ms"))
    return " / ".join("-" if value is None else f"{value:.3f}" for value in (p50, p99))


def _instructions(signals: CommandSignals) -> str:
    return "-" if signals.instructions is None else f"{signals.instructions.per_request:,.0f}"


def baseline_document(baseline: Baseline) -> Document:
    """`zprof baseline show NAME`: every stored figure, per command."""
    document = Document(f"zprof baseline {baseline.name}")
    target, settings = baseline.target, baseline.settings
    document.paragraph(Span(f"Baseline {baseline.name}", "bold"), " of ", Span(target.project or "?", "cyan"),
                       f" (Zig {target.zig_version}, {target.optimize})")
    document.paragraph(describe_baseline(baseline))
    document.paragraph(f"Machine: {fingerprint(baseline.machine)}; load average {baseline.machine.load_average[0]}")
    against = " and Redis " + (baseline.redis_version or "") if settings.against else ""
    document.paragraph(f"Suite: {', '.join(settings.commands)}; {settings.requests:,} requests with the shim (after "
                       f"{settings.warmup:,}) and under the instruction counter; {settings.trials} trial(s) of at "
                       f"least {settings.min_trial_seconds:g} s of the target{against}")
    add_build_warnings(document, target)
    ratio = any(signals.noisy and signals.noisy.redis for signals in baseline.commands)
    columns = [("Command", "left"), ("allocs/req", "right"), ("frees/req", "right"), ("bytes/req", "right"),
               ("retained/req", "right"), ("instructions/req", "right"), ("req/s (CV, trials)", "right"),
               ("p50 / p99 ms", "right")] + ([("% of Redis", "right")] if ratio else [])
    rows = []
    for signals in baseline.commands:
        allocs = signals.allocs
        row = [signals.command, f"{allocs.allocs:.2f}", f"{allocs.frees:.2f}", human_bytes(allocs.bytes_allocated),
               human_bytes(allocs.bytes_retained), _instructions(signals), _throughput(signals.noisy),
               _latency(signals.noisy)]
        if ratio:
            percent = redis_percent(signals.noisy)
            row.append("-" if percent is None else f"{percent:.1f}%")
        rows.append(row)
    document.table("Per command (median over the trials for req/s and latency)", columns, rows)
    for signals in baseline.commands:
        if signals.noisy_absent:
            document.paragraph(Span(f"{signals.command}: no trials: {signals.noisy_absent}", "red"))
    document.paragraph(Span(instruction_line(baseline), "dim"))
    add_notes(document, baseline.notes)
    return document


def list_document(root: Path, entries: list[tuple[str, Baseline | ZprofError]]) -> Document:
    """`zprof baseline list`: every saved baseline, and the files that are not readable ones."""
    document = Document(f"zprof baseline list: {root}")
    if not entries:
        document.paragraph(f"No baseline is saved in {root}/.zprof/baselines: zprof baseline save makes one.")
        return document
    rows = []
    for name, entry in entries:
        if isinstance(entry, ZprofError):
            rows.append([name, Span("unreadable: " + entry.message, "red"), "", "", "", ""])
            continue
        git = entry.git
        commit = "-" if git is None else git.short + ("-dirty" if git.dirty else "")
        signals = ["allocs"] + (["instructions"] if entry.instruction_source else []) + (
            [f"{entry.settings.trials} trials" + (" vs Redis" if entry.settings.against else "")]
            if entry.settings.trials else [])
        rows.append([name, commit, entry.measured[:16].replace("T", " "),
                     f"Zig {entry.target.zig_version}, {entry.target.optimize}", ", ".join(entry.settings.commands),
                     ", ".join(signals)])
    document.table("Saved baselines", [("Name", "left"), ("Commit", "left"), ("Measured (UTC)", "left"),
                                       ("Build", "left"), ("Commands", "left"), ("Signals", "left")], rows)
    return document


# History ------------------------------------------------------------------------------------
HISTORY_METRICS = (
    ("allocations per request", lambda s: s.allocs.allocs, "{:.2f}"),
    ("instructions per request", lambda s: s.instructions.per_request if s.instructions else None, "{:,.0f}"),
    ("throughput in % of Redis", lambda s: redis_percent(s.noisy), "{:.1f}%"),
)


def _commands(baselines: list[Baseline]) -> list[str]:
    return list(dict.fromkeys(signals.command for baseline in baselines for signals in baseline.commands))


def _value(baseline: Baseline, command: str, metric) -> float | None:  # type: ignore[no-untyped-def]
    signals = baseline.command(command)
    return None if signals is None else metric(signals)


def _label(baseline: Baseline) -> str:
    return baseline.name


def history_document(baselines: list[Baseline], pictures: list[Path]) -> Document:
    """`zprof baseline history`: one table per metric, baselines in commit order."""
    document = Document("zprof baseline history")
    commands = _commands(baselines)
    document.paragraph(f"{len(baselines)} baseline(s), in commit order (oldest first).")
    for title, metric, shown in HISTORY_METRICS:
        values = [[_value(baseline, command, metric) for command in commands] for baseline in baselines]
        if all(value is None for row in values for value in row):
            document.paragraph(Span(f"No baseline has {title}.", "dim"))
            continue
        document.table(title.capitalize(), [("Baseline", "left"), ("Commit date", "left")]
                       + [(command, "right") for command in commands],
                       [[_label(baseline), baseline.git.committed[:10] if baseline.git else "-"]
                        + ["-" if value is None else shown.format(value) for value in row]
                        for baseline, row in zip(baselines, values, strict=True)])
    for picture in pictures:
        document.picture(picture.name, "Allocations, instructions and the ratio to Redis across baselines")
    if pictures:
        document.paragraph("Pictures: " + ", ".join(str(picture) for picture in pictures))
    return document


def history_figure(baselines: list[Baseline], redis_floor: float) -> Figure:
    commands = _commands(baselines)
    shown = [(title, metric) for title, metric, _ in HISTORY_METRICS
             if any(_value(baseline, command, metric) is not None for baseline in baselines for command in commands)]
    from matplotlib.figure import Figure  # here: importing matplotlib slows every command's start

    figure = Figure(figsize=(max(6.0, 1.1 * len(baselines) + 3), 2.6 * len(shown) + 1), layout="constrained")
    axes_list = figure.subplots(len(shown), 1, sharex=True, squeeze=False)[:, 0]
    positions = list(range(len(baselines)))
    for axes, (title, metric) in zip(axes_list, shown, strict=True):
        for command in commands:
            values = [_value(baseline, command, metric) for baseline in baselines]
            if any(value is not None for value in values):
                axes.plot(positions, [float("nan") if value is None else value for value in values], marker="o",
                          linewidth=1.5, label=command)
        axes.set_title(title, loc="left", fontsize=10)
        axes.grid(axis="y", color="#dddddd")
        axes.set_ylim(bottom=0, top=axes.get_ylim()[1] * 1.1)
        if title.endswith("Redis"):
            axes.axhline(redis_floor, color="#c2452d", linewidth=0.8, linestyle=":")
    axes_list[-1].set_xticks(positions, [_label(baseline) for baseline in baselines], rotation=30, ha="right",
                             fontsize=8)
    handles, labels = axes_list[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=min(len(commands), 6), fontsize=8,
                  frameon=False)
    figure.suptitle("zprof baseline history", x=0.01, ha="left")
    return figure


def write_history_pictures(baselines: list[Baseline], out_dir: Path, redis_floor: float) -> list[Path]:
    """SVG (text kept as text) and PNG; the ratio's panel marks the floor under which a commit is blocked."""
    import matplotlib

    figure = history_figure(baselines, redis_floor)
    svg, png = out_dir / HISTORY_SVG, out_dir / HISTORY_PNG
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        figure.savefig(svg, format="svg")
    figure.savefig(png, format="png", dpi=PNG_DPI)
    return [svg, png]
