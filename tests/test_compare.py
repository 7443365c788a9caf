"""zprof compare between two commits of a scratch git repository holding minikv: a commit that plants
`slow-get=2000` in src/planted.zig (GET does 2 µs of busy work in defects.slowGet) is a regression that names
slowGet; a commit against itself is never one. Real builds, real servers, real load."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import MINIKV
from zprof.builder.revisions import revision
from zprof.errors import ZprofError

pytestmark = pytest.mark.slow

IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@localhost", "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@localhost"}
PLANTED = 'pub const defects: []const []const u8 = &.{"slow-get=2000"};'
EXIT_BY_OUTCOME = {"pass": 0, "regression": 1, "inconclusive": 3, "could not measure": 2}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **IDENTITY}).stdout


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    """minikv in a git repository of its own: `base`, then `slow` with slow-get planted in the source."""
    repo = tmp_path_factory.mktemp("compare") / "minikv"
    shutil.copytree(MINIKV, repo, ignore=shutil.ignore_patterns(".zig-cache", "zig-out", ".zprof", "zprof.toml"))
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    planted = repo / "src" / "planted.zig"
    text = planted.read_text()
    assert "pub const defects: []const []const u8 = &.{};" in text
    planted.write_text(text.replace("pub const defects: []const []const u8 = &.{};", PLANTED))
    git(repo, "commit", "-qam", "slow")
    return repo


def compare(run_zprof, repo: Path, out: Path, *args: str) -> tuple[int, dict]:
    done = run_zprof("compare", *args, "--project", str(repo), "--output", str(out))
    assert "Traceback" not in done.output
    saved = json.loads((out / "run.json").read_text())
    assert done.returncode == EXIT_BY_OUTCOME[saved["outcome"]], done.output
    return done.returncode, saved


def figure(run: dict, command: str, metric: str) -> dict:
    change = next(change for change in run["commands"] if change["command"] == command)
    return next(figure for figure in change["figures"] if figure["metric"] == metric)


def test_a_commit_that_slows_get_is_a_regression_naming_the_function(run_zprof, repository, tmp_path):
    status = git(repository, "status", "--porcelain")
    code, run = compare(run_zprof, repository, tmp_path / "out", "HEAD~1", "HEAD", "--commands", "GET")
    assert code == 1 and run["outcome"] == "regression"
    throughput = figure(run, "GET", "throughput")
    assert throughput["outcome"] == "regression" and throughput["estimate_percent"] < -5
    assert throughput["interval_percent"][1] < 0
    get = run["commands"][0]
    assert any(change["function"] == "defects.slowGet" and change["self_after"] > change["self_before"]
               for change in get["functions"]), get["functions"]
    assert figure(run, "GET", "allocations")["outcome"] == "pass"  # the same allocations: only CPU moved
    # Counted under callgrind, the busy work is more instructions per GET; it spins on the clock, so its count
    # does not repeat, and zprof counts twice and says that it is not exact rather than call it a regression.
    instructions = figure(run, "GET", "instructions")
    assert instructions["outcome"] in ("regression", "inconclusive") and instructions["estimate_percent"] > 2
    assert get["instructions_after"] > get["instructions_before"] > 0
    # The differential flame graph of the two profiles, beside run.json.
    assert get["flame_diff"] == "get.diff.svg"
    assert "defects.slowGet" in (tmp_path / "out" / get["flame_diff"]).read_text()
    # The checkout is as it was: built from exported trees, never checked out.
    assert git(repository, "status", "--porcelain") == status
    assert git(repository, "worktree", "list").count("\n") == 1


def test_a_commit_against_itself_is_never_a_regression(run_zprof, repository, tmp_path):
    code, run = compare(run_zprof, repository, tmp_path / "out", "HEAD", "HEAD", "--commands", "GET", "--alpha",
                        "0.001", "--no-allocations", "--budget", "120")
    assert run["outcome"] in ("pass", "inconclusive"), run
    assert code in (0, 3)
    # An undecided figure of the rounds says what the rounds could have seen.
    inconclusive = [f for f in run["commands"][0]["figures"] if f["outcome"] == "inconclusive"
                    and f["metric"] in ("throughput", "p50", "p99")]
    assert all(f["detectable_percent"] is not None for f in inconclusive)
    # The same build, whose GET spins on the clock (slow-get): its instruction counts need not repeat, and a
    # count that does not repeat is never a regression.
    assert figure(run, "GET", "instructions")["outcome"] in ("pass", "inconclusive")
    assert figure(run, "GET (hits)", "instructions")["outcome"] in ("pass", "inconclusive")


@pytest.mark.parametrize("command", [("compare", "no-such-branch"), ("regress", "--baseline-rev", "no-such-branch")])
def test_a_revision_that_names_no_commit_is_bad_input(run_zprof, repository, command):
    done = run_zprof(*command, "--project", str(repository))
    assert done.returncode == 2 and "no-such-branch" in done.output and "Traceback" not in done.output


def test_a_revision_is_exported_once_under_its_commit(repository, zprof_env, monkeypatch):
    monkeypatch.setenv("ZPROF_CACHE", zprof_env["ZPROF_CACHE"])
    first = revision(repository, "HEAD~1")
    again = revision(repository, first.commit)
    assert first.project == again.project and (first.project / "build.zig").exists()
    assert "&.{}" in (first.project / "src" / "planted.zig").read_text()
    with pytest.raises(ZprofError):
        revision(repository.parent, "HEAD")  # not a git checkout


def test_a_build_that_crashes_in_every_start_could_not_be_measured(run_zprof, repository):
    """minikv aborts on its first request with --crash-after 0, PING included: every start crashes."""
    done = run_zprof("compare", "HEAD", "HEAD", "--project", str(repository), "--commands", "GET",
                     "--no-allocations", "--server-args", "--crash-after 0")
    assert done.returncode == 2, done.output
    assert "could not measure" in done.output and "in all 20 attempts" in done.output
    assert "Traceback" not in done.output
