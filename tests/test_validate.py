"""zprof validate on minikv: with every planted defect on, the verdict is "needs work" and each planted
function is named under the rule that fits it; with none on, nothing is critical. The report follows
the validation procedure's layout, renders again byte for byte from the saved run, and opens in
Chromium with its flame graph and tables."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.conftest import MINIKV, quiet_comparison

pytestmark = pytest.mark.slow

PLANTED = {  # the planted function, the rule that must name it, and the command it is in (None: any)
    "alloc-reply": ("defects.formatReplyAlloc", "alloc-per-request", "HSET"),
    "small-allocs": ("defects.splitMemberTags", "small-allocs", "SADD"),
    "large-alloc": ("defects.scratchCopy", "large-alloc", "LPUSH"),
    "leak": ("defects.leakyAudit", "memory-not-given-back", "SET"),
    "linear-lookup": ("defects.findCommandLinear", "linear-lookup", None),
}
# The planted defects' commands, and GET: the defects are named from these alone (the linear lookup is in the
# dispatch every command goes through), in a third of the time all fifteen take.
PLANTED_COMMANDS = "SET,GET,HSET,SADD,LPUSH"
# The hot loop runs on its own: its ~100 µs per ZADD would take most of the profile's user-space samples,
# and leave the linear lookup (11% of them without it) near its rule's 3% floor, where noise decides.
HOT_LOOP = (("hot-loop",), "GET,ZADD")
EXIT_BY_VERDICT = {"approved": 0, "approved-with-minor-regressions": 0, "needs-work": 1, "not-judged": 2,
                   "not-measured": 2}
SECTIONS = ["## Executive Summary", "## 1. Zig Performance Profile", "### Memory Allocations", "### Hot Path Analysis",
            "### Memory Usage", "## 2. Redis Benchmark Comparison", "### Test Configuration",
            "### Throughput Results", "### Latency Results (p99 in ms)", "### Memory Efficiency",
            "## 3. Optimization Recommendations", "## 4. Performance Regression Check", "## 5. Final Verdict",
            "## Appendix: Raw Benchmark Data"]


@pytest.fixture(scope="module")
def validated(run_zprof, tmp_path_factory):
    """`zprof validate --quick` on minikv, with every planted defect and with none; each once. `extra`: more
    options (--server-args for a fault, --optimize); `busy`: processes that keep the cores busy meanwhile."""
    results = {}

    def run(defects: tuple[str, ...], commands: str | None = None, extra: tuple[str, ...] = (), busy: int = 0):
        key = (defects, commands, extra, busy)
        if key not in results:
            out = tmp_path_factory.mktemp("validate") / "run"
            server_args = " ".join(f"--defect {name}" for name in defects)
            with cores_kept_busy(busy):
                done = run_zprof("validate", "--project", str(MINIKV), "--quick", "--output", str(out),
                                 *(["--server-args", server_args] if server_args else []),
                                 *(["--commands", commands] if commands else []), *extra)
            report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else None
            results[key] = (done, out, report)
        return results[key]

    return run


@contextmanager
def cores_kept_busy(processes: int) -> Iterator[None]:
    """Processes that spin on the CPU while the block runs, as other jobs on a shared machine do."""
    spinning = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        yield
    finally:
        for process in spinning:
            process.kill()
            process.wait(timeout=10)


def test_every_planted_defect_is_named_under_its_rule(validated):
    done, _, report = validated(tuple(PLANTED), PLANTED_COMMANDS)
    assert report is not None, done.output
    assert done.returncode == 1 and report["verdict"] == "needs-work", done.output
    assert "NEEDS WORK" in done.stdout
    found = {(r["function"], r["rule"]): r for r in report["recommendations"]}
    for defect, (function, rule, command) in PLANTED.items():
        assert (function, rule) in found, f"{defect}: {function} not named under {rule}: {sorted(found)}"
        if command is not None:
            assert found[(function, rule)]["command"] == command
    # Each bound is a measured share or size, never a bare invention: it carries a number and says of what.
    for recommendation in report["recommendations"]:
        assert re.search(r"\d", recommendation["bound"]), recommendation
    # The leak is critical, and blocks the commit.
    assert found[("defects.leakyAudit", "memory-not-given-back")]["critical"]
    assert any("leakyAudit" in blocker for blocker in report["blockers"])


def test_a_hot_loop_is_named_critical_and_blocks(validated):
    """On a machine too busy for its trials to be conclusive (repeat-tests beside repeat-tests), the hot loop is
    still named, and the verdict is never an approval."""
    done, out, report = validated(*HOT_LOOP)
    assert report is not None, done.output
    assert done.returncode == EXIT_BY_VERDICT[report["verdict"]] and report["verdict"] in ("needs-work", "not-judged")
    hot = next(r for r in report["recommendations"] if r["function"] == "defects.spinScore")
    assert hot["rule"] == "hot-function" and hot["command"] in ("ZADD", None)
    bench_zadd = next(c for c in json.loads((out / "bench" / "run.json").read_text())["commands"]
                      if c["command"] == "ZADD")
    if quiet_comparison(bench_zadd):
        assert report["verdict"] == "needs-work", done.output
        assert hot["critical"] and hot["command"] == "ZADD"
        assert any(blocker.startswith("ZADD throughput") for blocker in report["blockers"])
    # GET is left alone. Not "GET is no blocker": minikv's GET sits near 70% of Redis' on two busy cores, at
    # the blocking threshold itself, so two trials may or may not call it under; the defect's ZADD is an
    # order of magnitude beyond it either way.
    bench = json.loads((out / "bench" / "run.json").read_text())
    get, zadd = (next(c for c in bench["commands"] if c["command"] == name) for name in ("GET", "ZADD"))
    assert get["throughput"]["percent"] > 10 * zadd["throughput"]["percent"], (get, zadd)
    assert not any(r["critical"] and r["command"] == "GET" for r in report["recommendations"])


def test_with_no_defect_nothing_is_critical(validated):
    """Also while two other processes keep both cores busy: a saturated machine is no finding about minikv,
    which serves its clients concurrently (a thread per connection)."""
    done, out, report = validated((), busy=2)
    assert report is not None, done.output
    assert [r["title"] for r in report["recommendations"] if r["critical"]] == []
    bench_notes = [note["code"] for note in json.loads((out / "bench" / "run.json").read_text())["limitations"]]
    assert "bench.target-persists" not in bench_notes  # minikv keeps its keys in memory only
    assert not any(r["rule"] == "synchronous-io" for r in report["recommendations"]), done.output
    assert not any(r["function"] and r["function"].startswith("defects.") for r in report["recommendations"])
    assert done.returncode == EXIT_BY_VERDICT[report["verdict"]], done.output
    # minikv allocates through the Debug allocator in its ReleaseFast build: a finding, with its measured share.
    allocator = next(r for r in report["recommendations"] if r["rule"] == "program-allocator")
    assert "DebugAllocator" in allocator["evidence"] and allocator["bound_percent"] is not None, allocator
    assert not allocator["critical"]
    # One receive and one send per request: no system call finding.
    assert not any(r["rule"] == "syscalls-per-request" for r in report["recommendations"]), done.output


def test_writes_that_fail_once_the_store_is_full_block_and_a_debug_build_is_said_everywhere(validated):
    """minikv answers `-ERR out of memory` to every write that would add a key past 1,000 keys, built in Debug:
    the failing writes are a critical finding with their error share, and the Debug build is said in the
    summary, report.md's executive summary and verdict, and is the first recommendation."""
    done, out, report = validated((), "SET,GET", ("--server-args", "--full-after 1000", "--optimize", "Debug"))
    assert report is not None, done.output
    assert done.returncode == 1 and report["verdict"] == "needs-work", done.output
    failing = next(r for r in report["recommendations"] if r["rule"] == "error-replies")
    assert failing["critical"] and failing["command"] == "SET", failing
    assert "ERR out of memory" in failing["evidence"] and re.search(r"\d+\.\d%\)", failing["evidence"]), failing
    assert f"critical: {failing['title']}" in report["blockers"]
    assert report["recommendations"][0]["rule"] == "release-build"
    flat = " ".join(done.stdout.split())
    assert "Build: Debug: the CPU time, throughput and latency here are a Debug build's" in flat
    text = (out / "report.md").read_text().replace("**", "")  # the words, not their markdown emphasis
    summary, verdict = text.split("## 1.", 1)[0], text.split("## 5. Final Verdict", 1)[1]
    assert "- Build: Debug: the CPU time" in summary and "not representative" in summary
    assert "not representative" in verdict


