"""redis-benchmark as a load generator: far lighter than the built-in driver, so
the server, not the client, gets the CPU.

redis-benchmark has no timeout of its own and hangs forever on a server that
serves one connection at a time or drops pipelined commands, so zprof only
uses it after the probes passed, and always ends it itself: every process
runs in its own process group, which is killed when the load stops.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from zprof.errors import ZprofError
from zprof.load.driver import Workload
from zprof.model.bench import Latency
from zprof.procs import kill_group, run_bounded, spawn

# Large enough never to finish on its own: zprof stops the load.
ENDLESS_REQUESTS = 1_000_000_000
START_CHECK_S = 0.3


def redis_benchmark_path() -> str | None:
    return shutil.which("redis-benchmark")


def benchmark_argv(executable: str, host: str, port: int, workload: Workload, clients: int, pipeline: int,
                   requests: int, *, csv: bool = False) -> list[str]:
    """One workload in redis-benchmark's arbitrary-command mode (`__rand_int__` and -r work there too)."""
    return [executable, "-h", host, "-p", str(port), "-c", str(clients), "-P", str(pipeline),
            "-n", str(requests), "-r", str(workload.keyspace), "--csv" if csv else "-q",
            *(arg.decode() for arg in workload.args)]


class RedisBenchmarkLoad:
    """One redis-benchmark per workload, running until `stop`."""

    def __init__(self, host: str, port: int, clients: int, workloads: list[Workload], pipeline: int) -> None:
        executable = redis_benchmark_path()
        if executable is None:
            raise ZprofError("redis-benchmark is not installed", detail="apt-get install redis-tools")
        per_workload = max(1, clients // len(workloads))
        self.description = (f"redis-benchmark, {per_workload * len(workloads)} clients, pipeline {pipeline}, "
                            f"{len(workloads)} command(s)")
        self._argvs = [benchmark_argv(executable, host, port, workload, per_workload, pipeline, ENDLESS_REQUESTS)
                       for workload in workloads]
        self._processes: list[subprocess.Popen[bytes]] = []
        self.error: str | None = None

    def start(self) -> None:
        for argv in self._argvs:
            self._processes.append(spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE))
        time.sleep(START_CHECK_S)
        for process in self._processes:
            if process.poll() is not None:
                message = process.stderr.read().decode(errors="replace") if process.stderr else ""
                self.stop()
                raise BenchmarkFailed(_stop_reason(message, process.returncode),
                                      server_error_in(message.splitlines()))

    def ended(self) -> str | None:
        """Why a redis-benchmark of the load exited by itself, or None while all run."""
        for process in self._processes:
            if process.poll() is not None:
                message = process.stderr.read().decode(errors="replace") if process.stderr else ""
                return _stop_reason(message, process.returncode)
        return None

    def stop(self) -> None:
        for process in self._processes:
            if process.poll() is not None and process.returncode != 0 and self.error is None:
                self.error = f"redis-benchmark exited early with status {process.returncode}"
            kill_group(process, timeout=2.0)
            if process.stderr:
                process.stderr.close()


# redis-benchmark 7's --csv columns after "test"; latencies in milliseconds.
CSV_COLUMNS = ("rps", "avg_latency_ms", "min_latency_ms", "p50_latency_ms", "p95_latency_ms", "p99_latency_ms",
               "max_latency_ms")
SERVER_ERROR_PREFIX = "Error from server: "


@dataclass(frozen=True)
class BenchmarkRow:
    """One test of `redis-benchmark --csv`."""

    rps: float
    avg_ms: float
    min_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


def latency_of(row: BenchmarkRow) -> Latency:
    """redis-benchmark's latencies, per request; it reports no p99.9."""
    return Latency(row.avg_ms, row.min_ms, row.p50_ms, row.p95_ms, row.p99_ms, None, row.max_ms)


def parse_csv(text: str) -> BenchmarkRow:
    """The single row `redis-benchmark --csv` prints for one command; ValueError if there is none."""
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        raise ValueError("redis-benchmark printed no result row")
    missing = [column for column in CSV_COLUMNS if column not in rows[-1]]
    if missing:
        raise ValueError(f"redis-benchmark's CSV has no column {', '.join(missing)} (a version before 7?)")
    return BenchmarkRow(*(float(rows[-1][column]) for column in CSV_COLUMNS))


class BenchmarkTimedOut(Exception):
    """redis-benchmark did not finish within its deadline; its process group was killed."""


class BenchmarkFailed(Exception):
    """redis-benchmark exited with an error. It stops at the first error reply, so
    `server_error` is that reply's text (None for other failures: a lost connection, ...)."""

    def __init__(self, message: str, server_error: str | None) -> None:
        super().__init__(message)
        self.server_error = server_error


def _stop_reason(stderr: str, returncode: int) -> str:
    # -q's progress lines end in \r; the reason it stopped is the last thing it wrote.
    last = next((part.strip() for part in reversed(re.split(r"[\r\n]", stderr)) if part.strip()), "")
    return f"redis-benchmark stopped: {last}" if last else f"redis-benchmark exited ({returncode})"


def server_error_in(lines: list[str]) -> str | None:
    """The error reply that made redis-benchmark stop (it stops at the first), from its stderr."""
    return next((line.strip().removeprefix(SERVER_ERROR_PREFIX) for line in lines
                 if line.strip().startswith(SERVER_ERROR_PREFIX)), None)


def run_benchmark_csv(executable: str, host: str, port: int, workload: Workload, clients: int, pipeline: int,
                      requests: int, deadline: float, cwd: Path | None = None) -> BenchmarkRow:
    """One bounded `redis-benchmark --csv` run: past `deadline` seconds its whole
    process group is killed and BenchmarkTimedOut raised."""
    argv = benchmark_argv(executable, host, port, workload, clients, pipeline, requests, csv=True)
    try:
        done = run_bounded(argv, deadline, cwd=cwd)
    except subprocess.TimeoutExpired as expired:
        raise BenchmarkTimedOut(f"redis-benchmark did not finish {workload.command} within {deadline:.0f} s "
                                "and was killed") from expired
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    server_error = server_error_in(lines)
    if done.returncode != 0 or server_error is not None:
        reason = server_error or (lines[-1] if lines else f"exit status {done.returncode}")
        raise BenchmarkFailed(f"redis-benchmark failed on {workload.command}: {reason}", server_error)
    try:
        return parse_csv(done.stdout)
    except ValueError as error:
        raise BenchmarkFailed(str(error), None) from error
