"""zprof's load driver against redis-benchmark, on a real redis-server, side by side.

For each shape (-c 1 -P 1, -c 50 -P 1, -c 50 -P 16) and each round, redis-benchmark and
zprof's driver each send GET requests over the same keyspace to the same server, one
after the other, and every reply is read and checked (redis-benchmark stops at an error
reply; zprof's driver counts them). Printed: medians of the rounds, the driver's
throughput as a share of redis-benchmark's, and each tool's own CPU (percent of one core)
next to every figure. Target (issue 14): at least 80% at every shape. Not a test.

    python benchmarks/driver.py [--rounds 5] [--seconds 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.common import machine_line, print_figure  # noqa: E402
from zprof.load.driver import Workload, drive  # noqa: E402
from zprof.server import Server, ServerSpec, free_port  # noqa: E402

SHAPES = ((1, 1), (50, 1), (50, 16))
KEYSPACE = 10_000
TARGET_SHARE = 0.8


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def redis_benchmark(port: int, clients: int, pipeline: int, requests: int) -> tuple[float, float]:
    """Requests per second and redis-benchmark's CPU (percent of one core)."""
    before, started = cpu_seconds(resource.RUSAGE_CHILDREN), time.perf_counter()
    done = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(clients), "-P",
                           str(pipeline), "-n", str(requests), "-r", str(KEYSPACE), "-t", "get", "--csv"],
                          capture_output=True, text=True, timeout=600, check=True)
    wall = time.perf_counter() - started
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - before
    rate = float(done.stdout.splitlines()[1].split(",")[1].strip('"'))
    return rate, 100 * cpu / wall


def zprof_driver(port: int, clients: int, pipeline: int, requests: int) -> tuple[float, float]:
    """Requests per second and the driver's CPU (percent of one core, all its threads)."""
    workload = Workload.from_template("GET key:__rand_int__", KEYSPACE)
    before, started = cpu_seconds(resource.RUSAGE_SELF), time.perf_counter()
    result = drive(port, workload, clients, pipeline, requests)
    wall = time.perf_counter() - started
    cpu = cpu_seconds(resource.RUSAGE_SELF) - before
    if result.errors or result.requests != requests:
        raise SystemExit(f"zprof's driver: {result.errors} errors, {result.requests} of {requests} requests")
    return result.rps, 100 * cpu / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("ROUNDS", "5")))
    parser.add_argument("--seconds", type=float, default=2.0, help="about how long each run lasts")
    args = parser.parse_args()
    redis = shutil.which("redis-server")
    if redis is None or shutil.which("redis-benchmark") is None:
        raise SystemExit("redis-server and redis-benchmark are needed (apt-get install redis-server redis-tools)")
    results: dict[tuple[int, int], dict[str, list[tuple[float, float]]]] = {
        shape: {"redis-benchmark": [], "zprof": []} for shape in SHAPES}
    with tempfile.TemporaryDirectory() as scratch:
        spec = ServerSpec(binary=Path(redis), start_command="{binary} --port {port} --save '' --appendonly no",
                          port=free_port())
        with Server(spec, Path(scratch)) as server:
            subprocess.run(["redis-benchmark", "-p", str(server.port), "-n", str(KEYSPACE * 4), "-r", str(KEYSPACE),
                            "-t", "set", "-q"], capture_output=True, timeout=600, check=True)  # keys for GET
            sizes = {}
            for shape in SHAPES:  # each run about --seconds long, from a short run's rate
                rate, _ = redis_benchmark(server.port, *shape, 20_000)
                sizes[shape] = max(20_000, int(rate * args.seconds))
            for _ in range(args.rounds):
                for shape in SHAPES:
                    results[shape]["redis-benchmark"].append(redis_benchmark(server.port, *shape, sizes[shape]))
                    results[shape]["zprof"].append(zprof_driver(server.port, *shape, sizes[shape]))

    print(f"Load driver against redis-benchmark: GET on redis-server, {KEYSPACE:,} keys, median of {args.rounds} "
          "rounds, each tool's CPU in percent of one core")
    print(machine_line())
    for shape, by_tool in results.items():
        rates = {tool: statistics.median(rate for rate, _ in runs) for tool, runs in by_tool.items()}
        cpus = {tool: statistics.median(cpu for _, cpu in runs) for tool, runs in by_tool.items()}
        print_figure(f"-c {shape[0]} -P {shape[1]}: zprof's driver (CPU {cpus['zprof']:.0f}%)", rates["zprof"],
                     rates["redis-benchmark"], f"redis-benchmark (CPU {cpus['redis-benchmark']:.0f}%)",
                     f"at least {TARGET_SHARE:.0%} of redis-benchmark",
                     rates["zprof"] >= TARGET_SHARE * rates["redis-benchmark"], unit="req/s")


if __name__ == "__main__":
    main()
