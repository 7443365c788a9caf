"""What the shim costs: minikv's throughput under redis-benchmark without the
shim, with the shim built in but not attached, and with it counting.

Builds both flavours with zprof, then alternates the servers (A B C A B C ...)
so that the machine's noise falls on all three alike, and prints medians and
ratios measured side by side in this one run. Not a test: nothing is asserted.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MINIKV = REPO / "examples" / "minikv"
ROUNDS = int(os.environ.get("ROUNDS", "5"))
TESTS = os.environ.get("TESTS", "set,get,hset,lpush,sadd")
REQUESTS = os.environ.get("REQUESTS", "1000000")

sys.path.insert(0, str(REPO))
from zprof.collect.shim_counters import create_counter_file  # noqa: E402
from zprof.server import Server, ServerSpec  # noqa: E402


def zprof_build(*extra: str) -> Path:
    done = subprocess.run([sys.executable, "-m", "zprof", "build", "--project", str(MINIKV), *extra],
                          capture_output=True, text=True, timeout=1800, check=True)
    return Path(done.stdout.strip().splitlines()[-1])


def redis_benchmark(port: int) -> dict[str, float]:
    done = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", "50", "-P", "16", "-n", REQUESTS,
         "-t", TESTS, "--csv"],
        capture_output=True, text=True, timeout=600, check=True,
    )
    rates = {}
    for line in done.stdout.splitlines()[1:]:
        fields = [field.strip('"') for field in line.split(",")]
        rates[fields[0].split()[0]] = float(fields[1])
    return rates


def main() -> None:
    plain = zprof_build("--no-shim")
    shimmed = zprof_build()
    flavours = {"no shim": (plain, False), "shim, detached": (shimmed, False), "shim, counting": (shimmed, True)}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in flavours}
    with tempfile.TemporaryDirectory() as scratch:
        for round_number in range(ROUNDS):
            for name, (binary, attach) in flavours.items():
                run_dir = Path(scratch, f"{round_number}-{name.replace(' ', '').replace(',', '')}")
                run_dir.mkdir()
                env = {"ZPROF_SHM": str(create_counter_file(run_dir / "counters"))} if attach else {}
                with Server(ServerSpec(binary=binary, env=env), run_dir) as server:
                    results[name].append(redis_benchmark(server.port))
    commands = list(results["no shim"][0])
    print(f"minikv, redis-benchmark -c 50 -P 16 -n {REQUESTS}, median of {ROUNDS} alternating rounds (req/s)")
    print(f"{'command':<8}" + "".join(f"{name:>18}" for name in flavours) + f"{'counting/none':>16}")
    for command in commands:
        medians = [statistics.median(r[command] for r in results[name]) for name in flavours]
        print(f"{command:<8}" + "".join(f"{m:>18,.0f}" for m in medians) + f"{medians[2] / medians[0]:>16.2f}")


if __name__ == "__main__":
    main()
