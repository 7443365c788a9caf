"""Rich tables for a terminal."""

from __future__ import annotations

import os
import re
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from zprof.analysis.allocations import LARGE_BYTES, SMALL_BYTES, AllocationAnalysis, Flag, Loss, format_bytes
from zprof.analysis.hotspots import FunctionShare, ProfileSummary, ShareChange
from zprof.artifacts import AllocsRun
from zprof.load.calibration import MIN_TRIAL_SECONDS

TOP_SITES = 12
# Rows below this many per request are rounding noise in a terminal (the JSON keeps them).
SHOWN_PER_REQUEST = 0.005
LONG_NAME = 60


def short_name(name: str) -> str:
    """Long generic parameter lists folded: `DebugAllocator(.{ ... }).alloc`."""
    if len(name) <= LONG_NAME:
        return name
    return re.sub(r"\(\.\{[^()]*\}\)", "(.{...})", name)


def make_console(stderr: bool = False) -> Console:
    """A console that keeps tables readable when the output is a file or a CI log."""
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        console = Console(stderr=stderr, highlight=False, width=140)
    return console


human_bytes = format_bytes


def short_path(path: str | None, line: int | None) -> str:
    if not path:
        return "?"
    cwd = os.getcwd() + "/"
    if path.startswith(cwd):
        path = path[len(cwd) :]
    elif "/zig/p/" in path:  # a package in Zig's global cache
        path = path.split("/zig/p/", 1)[1]
    return f"{path}:{line}" if line else path


def render_build_warnings(warnings: list[str], console: Console) -> None:
    """What `zig build` reported although it produced the binary (see target/build.py)."""
    for warning in warnings:
        first, *rest = warning.splitlines()
        console.print(Text("build: " + first, style="yellow"))
        for line in rest:
            console.print(Text("  " + line, style="dim"))


def flag_sentence(flag: Flag) -> str:
    if flag.kind == "large":
        return f"allocations of {human_bytes(flag.value)} each (over {human_bytes(LARGE_BYTES)}) from {flag.layer}"
    if flag.kind == "small":
        return (f"{flag.value:.1f} allocations under {SMALL_BYTES} B per request from the heap; an arena or a stack "
                "buffer would avoid them")
    return f"keeps {flag.value:.1f} B per request, in both halves of the run, that FLUSHALL did not give back"


def loss_sentence(loss: Loss, requests: int) -> str:
    """What an overflowing shim table lost, and which figures it affects."""
    per = f"{human_bytes(loss.bytes / max(requests, 1))} per request"
    if loss.table == "layers":
        return (f"{loss.count:,} allocator calls ({human_bytes(loss.bytes)} asked for) went to allocators beyond the "
                f"shim's layer table ({loss.capacity} layers) and were not counted at all: every figure above is a "
                "lower bound.")
    if loss.table == "sites":
        return (f"{loss.count:,} allocations ({human_bytes(loss.bytes)}) found the call-site table ({loss.capacity:,} "
                "sites) full: they are in the totals, the layers and the size classes, but in no call site, so the "
                f"call sites and the retained bytes miss them (retained may be understated by up to {per}).")
    if loss.table == "live":
        return (f"{loss.count:,} blocks ({human_bytes(loss.bytes)}) found the live-block table ({loss.capacity:,} "
                "blocks) full: their frees cannot be credited to their call sites, so retained bytes may be "
                f"overstated by up to {per}; the totals are exact.")
    return (f"{loss.count:,} frees ({human_bytes(loss.bytes)}) were of blocks the live-block table did not hold: "
            "no call site was credited with them; the totals are exact.")


