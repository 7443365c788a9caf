"""The report of a `zprof allocs` run."""

from __future__ import annotations

from zprof.analysis.allocations import LARGE_BYTES, SMALL_BYTES
from zprof.load.calibration import MIN_TRIAL_SECONDS
from zprof.model.allocs import RETAINED, TEMPORARY, AllocationAnalysis, AllocsRun, Flag
from zprof.model.common import Loss
from zprof.report.common import add_build_warnings, add_error_share, add_notes, add_title, short_path, where
from zprof.report.document import Document, Span
from zprof.units import human_bytes, size_class_label

TOP_SITES = 12
# Rows below this many per request are rounding noise in a terminal (the JSON keeps them).
SHOWN_PER_REQUEST = 0.005
FLAG_STYLES = {"large": "red", "growth": "red", "small": "yellow"}


def flag_sentence(flag: Flag) -> str:
    if flag.kind == "large":
        return f"allocations of {human_bytes(flag.value)} each (over {human_bytes(LARGE_BYTES)}) from {flag.layer}"
    if flag.kind == "small":
        heap = f"{flag.value:.1f} allocations under {SMALL_BYTES} B per request from the heap"
        if flag.lifetime == TEMPORARY:
            return f"{heap}, each freed within its request; a stack buffer or the request's arena would avoid them"
        if flag.lifetime == RETAINED:
            return (f"{heap} that the server keeps (stored data), each with the allocator's per-block overhead; "
                    "fewer, tighter blocks per entry would cost less")
        return heap
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


def add_losses(document: Document, losses: list[Loss], requests: int) -> None:
    for loss in losses:
        heading = "Shim: " if loss.table == "untracked-frees" else "Shim table full: "
        document.paragraph(Span(heading + loss_sentence(loss, requests), "yellow"))


def _retained_sentence(analysis: AllocationAnalysis) -> str | None:
    """Where the retained bytes went: new keys, and what FLUSHALL left."""
    parts = []
    if analysis.keys is not None and analysis.keys.new > 0:
        per_key = analysis.retained_bytes_per_new_key
        parts.append(f"the run added {analysis.keys.new:,} keys"
                     + (f", {human_bytes(per_key)} retained per new key" if per_key is not None else ""))
    if analysis.kept_bytes_per_request is not None:
        parts.append(f"after FLUSHALL the program still held {human_bytes(analysis.kept_bytes_per_request)} per "
                     "request of what the warm-up and the run added")
    return "Retained: " + "; ".join(parts) + "." if parts else None


