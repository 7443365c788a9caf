"""What the shim costs.

1. Per hooked call, in nanoseconds: `benchmarks/hook_cost.zig` calls the hooks as
   `std.mem.Allocator` does, over an allocator that does no work, on 1 and 2 threads,
   with call sites, with counters only (`ZPROF_SHIM_LIMITS=sites=off`) and detached;
   beside Tracy's published cost of a call-stack capture (about 98 ns).
2. On a server: minikv's throughput under redis-benchmark (-c 50 -P 16) without the
   shim, built in but detached, counting with call sites, and counting counters only.
   The servers alternate (A B C D A B C D ...) so that the machine's noise falls on all
   alike; medians and ratios measured side by side in this one run.

Not a test: nothing is asserted.
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
HOOK_CALLS = 4_000_000
TRACY_NS_PER_STACK = 98  # Tracy's manual: "about 98 ns" per call-stack capture
SITES_TARGET = 0.95  # issue 14: at most 5% of the throughput with call sites
COUNTERS_TARGET = 0.98  # and at most 2% with counters only

sys.path.insert(0, str(REPO))
from benchmarks.common import machine_line  # noqa: E402
from zprof.builder.shim import HOOKS_DIR, HOOKS_FILE  # noqa: E402
from zprof.builder.toolchain import find_zig  # noqa: E402
from zprof.collect.shim_counters import create_counter_file  # noqa: E402
from zprof.server import Server, ServerSpec  # noqa: E402

COUNTERS_ONLY = {"ZPROF_SHIM_LIMITS": "sites=off"}
# name: (with the shim built in, attached, extra environment)
FLAVOURS: dict[str, tuple[bool, bool, dict[str, str]]] = {
    "no shim": (False, False, {}),
    "detached": (True, False, {}),
    "call sites": (True, True, {}),
    "counters only": (True, True, COUNTERS_ONLY),
}


def zprof_build(*extra: str) -> Path:
    done = subprocess.run([sys.executable, "-m", "zprof", "build", "--project", str(MINIKV), *extra],
                          capture_output=True, text=True, timeout=1800, check=True)
    return Path(done.stdout.strip().splitlines()[-1])


def counting_env(scratch: Path, name: str, attach: bool, extra: dict[str, str]) -> dict[str, str]:
    if not attach:
        return {}
    return {"ZPROF_SHM": str(create_counter_file(scratch / f"{name.replace(' ', '-')}.counters")), **extra}


def hook_cost(scratch: Path) -> None:
    binary = scratch / "hook_cost"
    subprocess.run([str(find_zig().exe), "build-exe", "-OReleaseFast", "--dep", "hooks",
                    f"-Mroot={REPO / 'benchmarks' / 'hook_cost.zig'}", f"-Mhooks={HOOKS_DIR / HOOKS_FILE}",
                    f"-femit-bin={binary}"], check=True, timeout=600, cwd=scratch)
    print(f"Per hooked call (ns; {HOOK_CALLS:,} calls per thread, median of {ROUNDS} rounds); "
          f"Tracy's call-stack capture: about {TRACY_NS_PER_STACK} ns")
    print(f"{'threads, live blocks':<24}" + "".join(f"{name:>16}" for name in list(FLAVOURS)[1:]))
    for threads, live in ((1, 100), (2, 100), (1, 1_000_000), (2, 1_000_000)):
        medians = []
        for name, (_, attach, extra) in list(FLAVOURS.items())[1:]:
            runs = []
            for _ in range(ROUNDS):
                env = {**os.environ, **counting_env(scratch, name, attach, extra)}
                done = subprocess.run([str(binary), str(threads), str(live), str(HOOK_CALLS)], env=env,
                                      capture_output=True, text=True, check=True, timeout=600)
                runs.append(int(done.stdout))
            medians.append(statistics.median(runs))
        print(f"{f'{threads}, {live:,}':<24}" + "".join(f"{m:>16,.0f}" for m in medians))


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


def server_cost(scratch: Path) -> None:
    binaries = {False: zprof_build("--no-shim"), True: zprof_build()}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in FLAVOURS}
    for round_number in range(ROUNDS):
        for name, (shim, attach, extra) in FLAVOURS.items():
            run_dir = scratch / f"{round_number}-{name.replace(' ', '-')}"
            run_dir.mkdir()
            spec = ServerSpec(binary=binaries[shim], env=counting_env(run_dir, name, attach, extra))
            with Server(spec, run_dir) as server:
                results[name].append(redis_benchmark(server.port))
    print(f"minikv, redis-benchmark -c 50 -P 16 -n {REQUESTS}, median of {ROUNDS} alternating rounds (req/s)")
    print(f"{'command':<8}" + "".join(f"{name:>15}" for name in FLAVOURS) + f"{'sites/none':>12}{'counters/none':>15}")
    ratios: dict[str, tuple[float, float]] = {}
    for command in results["no shim"][0]:
        medians = [statistics.median(r[command] for r in results[name]) for name in FLAVOURS]
        ratios[command] = (medians[2] / medians[0], medians[3] / medians[0])
        print(f"{command:<8}" + "".join(f"{m:>15,.0f}" for m in medians)
              + f"{ratios[command][0]:>12.2f}{ratios[command][1]:>15.2f}")
    for label, index, target in (("call sites", 0, SITES_TARGET), ("counters only", 1, COUNTERS_TARGET)):
        worst = min(ratios, key=lambda command: ratios[command][index])
        print(f"  {label}: the lowest ratio {ratios[worst][index]:.2f} ({worst}) | target at least {target} of "
              f"no shim: {'met' if ratios[worst][index] >= target else 'NOT met'}")


def main() -> None:
    print(machine_line())
    with tempfile.TemporaryDirectory() as scratch:
        hook_cost(Path(scratch))
        server_cost(Path(scratch))
    print(machine_line())


if __name__ == "__main__":
    main()