def render_allocs(run: AllocsRun, console: Console) -> None:
    analysis, per = run.analysis, run.analysis.per_request
    load = run.load
    if load.errors:
        console.print(Text(f"{load.error_share:.1%} of the measured requests ({load.errors:,} of {run.requests:,}) "
                           f"got an error reply; the first: {load.first_error}", style="bold red"))
    console.print(
        f"[bold]zprof allocs {run.command}[/] on [cyan]{run.target.project}[/] "
        f"({os.path.basename(run.target.binary)}, Zig {run.target.zig_version})"
    )
    speed = (f"{load.requests_per_second:,.0f} req/s with the shim" if load.requests_per_second is not None else
             f"no rate: the run lasted {load.seconds:.2f} s, under the {MIN_TRIAL_SECONDS:g} s a rate needs")
    console.print(
        f"{run.requests:,} requests `{' '.join(run.args)}` over {load.clients} client(s), pipeline {load.pipeline}: "
        f"{speed}, {load.errors} error(s)"
    )
    render_build_warnings(run.target.build_warnings, console)
    if not run.complete:
        console.print(Text("The run did not finish: these figures cover the requests that completed.", style="red"))

    summary = Table(title="Per request", show_header=True, title_justify="left")
    for column in ("allocs", "frees", "resizes", "remaps", "bytes allocated", "temporary", "retained"):
        summary.add_column(column, justify="right")
    summary.add_row(
        f"{per.allocs:.2f}", f"{per.frees:.2f}", f"{per.resizes:.2f}", f"{per.remaps:.2f}",
        human_bytes(per.bytes_allocated), human_bytes(per.bytes_temporary),
        Text(human_bytes(per.bytes_retained), style="red" if per.bytes_retained >= 1 else ""),
    )
    console.print(summary)
    if (retained := _retained_sentence(analysis, per.bytes_retained)) is not None:
        console.print(retained)

    layers = Table(title="By allocator layer", title_justify="left")
    for column, justify in (("layer", "left"), ("allocs/req", "right"), ("backing allocs/req", "right"),
                            ("bytes/req", "right"), ("frees/req", "right"), ("resizes+remaps/req", "right"),
                            ("live growth", "right"), ("peak live", "right")):
        layers.add_column(column, justify=justify)  # type: ignore[arg-type]
    for usage in analysis.by_layer:
        layers.add_row(
            usage.layer, f"{usage.allocs_per_request:.2f}", f"{usage.nested_allocs_per_request:.2f}",
            human_bytes(usage.bytes_per_request), f"{usage.frees_per_request:.2f}",
            f"{usage.resizes_per_request + usage.remaps_per_request:.2f}",
            *(("released en bloc", "") if usage.releases_en_bloc else
              (human_bytes(usage.live_bytes_growth), human_bytes(usage.peak_live_bytes))),
        )
    console.print(layers)

    if analysis.size_classes:
        sizes = Table(title="Size classes (allocations made by program code)", title_justify="left")
        sizes.add_column("size")
        sizes.add_column("allocs/req", justify="right")
        sizes.add_column("")
        widest = max(c.allocs_per_request for c in analysis.size_classes) or 1
        for size_class in analysis.size_classes:
            if size_class.allocs_per_request < SHOWN_PER_REQUEST:
                continue
            tag = " small" if size_class.max_bytes < 64 else " large" if size_class.min_bytes >= 1 << 20 else ""
            sizes.add_row(size_class.label + tag, f"{size_class.allocs_per_request:.2f}",
                          "█" * max(1, round(30 * size_class.allocs_per_request / widest)))
        console.print(sizes)

    if analysis.flags:
        console.print("[bold]Flags[/]")
        for flag in analysis.flags:
            style = {"large": "red", "growth": "red", "small": "yellow"}[flag.kind]
            console.print(Text.assemble((f"  {flag.kind:<7}", style), f"{flag.function} ",
                                        (short_path(flag.file, flag.line), "dim"), f": {flag_sentence(flag)}"))

    shown = [site for site in analysis.sites
             if site.allocs_per_request >= SHOWN_PER_REQUEST or abs(site.retained_bytes_per_request) >= 1]
    # Program code first; then what allocators asked of their backing allocators.
    shown.sort(key=lambda site: (site.nested_in is not None, -site.allocs_per_request, -site.bytes_per_request))
    sites = Table(title=f"Top call sites (of {len(analysis.sites)})", title_justify="left")
    for column, justify in (("allocs/req", "right"), ("bytes/req", "right"), ("retained/req", "right"),
                            ("layer", "left"), ("function and line", "left")):
        sites.add_column(column, justify=justify)  # type: ignore[arg-type]
    for site in shown[:TOP_SITES]:
        where = Text.assemble((short_name(site.function), "bold"), "\n", (short_path(site.file, site.line), "dim"))
        if site.inlined:
            where.append("\n  via " + short_name(site.inlined[-1]), style="dim")
        layer = site.layer if site.nested_in is None else f"{site.layer} (backing {site.nested_in})"
        sites.add_row(f"{site.allocs_per_request:.2f}", human_bytes(site.bytes_per_request),
                      human_bytes(site.retained_bytes_per_request), layer, where)
    console.print(sites)

    growth = run.growth
    rss = human_bytes(growth.rss_bytes) if growth.rss_bytes is not None else "unknown"
    console.print(f"Over the run: the program came to hold {human_bytes(growth.live_bytes)} more; RSS {rss}.")
    for loss in analysis.losses:
        console.print(Text("Shim table full: " + loss_sentence(loss, run.requests), style="yellow"))
    for note in run.notes:
        console.print(Text("note: " + note, style="yellow"))


