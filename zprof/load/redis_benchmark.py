"""redis-benchmark as a load generator: far lighter than the built-in driver, so
the server, not the client, gets the CPU.

redis-benchmark has no timeout of its own and hangs forever on a server that
serves one connection at a time or drops pipelined commands, so zprof only
uses it after the probes passed, and always ends it itself: every process
runs in its own process group, which is killed when the load stops.
"""

from __future__ import annotations

import shutil
import subprocess
import time

from zprof.errors import ZprofError
from zprof.load.driver import Workload
from zprof.procs import die_with_parent, kill_group

# Large enough never to finish on its own: zprof stops the load.
ENDLESS_REQUESTS = 1_000_000_000
START_CHECK_S = 0.3


def redis_benchmark_path() -> str | None:
    return shutil.which("redis-benchmark")


def benchmark_argv(executable: str, host: str, port: int, workload: Workload, clients: int, pipeline: int,
                   requests: int) -> list[str]:
    """One workload in redis-benchmark's arbitrary-command mode (`__rand_int__` and -r work there too)."""
    return [executable, "-h", host, "-p", str(port), "-c", str(clients), "-P", str(pipeline),
            "-n", str(requests), "-r", str(workload.keyspace), "-q",
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
            self._processes.append(subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                start_new_session=True, preexec_fn=die_with_parent,
            ))
        time.sleep(START_CHECK_S)
        for process in self._processes:
            if process.poll() is not None:
                message = process.stderr.read().decode(errors="replace").strip() if process.stderr else ""
                self.stop()
                raise ZprofError(f"redis-benchmark exited at once ({process.returncode})", detail=message)

    def stop(self) -> None:
        for process in self._processes:
            if process.poll() is not None and process.returncode != 0 and self.error is None:
                self.error = f"redis-benchmark exited early with status {process.returncode}"
            kill_group(process, timeout=2.0)
            if process.stderr:
                process.stderr.close()
