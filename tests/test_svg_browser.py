"""The SVG flame graph: its layout and escaping as plain data, then its script in a real headless Chromium."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from zprof.analysis.stacks import Frame, ProfileBuilder, StackProfile
from zprof.report.svg import (
    GRAPH_WIDTH,
    FlameLayout,
    FlameRect,
    diff_colour,
    fit_label,
    flame_layout,
    frame_colour,
    render_flame_svg,
)

SVG_NS = "{http://www.w3.org/2000/svg}"
SPIN = "defects.spinScore"
SPIN_PATH = ("main", "server.handleConnection", "commands.zadd", SPIN)
GENERIC = "array_list.Aligned([]const u8,null).appendSlice"
KINDS = {"main": "project", "server.handleConnection": "project", "commands.zadd": "project", SPIN: "project",
         "defects.spinScoreInner": "project", GENERIC: "std", "mem.copyForwards": "std",
         "hash_map.HashMapUnmanaged(u64,void,hash_map.AutoContext(u64),80).getIndex": "std",
         "read": "libc", "start_thread": "libc", "entry_SYSCALL_64": "kernel", "ksys_read": "kernel",
         "io.Loop.run": "project", "0x7f3a": "other"}
# Stack (root first) -> weight, 10000 in all; spinScore holds 60% of it.
STACKS = {
    (*SPIN_PATH,): 5995,
    (*SPIN_PATH, "defects.spinScoreInner"): 5,  # 0.05%: too narrow to draw, nested in a match
    ("main", "server.handleConnection", "commands.zadd", GENERIC, "mem.copyForwards"): 1200,
    ("main", "server.handleConnection", "hash_map.HashMapUnmanaged(u64,void,hash_map.AutoContext(u64),80).getIndex"):
        800,
    ("main", "server.handleConnection", "read", "entry_SYSCALL_64", "ksys_read"): 1500,
    ("start_thread", "io.Loop.run", "0x7f3a"): 500,
}


def build(stacks: dict[tuple[str, ...], int], unit: str = "samples") -> StackProfile:
    builder = ProfileBuilder(unit)
    for stack, weight in stacks.items():
        # Half on each of two threads, so the graph has to merge them.
        for thread, share in (("main", weight // 2), ("worker", weight - weight // 2)):
            if share:
                frames = [Frame(name, "src/demo.zig", 10 + depth, KINDS.get(name, "project"))
                          for depth, name in enumerate(stack)]
                builder.add(thread, frames, share)
    return builder.build()


def rect_named(layout: FlameLayout, name: str) -> FlameRect:
    return next(rect for rect in layout.rects if rect.name == name)


def frame_groups(svg: str) -> list[ET.Element]:
    return [g for g in ET.fromstring(svg).iter(f"{SVG_NS}g") if g.get("class") == "frame"]


def test_layout_widths_nest_and_sum():
    layout = flame_layout(build(STACKS))
    assert layout.total_weight == 10000
    assert layout.rects[0].name == "all" and layout.rects[0].width == 1.0 and layout.rects[0].depth == 0
    for index, parent in enumerate(layout.rects):
        children = []
        for rect in layout.rects[index + 1 :]:  # pre-order: the subtree follows its root
            if rect.depth <= parent.depth:
                break
            if rect.depth == parent.depth + 1:
                children.append(rect)
        # Callees sit side by side from the caller's left edge, in name order, within its width.
        assert [child.name for child in children] == sorted(child.name for child in children)
        position = parent.start
        for child in children:
            assert child.start == position
            position += child.weight
        assert position <= parent.start + parent.weight
        assert sum(child.width for child in children) <= parent.width + 1e-12
    assert rect_named(layout, SPIN).width == pytest.approx(0.6)
    assert rect_named(layout, "server.handleConnection").width == pytest.approx(0.95)
    # Two threads merged: one rectangle per call path.
    assert sum(rect.name == "main" for rect in layout.rects) == 1
    kernel = rect_named(layout, "entry_SYSCALL_64")
    assert (kernel.kind, kernel.depth, kernel.file, kernel.line) == ("kernel", 4, "src/demo.zig", 13)


def test_svg_frames_carry_data_and_percentages():
    svg = render_flame_svg(build(STACKS), "zprof flame ZADD")
    groups = {g.get("data-name"): g for g in frame_groups(svg)}
    spin = groups[SPIN]
    assert (spin.get("data-kind"), spin.get("data-weight"), spin.get("data-depth")) == ("project", "6000", "4")
    info = spin.find(f"{SVG_NS}title").text
    assert info == f"{SPIN} [project] at src/demo.zig:13: 6,000 samples, 60.00%"
    assert GENERIC in groups[GENERIC].find(f"{SVG_NS}title").text
    rect = spin.find(f"{SVG_NS}rect")
    assert float(rect.get("width")) == pytest.approx(0.6 * GRAPH_WIDTH, abs=0.01)
    # Too narrow to draw, but kept for search so "Matched" percentages stay exact.
    assert "defects.spinScoreInner" not in groups
    hidden = next(e for e in ET.fromstring(svg).iter(f"{SVG_NS}script") if e.get("class") == "zprof-hidden")
    data = json.loads(hidden.text)
    assert [[data["names"][i], start, weight] for i, start, weight in data["nodes"]] == [
        ["defects.spinScoreInner", 1200, 5]]


def test_names_are_escaped():
    nasty = 'fmt.format(<"a&b">, .{ }).x]]>'
    svg = render_flame_svg(build({("main", nasty): 10, ("main", "bad\x00byte"): 1}), 'title <&> "q"')
    root = ET.fromstring(svg)  # well-formed XML despite the name
    assert root.find(f"{SVG_NS}title").text == 'title <&> "q"'
    groups = {g.get("data-name"): g for g in frame_groups(svg)}
    assert nasty in groups
    assert groups[nasty].find(f"{SVG_NS}title").text.startswith(nasty + " [project]")
    assert "bad\ufffdbyte" in groups


def test_empty_profile_says_no_samples():
    svg = render_flame_svg(StackProfile(), "nothing")
    root = ET.fromstring(svg)
    assert "no samples" in "".join(root.itertext())
    assert frame_groups(svg) == []
    assert flame_layout(StackProfile()).rects == []


def test_diff_colours_follow_the_sign_of_the_share_change():
    before = build({SPIN_PATH: 2000, ("main", "read"): 8000})
    after = build({SPIN_PATH: 6000, ("main", "read"): 4000}, unit="samples")
    layout = flame_layout(after, diff_baseline=before)
    spin, read = rect_named(layout, SPIN), rect_named(layout, "read")
    assert spin.baseline_share == pytest.approx(0.2) and spin.delta == pytest.approx(0.4)
    assert read.delta == pytest.approx(-0.4)
    assert rect_named(layout, "main").delta == pytest.approx(0.0)
    assert diff_colour(0.4, 0.4) == "rgb(255,50,50)"  # grew: red, fully saturated at the largest change
    assert diff_colour(-0.2, 0.4) == "rgb(150,150,255)"  # shrank: blue, half as saturated
    assert diff_colour(0.4 - (0.6 - 0.2), 0.4) == diff_colour(0.0, 0.4) == "rgb(250,250,250)"
    groups = {g.get("data-name"): g for g in frame_groups(render_flame_svg(after, "diff", diff_baseline=before))}
    assert groups[SPIN].find(f"{SVG_NS}rect").get("fill") == "rgb(255,50,50)"
    assert groups["read"].find(f"{SVG_NS}rect").get("fill") == "rgb(50,50,255)"
    assert "baseline 20.00%, change +40.00 points" in groups[SPIN].find(f"{SVG_NS}title").text
    # A path new in the profile had no share before.
    new = flame_layout(build({("main", "fresh"): 1}), diff_baseline=before)
    assert rect_named(new, "fresh").baseline_share == 0.0


def test_colours_are_stable_and_follow_the_kind():
    assert frame_colour(SPIN, "project") == frame_colour(SPIN, "project")

    def rgb(colour: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", colour))

    for name in ("a", "b", SPIN, GENERIC):
        red, green, blue = rgb(frame_colour(name, "project"))
        assert red > green > blue  # orange/red
        red, green, blue = rgb(frame_colour(name, "libc"))
        assert green > red and green > blue
        red, green, blue = rgb(frame_colour(name, "kernel"))
        assert blue > red
        red, green, blue = rgb(frame_colour(name, "other"))
        assert red == green == blue


def test_labels_are_cut_to_fit():
    assert fit_label("commands.zadd", 200) == "commands.zadd"
    assert fit_label("commands.zadd", 6 + 60) == "comman.."
    assert fit_label("commands.zadd", 20) == ""


# --- In a real browser -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    from tests.browser import headless_chromium, missing_browser

    if reason := missing_browser():
        pytest.skip(reason)
    with headless_chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


@pytest.mark.slow
def test_flame_graph_in_chromium(browser, tmp_path: Path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.browser import TIMEOUT_S

    path = tmp_path / "flame.svg"
    path.write_text(render_flame_svg(build(STACKS), "zprof flame ZADD (minikv)"), encoding="utf-8")
    url = path.as_uri()
    browser.get(url)
    wait = WebDriverWait(browser, TIMEOUT_S)
    wait.until(lambda d: d.execute_script("return typeof window.zprofSearch === 'function'"))

    def frame(name: str):
        return browser.find_element(By.CSS_SELECTOR, f'g.frame[data-name="{name}"]')

    def text_of(css_class: str) -> str:
        return browser.find_element(By.CSS_SELECTOR, f"text.{css_class}").text

    def rect_width(name: str) -> float:
        return float(frame(name).find_element(By.TAG_NAME, "rect").get_attribute("width"))

    full_width = rect_width("all")
    assert full_width == pytest.approx(GRAPH_WIDTH)
    assert rect_width(SPIN) == pytest.approx(0.6 * full_width, abs=0.5)

    # (a) search: the frame turns magenta, and its share counts once although a callee matches too
    assert browser.execute_script(f"return window.zprofSearch({SPIN.split('.')[1]!r})") == pytest.approx(0.6)
    assert text_of("matched") == "Matched: 60.0%"
    assert "match" in frame(SPIN).get_attribute("class").split()
    spin_rect = frame(SPIN).find_element(By.TAG_NAME, "rect")
    assert spin_rect.value_of_css_property("fill") == "rgb(230, 0, 230)"
    assert "match" not in frame("commands.zadd").get_attribute("class").split()
    # A frame too narrow to draw still counts.
    assert browser.execute_script("return window.zprofSearch('spinScoreInner')") == pytest.approx(0.0005)
    # The hash and the keyboard set the search too.
    browser.get(url + "#search=" + "Aligned%28%5B%5Dconst")  # `Aligned([]const`: not a valid regex, taken as text
    wait.until(lambda d: text_of("matched") == "Matched: 12.0%")
    ActionChains(browser).key_down(Keys.CONTROL).send_keys("f").key_up(Keys.CONTROL).perform()
    prompt = wait.until(expected_conditions.alert_is_present())
    prompt.send_keys("^(read|start_thread)$")
    prompt.accept()
    wait.until(lambda d: text_of("matched") == "Matched: 20.0%")

    # (c) hovering shows the full generic name and its weight in the details line
    generic_rect = frame(GENERIC).find_element(By.TAG_NAME, "rect")
    ActionChains(browser).move_to_element(generic_rect).perform()
    wait.until(lambda d: GENERIC in text_of("details"))
    assert "1,200 samples, 12.00%" in text_of("details")

    # (b) a real click on spinScore's rectangle zooms it to the full width
    browser.find_element(By.CSS_SELECTOR, "text.reset").click()  # no-op when not zoomed
    spin_rect = frame(SPIN).find_element(By.TAG_NAME, "rect")
    spin_rect.click()
    wait.until(lambda d: abs(rect_width(SPIN) - full_width) < 1)
    assert spin_rect.rect["width"] == pytest.approx(full_width, abs=2)
    assert "parent" in frame("commands.zadd").get_attribute("class").split()  # ancestors stay, faded
    assert rect_width("commands.zadd") == pytest.approx(full_width)
    assert not frame("start_thread").is_displayed()  # outside the zoomed frame
    browser.save_screenshot(str(tmp_path / "zoomed.png"))
    browser.find_element(By.CSS_SELECTOR, "text.reset").click()
    wait.until(lambda d: abs(rect_width(SPIN) - 0.6 * full_width) < 1)
    assert frame("start_thread").is_displayed()

    # (d) no JavaScript errors on the way
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