def _retained_sentence(analysis: AllocationAnalysis, retained: float) -> str | None:
    """Where the retained bytes went: new keys, and what FLUSHALL gave back."""
    parts = []
    if analysis.keys is not None and analysis.keys.new > 0:
        per_key = analysis.retained_bytes_per_new_key
        parts.append(f"the run added {analysis.keys.new:,} keys"
                     + (f", {human_bytes(per_key)} retained per new key" if per_key is not None else ""))
    if analysis.kept_bytes_per_request is not None:
        parts.append(f"after FLUSHALL the program still held {human_bytes(analysis.kept_bytes_per_request)} per "
                     "request of what the warm-up and the run added")
    return "Retained: " + "; ".join(parts) + "." if parts else None


def _share_table(title: str, rows: list[FunctionShare]) -> Table:
    table = Table(title=title, title_justify="left")
    for column, justify in (("#", "right"), ("self", "right"), ("total", "right"), ("kind", "left"),
                            ("function", "left"), ("where", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for rank, row in enumerate(rows, 1):
        name = Text(short_name(row.function), style="bold red" if row.flagged else "")
        if row.flagged:
            name.append("  over 10% of samples", style="red")
        table.add_row(str(rank), f"{row.self_share:.1%}", f"{row.total_share:.1%}", row.kind, name,
                      Text(short_path(row.file, row.line), style="dim"))
    return table


def render_flame(summary: ProfileSummary, files: list[Path], console: Console, *, notes: list[str],
                 load: str) -> None:
    if summary.unit == "samples":
        console.print(f"[bold]{summary.total:,} samples[/]; {summary.kernel_share:.1%} in the kernel, "
                      f"{summary.idle_share:.1%} switched out; load: {load}")
    else:
        console.print(f"[bold]{summary.total:,} {summary.unit}[/] (user space only); load: {load}")
    console.print(_share_table("Hottest functions by self time (outside the kernel)", summary.by_self))
    console.print(_share_table("Hottest functions by total time", summary.by_total))
    for note in notes + summary.notes:
        console.print(Text("note: " + note, style="yellow"))
    console.print("Written: " + ", ".join(str(path) for path in files))


def render_flame_diff(changes: list[ShareChange], svg: Path, console: Console) -> None:
    table = Table(title="Functions whose share of samples moved most", title_justify="left")
    for column, justify in (("before", "right"), ("after", "right"), ("change", "right"), ("kind", "left"),
                            ("function", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for change in changes:
        style = "red" if change.delta > 0 else "green"
        table.add_row(f"{change.before:.1%}", f"{change.after:.1%}",
                      Text(f"{change.delta * 100:+.1f} pts", style=style), change.kind, short_name(change.function))
    console.print(table)
    console.print(f"Differential flame graph: {svg} (red grew, blue shrank)")
