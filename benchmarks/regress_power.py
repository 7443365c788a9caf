"""How often `zprof compare` finds a slowdown of GET, and how often it calls an unchanged tree a regression,
on this machine: minikv in a scratch git repository, a commit that plants `slow-get=NS` in src/planted.zig
(GET does NS ns of busy work in defects.slowGet) against the commit before it, at three sizes, and the commit
against itself; each check --runs times, with its run time. The README records the figures.

Not a test: nothing is asserted. The issue's target: the planted slowdown detected with at least 80% power
at the threshold, and no more than 5% false regressions on an unchanged tree.

Each check is `zprof compare` with --no-allocations --no-instructions (the exact counts would find any
slow-get at all: this measures the noisy test alone), --no-profile, and --budget (60 s by default).

    python benchmarks/regress_power.py [--runs 10] [--sizes 60,250,500] [--commands GET] [--budget 60]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.common import machine_line  # noqa: E402

EMPTY = "pub const defects: []const []const u8 = &.{};"
IDENTITY = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost", "GIT_COMMITTER_NAME": "bench",
            "GIT_COMMITTER_EMAIL": "bench@localhost"}


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, timeout=60,
                   env={**os.environ, **IDENTITY})


def repository(directory: Path, sizes: list[int]) -> Path:
    """minikv with a commit per size, each planting slow-get=NS over the base: tags base and slow-NS."""
    repo = directory / "minikv"
    shutil.copytree(REPO / "examples/minikv", repo, ignore=shutil.ignore_patterns(".zig-cache", "zig-out", ".zprof"))
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    git(repo, "tag", "base")
    planted = repo / "src" / "planted.zig"
    for size in sizes:
        git(repo, "checkout", "-q", "base")
        planted_defect = f'pub const defects: []const []const u8 = &.{{"slow-get={size}"}};'
        planted.write_text(planted.read_text().replace(EMPTY, planted_defect))
        git(repo, "commit", "-qam", f"slow-get={size}")
        git(repo, "tag", f"slow-{size}")
    git(repo, "checkout", "-q", "base")
    return repo


def check(repo: Path, before: str, after: str, commands: str, budget: float, out: Path) -> tuple[str, float, dict]:
    """One comparison: its outcome ("error" with zprof's message when it saved no run), time and run."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "zprof", "compare", before, after, "--project", str(repo),
                           "--commands", commands, "--no-allocations", "--no-instructions", "--no-profile",
                           "--budget", str(budget),
                           "--output", str(out)], cwd=repo, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - started
    if not (out / "run.json").exists():
        print(f"  error (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}", flush=True)
        return "error", seconds, {}
    run = json.loads((out / "run.json").read_text())
    return run["outcome"], seconds, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--sizes", default="60,250,500")
    parser.add_argument("--commands", default="GET")
    parser.add_argument("--budget", type=float, default=60.0)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    print(machine_line())
    with tempfile.TemporaryDirectory() as scratch:
        repo = repository(Path(scratch), sizes)
        checks = [(f"slow-get={size}", "base", f"slow-{size}") for size in sizes] + [("unchanged", "base", "base")]
        for label, before, after in checks:
            outcomes, seconds, estimates, rounds = [], [], [], []
            for index in range(args.runs):
                outcome, took, run = check(repo, before, after, args.commands, args.budget,
                                           Path(scratch) / f"{label}-{index}")
                outcomes.append(outcome)
                seconds.append(took)
                if run:
                    estimates.append(run["commands"][0]["figures"][0]["estimate_percent"])
                    rounds.append(run["rounds"])
            regressions = outcomes.count("regression")
            measured = [e for e in estimates if e is not None]
            change = f"median {statistics.median(measured):+.1f}%" if measured else "not measured"
            print(f"{label:>16}: regression in {regressions}/{args.runs} runs "
                  f"({', '.join(f'{o} {outcomes.count(o)}' for o in sorted(set(outcomes)))}); throughput change "
                  f"{change}; rounds {min(rounds, default=0)}-{max(rounds, default=0)}; "
                  f"{statistics.median(seconds):.0f} s per check (from {min(seconds):.0f} to {max(seconds):.0f})",
                  flush=True)


if __name__ == "__main__":
    main()
