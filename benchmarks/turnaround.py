"""How long zprof takes to answer, as a user runs it, with warm caches (the build and the
symbols already made once):

- recognising an unchanged project as built: zprof's check in the process (what every
  command pays), and `zprof build` as a command (that plus starting Python and zprof);
- `zprof allocs HSET --requests 10000`, beside the load it ran (warm-up and measured run);
- `zprof flame --duration 30`, beside the 30 s recording.

Targets (issue 14): under 0.5 s, under 4 s, under 36 s. The project is $ZOLTRAAK_DIR (a
built Zoltraak checkout with its zprof.toml) or --project; minikv when neither is given.
Where the rest of the time goes: `make profile`. Not a test: nothing is asserted.

    python benchmarks/turnaround.py [--project DIR] [--rounds 3] [--skip-flame]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.common import machine_line, print_figure  # noqa: E402

BUILD_TARGET_S, ALLOCS_TARGET_S, FLAME_TARGET_S = 0.5, 4.0, 36.0
FLAME_SECONDS = 30
# The build check as every command makes it, timed in a fresh Python: prints its seconds.
BUILD_CHECK = """
import sys, time
from zprof.builder.build import BuildRequest, build, DEFAULT_OPTIMIZE
from zprof.builder.project import load_project
from zprof.builder.toolchain import find_zig
from zprof.config import load_config
started = time.perf_counter()
project = load_project(sys.argv[1])
optimize = load_config(project.root).target.get("optimize")
result = build(BuildRequest(project=project, zig=find_zig(None), with_shim=True, optimize=optimize or DEFAULT_OPTIMIZE,
                            optimize_asked=optimize is not None))
assert result.cached, "not built yet"
print(time.perf_counter() - started)
"""


def zprof(*args: str, cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "zprof", *args], cwd=cwd, check=True, capture_output=True, timeout=1800)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, default=os.environ.get("ZOLTRAAK_DIR") or REPO / "examples/minikv")
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("ROUNDS", "3")))
    parser.add_argument("--skip-flame", action="store_true")
    args = parser.parse_args()
    project = args.project.resolve()
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        # Warm every cache a user's second run finds warm: both builds, the symbols of both binaries.
        zprof("allocs", "HSET", "--project", str(project), "--requests", "1000", "--output", str(scratch / "w1"),
              cwd=scratch)
        if not args.skip_flame:
            zprof("flame", "--project", str(project), "--duration", "2", "--output", str(scratch / "w2"), cwd=scratch)
        checks, commands, allocs, loads, flames = [], [], [], [], []
        for round_number in range(args.rounds):
            check = subprocess.run([sys.executable, "-c", BUILD_CHECK, str(project)], cwd=REPO, check=True,
                                   capture_output=True, text=True, timeout=600)
            checks.append(float(check.stdout.strip()))
            commands.append(zprof("build", "--project", str(project), cwd=scratch))
            out = scratch / f"allocs-{round_number}"
            allocs.append(zprof("allocs", "HSET", "--project", str(project), "--requests", "10000", "--output",
                                str(out), cwd=scratch))
            load = json.loads((out / "run.json").read_text())["load"]
            # The warm-up runs at the measured run's rate.
            loads.append(load["seconds"] * (1 + load["warmup_requests"] / 10_000))
            if not args.skip_flame:
                flames.append(zprof("flame", "--project", str(project), "--duration", str(FLAME_SECONDS),
                                    "--output", str(scratch / f"flame-{round_number}"), cwd=scratch))

    median = statistics.median
    print(f"Turnaround on {project.name}, warm caches, median of {args.rounds} rounds")
    print(machine_line())
    print_figure("unchanged project recognised as built (in zprof)", median(checks), median(commands),
                 "`zprof build`, the whole command", f"under {BUILD_TARGET_S} s", median(checks) < BUILD_TARGET_S)
    print_figure("zprof allocs HSET --requests 10000", median(allocs), median(loads),
                 "its load (warm-up and measured run)", f"under {ALLOCS_TARGET_S:g} s",
                 median(allocs) < ALLOCS_TARGET_S)
    if flames:
        print_figure(f"zprof flame --duration {FLAME_SECONDS}", median(flames), FLAME_SECONDS, "the recording",
                     f"under {FLAME_TARGET_S:g} s", median(flames) < FLAME_TARGET_S)


if __name__ == "__main__":
    main()
