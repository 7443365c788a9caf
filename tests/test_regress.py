"""zprof baseline and zprof regress on minikv, end to end: real builds, the real shim, real callgrind,
real trials. Each test works on a copy of minikv in a git repository of its own (baseline save writes
.zprof/ into the project, which must never be examples/minikv).

The ground truth: the same build passes; one allocation more per HSET reply is a regression named
by its function; ZADD's hot loop is a regression of instructions named by its function; a ZADD far
slower than Redis' blocks; bad baselines are clear errors."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import MINIKV
from zprof.model.baseline import NONE, REGRESSION, UNDECIDED, UNSTABLE

pytestmark = pytest.mark.slow

# Few requests keep each run short; the counts per request are exact at any number.
SUITE = ("--commands", "HSET,ZADD", "--requests", "400", "--trials", "0")
GIT_ENV = {"GIT_AUTHOR_NAME": "zprof", "GIT_AUTHOR_EMAIL": "zprof@localhost", "GIT_COMMITTER_NAME": "zprof",
           "GIT_COMMITTER_EMAIL": "zprof@localhost"}


def git(project: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(project), *args], capture_output=True, text=True, check=True,
                          env={**os.environ, **GIT_ENV}, timeout=60)
    return done.stdout.strip()


@contextmanager
def planted(project: Path, *defects: str) -> Iterator[None]:
    """A developer's change to the working tree: minikv's defects compiled in (src/planted.zig), as they would
    be in code, so that both sides of a side-by-side check run with the same flags; undone after."""
    path = project / "src" / "planted.zig"
    original = path.read_text()
    listed = ", ".join(f'"{defect}"' for defect in defects)
    path.write_text(original.replace("&.{};", f"&.{{{listed}}};"))
    try:
        yield
    finally:
        path.write_text(original)


def minikv_repository(directory: Path) -> Path:
    """A copy of minikv, committed in a repository of its own."""
    shutil.copytree(MINIKV, directory, ignore=shutil.ignore_patterns(".zig-cache", "zig-out", "zprof.toml", ".zprof"))
    git(directory, "init", "-q")
    git(directory, "add", "-A")
    git(directory, "commit", "-q", "-m", "minikv")
    return directory


@dataclass(frozen=True)
class Saved:
    root: Path
    name: str  # the baseline's, the short commit it was saved on

    @property
    def file(self) -> Path:
        return self.root / ".zprof" / "baselines" / f"{self.name}.json"


@pytest.fixture(scope="module")
def saved(run_zprof, tmp_path_factory) -> Saved:
    """minikv with a baseline of HSET and ZADD (deterministic signals) saved under its short commit."""
    root = minikv_repository(tmp_path_factory.mktemp("regress") / "minikv")
    done = run_zprof("baseline", "save", "--project", str(root), *SUITE)
    assert done.returncode == 0, done.output
    short = git(root, "rev-parse", "--short", "HEAD")
    assert f"Saved baseline {short} to {root / '.zprof' / 'baselines' / short}.json" in " ".join(done.stdout.split())
    return Saved(root, short)


def regress(run_zprof, project: Path, tmp_path: Path, *args: str, name: str = "check") -> tuple[int, str, dict]:
    out = tmp_path / f"{name}.json"
    done = run_zprof("regress", "--project", str(project), "--json", str(out), *args)
    assert "Traceback" not in done.output
    assert "Performance Regression Check" in done.stdout, done.output
    return done.returncode, " ".join(done.stdout.split()), json.loads(out.read_text())


def check_of(run: dict, command: str, metric: str) -> dict:
    return next(c for c in run["checks"] if c["command"] == command and c["metric"] == metric)


def test_the_same_build_passes_in_two_runs_of_two(run_zprof, saved, tmp_path):
    for attempt in range(2):
        code, printed, run = regress(run_zprof, saved.root, tmp_path, name=f"same-{attempt}")
        assert code == 0 and run["outcome"] == "pass" and "Result: PASS" in printed
        assert {check["assessment"] for check in run["checks"]} == {NONE}
        for command in ("HSET", "ZADD"):
            # Deterministic: the very same counts, not merely close ones.
            assert check_of(run, command, "allocations/request")["change_percent"] == 0
            assert check_of(run, command, "instructions/request")["change_percent"] == 0


def test_the_baseline_keeps_its_builds_out_of_git(saved):
    """The builds the suite measured, kept content-addressed beside the baselines, and ignored by git."""
    baseline = json.loads(saved.file.read_text())
    kept = {binary["role"]: binary for binary in baseline["binaries"]}
    assert set(kept) == {"server", "shim", "valgrind"}  # callgrind counted, so its build is kept too
    for binary in kept.values():
        path = saved.root / ".zprof" / "binaries" / binary["sha256"] / "minikv"
        assert path.is_file() and path.stat().st_size == binary["size"] and os.access(path, os.X_OK)
        assert binary["zig_version"] == "0.15.2" and binary["optimize"] == "ReleaseFast"
    assert len({binary["sha256"] for binary in kept.values()}) == 3
    untracked = git(saved.root, "status", "--porcelain", "--untracked-files=all")
    assert ".zprof/baselines/" in untracked and ".zprof/binaries/" not in untracked


def test_one_more_allocation_per_hset_reply_is_a_regression_named_by_its_function(run_zprof, saved, tmp_path):
    with planted(saved.root, "alloc-reply"):
        code, printed, run = regress(run_zprof, saved.root, tmp_path)
    assert code == 1 and run["outcome"] == "regression"
    allocs = check_of(run, "HSET", "allocations/request")
    assert allocs["assessment"] == REGRESSION
    assert allocs["current"] - allocs["baseline"] == pytest.approx(1.0, abs=1e-3)
    assert check_of(run, "ZADD", "allocations/request")["assessment"] == NONE
    hset = next(changes for changes in run["changes"] if changes["command"] == "HSET")
    first = hset["sites"][0]
    assert first["function"].endswith("formatReplyAlloc") and first["nested_in"] is None
    assert first["current_allocs"] - first["baseline_allocs"] == pytest.approx(1.0, abs=1e-3)
    assert first["places"][0][0].endswith("src/defects.zig")
    assert "HSET allocations/request" in printed and "formatReplyAlloc" in printed
    assert "Result: REGRESSION" in printed


def test_zadds_hot_loop_is_a_regression_of_instructions_naming_spin_score(run_zprof, saved, tmp_path):
    with planted(saved.root, "hot-loop"):
        code, printed, run = regress(run_zprof, saved.root, tmp_path)
    assert code == 1
    instructions = check_of(run, "ZADD", "instructions/request")
    assert instructions["assessment"] == REGRESSION and instructions["change_percent"] > 1000
    assert check_of(run, "HSET", "instructions/request")["assessment"] == NONE
    assert check_of(run, "ZADD", "allocations/request")["assessment"] == NONE
    zadd = next(changes for changes in run["changes"] if changes["command"] == "ZADD")
    assert zadd["functions"][0]["function"].endswith("spinScore")
    assert "spinScore" in printed and "ZADD instructions/request" in printed


def test_a_name_taken_is_refused_before_anything_runs(run_zprof, saved):
    before = saved.file.read_bytes()
    done = run_zprof("baseline", "save", saved.name, "--project", str(saved.root), *SUITE, timeout=60)
    assert done.returncode == 2 and "exists already" in done.output and "--force" in done.output
    assert saved.file.read_bytes() == before


def test_bad_baselines_are_clear_errors(run_zprof, saved, tmp_path):
    store = saved.file.parent
    (store / "cut.json").write_text(saved.file.read_text()[:500])
    (store / "allocs-run.json").write_text(json.dumps({"schema": "zprof.allocs/3", "command": "SET"}))
    try:
        for args, code, phrase in ((("--baseline", "cut"), 2, "not readable JSON"),
                                   (("--baseline", "nope"), 2, "no baseline named nope"),
                                   (("--baseline", "allocs-run"), 2, "not a valid allocs run"),
                                   (("--baseline", "../x"), 2, "no baseline file at ../x"),
                                   (("--baseline", "-x"), 2, "is not a baseline name")):
            done = run_zprof("regress", "--project", str(saved.root), *args, timeout=60)
            assert done.returncode == code and phrase in done.output and "Traceback" not in done.output, done.output
        # zprof baseline list shows the readable ones and says which are not.
        listed = run_zprof("baseline", "list", "--project", str(saved.root), timeout=60)
        assert listed.returncode == 0 and saved.name in listed.stdout and "unreadable" in listed.stdout
    finally:
        for name in ("cut", "allocs-run"):
            (store / f"{name}.json").unlink()
    empty = minikv_repository(tmp_path / "empty")
    done = run_zprof("regress", "--project", str(empty), timeout=60)
    assert done.returncode == 2 and "no baseline is saved" in done.output
    # A baseline file from anywhere, by its path (or its directory's): another checkout's, here.
    for given in (saved.file, saved.file.parent):
        code, _, run = regress(run_zprof, empty, tmp_path, "--baseline", str(given), name=f"from-{given.name}")
        assert code == 0 and run["outcome"] == "pass", run


def old_zig_baseline(saved: Saved) -> Path:
    """The saved baseline as one from another Zig whose builds are gone: only its recorded figures remain."""
    other = json.loads(saved.file.read_text())
    other["target"]["zig_version"] = "0.14.1"
    other["name"] = "old-zig"
    other["binaries"] = [{**binary, "sha256": "0" * 64} for binary in other["binaries"]]
    path = saved.file.parent / "old-zig.json"
    path.write_text(json.dumps(other))
    return path


def test_a_copy_made_only_when_get_finds_its_key_is_caught_on_the_hits_row(run_zprof, tmp_path):
    """GET is measured on misses and on hits, each its own row: minikv's copy-on-hit costs one allocation per
    GET that finds its key and none per miss, so only the hits row regresses, named by its function."""
    root = minikv_repository(tmp_path / "hits")
    stored = run_zprof("baseline", "save", "--project", str(root), "--commands", "GET", "--requests", "400",
                       "--trials", "0")
    assert stored.returncode == 0, stored.output
    with planted(root, "copy-on-hit"):
        code, printed, run = regress(run_zprof, root, tmp_path)
    assert code == 1 and run["outcome"] == "regression", printed
    misses, hits = check_of(run, "GET", "allocations/request"), check_of(run, "GET (hits)", "allocations/request")
    assert misses["assessment"] == NONE and misses["change_percent"] == 0
    assert hits["assessment"] == REGRESSION and hits["current"] - hits["baseline"] == pytest.approx(1.0, abs=1e-3)
    changes = next(changes for changes in run["changes"] if changes["command"] == "GET (hits)")
    assert changes["sites"][0]["function"].endswith("replyWithCopy")
    assert "GET (hits) allocations/request" in printed


def test_a_server_that_allocates_on_a_timer_is_not_a_regression_of_itself(run_zprof, tmp_path):
    """minikv --tick 100 takes and gives back 4 blocks 100 times a second, idle or not, so the idle window and
    the run each catch a tick more or fewer from one run to the next. The counts carry that resolution: the
    same build side by side is never a regression of allocations, and one allocation more per request is."""
    root = minikv_repository(tmp_path / "tick")
    # 2,000 requests: the idle work's share per request, and so the counts' resolution, is a fifth of 400's.
    suite = ("--commands", "HSET", "--requests", "2000", "--trials", "0", "--server-args", "--tick 100")
    stored = run_zprof("baseline", "save", "base", "--project", str(root), *suite)
    assert stored.returncode == 0, stored.output
    baseline = json.loads((root / ".zprof" / "baselines" / "base.json").read_text())
    hset = baseline["commands"][0]["allocs"]
    assert 0 < hset["resolution"] < 0.5  # the idle server's bursts, seen
    # The timer's work is taken off: HSET's count is the one without the timer, within the stated resolution.
    quiet = run_zprof("allocs", "HSET", "--project", str(root), "--requests", "2000", "--output", str(tmp_path / "q"))
    assert quiet.returncode == 0, quiet.output
    without = json.loads((tmp_path / "q" / "run.json").read_text())["analysis"]
    assert without["idle_resolution"] == 0
    assert abs(hset["allocs"] - without["per_request"]["allocs"]) <= hset["resolution"] + 0.01
    for attempt in range(2):
        _, printed, run = regress(run_zprof, root, tmp_path, "--server-args", "--tick 100", name=f"tick-{attempt}")
        assert check_of(run, "HSET", "allocations/request")["assessment"] == NONE, printed
    with planted(root, "alloc-reply"):
        code, printed, run = regress(run_zprof, root, tmp_path, "--server-args", "--tick 100", name="tick-defect")
    allocs = check_of(run, "HSET", "allocations/request")
    assert code == 1 and allocs["assessment"] == REGRESSION, printed
    assert allocs["current"] - allocs["baseline"] == pytest.approx(1.0, abs=0.1)


def test_a_baseline_whose_builds_cannot_run_is_compared_with_its_figures_and_a_warning(run_zprof, saved, tmp_path):
    path = old_zig_baseline(saved)
    try:
        code, printed, run = regress(run_zprof, saved.root, tmp_path, "--baseline", "old-zig")
    finally:
        path.unlink()
    assert run["compared"] == "past figures"
    assert "warning: The baseline's build could not run here (its server binary" in printed
    assert "is not there" in printed
    assert "warning: The baseline was built with another Zig (0.14.1; now 0.15.2)" in printed
    assert check_of(run, "ZADD", "instructions/request")["assessment"] == "not comparable"
    assert check_of(run, "ZADD", "allocations/request")["assessment"] == NONE
    # Counts that cannot be compared leave the CPU unchecked: inconclusive (exit 3), never a pass.
    assert code == 3 and run["outcome"] == "inconclusive" and not run["cpu_checked"], printed
    assert "Result: INCONCLUSIVE" in printed and "the CPU was not checked" in printed


def test_the_pre_commit_hook_runs_the_quick_suite_and_is_never_overwritten(run_zprof, zprof_env, saved):
    project = saved.root
    done = run_zprof("regress", "--project", str(project), "--install-hook", timeout=60)
    assert done.returncode == 0, done.output
    hook = project / ".git" / "hooks" / "pre-commit"
    assert hook.stat().st_mode & stat.S_IXUSR and "regress --project . --trials 0" in hook.read_text()
    again = run_zprof("regress", "--project", str(project), "--install-hook", timeout=60)
    assert again.returncode == 2 and "exists already" in again.output
    try:
        # A commit runs it: an unchanged tree passes and the commit is made.
        (project / "NOTES.txt").write_text("a change that is not code\n")
        git(project, "add", "NOTES.txt")
        committed = subprocess.run(["git", "-C", str(project), "commit", "-q", "-m", "notes"], capture_output=True,
                                   text=True, env={**zprof_env, **GIT_ENV}, timeout=600, check=False)
        assert committed.returncode == 0, committed.stdout + committed.stderr
        assert "Result: PASS" in committed.stderr  # git gives a hook's output to stderr
        assert git(project, "log", "-1", "--format=%s") == "notes"
        # Inconclusive (exit 3) warns and lets the commit through, saying what to run before pushing.
        path = old_zig_baseline(saved)
        try:
            (project / "NOTES.txt").write_text("another change that is not code\n")
            git(project, "add", "NOTES.txt")
            committed = subprocess.run(["git", "-C", str(project), "commit", "-q", "-m", "more notes"],
                                       capture_output=True, text=True, env={**zprof_env, **GIT_ENV}, timeout=600,
                                       check=False)
        finally:
            path.unlink()
        assert committed.returncode == 0, committed.stdout + committed.stderr
        assert "Result: INCONCLUSIVE" in committed.stderr and "zprof: inconclusive, the commit goes ahead" in \
            committed.stderr and "regress --project ." in committed.stderr
        assert git(project, "log", "-1", "--format=%s") == "more notes"
    finally:
        hook.unlink()


def test_history_lists_baselines_in_commit_order_with_a_picture(run_zprof, tmp_path):
    root = minikv_repository(tmp_path / "history")
    first = git(root, "rev-parse", "--short", "HEAD")
    stored = run_zprof("baseline", "save", "--project", str(root), *SUITE)
    assert stored.returncode == 0, stored.output
    # The next commit makes HSET allocate once more per request (as the defect does); saved by name.
    (root / "CHANGES").write_text("HSET formats its reply in a buffer of its own\n")
    git(root, "add", "CHANGES")
    git(root, "commit", "-q", "-m", "second")
    second = git(root, "rev-parse", "--short", "HEAD")
    stored = run_zprof("baseline", "save", "--project", str(root), *SUITE, "--server-args", "--defect alloc-reply")
    assert stored.returncode == 0, stored.output
    out = tmp_path / "pictures"
    done = run_zprof("baseline", "history", "--project", str(root), "--output", str(out))
    assert done.returncode == 0, done.output
    printed = " ".join(done.stdout.split())
    assert printed.index(first) < printed.index(second)
    per_request = [json.loads((root / ".zprof" / "baselines" / f"{name}.json").read_text())["commands"][0]["allocs"]
                   ["allocs"] for name in (first, second)]
    assert per_request[1] - per_request[0] == pytest.approx(1.0, abs=1e-3)
    assert "Allocations per request" in printed
    assert printed.index(f"{per_request[0]:.2f}") < printed.index(f"{per_request[1]:.2f}")
    svg = (out / "baseline-history.svg").read_text()
    assert first in svg and second in svg and "allocations per request" in svg
    assert (out / "baseline-history.png").read_bytes()[:4] == b"\x89PNG"
    shown = run_zprof("baseline", "show", second, "--project", str(root))
    assert shown.returncode == 0 and f"{per_request[1]:.2f}" in shown.stdout
    # zprof report reads a baseline file like any saved run.
    replay = run_zprof("report", str(root / ".zprof" / "baselines" / f"{second}.json"))
    assert replay.returncode == 0 and replay.stdout == shown.stdout


def test_noisy_signals_of_the_same_build_are_not_regressions(run_zprof, tmp_path):
    """Real rounds, real noise: whatever the machine does meanwhile, the same build side by side with itself
    shows no noisy regression (each figure is shown within the threshold, or left undecided)."""
    root = minikv_repository(tmp_path / "noisy")
    suite = ("--commands", "SET", "--requests", "400", "--trials", "3", "--min-trial-seconds", "0.5")
    stored = run_zprof("baseline", "save", "base", "--project", str(root), *suite)
    assert stored.returncode == 0, stored.output
    baseline = json.loads((root / ".zprof" / "baselines" / "base.json").read_text())
    trials = baseline["commands"][0]["noisy"]["target"]
    assert len(trials) == 3 and all(trial["rps"] > 0 and trial["other_cpu_percent"] is not None for trial in trials)
    code, printed, run = regress(run_zprof, root, tmp_path, "--budget", "40")
    assert run["compared"] == "side by side" and run["rounds"] >= 1
    noisy = [check for check in run["checks"] if check["metric"] in ("throughput", "p50 latency", "p99 latency")]
    assert len(noisy) == 3
    for check in noisy:
        assert check["assessment"] in (NONE, UNDECIDED) and "rounds side by side" in check["basis"], check
    assert code in (0, 3) and run["outcome"] in ("pass", "inconclusive"), printed


def test_a_zadd_far_slower_than_redis_blocks(run_zprof, tmp_path):
    """minikv's hot loop burns about 100 µs per ZADD: a few percent of Redis' throughput, far under 70%. On a
    quiet machine that blocks; on a busy one two trials may spread too far to say, which zprof reports as
    unstable, never as a pass. The instructions per ZADD block either way (they are counted, not timed)."""
    root = minikv_repository(tmp_path / "redis")
    suite = ("--commands", "ZADD", "--requests", "400", "--trials", "2", "--against", "redis",
             "--min-trial-seconds", "0.5")
    stored = run_zprof("baseline", "save", "base", "--project", str(root), *suite)
    assert stored.returncode == 0, stored.output
    assert "% of Redis" in stored.stdout
    with planted(root, "hot-loop"):
        code, _, run = regress(run_zprof, root, tmp_path, "--budget", "90")
    assert code == 1 and check_of(run, "ZADD", "instructions/request")["assessment"] == REGRESSION
    # Side by side, ZADD's throughput falls by far more than the threshold: a regression within the rounds.
    assert check_of(run, "ZADD", "throughput")["assessment"] == REGRESSION
    ratio = check_of(run, "ZADD", "throughput % of Redis")
    assert ratio["current"] < 30, ratio
    if ratio["assessment"] == REGRESSION:
        assert "under 70% blocks" in ratio["basis"], ratio
    else:
        assert ratio["assessment"] == UNSTABLE and "under 70%, but" in ratio["basis"], ratio
    assert len(run["current"]["commands"][0]["noisy"]["redis"]) == 2


def test_perf_stat_counts_the_server_over_its_requests(zprof_env, monkeypatch):
    """The perf stat path of instructions, run with a software event (this machine has no hardware
    counters): attached to a real server, counting only the requests, including the thread each
    connection gets after perf attached."""
    from zprof.config import ProjectConfig
    from zprof.load.workloads import workload_for
    from zprof.progress import Silent
    from zprof.server import DEFAULT_START_COMMAND, READY_TIMEOUT_S
    from zprof.sessions.baseline import perf_stat_count
    from zprof.sessions.target import TargetOptions

    for name in ("ZPROF_CACHE", "ZIG"):
        monkeypatch.setenv(name, zprof_env[name])
    target = TargetOptions(str(MINIKV), None, None, "--defect hot-loop", DEFAULT_START_COMMAND, None,
                           READY_TIMEOUT_S, config=ProjectConfig())
    milliseconds, requests = perf_stat_count(target, workload_for("ZADD", None), 2000, "task-clock", Silent())
    assert requests == 2000
    # About 100 µs of spinning per request: at least 100 ms of the server's CPU in all, counted.
    assert milliseconds >= 100


def test_validate_checks_against_the_baseline_and_blocks_on_a_regression(run_zprof, saved, tmp_path):
    """zprof validate's section 4 is zprof regress against the newest baseline: one allocation more per
    HSET reply blocks the commit, named in the report."""
    out = tmp_path / "validate"
    with planted(saved.root, "alloc-reply"):
        done = run_zprof("validate", "--quick", "--commands", "HSET", "--project", str(saved.root), "--output",
                         str(out))
    assert done.returncode == 1, done.output
    run = json.loads((out / "run.json").read_text())
    assert run["regress"]["baseline"]["name"] == saved.name and run["regression_missing"] is None
    assert check_of(run["regress"], "HSET", "allocations/request")["assessment"] == REGRESSION
    assert f"regression of HSET allocations/request against baseline {saved.name}" in run["blockers"]
    report = (out / "report.md").read_text()
    section = report.split("# 4. Performance Regression Check", 1)[1].split("# 5.", 1)[0]
    assert "HSET allocations/request" in section and "formatReplyAlloc" in section
    assert "only the deterministic signals" in section
    assert f"Regression against {saved.name}: regression (" in report
