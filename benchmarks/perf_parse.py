"""How fast zprof turns `perf script` text into folded stacks.

Records a 30-second profile of minikv under the mixed workload with
`zprof flame`, then times, on that one recording: `perf script` itself,
zprof's parser, and the whole path to a symbolised, folded profile. If
stackcollapse-perf.pl is on PATH, it is timed on the same text for a ratio.
Not a test: nothing is asserted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from zprof.analysis.perf_script import build_profile, parse_perf_script  # noqa: E402
from zprof.analysis.stacks import folded_lines  # noqa: E402
from zprof.analysis.symbols import Symbolizer  # noqa: E402
from zprof.collect.perf import script  # noqa: E402

DURATION = os.environ.get("DURATION", "30")


def timed(action):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch, "flame")
        subprocess.run([sys.executable, "-m", "zprof", "flame", "--project", str(REPO / "examples/minikv"),
                        "--duration", DURATION, "--output", str(out)], check=True, capture_output=True, timeout=900)
        binary = Path(subprocess.run([sys.executable, "-m", "zprof", "build", "--project",
                                      str(REPO / "examples/minikv"), "--no-shim"], check=True, capture_output=True,
                                     text=True, timeout=900).stdout.strip().splitlines()[-1])
        text, perf_seconds = timed(lambda: script(out / "perf.data"))
        samples, parse_seconds = timed(lambda: list(parse_perf_script(text)))

        def fold():  # type: ignore[no-untyped-def]
            with Symbolizer(binary) as symbolizer:  # no cache: DWARF decoding included
                profile = build_profile(samples, binary, symbolizer, frequency_hz=997, duration_s=float(DURATION))
            return folded_lines(profile)

        _, fold_seconds = timed(fold)
        count = len(samples)
        print(f"minikv, mixed workload, {DURATION} s at 997 Hz: {count:,} samples, {len(text) / 1e6:.1f} MB of text")
        print(f"perf script:                 {perf_seconds:6.2f} s")
        print(f"zprof parse:                 {parse_seconds:6.2f} s  {count / parse_seconds:12,.0f} samples/s")
        print(f"zprof symbolise + fold:      {fold_seconds:6.2f} s  {count / fold_seconds:12,.0f} samples/s")
        perl = shutil.which("stackcollapse-perf.pl")
        if perl:
            _, perl_seconds = timed(lambda: subprocess.run([perl], input=text, capture_output=True, text=True,
                                                           check=True))
            print(f"stackcollapse-perf.pl:       {perl_seconds:6.2f} s  {count / perl_seconds:12,.0f} samples/s")
        else:
            print("stackcollapse-perf.pl is not on this machine: no side-by-side figure.")


if __name__ == "__main__":
    main()