# Four of issue 24's root causes at once, each a finding of its own: a start-up crash in every other start, a
# value type made large by an inline array (built in), a reply sent in three parts, and a fast allocator.
ROOT_CAUSES = ((), "SET,GET", ("--build-arg", "-Dfat-value=true", "--server-args",
                               "--fault crash-at-start --allocator smp --defect write-per-part"))


def test_root_causes_are_named_where_they_are(validated):
    done, out, report = validated(*ROOT_CAUSES)
    assert report is not None, done.output
    found = {r["rule"]: r for r in report["recommendations"]}
    # The crash: critical, at the line that crashes, counted over the starts (half crash: a pid that is even).
    crash = found["server-crash"]
    assert crash["critical"] and crash["function"] == "faults.crashAtStart", crash
    assert crash["file"].endswith("examples/minikv/src/faults.zig") and crash["line"] > 0
    assert re.search(r"in \d+ of \d+ starts", crash["evidence"]) and "SIGSEGV" in crash["evidence"]
    assert report["verdict"] == "needs-work" and done.returncode == 1
    assert f"critical: {crash['title']}" in report["blockers"]
    # Memory per key: the type, its size and the field, with the saving boxing it would bring.
    per_key = found["memory-per-key"]
    assert per_key["title"].endswith("keyspace.Value.sketch"), per_key
    assert "keyspace.Value of 4,104 B" in per_key["evidence"] and "registers: [4096]u8" in per_key["evidence"]
    assert "hold `sketch` through a pointer" in per_key["fix"]
    # Three sends per reply, named at the function that makes them.
    sends = [r for r in report["recommendations"] if r["rule"] == "syscalls-per-request"]
    assert sends and all(r["function"] == "defects.writeReplyInParts" for r in sends), sends
    assert any("3.0 socket" in r["evidence"] for r in sends), sends
    # smp_allocator is no finding, as the Debug allocator is in the run without defects.
    assert "program-allocator" not in found
    text = (out / "report.md").read_text()
    assert "System calls per request (one client, no pipelining)" in text and "In the kernel, by cause:" in text


