"""Interactive flame graphs as one self-contained SVG file (no network, fonts or external scripts).

In the spirit of Brendan Gregg's flamegraph.pl, written from scratch: the root ("all") is at the
bottom and callees stack upwards. Samples of all threads are merged into one tree keyed by frame
name, siblings sorted alphabetically, widths proportional to weight. The work is split in two, as
memray's and pyinstrument's reporters do: `flame_layout` computes plain rectangles (testable
without parsing SVG) and `render_flame_svg` draws them with a small embedded script for hover
details, click-to-zoom and search.
"""

from __future__ import annotations

import colorsys
import json
import re
import zlib
from dataclasses import dataclass
from xml.sax.saxutils import escape

from zprof.analysis.stacks import FRAME_KINDS, StackProfile
from zprof.report.common import short_path

ROOT_NAME = "all"
# Frames narrower than this share are left out of the drawing; their weight still counts in
# every percentage and in search matches.
MIN_FRACTION = 0.001

WIDTH = 1200
PAD = 10
GRAPH_WIDTH = WIDTH - 2 * PAD
FRAME_HEIGHT = 16
FONT_SIZE = 12
CHAR_WIDTH = 0.6 * FONT_SIZE  # monospace estimate for the first labels; the script measures the real font
GRAPH_TOP = 60
MATCH_COLOUR = "rgb(230,0,230)"

# kind -> (hue range in degrees, saturation, lightness range); a hash of the name picks the hue and
# lightness within the ranges, so two runs of the same program look alike.
_PALETTES: dict[str, tuple[tuple[float, float], float, tuple[float, float]]] = {
    "project": ((4, 30), 0.85, (0.50, 0.62)),  # warm orange/red
    "dependency": ((250, 275), 0.50, (0.62, 0.74)),  # violet: a package from build.zig.zon
    "std": ((40, 54), 0.90, (0.50, 0.62)),  # yellow/amber
    "libc": ((95, 130), 0.50, (0.45, 0.60)),  # green
    "kernel": ((185, 210), 0.60, (0.55, 0.70)),  # blue/aqua
    "other": ((0, 0), 0.0, (0.68, 0.80)),  # grey
}
# Characters XML 1.0 forbids even escaped; symbol names from a broken binary could hold them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class FlameRect:
    """One merged frame: `x` and `width` are fractions of the total weight, `start` and `weight` exact."""

    name: str
    kind: str
    depth: int  # 0 is the root, "all"
    start: int  # weight to the left of this frame at its depth
    weight: int
    x: float
    width: float
    file: str | None = None
    line: int | None = None
    inlined: bool = False
    baseline_share: float | None = None  # share of the baseline's total on the same path (diff graphs only)

    @property
    def delta(self) -> float | None:
        """Change of this frame's share of the total versus the baseline."""
        return None if self.baseline_share is None else self.width - self.baseline_share


@dataclass(frozen=True)
class FlameLayout:
    rects: list[FlameRect]  # pre-order: each frame before its callees, callees alphabetically
    total_weight: int
    unit: str
    max_depth: int
    baseline_total: int | None = None

    @property
    def is_diff(self) -> bool:
        return self.baseline_total is not None


class _Node:
    __slots__ = ("children", "frames", "weight")  # profiles can merge into hundreds of thousands of nodes

    def __init__(self) -> None:
        self.weight = 0
        self.frames: dict[int, int] = {}  # frame index -> weight, to pick file:line
        self.children: dict[str, _Node] = {}


def _merged_tree(profile: StackProfile) -> _Node:
    root = _Node()
    for sample in profile.samples:
        node = root
        node.weight += sample.weight
        for index in sample.stack:
            node = node.children.setdefault(profile.frames[index].name, _Node())
            node.weight += sample.weight
            node.frames[index] = node.frames.get(index, 0) + sample.weight
    return root


