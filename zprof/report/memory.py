"""The report of a `zprof memory` run, and its pictures, drawn with matplotlib."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from zprof.analysis.entries import entry_sentence
from zprof.model.memory import AFTER_FLUSH, IDLE, LOAD, WARMUP, MassifRun, MemoryRun, Verdict
from zprof.report.allocs import add_losses
from zprof.report.common import (
    add_build_warnings,
    add_error_share,
    add_notes,
    add_title,
    short_name,
    short_path,
    where,
)
from zprof.report.document import Document, Span
from zprof.units import human_bytes, signed_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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
    import matplotlib  # here, as Figure below: importing matplotlib slows every command's start

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
    from matplotlib.figure import Figure

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
    headline = [_verdict_sentence(v) for v in analysis.verdicts if v.kind != "flat"]
    axes.set_title("\n".join(headline), loc="left", fontsize=8,
                   color=RSS_COLOUR if any(v.kind in ("leak", "rss") for v in analysis.verdicts) else "#333333")
    return figure


def write_memory_pictures(run: MemoryRun, out_dir: Path) -> list[Path]:
    return _save(memory_figure(run), out_dir)


def _verdict_sentence(verdict: Verdict) -> str:
    v = verdict.values
    if verdict.kind == "flat":
        return (f"Live bytes stay flat during the load ({v['bytes_per_request']:+.2f} B per request); they end "
                f"{human_bytes(v['grew_bytes'])} above the idle level.")
    if verdict.kind == "unchecked":
        why = (f"the server answered FLUSHALL with an error ({v['flushall_error']})" if v.get("flushall_error")
               else "the run did not reach FLUSHALL")
        return f"No leak verdict: {why}."
    if verdict.kind == "given-back":
        return (f"FLUSHALL gives back {human_bytes(v['given_back_bytes'])} ({v['share']:.0%}) of the "
                f"{human_bytes(v['grew_bytes'])} the load added: data the workload stores (expected)"
                + ("; live bytes are back at the idle level." if v["back_to_idle"] else "."))
    if verdict.kind == "leak":
        return (f"Leak: {v['bytes_per_request']:.1f} B per request stay after FLUSHALL "
                f"({human_bytes(v['retained_bytes'])} over {v['requests']:,} requests); the top call site is "
                f"{v['function']} ({v['function_bytes_per_request']:.1f} B per request).")
    if verdict.kind == "once":
        return (f"No leak, but {human_bytes(v['retained_bytes'])} stay after FLUSHALL without growing with the "
                "requests (a cache or a buffer at its working size)"
                + (f"; the most at {v['function']} ({human_bytes(v['function_bytes'])})." if v.get("function")
                   else "."))
    if verdict.kind == "no-leak":
        return ("No leak: what FLUSHALL does not give back does not grow with the requests "
                f"({human_bytes(v['retained_bytes'])} over idle).")
    ratio = f", {v['ratio_after_flush']:.1f}x live bytes" if v.get("ratio_after_flush") else ""
    return (f"RSS stays far above live bytes after FLUSHALL: the process keeps {human_bytes(v['kept_bytes'])} more "
            f"than when idle beyond what the program holds{ratio} (allocator caching or fragmentation).")


def _add_entries(document: Document, run: MemoryRun) -> None:
    if not run.entries:
        return
    document.paragraph(Span("What each key's entry holds (from the binary's DWARF)", "bold"))
    for entry in run.entries:
        document.paragraph(Span(short_path(entry.file, entry.line), "dim"), " ", entry_sentence(entry))
        document.code("\n".join(entry.layout))


def memory_document(run: MemoryRun) -> Document:
    analysis, load, growth = run.analysis, run.load, run.analysis.growth
    document = Document(f"zprof memory {run.command}")
    add_error_share(document, load.errors, load.requests, load.error_share, load.first_error)
    add_title(document, document.title, run.target)
    document.paragraph(f"{load.requests:,} requests in {load.seconds:.1f} s of load over {load.clients} client(s), "
                       f"pipeline {load.pipeline}, {load.errors} error(s); sampled every {load.interval:g} s "
                       f"({len(analysis.samples)} samples)")
    add_build_warnings(document, run.target)
    if not run.complete:
        document.paragraph(Span("The run did not finish: the figures cover the time before it stopped.", "red"))

    by_phase = {p.phase: p for p in growth.phases}
    rows = []
    previous = None
    for phase in analysis.phases:
        ends = [s for s in analysis.samples if s.phase == phase.label]
        if not ends:
            continue
        end = ends[-1]
        slopes = by_phase.get(phase.label)
        change = end.live_bytes - previous if previous is not None else 0
        rows.append([
            phase.label, f"{phase.end - phase.start:.1f}", f"{phase.requests:,}", human_bytes(end.live_bytes),
            Span(signed_bytes(change), "red" if change > 0 and phase.kind == AFTER_FLUSH else ""),
            f"{slopes.bytes_per_request:+.2f}" if slopes else "",
            signed_bytes(slopes.bytes_per_second) if slopes else "",
            f"{slopes.new_keys:,}" if slopes and slopes.new_keys is not None else "",
            human_bytes(slopes.bytes_per_new_key) if slopes and slopes.bytes_per_new_key is not None else "",
            human_bytes(end.anon_rss_bytes) if end.anon_rss_bytes is not None else "?",
        ])
        previous = end.live_bytes
    document.table("Live bytes by phase", [("phase", "left"), ("seconds", "right"), ("requests", "right"),
                                           ("live at end", "right"), ("change", "right"), ("bytes/request", "right"),
                                           ("bytes/second", "right"), ("new keys", "right"),
                                           ("bytes/new key", "right"), ("private RSS at end", "right")], rows)

    document.paragraph(Span("Verdict", "bold"))
    for verdict in analysis.verdicts:
        document.paragraph(Span(f"  {verdict.kind:<{VERDICT_WIDTH}}", VERDICT_STYLES.get(verdict.kind, "green")),
                           _verdict_sentence(verdict))
    leak = analysis.leak
    shown, title = ((leak.sites, "Call sites of the leak (kept after FLUSHALL, growing with the requests)")
                    if leak.sites else (leak.retained_sites, "What FLUSHALL left, by call site (not growing)"))
    if shown and (leak.detected or leak.retained_bytes >= RETAINED_SHOWN_BYTES):
        document.table(title, [("bytes/request", "right"), ("kept", "right"), ("layer", "left"),
                               ("function and line", "left")], [
            [f"{site.bytes_per_request:.1f}", human_bytes(site.retained_bytes), site.layer,
             where(site.function, site.file, site.line, site.inlined)] for site in shown[:TOP_SITES]])
    _add_entries(document, run)
    rss = analysis.rss
    document.paragraph(
        f"Peak live bytes {human_bytes(growth.peak_bytes)} at {growth.peak_time:.1f} s (sampled); the busiest "
        f"allocator layer's own peak, backing blocks included: {human_bytes(growth.shim_peak_bytes)}. Under load: "
        f"{growth.bytes_per_request:+.2f} B per request, {signed_bytes(growth.bytes_per_second)} per second.")
    if rss.ratio_load is not None:
        after = f", {rss.ratio_after_flush:.1f}x after FLUSHALL" if rss.ratio_after_flush is not None else ""
        document.paragraph(f"Private RSS (without file-backed pages) is {rss.ratio_load:.1f}x live bytes at the end "
                           f"of the load{after}.")
    add_losses(document, analysis.losses, load.requests)
    add_notes(document, run.notes)
    _add_pictures(document, run.files, "Live bytes and private RSS by phase")
    return document


def _add_pictures(document: Document, files: list[str], caption: str) -> None:
    if files:
        document.paragraph("Written: " + ", ".join(files))
    for file in files:
        if file.endswith(".svg"):
            document.picture(Path(file).name, caption)


# The massif engine ---------------------------------------------------------------
def massif_figure(run: MassifRun) -> Figure:
    peak = run.peak
    from matplotlib.figure import Figure

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


def massif_document(run: MassifRun) -> Document:
    peak, load = run.peak, run.load
    document = Document(f"zprof memory {run.command} --engine massif")
    add_title(document, document.title, run.target)
    document.paragraph(f"{load.description}, {load.clients} client(s), pipeline {load.pipeline}, "
                       f"{load.errors} error(s)")
    add_build_warnings(document, run.target)
    document.paragraph("Heap peak: ", Span(human_bytes(peak.heap_bytes), "bold"),
                       f" at {peak.time:,.0f} {peak.time_unit} (massif snapshot {peak.snapshot})")
    document.table("At the peak, by call site", [("bytes", "right"), ("share", "right"), ("function and line", "left")],
                   [[human_bytes(site.bytes), f"{site.bytes / peak.heap_bytes if peak.heap_bytes else 0.0:.1%}",
                     where(site.function, site.file, site.line, site.inlined)] for site in peak.sites[:TOP_SITES]])
    add_notes(document, run.notes)
    _add_pictures(document, run.files, "The heap over time, and its peak by call site")
    return document
