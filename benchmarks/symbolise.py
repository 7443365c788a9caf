"""How fast zprof turns a perf recording into a symbolised, folded profile, against the
tools that do each half of the job, on the same recording in the same run.

The anchor is what a user would otherwise run: `addr2line -f -i` over the distinct
addresses of the binary (the inline chains, with file:line), plus Brendan Gregg's
stackcollapse-perf.pl folding the `perf script` text (without inline frames). zprof
does both, with inline frames, file:line and the frame classification, timed:

- cold: nothing cached (llvm-symbolizer when installed, as `zprof flame` picks);
- fallback: zprof's own DWARF reader alone, as on a machine without llvm-symbolizer;
- warm: the second run, from the on-disk cache keyed by the binary's build id.

Targets (issue 14): cold at most 2x the anchor, warm under 0.3 s, fallback under 5 s.

stackcollapse-perf.pl comes from the FlameGraph repository, outside the project:
set FLAMEGRAPH_DIR to a checkout (or put the script on PATH). Without it the benchmark
says so and compares with addr2line alone. Not a test: nothing is asserted.

    python benchmarks/symbolise.py --binary BIN --perf-data perf.data [--rounds 5]

Without --binary and --perf-data it records minikv for 30 s with `zprof flame` first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.common import machine_line, print_figure  # noqa: E402
from zprof.analysis.perf_script import PerfSymbolizer, build_profile, parse_perf_script  # noqa: E402
from zprof.analysis.stacks import folded_lines  # noqa: E402
from zprof.analysis.symbols import LLVM_SYMBOLIZER, PYTHON_DWARF, Symbolizer  # noqa: E402
from zprof.collect.perf import script  # noqa: E402

COLD_RATIO_TARGET = 2.0
WARM_TARGET_S = 0.3
FALLBACK_TARGET_S = 5.0


def stackcollapse() -> str | None:
    directory = os.environ.get("FLAMEGRAPH_DIR")
    if directory and Path(directory, "stackcollapse-perf.pl").is_file():
        return str(Path(directory, "stackcollapse-perf.pl"))
    return shutil.which("stackcollapse-perf.pl")


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def record_minikv(scratch: Path) -> tuple[Path, Path]:
    out = scratch / "flame"
    subprocess.run([sys.executable, "-m", "zprof", "flame", "--project", str(REPO / "examples/minikv"),
                    "--duration", "30", "--output", str(out)], check=True, capture_output=True, timeout=900)
    binary = subprocess.run([sys.executable, "-m", "zprof", "build", "--project", str(REPO / "examples/minikv"),
                             "--no-shim"], check=True, capture_output=True, text=True, timeout=900)
    return Path(binary.stdout.strip().splitlines()[-1]), out / "perf.data"


def zprof_fold(text: str, binary: Path, cache: Path | None, backend: str | None) -> list[str]:
    """What `zprof flame` does after `perf script`: parse, symbolise, fold."""
    samples = list(parse_perf_script(text))
    with Symbolizer(binary, cache, backend=backend) as symbolizer:
        profile = build_profile(samples, binary, symbolizer, frequency_hz=None, duration_s=None)
    return folded_lines(profile)


def distinct_addresses(text: str, binary: Path) -> list[int]:
    """The binary's addresses the recording holds, as zprof looks them up (return addresses less one)."""
    samples = list(parse_perf_script(text))
    with Symbolizer(binary) as symbolizer:
        return sorted(PerfSymbolizer(binary, symbolizer).wanted_addresses(samples))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", type=Path)
    parser.add_argument("--perf-data", type=Path)
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("ROUNDS", "5")))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        binary, data = (args.binary, args.perf_data) if args.binary and args.perf_data else record_minikv(scratch)
        perf_seconds = timed(lambda: script(data))
        text = script(data)
        addresses = distinct_addresses(text, binary)
        samples = len(list(parse_perf_script(text)))
        collapse = stackcollapse()
        has_llvm = shutil.which(LLVM_SYMBOLIZER) is not None
        rounds: dict[str, list[float]] = {name: [] for name in ("addr2line", "stackcollapse", "cold", "fallback",
                                                                 "warm")}
        address_lines = "\n".join(f"0x{address:x}" for address in addresses) + "\n"
        for round_number in range(args.rounds):
            cache = scratch / f"cache-{round_number}"
            rounds["addr2line"].append(timed(lambda: subprocess.run(
                ["addr2line", "-f", "-i", "-e", str(binary)], input=address_lines, capture_output=True, text=True,
                check=True, timeout=600)))
            if collapse:
                rounds["stackcollapse"].append(timed(lambda: subprocess.run(
                    ["perl", collapse], input=text, capture_output=True, text=True, check=True, timeout=600)))
            rounds["cold"].append(timed(lambda: zprof_fold(text, binary, cache, None)))  # noqa: B023
            rounds["warm"].append(timed(lambda: zprof_fold(text, binary, cache, None)))  # noqa: B023
            rounds["fallback"].append(timed(lambda: zprof_fold(text, binary, None, PYTHON_DWARF)))
        median = {name: statistics.median(values) for name, values in rounds.items() if values}

    print(f"Symbolising and folding: {binary.name}, {samples:,} samples, {len(addresses):,} distinct addresses "
          f"in the binary, median of {args.rounds} rounds")
    print(machine_line())
    print(f"  perf script (shared by all, not counted): {perf_seconds:.2f} s")
    print(f"  addr2line -f -i:         {median['addr2line']:.3f} s")
    if collapse:
        print(f"  stackcollapse-perf.pl:   {median['stackcollapse']:.3f} s")
    else:
        print("  stackcollapse-perf.pl:   absent (set FLAMEGRAPH_DIR to a FlameGraph checkout); "
              "the anchor is addr2line alone")
    anchor = median["addr2line"] + median.get("stackcollapse", 0.0)
    engine = LLVM_SYMBOLIZER if has_llvm else "zprof's DWARF reader (llvm-symbolizer absent)"
    print_figure(f"cold, {engine}", median["cold"], anchor, "addr2line + stackcollapse-perf.pl",
                 f"at most {COLD_RATIO_TARGET:g}x the anchor", median["cold"] <= COLD_RATIO_TARGET * anchor)
    print_figure("warm, cached by build id", median["warm"], anchor, "addr2line + stackcollapse-perf.pl",
                 f"under {WARM_TARGET_S} s", median["warm"] < WARM_TARGET_S)
    print_figure("fallback, zprof's DWARF reader alone", median["fallback"], anchor,
                 "addr2line + stackcollapse-perf.pl", f"under {FALLBACK_TARGET_S:g} s",
                 median["fallback"] < FALLBACK_TARGET_S)


if __name__ == "__main__":
    main()