def flame_layout(profile: StackProfile, *, diff_baseline: StackProfile | None = None) -> FlameLayout:
    """All frames of the merged tree as rectangles; no rectangles when the profile has no weight."""
    root = _merged_tree(profile)
    total = root.weight
    baseline = _merged_tree(diff_baseline) if diff_baseline is not None else None
    baseline_total = baseline.weight if baseline is not None else None
    rects: list[FlameRect] = []
    if total <= 0:
        return FlameLayout(rects, 0, profile.unit, 0, baseline_total)
    # Iterative, so that deep recursion in the profiled program cannot hit Python's recursion limit.
    todo: list[tuple[str, _Node, _Node | None, int, int]] = [(ROOT_NAME, root, baseline, 0, 0)]
    while todo:
        name, node, before, depth, start = todo.pop()
        frame = None
        if node.frames:  # a name can come from several frames (lines); show the heaviest
            index = min(node.frames, key=lambda i: (-node.frames[i], i))
            frame = profile.frames[index]
        baseline_share = None
        if baseline_total is not None:
            baseline_share = before.weight / baseline_total if before is not None and baseline_total > 0 else 0.0
        rects.append(FlameRect(
            name=name, kind=frame.kind if frame else "other", depth=depth, start=start, weight=node.weight,
            x=start / total, width=node.weight / total, file=frame.file if frame else None,
            line=frame.line if frame else None, inlined=frame.inlined if frame else False,
            baseline_share=baseline_share,
        ))
        callees, child_start = [], start
        for child_name in sorted(node.children):
            child = node.children[child_name]
            child_before = before.children.get(child_name) if before is not None else None
            callees.append((child_name, child, child_before, depth + 1, child_start))
            child_start += child.weight
        todo.extend(reversed(callees))
    return FlameLayout(rects, total, profile.unit, max(rect.depth for rect in rects), baseline_total)


def frame_colour(name: str, kind: str) -> str:
    """A shade of the kind's hue chosen by a stable hash of the name (Python's hash() is salted per run)."""
    (hue_low, hue_high), saturation, (light_low, light_high) = _PALETTES.get(kind, _PALETTES["other"])
    digest = zlib.crc32(name.encode("utf-8", "replace"))
    hue = hue_low + (digest & 0xFF) / 255 * (hue_high - hue_low)
    lightness = light_low + ((digest >> 8) & 0xFF) / 255 * (light_high - light_low)
    red, green, blue = colorsys.hls_to_rgb(hue / 360, lightness, saturation)
    return f"rgb({round(red * 255)},{round(green * 255)},{round(blue * 255)})"


def diff_colour(delta: float, max_abs_delta: float) -> str:
    """Red when the share grew, blue when it shrank, saturation proportional to the change."""
    if abs(delta) < 1e-9 or max_abs_delta <= 0:  # equal shares can differ by float rounding
        return "rgb(250,250,250)"
    fade = round(250 - 200 * min(abs(delta) / max_abs_delta, 1.0))
    return f"rgb(255,{fade},{fade})" if delta > 0 else f"rgb({fade},{fade},255)"