def allocs_document(run: AllocsRun) -> Document:
    analysis, per, load = run.analysis, run.analysis.per_request, run.load
    document = Document(f"zprof allocs {run.command}")
    add_error_share(document, load.errors, run.requests, load.error_share, load.first_error)
    add_title(document, document.title, run.target)
    speed = (f"{load.requests_per_second:,.0f} req/s with the shim" if load.requests_per_second is not None else
             f"no rate: the run lasted {load.seconds:.2f} s, under the {MIN_TRIAL_SECONDS:g} s a rate needs")
    document.paragraph(f"{run.requests:,} requests `{' '.join(run.args)}` over {load.clients} client(s), pipeline "
                       f"{load.pipeline}: {speed}, {load.errors} error(s)")
    add_build_warnings(document, run.target)
    if not run.complete:
        document.paragraph(Span("The run did not finish: these figures cover the requests that completed.", "red"))

    document.table("Per request", [(name, "right") for name in ("allocs", "frees", "resizes", "remaps",
                                                                 "bytes allocated", "temporary", "retained")], [[
        f"{per.allocs:.2f}", f"{per.frees:.2f}", f"{per.resizes:.2f}", f"{per.remaps:.2f}",
        human_bytes(per.bytes_allocated), human_bytes(per.bytes_temporary),
        Span(human_bytes(per.bytes_retained), "red" if per.bytes_retained >= 1 else ""),
    ]])
    if analysis.idle_resolution >= 0.0005:
        document.paragraph(Span(f"The idle server allocates in bursts (a timer's work): every count per request is "
                                f"within ±{analysis.idle_resolution:.3f} of its true value, one burst more or fewer "
                                f"caught in the idle window ({load.idle_seconds:g} s) or the run.", "yellow"))
    if (retained := _retained_sentence(analysis)) is not None:
        document.paragraph(retained)

    document.table("By allocator layer", [("layer", "left"), ("allocs/req", "right"), ("backing allocs/req", "right"),
                                          ("bytes/req", "right"), ("frees/req", "right"),
                                          ("resizes+remaps/req", "right"), ("live growth", "right"),
                                          ("peak live", "right")], [
        [usage.layer, f"{usage.allocs_per_request:.2f}", f"{usage.nested_allocs_per_request:.2f}",
         human_bytes(usage.bytes_per_request), f"{usage.frees_per_request:.2f}",
         f"{usage.resizes_per_request + usage.remaps_per_request:.2f}",
         *(("released en bloc", "") if usage.releases_en_bloc else
           (human_bytes(usage.live_bytes_growth), human_bytes(usage.peak_live_bytes)))]
        for usage in analysis.by_layer])

    if run.target.optimize not in (None, "Debug") and any(usage.layer == "debug/GPA" and usage.allocs_per_request
                                                            for usage in analysis.by_layer):
        document.paragraph(Span(f"The program allocates through the Debug allocator (GeneralPurposeAllocator) in a "
                                f"{run.target.optimize} build: its checks cost CPU and memory on every call; "
                                "std.heap.smp_allocator is Zig's allocator for release builds (zprof validate "
                                "weighs the cost).", "yellow"))

    shown_classes = [c for c in analysis.size_classes if c.allocs_per_request >= SHOWN_PER_REQUEST]
    if shown_classes:
        widest = max(c.allocs_per_request for c in analysis.size_classes) or 1
        document.table("Size classes (allocations made by program code)",
                       [("size", "left"), ("allocs/req", "right"), ("", "left")], [
            [size_class_label(c.min_bytes, c.max_bytes)
             + (" small" if c.max_bytes < SMALL_BYTES else " large" if c.min_bytes >= LARGE_BYTES else ""),
             f"{c.allocs_per_request:.2f}", "█" * max(1, round(30 * c.allocs_per_request / widest))]
            for c in shown_classes])

    if analysis.flags:
        document.paragraph(Span("Flags", "bold"))
        for flag in analysis.flags:
            document.paragraph(Span(f"  {flag.kind:<7}", FLAG_STYLES[flag.kind]), f"{flag.function} ",
                               Span(short_path(flag.file, flag.line), "dim"), f": {flag_sentence(flag)}")

    shown = [site for site in analysis.sites
             if site.allocs_per_request >= SHOWN_PER_REQUEST or abs(site.retained_bytes_per_request) >= 1]
    # Program code first; then what allocators asked of their backing allocators.
    shown.sort(key=lambda site: (site.nested_in is not None, -site.allocs_per_request, -site.bytes_per_request))
    document.table(f"Top call sites (of {len(analysis.sites)})",
                   [("allocs/req", "right"), ("bytes/req", "right"), ("retained/req", "right"), ("layer", "left"),
                    ("function and line", "left")], [
        [f"{site.allocs_per_request:.2f}", human_bytes(site.bytes_per_request),
         human_bytes(site.retained_bytes_per_request),
         site.layer if site.nested_in is None else f"{site.layer} (backing {site.nested_in})",
         where(site.function, site.file, site.line, site.inlined)]
        for site in shown[:TOP_SITES]])

    growth = run.growth
    rss = human_bytes(growth.rss_bytes) if growth.rss_bytes is not None else "unknown"
    document.paragraph(f"Over the run: the program came to hold {human_bytes(growth.live_bytes)} more; RSS {rss}.")
    add_losses(document, analysis.losses, run.requests)
    add_notes(document, run.notes)
    return document
