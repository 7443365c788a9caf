"""What every benchmark prints: the machine it ran on, and each figure beside its anchor and target."""

from __future__ import annotations

import os
import platform


def machine_line() -> str:
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo").read().splitlines():  # noqa: SIM115 - read whole, closed by GC
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (f"Machine: {model}, {os.cpu_count()} cores, Linux {platform.release()}, Python "
            f"{platform.python_version()}; load average {load} at the end")


def print_figure(name: str, figure: float, anchor: float, anchor_name: str, target: str, met: bool,
                 unit: str = "s") -> None:
    """One line: zprof's figure, the anchor's, their ratio, the target and whether it is met."""
    ratio = figure / anchor if anchor else float("inf")
    print(f"  {name}: {figure:,.3f} {unit} | {anchor_name}: {anchor:,.3f} {unit} | ratio {ratio:.2f} | "
          f"target {target}: {'met' if met else 'NOT met'}")
