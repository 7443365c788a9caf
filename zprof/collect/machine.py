"""The machine a benchmark ran on, and who used its CPU during a run.

A comparison between two servers only means something if the load generator
was not the bottleneck; these numbers let the report say when it was.
"""

from __future__ import annotations

import os
import platform
import resource
import time

import psutil

from zprof.collect import process
from zprof.model.common import CpuUsage, MachineInfo


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


def machine_info() -> MachineInfo:
    return MachineInfo(
        cores=os.cpu_count() or 1,
        physical_cores=psutil.cpu_count(logical=False),
        model=cpu_model(),
        kernel=f"{platform.system()} {platform.release()}",
        memory_bytes=psutil.virtual_memory().total,
        load_average=load_average(),
    )


def _tree(pid: int) -> list[int]:
    """The process and its descendants: a start command may be a wrapper around the server."""
    try:
        root = psutil.Process(pid)
        return [pid, *(child.pid for child in root.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def tree_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU of a process and its descendants (psutil); None once the process is gone."""
    samples = [sample for sample in map(process.sample, _tree(pid)) if sample]
    return sum(sample.cpu_seconds for sample in samples) if samples else None


def tree_rss_bytes(pid: int) -> int | None:
    samples = [sample for sample in map(process.sample, _tree(pid)) if sample]
    return sum(sample.rss_bytes for sample in samples) if samples else None


def _machine_busy_and_total() -> tuple[float, float]:
    times = psutil.cpu_times()
    total = sum(times)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return total - idle, total


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """Measures one run. `generator` says where the load comes from: "children" for a
    tool zprof runs and waits for (redis-benchmark: the kernel charges a reaped
    child's CPU to RUSAGE_CHILDREN, exact even though the process is gone by the
    time the run ends), "self" for zprof's own driver."""

    def __init__(self, server_pid: int, generator: str) -> None:
        if generator not in ("children", "self"):
            raise ValueError(generator)
        self._pid = server_pid
        self._generator = _children_cpu_seconds if generator == "children" else _own_cpu_seconds

    def __enter__(self) -> CpuMeter:
        self._server = tree_cpu_seconds(self._pid)
        self._load = self._generator()
        self._busy, self._total = _machine_busy_and_total()
        self._started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = max(time.monotonic() - self._started, 1e-6)
        server = tree_cpu_seconds(self._pid)
        busy, total = _machine_busy_and_total()
        self.usage = CpuUsage(
            # A server that died during the run has no final figure; one that used no CPU tick has 0.
            server_percent=round(100 * (server - self._server) / wall, 1)
            if server is not None and self._server is not None else None,
            load_generator_percent=round(100 * (self._generator() - self._load) / wall, 1),
            machine_percent=round(100 * (busy - self._busy) / max(total - self._total, 1e-6), 1),
        )
