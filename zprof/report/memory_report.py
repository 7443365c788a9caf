"""zprof memory's report: terminal tables, and pictures drawn with matplotlib."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table
from rich.text import Text

from zprof.analysis.growth import AFTER_FLUSH, IDLE, LOAD, WARMUP, MassifRun, MemoryRun
from zprof.report.terminal import human_bytes, loss_sentence, render_build_warnings, short_name, short_path

SVG_FILE, PNG_FILE = "memory.svg", "memory.png"
TOP_SITES = 10
PNG_DPI = 120
# A phase under this share of the run gets its label written upwards.
NARROW_PHASE = 0.12
LIVE_COLOUR, RSS_COLOUR = "#1f5fa8", "#c2452d"
PHASE_COLOURS = {IDLE: "#e6e6e6", WARMUP: "#fbe3c0", AFTER_FLUSH: "#d5efcf"}
LOAD_COLOURS = ("#dce9f7", "#c4d9f0")  # alternating, so that adjacent load phases stay apart
VERDICT_STYLES = {"leak": "bold red", "rss": "red", "unchecked": "yellow", "once": "yellow"}
VERDICT_WIDTH = 11
# What FLUSHALL left is listed by call site from this much on, leak or not.
RETAINED_SHOWN_BYTES = 64 << 10
TIME_UNITS = {"ms": "milliseconds", "B": "bytes allocated", "i": "instructions"}


def _save(figure: Figure, out_dir: Path) -> list[Path]:
    """SVG with its text kept as text (searchable, and the phases readable by a test), and PNG."""
    svg, png = out_dir / SVG_FILE, out_dir / PNG_FILE
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        figure.savefig(svg, format="svg")
    figure.savefig(png, format="png", dpi=PNG_DPI)
    return [svg, png]


# The shim engine -----------------------------------------------------------------
def _unit(largest: float) -> tuple[str, int]:
    """One binary unit for a whole axis, so that its ticks fall on round numbers of it."""
    for name, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if largest >= 2 * size:
            return name, size
    return "B", 1


def memory_figure(run: MemoryRun) -> Figure:
    analysis = run.analysis
    samples, growth = analysis.samples, analysis.growth
    figure = Figure(figsize=(11, 5.5), layout="constrained")
    axes = figure.subplots()
    times = [s.time for s in samples]
    live = [s.live_bytes for s in samples]
    # The RSS drawn is the process's private memory: the total also counts the
    # binary's pages and zprof's counter file, which the hook maps and fills.
    private = [s.anon_rss_bytes for s in samples]
    unit, size = _unit(max([*live, *(b for b in private if b is not None)], default=0))
    load_index = 0
    for phase in analysis.phases:
        if phase.kind == LOAD:
            colour = LOAD_COLOURS[load_index % 2]
            load_index += 1
        else:
            colour = PHASE_COLOURS[phase.kind]
        axes.axvspan(phase.start, phase.end, color=colour, linewidth=0, zorder=0)
        narrow = (phase.end - phase.start) < NARROW_PHASE * (times[-1] - times[0])
        axes.text((phase.start + phase.end) / 2, 0.98, phase.label, transform=axes.get_xaxis_transform(),
                  ha="center", va="top", rotation=90 if narrow else 0, fontsize=8, color="#333333")
    axes.plot(times, [b / size for b in live], color=LIVE_COLOUR, linewidth=1.8,
              label="live bytes: held by the program (shim)")
    if any(b is not None for b in private):
        axes.plot(times, [b / size if b is not None else None for b in private], color=RSS_COLOUR, linewidth=1.3,
                  label="RSS, private (without file-backed pages)")
    axes.axhline(growth.idle_bytes / size, color=LIVE_COLOUR, linewidth=0.8, linestyle=":", label="idle level (live)")
    axes.plot([growth.peak_time], [growth.peak_bytes / size], marker="v", color=LIVE_COLOUR, markersize=8,
              linestyle="")
    axes.annotate(f"peak {human_bytes(growth.peak_bytes)}", (growth.peak_time, growth.peak_bytes / size),
                  textcoords="offset points", xytext=(0, 9), ha="center", fontsize=8, color=LIVE_COLOUR)
    axes.set_ylim(bottom=0, top=axes.get_ylim()[1] * 1.3)  # room for the phase labels
    if len(times) > 1:
        axes.set_xlim(times[0], times[-1])
    axes.set_xlabel("seconds")
    axes.set_ylabel(unit)
    figure.legend(loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    figure.suptitle(f"zprof memory: {Path(run.target.project).name} under {run.command}", x=0.01, ha="left")
    headline = [v.message for v in analysis.verdicts if v.kind != "flat"]
    axes.set_title("\n".join(headline), loc="left", fontsize=8,
                   color=RSS_COLOUR if any(v.kind in ("leak", "rss") for v in analysis.verdicts) else "#333333")
    return figure


def write_memory_pictures(run: MemoryRun, out_dir: Path) -> list[Path]:
    return _save(memory_figure(run), out_dir)


def render_memory(run: MemoryRun, written: list[Path], console: Console) -> None:
    analysis, load, growth = run.analysis, run.load, run.analysis.growth
    if load.errors:
        console.print(Text(f"{load.error_share:.1%} of the requests ({load.errors:,} of {load.requests:,}) got an "
                           f"error reply; the first: {load.first_error}", style="bold red"))
    console.print(f"[bold]zprof memory {run.command}[/] on [cyan]{run.target.project}[/] "
                  f"({os.path.basename(run.target.binary)}, Zig {run.target.zig_version})")
    console.print(f"{load.requests:,} requests in {load.seconds:.1f} s of load over {load.clients} client(s), "
                  f"pipeline {load.pipeline}, {load.errors} error(s); sampled every {load.interval:g} s "
                  f"({len(analysis.samples)} samples)")
    render_build_warnings(run.target.build_warnings, console)
    if not run.complete:
        console.print(Text("The run did not finish: the figures cover the time before it stopped.", style="red"))

    by_phase = {p.phase: p for p in growth.phases}
    table = Table(title="Live bytes by phase", title_justify="left")
    for column, justify in (("phase", "left"), ("seconds", "right"), ("requests", "right"),
                            ("live at end", "right"), ("change", "right"), ("bytes/request", "right"),
                            ("bytes/second", "right"), ("new keys", "right"), ("bytes/new key", "right"),
                            ("private RSS at end", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    previous = None
    for phase in analysis.phases:
        ends = [s for s in analysis.samples if s.phase == phase.label]
        if not ends:
            continue
        end = ends[-1]
        slopes = by_phase.get(phase.label)
        change = end.live_bytes - previous if previous is not None else 0
        table.add_row(
            phase.label, f"{phase.end - phase.start:.1f}", f"{phase.requests:,}", human_bytes(end.live_bytes),
            Text(_signed_bytes(change), style="red" if change > 0 and phase.kind == AFTER_FLUSH else ""),
            f"{slopes.bytes_per_request:+.2f}" if slopes else "",
            _signed_bytes(slopes.bytes_per_second) if slopes else "",
            f"{slopes.new_keys:,}" if slopes and slopes.new_keys is not None else "",
            human_bytes(slopes.bytes_per_new_key) if slopes and slopes.bytes_per_new_key is not None else "",
            human_bytes(end.anon_rss_bytes) if end.anon_rss_bytes is not None else "?",
        )
        previous = end.live_bytes
    console.print(table)

    console.print("[bold]Verdict[/]")
    for verdict in analysis.verdicts:
        console.print(Text.assemble((f"  {verdict.kind:<{VERDICT_WIDTH}}", VERDICT_STYLES.get(verdict.kind, "green")),
                                    verdict.message))
    leak = analysis.leak
    shown, title = ((leak.sites, "Call sites of the leak (kept after FLUSHALL, growing with the requests)")
                    if leak.sites else (leak.retained_sites, "What FLUSHALL left, by call site (not growing)"))
    if shown and (leak.detected or leak.retained_bytes >= RETAINED_SHOWN_BYTES):
        sites = Table(title=title, title_justify="left")
        for column, justify in (("bytes/request", "right"), ("kept", "right"), ("layer", "left"),
                                ("function and line", "left")):
            sites.add_column(column, justify=justify)  # type: ignore[arg-type]
        for site in shown[:TOP_SITES]:
            sites.add_row(f"{site.bytes_per_request:.1f}", human_bytes(site.retained_bytes), site.layer,
                          _where(site.function, site.file, site.line, site.inlined))
        console.print(sites)
    rss = analysis.rss
    console.print(
        f"Peak live bytes {human_bytes(growth.peak_bytes)} at {growth.peak_time:.1f} s (sampled); the busiest "
        f"allocator layer's own peak, backing blocks included: {human_bytes(growth.shim_peak_bytes)}. Under load: "
        f"{growth.bytes_per_request:+.2f} B per request, {_signed_bytes(growth.bytes_per_second)} per second."
    )
    if rss.ratio_load is not None:
        after = f", {rss.ratio_after_flush:.1f}x after FLUSHALL" if rss.ratio_after_flush is not None else ""
        console.print(f"Private RSS (without file-backed pages) is {rss.ratio_load:.1f}x live bytes at the end of "
                      f"the load{after}.")
    for loss in analysis.losses:
        console.print(Text("Shim table full: " + loss_sentence(loss, load.requests), style="yellow"))
    for note in run.notes:
        console.print(Text("note: " + note, style="yellow"))
    console.print("Written: " + ", ".join(str(path) for path in written))


def _signed_bytes(count: float) -> str:
    return ("+" if count > 0 else "") + human_bytes(count)


def _where(function: str, file: str | None, line: int | None, inlined: list[str]) -> Text:
    where = Text(short_name(function), style="bold")
    if file:
        where.append("\n" + short_path(file, line), style="dim")
    if inlined:
        where.append("\n  via " + short_name(inlined[-1]), style="dim")
    return where


# The massif engine ---------------------------------------------------------------
def massif_figure(run: MassifRun) -> Figure:
    peak = run.peak
    figure = Figure(figsize=(11, 7), layout="constrained")
    over_time, by_site = figure.subplots(2, 1, height_ratios=(3, 2))
    unit, size = _unit(peak.heap_bytes)
    over_time.step([t for t, _ in peak.timeline], [b / size for _, b in peak.timeline], where="post",
                   color=LIVE_COLOUR, linewidth=1.5, label="heap (massif)")
    over_time.plot([peak.time], [peak.heap_bytes / size], marker="v", color=RSS_COLOUR, markersize=8, linestyle="")
    over_time.annotate(f"peak {human_bytes(peak.heap_bytes)}", (peak.time, peak.heap_bytes / size),
                       textcoords="offset points", xytext=(0, 9), ha="center", fontsize=8, color=RSS_COLOUR)
    over_time.set_ylim(bottom=0, top=max(peak.heap_bytes / size, 1) * 1.2)
    over_time.set_xlabel(TIME_UNITS.get(peak.time_unit, peak.time_unit))
    over_time.set_ylabel(unit)
    figure.suptitle(f"zprof memory --engine massif: {Path(run.target.project).name} under {run.command}", x=0.01,
                    ha="left")
    shown = peak.sites[:TOP_SITES][::-1]
    by_site.barh(range(len(shown)), [s.bytes / size for s in shown], color=LIVE_COLOUR)
    by_site.set_yticks(range(len(shown)), [_site_label(s.function, s.file, s.line) for s in shown], fontsize=8)
    by_site.set_xlabel(unit)
    by_site.set_title(f"At the peak, by call site (massif snapshot {peak.snapshot})", loc="left", fontsize=10)
    return figure


def _site_label(function: str, file: str | None, line: int | None) -> str:
    return f"{short_name(function)} ({os.path.basename(file)}:{line})" if file else short_name(function)


def write_massif_pictures(run: MassifRun, out_dir: Path) -> list[Path]:
    return _save(massif_figure(run), out_dir)


def render_massif(run: MassifRun, written: list[Path], console: Console) -> None:
    peak, load = run.peak, run.load
    console.print(f"[bold]zprof memory {run.command} --engine massif[/] on [cyan]{run.target.project}[/] "
                  f"({os.path.basename(run.target.binary)}, Zig {run.target.zig_version})")
    console.print(f"{load.description}, {load.clients} client(s), pipeline {load.pipeline}, {load.errors} error(s)")
    render_build_warnings(run.target.build_warnings, console)
    console.print(f"Heap peak: [bold]{human_bytes(peak.heap_bytes)}[/] at {peak.time:,.0f} {peak.time_unit} "
                  f"(massif snapshot {peak.snapshot})")
    table = Table(title="At the peak, by call site", title_justify="left")
    for column, justify in (("bytes", "right"), ("share", "right"), ("function and line", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for site in peak.sites[:TOP_SITES]:
        share = site.bytes / peak.heap_bytes if peak.heap_bytes else 0.0
        table.add_row(human_bytes(site.bytes), f"{share:.1%}", _where(site.function, site.file, site.line,
                                                                      site.inlined))
    console.print(table)
    for note in run.notes:
        console.print(Text("note: " + note, style="yellow"))
    console.print("Written: " + ", ".join(str(path) for path in written))