def fit_label(name: str, width_px: float, char_px: float = CHAR_WIDTH) -> str:
    """The name cut to fit with "..", or nothing when not even a few characters fit (same rule as the script)."""
    room = int((width_px - 6) // char_px)
    if room < 3:
        return ""
    return name if len(name) <= room else name[: room - 2] + ".."


def _xml(value: object) -> str:
    return escape(_NOT_XML.sub("\ufffd", str(value)), {'"': "&quot;"})


def _amount(weight: int, unit: str) -> str:
    return f"{weight:,} {unit[:-1] if weight == 1 and unit.endswith('s') else unit}"


def describe(rect: FlameRect, layout: FlameLayout) -> str:
    """The hover text: full name, kind, file:line, weight and share (and the change, for a diff)."""
    kind = f"{rect.kind}, inlined" if rect.inlined else rect.kind
    where = f" at {short_path(rect.file, rect.line)}" if rect.file else ""
    text = f"{rect.name} [{kind}]{where}: {_amount(rect.weight, layout.unit)}, {rect.width:.2%}"
    if rect.depth == 0:
        text = f"{_amount(rect.weight, layout.unit)} in all, 100%"
    if rect.baseline_share is not None and rect.delta is not None:
        text += f" (baseline {rect.baseline_share:.2%}, change {100 * rect.delta:+.2f} points)"
    return text


_STYLE = f"""
text {{ font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: {FONT_SIZE}px; fill: #000; }}
#zprof-title {{ font-size: 17px; text-anchor: middle; }}
.frame {{ cursor: pointer; }}
.frame text {{ pointer-events: none; }}
.frame:hover > rect {{ stroke: #000; stroke-width: 0.7; }}
.frame.match > rect {{ fill: {MATCH_COLOUR}; }}
.frame.parent {{ opacity: 0.5; }}
.frame.hide {{ display: none; }}
.control {{ cursor: pointer; fill: #035; text-decoration: underline; }}
.control.idle {{ opacity: 0.35; }}
.legend, .hint {{ fill: #333; }}
"""

# Frames carry data-start/data-weight/data-depth (exact integers), so zooming is interval
# arithmetic: ancestors of the target span the full width (faded), its subtree rescales, the rest hides.
_SCRIPT = r"""
(function () {
  "use strict";
  const svg = document.currentScript.closest("svg");
  const graphX = Number(svg.getAttribute("data-graph-x"));
  const graphW = Number(svg.getAttribute("data-graph-width"));
  const nodes = Array.from(svg.querySelectorAll("g.frame"), (g) => ({
    g, rect: g.querySelector("rect"), text: g.querySelector("text"),
    name: g.getAttribute("data-name"), info: g.querySelector("title").textContent,
    start: Number(g.getAttribute("data-start")), weight: Number(g.getAttribute("data-weight")),
    depth: Number(g.getAttribute("data-depth")),
  }));
  const byGroup = new Map(nodes.map((n) => [n.g, n]));
  const root = nodes.find((n) => n.depth === 0);
  const details = svg.querySelector(".details");
  const matchedText = svg.querySelector(".matched");
  const resetControl = svg.querySelector(".reset");
  const hiddenData = svg.querySelector("script.zprof-hidden");
  // Frames too narrow to draw, as [name index, start, weight], so search percentages stay exact.
  const hidden = hiddenData ? JSON.parse(hiddenData.textContent) : { names: [], nodes: [] };
  let charW = 7.2;
  let term = "";

  function measureCharWidth() {
    const saved = root.text.textContent;
    root.text.textContent = "MMMMMMMMMM";
    const width = root.text.getComputedTextLength() / 10;
    root.text.textContent = saved;
    return width > 0 ? width : charW;
  }

  function fit(name, width) {
    const room = Math.floor((width - 6) / charW);
    if (room < 3) return "";
    return name.length <= room ? name : name.slice(0, room - 2) + "..";
  }

  function place(n, x, width) {
    n.rect.setAttribute("x", x.toFixed(2));
    n.rect.setAttribute("width", width.toFixed(2));
    n.text.setAttribute("x", (x + 3).toFixed(2));
    n.text.textContent = fit(n.name, width);
  }

  function zoom(target) {
    const end = target.start + target.weight;
    for (const n of nodes) {
      const inside = n.depth >= target.depth && n.start >= target.start && n.start + n.weight <= end;
      const ancestor = n.depth < target.depth && n.start <= target.start && n.start + n.weight >= end;
      n.g.classList.toggle("hide", !inside && !ancestor);
      n.g.classList.toggle("parent", ancestor);
      if (ancestor) place(n, graphX, graphW);
      else if (inside) place(n, graphX + ((n.start - target.start) / target.weight) * graphW,
                             (n.weight / target.weight) * graphW);
    }
    resetControl.classList.toggle("idle", target === root);
  }

  function toRegExp(text) {
    try {
      return new RegExp(text);
    } catch (error) {  // not a valid pattern: search for the text as it is
      return new RegExp(text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
    }
  }

  // A sample counts once if any frame of its stack matches: matched frames' [start, start+weight)
  // intervals nest or are disjoint, so only those not inside an earlier match add up.
  function search(newTerm) {
    term = newTerm == null ? "" : String(newTerm);
    const pattern = term ? toRegExp(term) : null;
    const spans = [];
    for (const n of nodes) {
      const hit = pattern !== null && n !== root && pattern.test(n.name);
      n.g.classList.toggle("match", hit);
      if (hit) spans.push([n.start, n.weight]);
    }
    if (pattern !== null) {
      for (const [nameIndex, start, weight] of hidden.nodes) {
        if (pattern.test(hidden.names[nameIndex])) spans.push([start, weight]);
      }
    }
    spans.sort((a, b) => a[0] - b[0] || b[1] - a[1]);
    let matched = 0;
    let end = -1;
    for (const [start, weight] of spans) {
      if (start >= end) {
        matched += weight;
        end = start + weight;
      }
    }
    const share = root.weight > 0 ? matched / root.weight : 0;
    matchedText.textContent = pattern === null ? "" : "Matched: " + (100 * share).toFixed(1) + "%";
    return share;
  }

  function askSearch() {
    const answer = window.prompt("Search frames (regular expression or text; empty to clear)", term);
    if (answer !== null) search(answer);
  }

  // #search=term&zoom=name, both optional, values URI-encoded.
  function applyHash() {
    for (const part of window.location.hash.replace(/^#/, "").split("&")) {
      const [key, ...rest] = part.split("=");
      const value = decodeURIComponent(rest.join("="));
      if (key === "search") search(value);
      else if (key === "zoom") zoomTo(value);
    }
  }

  function zoomTo(name) {
    const target = nodes.find((n) => n.name === name);
    if (target) zoom(target);
    return Boolean(target);
  }

  svg.addEventListener("click", (event) => {
    const g = event.target.closest("g.frame");
    if (g) zoom(byGroup.get(g));
  });
  svg.addEventListener("mouseover", (event) => {
    const g = event.target.closest("g.frame");
    if (g) details.textContent = byGroup.get(g).info;
  });
  svg.addEventListener("mouseout", (event) => {
    if (event.target.closest("g.frame")) details.textContent = " ";
  });
  resetControl.addEventListener("click", () => zoom(root));
  svg.querySelector(".search").addEventListener("click", askSearch);
  window.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "f") {
      event.preventDefault();
      askSearch();
    } else if (event.key === "Escape") {
      search("");
    }
  });
  window.addEventListener("hashchange", applyHash);

  window.zprofSearch = search;
  window.zprofZoom = zoomTo;
  window.zprofReset = () => zoom(root);

  charW = measureCharWidth();
  zoom(root);
  applyHash();
})();
"""


def _document(title: str, height: float, body: list[str], attributes: str = "") -> str:
    return "\n".join([
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{WIDTH}" height="{height:.0f}" '
        f'viewBox="0 0 {WIDTH} {height:.0f}"{attributes}>',
        f"<title>{_xml(title)}</title>",
        f"<style>{_STYLE}</style>",
        '<defs><linearGradient id="zprof-background" x1="0" y1="0" x2="0" y2="1">'
        '<stop stop-color="#eeeeee" offset="5%"/><stop stop-color="#eeeeb0" offset="95%"/></linearGradient></defs>',
        f'<rect x="0" y="0" width="{WIDTH}" height="{height:.0f}" fill="url(#zprof-background)"/>',
        f'<text id="zprof-title" x="{WIDTH / 2:.0f}" y="24">{_xml(title)}</text>',
        *body,
        "</svg>",
        "",
    ])


def _legend(layout: FlameLayout) -> list[str]:
    if layout.is_diff:
        entries = [("rgb(255,50,50)", "share grew"), ("rgb(50,50,255)", "share shrank"),
                   ("rgb(250,250,250)", "unchanged"), (MATCH_COLOUR, "search match")]
    else:
        entries = [(frame_colour(kind, kind), kind) for kind in FRAME_KINDS] + [(MATCH_COLOUR, "search match")]
    parts, x, y = [], PAD, 44
    for colour, label in entries:
        parts.append(f'<rect x="{x}" y="{y - 10}" width="12" height="12" rx="2" fill="{colour}" stroke="#666" '
                     f'stroke-width="0.5"/><text class="legend" x="{x + 16}" y="{y}">{_xml(label)}</text>')
        x += 24 + round(CHAR_WIDTH * len(label))
    hint = _amount(layout.total_weight, layout.unit)
    if layout.baseline_total is not None:
        hint += f" (baseline: {layout.baseline_total:,})"
    hint += ". Click to zoom, Ctrl-F to search."
    parts.append(f'<text class="hint" x="{WIDTH - PAD}" y="{y}" text-anchor="end">{_xml(hint)}</text>')
    return parts


def _frame(rect: FlameRect, layout: FlameLayout, graph_bottom: float, fill: str) -> str:
    x = PAD + rect.x * GRAPH_WIDTH
    width = rect.width * GRAPH_WIDTH
    y = graph_bottom - (rect.depth + 1) * FRAME_HEIGHT
    data = {"name": rect.name, "kind": rect.kind, "depth": rect.depth, "start": rect.start, "weight": rect.weight,
            "file": rect.file, "line": rect.line, "baseline-share": rect.baseline_share, "delta": rect.delta}
    attributes = "".join(f' data-{key}="{_xml(value)}"' for key, value in data.items() if value is not None)
    return (f'<g class="frame"{attributes}><title>{_xml(describe(rect, layout))}</title>'
            f'<rect x="{x:.2f}" y="{y}" width="{width:.2f}" height="{FRAME_HEIGHT - 1}" rx="2" fill="{fill}"/>'
            f'<text x="{x + 3:.2f}" y="{y + 11.5}">{_xml(fit_label(rect.name, width))}</text></g>')


def _hidden_frames(rects: list[FlameRect]) -> str:
    names: dict[str, int] = {}
    nodes = [[names.setdefault(rect.name, len(names)), rect.start, rect.weight] for rect in rects]
    data = json.dumps({"names": list(names), "nodes": nodes}, separators=(",", ":"))
    return f'<script type="application/json" class="zprof-hidden">{_xml(data)}</script>'


def render_flame_svg(profile: StackProfile, title: str, *, diff_baseline: StackProfile | None = None,
                     min_fraction: float = MIN_FRACTION) -> str:
    """A self-contained interactive SVG flame graph (root at the bottom).

    With `diff_baseline`, a differential graph: widths follow `profile`, colour is the change of
    each frame's share of the total versus the same call path in the baseline (red grew, blue
    shrank). Paths only in the baseline cannot be drawn, as in flamegraph.pl's difffolded mode.
    """
    layout = flame_layout(profile, diff_baseline=diff_baseline)
    if layout.total_weight <= 0:
        return _document(title, 100, [f'<text x="{WIDTH / 2:.0f}" y="64" text-anchor="middle">no samples</text>'])
    graph_bottom = GRAPH_TOP + (layout.max_depth + 1) * FRAME_HEIGHT
    shown = [rect for rect in layout.rects if rect.depth == 0 or rect.width >= min_fraction]
    max_delta = max((abs(rect.delta or 0.0) for rect in layout.rects), default=0.0)

    def fill(rect: FlameRect) -> str:
        if rect.delta is not None:
            return diff_colour(rect.delta, max_delta)
        return frame_colour(rect.name, rect.kind)

    body = [
        *_legend(layout),
        f'<text class="control reset idle" x="{PAD}" y="24">Reset zoom</text>',
        f'<text class="control search" x="{WIDTH - PAD}" y="24" text-anchor="end">Search</text>',
        *(_frame(rect, layout, graph_bottom, fill(rect)) for rect in shown),
        f'<text class="details" x="{PAD}" y="{graph_bottom + 20}"> </text>',
        f'<text class="matched" x="{WIDTH - PAD}" y="{graph_bottom + 20}" text-anchor="end"></text>',
        _hidden_frames([rect for rect in layout.rects if rect.depth > 0 and rect.width < min_fraction]),
        f"<script><![CDATA[{_SCRIPT}]]></script>",
    ]
    attributes = f' data-graph-x="{PAD}" data-graph-width="{GRAPH_WIDTH}" data-unit="{_xml(layout.unit)}"'
    return _document(title, graph_bottom + 32, body, attributes)
