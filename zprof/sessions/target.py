"""What every session that builds and runs the target shares: its options, the
build, the record of what was built, the server's start command, and a private
directory for the run."""

from __future__ import annotations

import asyncio
import shlex
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from zprof.builder import shim
from zprof.builder.build import BuildRequest, BuildResult, build, cache_root
from zprof.builder.project import ZigProject, load_project
from zprof.builder.toolchain import find_zig
from zprof.errors import EXIT_TARGET, ZprofError
from zprof.load.driver import LoadError, LoadResult, Workload, run_requests
from zprof.load.probe import PROBE_TIMEOUT_S, Capabilities, check_command, probe
from zprof.model.common import TargetInfo
from zprof.progress import Reporter
from zprof.server import HOST, Server, ServerSpec


@dataclass(frozen=True)
class TargetOptions:
    project: str
    zig: str | None
    exe: str | None
    server_args: str
    start_command: str
    port: int | None
    ready_timeout: float


@dataclass(frozen=True)
class Built:
    project: ZigProject
    result: BuildResult

    @property
    def binary(self) -> Path:
        return self.result.binary

    def info(self, start_command: str | None = None) -> TargetInfo:
        return TargetInfo(name=self.project.name, binary=str(self.result.binary), project=str(self.project.root),
                          zig_version=self.result.zig_version, optimize=self.result.optimize,
                          build_cached=self.result.cached, build_seconds=round(self.result.seconds, 2),
                          start_command=start_command, build_warnings=self.result.warnings)


def build_target(options: TargetOptions, progress: Reporter, *, with_shim: bool, shim_variant: str = shim.COUNTING,
                 extra_args: tuple[str, ...] = ()) -> Built:
    project = load_project(options.project)
    zig = find_zig(options.zig)
    request = BuildRequest(project=project, zig=zig, with_shim=with_shim, shim_variant=shim_variant, exe=options.exe,
                           extra_args=extra_args)
    shim_name = f" and the zprof shim ({shim_variant})" if with_shim else ""
    progress.status(f"Building {project.name} with Zig {zig.version}{shim_name}...")
    return Built(project, build(request))


def server_spec(options: TargetOptions, binary: Path, env: dict[str, str]) -> ServerSpec:
    if "{binary}" not in options.start_command or "{port}" not in options.start_command:
        raise ZprofError("--start-command must contain {binary} and {port}")
    try:
        extra = shlex.split(options.server_args)
    except ValueError as error:
        raise ZprofError(f"cannot parse --server-args: {error}") from error
    return ServerSpec(binary=binary, start_command=options.start_command, extra_args=extra, env=env,
                      port=options.port, ready_timeout=options.ready_timeout)


@contextmanager
def run_directory(kind: str) -> Iterator[Path]:
    """A private directory for one run's server, log and counters; removed afterwards."""
    runs = cache_root() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=runs))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class Probed:
    """What the probes found, and the clients and pipeline the load adapts to."""

    capabilities: Capabilities
    clients: int
    pipeline: int


def probe_for(server: Server, workloads: list[Workload], clients: int, pipeline: int,
              timeout: float = PROBE_TIMEOUT_S) -> Probed:
    """Probes the server before any load, and sends each workload's request once: one the server
    answers with an error is bad input, not a measurement."""
    capabilities = probe(HOST, server.port, clients, pipeline, timeout=timeout)
    for workload in workloads:
        check_command(HOST, server.port, workload, timeout=timeout)
    return Probed(capabilities, *capabilities.adapt(clients, pipeline))


def run_fixed(server: Server, workloads: list[Workload], requests: int, probed: Probed) -> LoadResult:
    """A fixed number of requests on fresh connections; a server that stopped answering ends the run."""
    try:
        return asyncio.run(run_requests(HOST, server.port, probed.clients, workloads, requests, probed.pipeline))
    except LoadError as failure:
        if server.exited_within(1.0):
            raise server.crashed(f"crashed after {failure.result.requests:,} requests") from failure
        raise ZprofError(str(failure), detail=server.log_tail(), exit_code=EXIT_TARGET) from failure