def test_report_md_follows_the_procedures_layout(validated):
    _, out, report = validated(tuple(PLANTED), PLANTED_COMMANDS)
    text = (out / "report.md").read_text()
    assert text.startswith("# Performance Validation Report: minikv")
    headings = [line for line in text.splitlines() if line.startswith("## ") or line.startswith("### ")]
    assert [h for h in headings if h in SECTIONS] == SECTIONS  # every section, in order
    summary = text.split("## Executive Summary", 1)[1].split("## 1.", 1)[0]
    for field in ("Overall Performance:", "vs Redis:", "Critical Issues:", "Optimization Opportunities:"):
        assert f"**{field}**" in summary
    critical = sum(r["critical"] for r in report["recommendations"])
    assert f"**Critical Issues:** {critical}" in summary
    assert "| Command | Redis (req/s) | Target (req/s) | % of Redis | Status |" in text
    assert "| Command | Redis p99 | Target p99 | Difference | Status |" in text
    assert "| Metric | Redis | Target | Difference | Status |" in text
    recommendations = text.split("## 3. Optimization Recommendations", 1)[1].split("## 4.", 1)[0]
    for number in range(1, len(report["recommendations"]) + 1):
        assert f"### Priority {number}: " in recommendations
    for field in ("Impact:", "Difficulty:", "Estimated Improvement:", "Implementation:"):
        assert recommendations.count(f"**{field}**") == len(report["recommendations"])
    assert "```zig" in recommendations  # a sketch in Zig
    verdict = text.split("## 5. Final Verdict", 1)[1]
    assert "**NEEDS WORK ❌**" in verdict and "Blocked by:" in verdict
    # The appendix has the exact command of every part, each runnable alone.
    appendix = text.split("## Appendix: Raw Benchmark Data", 1)[1]
    for part in report["parts"]:
        assert " ".join(part["command_line"][:2]) in appendix


def test_zprof_report_renders_report_md_again_byte_for_byte(validated, run_zprof, tmp_path):
    _, out, _ = validated(tuple(PLANTED), PLANTED_COMMANDS)
    again = run_zprof("report", str(out), "--format", "md", cwd=tmp_path)
    assert again.returncode == 0, again.output
    assert again.stdout == (out / "report.md").read_text()


def test_report_html_shows_the_flame_graph_and_tables_in_chromium(validated, tmp_path):
    from selenium.webdriver.common.by import By

    from tests.browser import headless_chromium, missing_browser

    if reason := missing_browser():
        pytest.skip(reason)
    _, out, report = validated(*HOT_LOOP)
    page = out / "report.html"
    with headless_chromium(tmp_path / "profile") as browser:
        browser.get(page.as_uri())
        assert browser.title.startswith("Performance Validation Report")
        headings = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "h2, h3")]
        assert "Executive Summary" in headings and "5. Final Verdict" in headings
        # The flame graph is inline SVG, with the hot function's frame in it.
        frames = browser.find_elements(By.CSS_SELECTOR, 'figure svg g.frame[data-name="defects.spinScore"]')
        assert frames, "the flame graph is not in the page"
        tables = browser.find_elements(By.TAG_NAME, "table")
        assert len(tables) >= 5
        throughput = next(t for t in tables if "Redis (req/s)" in t.text)
        assert "ZADD" in throughput.text
        # Self-contained: the page fetched nothing (pictures are inline).
        resources = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)")
        assert [name for name in resources if not name.startswith("data:")] == []
    assert report["flame"] is not None


def test_tier_and_commands_are_checked_before_anything_runs(run_zprof, tmp_path):
    done = run_zprof("validate", "--project", str(MINIKV), "--commands", "SET,PUBLISH", "--output",
                     str(tmp_path / "out"))
    assert done.returncode == 2 and "PUBLISH" in done.output and "Traceback" not in done.output
    assert not (tmp_path / "out").exists()
    done = run_zprof("validate", "--project", str(MINIKV), "--tier", "1", "--commands", "SET")
    assert done.returncode == 2 and "not both" in done.output
