"""What every session that builds and runs the target shares: its options, the
build, the record of what was built, the server's start command, and a private
directory for the run."""

from __future__ import annotations

import asyncio
import shlex
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from zprof import registry
from zprof.analysis.symbols import Symbolizer
from zprof.builder import shim
from zprof.builder.build import DEFAULT_OPTIMIZE, BuildRequest, BuildResult, build
from zprof.builder.project import SourceRoots, ZigProject, load_project
from zprof.builder.stored import StoredBuild
from zprof.builder.toolchain import find_zig
from zprof.config import ProjectConfig
from zprof.errors import EXIT_TARGET, EXIT_USAGE, ZprofError
from zprof.load.driver import LoadError, LoadResult, LoadSession, Workload, run_requests
from zprof.load.probe import PROBE_TIMEOUT_S, Capabilities, check_command, probe
from zprof.load.support import ZPROF_OWN, Support, check
from zprof.load.workloads import key_writes
from zprof.model.common import Note, TargetInfo
from zprof.paths import cache_dir, cache_root
from zprof.progress import Reporter
from zprof.server import HOST, NeverStarted, Server, ServerSpec, Starts, fresh_server


@dataclass(frozen=True)
class TargetOptions:
    """Which project, how to build it, and how to start its server: the flags, with the
    project's `zprof.toml` filling in what the flags left at their defaults."""

    project: str
    zig: str | None
    exe: str | None
    server_args: str
    start_command: str
    port: int | None
    ready_timeout: float
    build_args: tuple[str, ...] = ()
    optimize: str | None = None  # None: ReleaseFast where the project has the option
    env: tuple[str, ...] = ()  # KEY=VALUE, {port} and {binary} filled in
    config: ProjectConfig = field(default_factory=ProjectConfig)
    # A baseline's kept builds, run instead of building the project (the project still names their files).
    stored: StoredBuild | None = None


@contextmanager
def gate_measurement() -> Iterator[None]:
    """A gate's measurement (compare, regress): a server that never started could not be measured, exit 2,
    which is not the gate's regression (1): the gate cannot say whether the change regressed."""
    try:
        yield
    except NeverStarted as never:
        raise ZprofError(f"could not measure: {never.message}", detail=never.detail, exit_code=EXIT_USAGE) from never


@dataclass(frozen=True)
class Built:
    project: ZigProject
    result: BuildResult

    @property
    def binary(self) -> Path:
        return self.result.binary

    @property
    def roots(self) -> SourceRoots:
        """The binary may come from another checkout of the same sources: its files are named under this one."""
        return SourceRoots(self.result.source_root, str(self.project.root))

    def symbolizer(self) -> Symbolizer:
        return Symbolizer(self.binary, cache_root() / "symbols", roots=self.roots)

    def info(self, start_command: str | None = None) -> TargetInfo:
        return TargetInfo(name=self.project.name, binary=str(self.result.binary), project=str(self.project.root),
                          zig_version=self.result.zig_version, optimize=self.result.optimize,
                          optimize_source=self.result.optimize_source, build_cached=self.result.cached,
                          build_seconds=round(self.result.seconds, 2), start_command=start_command,
                          build_args=list(self.result.build_args), build_warnings=self.result.warnings,
                          compiled_in=self.result.source_root if self.roots.moved else None)


def build_target(options: TargetOptions, progress: Reporter, *, with_shim: bool, shim_variant: str = shim.COUNTING,
                 extra_args: tuple[str, ...] = ()) -> Built:
    project = load_project(options.project)
    if options.stored is not None:
        return Built(project, options.stored.result(with_shim, shim_variant, extra_args))
    zig = find_zig(options.zig)
    request = BuildRequest(project=project, zig=zig, with_shim=with_shim, shim_variant=shim_variant, exe=options.exe,
                           extra_args=(*options.build_args, *extra_args),
                           optimize=options.optimize or DEFAULT_OPTIMIZE, optimize_asked=options.optimize is not None)
    shim_name = f" and the zprof shim ({shim_variant})" if with_shim else ""
    progress.status(f"Building {project.name} with Zig {zig.version}{shim_name}...")
    return Built(project, build(request))


# How long a server may take to exit on SIGTERM once everything was read from it, before SIGKILL: a
# server that ignores SIGTERM (Zoltraak waits in accept) costs half a second, not the default five.
STOP_GRACE_AFTER_MEASURING_S = 0.5


def server_spec(options: TargetOptions, binary: Path, env: dict[str, str]) -> ServerSpec:
    """How to start the server: the start command, its arguments and environment, on which port."""
    if "{binary}" not in options.start_command:
        raise ZprofError("--start-command must contain {binary}, the server zprof built")
    user_env = dict(parse_env(options.env))
    takes_port = "{port}" in options.start_command or any("{port}" in value for value in user_env.values())
    if not takes_port and options.port is None:
        raise ZprofError(
            "the start command gives the server no port ({port} is in neither --start-command nor --env)",
            detail="For a server that listens on a fixed port, pass that port: --port N (or run zprof init).")
    try:
        extra = shlex.split(options.server_args)
    except ValueError as error:
        raise ZprofError(f"cannot parse --server-args: {error}") from error
    return ServerSpec(binary=binary, start_command=options.start_command, extra_args=extra,
                      env={**user_env, **env}, port=options.port, ready_timeout=options.ready_timeout)


def parse_env(pairs: tuple[str, ...]) -> list[tuple[str, str]]:
    """KEY=VALUE pairs (--env), in order; a pair without "=" or with an empty name is bad input."""
    parsed = []
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name or not name.replace("_", "").isalnum():
            raise ZprofError(f"--env {pair!r}: expected NAME=VALUE")
        parsed.append((name, value))
    return parsed


# A wait for a fixed port to come free worth a note: longer than a few polls.
PORT_WAIT_WORTH_SAYING_S = 0.2


@contextmanager
def run_directory(kind: str) -> Iterator[Path]:
    """A private directory (mode 0700) for one run's server, log and counters; removed afterwards, or by
    the next zprof run when this one was killed (zprof.registry)."""
    run = registry.current()
    path = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=cache_dir("runs")))
    run.add_directory(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        run.remove_directory(path)


@dataclass(frozen=True)
class Probed:
    """What the probes found: the clients and pipeline the load adapts to, the workloads the
    server takes, notes on what was adapted or dropped, and whether the server does each command
    checked (the workload's, and those zprof relies on that were asked for)."""

    capabilities: Capabilities
    clients: int
    pipeline: int
    workloads: list[Workload]
    notes: list[Note]
    support: dict[str, Support] = field(default_factory=dict)

    def supports(self, command: str) -> bool:
        return command in self.support and self.support[command].supported

    def without(self, command: str) -> str | None:
        """Why zprof goes without one of the commands it relies on (its error reply, or "unsupported (...)");
        None when the server does it."""
        return self.support[command].reason


def probe_for(server: Server, workloads: list[Workload], clients: int, pipeline: int,
              timeout: float = PROBE_TIMEOUT_S, *, explicit: bool = True, relied_on: tuple[str, ...] = ()) -> Probed:
    """Probes the server before any load, and checks that it does each workload's command
    (`zprof.load.support`), and each of zprof's own it relies on (`relied_on`: FLUSHALL, DBSIZE).
    A command the server answers with an error, or only pretends to do, is bad input when the user
    named it (`explicit`); in a mixed workload it is dropped with a note, and only an empty workload
    fails. A server that crashed on a probe is the target's failure (exit 1), whatever the probe
    concluded."""
    try:
        return _probe_for(server, workloads, clients, pipeline, timeout, explicit, relied_on)
    except ZprofError as error:
        if server.exited_within(0.5):
            raise server.crashed(f"crashed while zprof probed it ({error.message})") from error
        raise


def _probe_for(server: Server, workloads: list[Workload], clients: int, pipeline: int, timeout: float,
               explicit: bool, relied_on: tuple[str, ...]) -> Probed:
    capabilities = probe(HOST, server.port, clients, pipeline, timeout=timeout)
    if explicit:
        support = {workload.command: check_command(HOST, server.port, workload, timeout=timeout)
                   for workload in workloads}
    else:
        support = {workload.command: check(HOST, server.port, workload, timeout) for workload in workloads}
    kept = [workload for workload in workloads if support[workload.command].supported]
    if not kept:
        first = next(iter(support.values()))
        raise ZprofError(f"the server rejects, or does not support, every command of the workload "
                         f"({', '.join(support)})", detail=first.message())
    rejected = {command: found.error for command, found in support.items() if found.error is not None}
    faked = {command: found.unsupported for command, found in support.items() if found.faked is not None}
    for command in relied_on:
        support[command] = check(HOST, server.port, ZPROF_OWN[command], timeout)
    notes = list(capabilities.notes)
    if rejected:
        notes.append(Note("workload.dropped", {"commands": list(rejected), "first_error": next(iter(
            rejected.values()))}))
    if faked:
        notes.append(Note("workload.unsupported", {"commands": faked}))
    return Probed(capabilities, *capabilities.adapt(clients, pipeline), kept, notes, support)


@contextmanager
def probed_server(spec: ServerSpec, run_dir: Path, notes: list[Note], probe: Callable[[Server], Probed],
                  label: str = "the server") -> Iterator[tuple[Server, Probed]]:
    """`running`, and `probe` (probe_for's probes) asked at once: a server that dies of a signal of its own
    under the probes crashed at start-up, and is started again like one (`fresh_server`)."""
    starts = Starts()
    found: list[Probed] = []
    with fresh_server(spec, run_dir, starts, label, first=lambda server: found.append(probe(server))) as server:
        notes.extend(start_notes(spec, server, starts, label))
        yield server, found[-1]


def start_notes(spec: ServerSpec, server: Server, starts: Starts, label: str) -> list[Note]:
    notes = []
    if (crashed := starts.note(label)) is not None:
        notes.append(crashed)
    if server.waited_for_port >= PORT_WAIT_WORTH_SAYING_S:
        notes.append(Note("server.port-waited", {"port": server.port, "seconds": round(server.waited_for_port, 2)}))
    port_vars = [name for name, value in spec.env.items() if "{port}" in value]
    if port_vars:
        notes.append(Note("server.port-from-env", {"names": port_vars, "port": server.port}))
    elif "{port}" not in spec.start_command:
        notes.append(Note("server.fixed-port", {"port": server.port}))
    if (address := server.binds_beyond_loopback()) is not None:
        notes.append(Note("server.binds-all", {"address": address, "port": server.port}))
    return notes


def run_fixed(server: Server, workloads: list[Workload], requests: int, probed: Probed) -> LoadResult:
    """A fixed number of requests on fresh connections; a server that stopped answering ends the run."""
    try:
        return asyncio.run(run_requests(HOST, server.port, probed.clients, workloads, requests, probed.pipeline))
    except LoadError as failure:
        if server.exited_within(1.0):
            raise server.crashed(f"crashed after {failure.result.requests:,} requests") from failure
        raise ZprofError(str(failure), detail=server.log_tail(), exit_code=EXIT_TARGET) from failure
    except OSError as failure:  # refused at connect: the server went away after its probes
        if server.exited_within(1.0):
            raise server.crashed("crashed before the first request") from failure
        raise ZprofError(f"cannot connect to the server: {failure}", detail=server.log_tail(),
                         exit_code=EXIT_TARGET) from failure


# A load run's deadline, from the work asked for: FACTOR times what it should take at the rate the warm-up
# measured (SLOWEST_RATE requests a second before that), and never under the floor. A server that stops
# answering is caught far sooner, by the driver's deadline on every batch.
LOAD_DEADLINE_FLOOR_S = 600.0
LOAD_DEADLINE_FACTOR = 10.0
SLOWEST_RATE = 1000.0


def load_counter(progress: Reporter, total: int) -> Callable[[int], None]:
    done = 0

    def count(requests: int) -> None:
        nonlocal done
        done += requests
        progress.count(done, total)

    return count


class LoadInterrupted(Exception):
    """A load run cut short by a crash or a stall, with what it measured before."""

    def __init__(self, result: LoadResult, error: ZprofError) -> None:
        self.result, self.error = result, error


async def run_load(session: LoadSession, workload: Workload, requests: int, pipeline: int, server: Server,
               progress: Callable[[int], None], expected_rate: float | None) -> LoadResult:
    """One load run; a crash or a stall keeps what was measured (`LoadInterrupted`)."""
    deadline = max(LOAD_DEADLINE_FLOOR_S, LOAD_DEADLINE_FACTOR * requests / (expected_rate or SLOWEST_RATE))
    try:
        return await asyncio.wait_for(session.run(workload, requests, pipeline, progress), deadline)
    except LoadError as failure:
        if server.exited_within(1.0):
            raise LoadInterrupted(failure.result, server.crashed(
                f"crashed after {failure.result.requests:,} of {requests:,} requests")) from failure
        raise LoadInterrupted(failure.result, ZprofError(
            f"{failure} after {failure.result.requests:,} of {requests:,} requests",
            detail=server.log_tail(), exit_code=EXIT_TARGET)) from failure
    except TimeoutError as timeout:
        basis = "the warm-up's rate" if expected_rate else f"{SLOWEST_RATE:g} requests a second"
        raise ZprofError(f"the load of {requests:,} {workload.command} requests did not finish within {deadline:.0f} s "
                         f"({LOAD_DEADLINE_FACTOR:g} times what {basis} predicts)",
                         exit_code=EXIT_TARGET) from timeout


async def write_keys(session: LoadSession, workload: Workload, pipeline: int, server: Server,
                     progress: Reporter) -> None:
    """For a read's hits: every key of the workload's range written first (nothing when it has no `fill`)."""
    if not workload.fill:
        return
    progress.status(f"writing the {workload.keyspace:,} keys {workload.label} reads")
    try:
        await run_load(session, key_writes(workload), workload.keyspace, pipeline, server,
                       load_counter(progress, workload.keyspace), None)
    except LoadInterrupted as interrupted:
        raise interrupted.error from None


def write_keys_fixed(server: Server, workload: Workload, probed: Probed) -> None:
    """`write_keys` on connections of its own, for a run that measures on fresh ones (`run_fixed`)."""
    if workload.fill:
        run_fixed(server, [key_writes(workload)], workload.keyspace, probed)


# The idle window before a measured run: as long as the run should last, within these bounds.
IDLE_WINDOW_S = (0.5, 3.0)


@dataclass(frozen=True)
class WarmUp:
    """What a warm-up showed of the measured run to come."""

    expected_seconds: float  # how long the measured run should last at the warm-up's rate (1 s without one)
    rate: float | None  # requests a second; None without a warm-up

    @property
    def idle_seconds(self) -> float:
        return min(max(self.expected_seconds, IDLE_WINDOW_S[0]), IDLE_WINDOW_S[1])


async def warm_up(session: LoadSession, workload: Workload, warmup: int, requests: int, pipeline: int,
                  server: Server, progress: Reporter) -> WarmUp:
    """`warmup` requests on keys the measured run (key range 1) never uses; a crash or a stall is the error."""
    if not warmup:
        return WarmUp(1.0, None)
    progress.status("warm-up")
    try:
        warm = await run_load(session, workload.with_key_range(0), warmup, pipeline, server,
                              load_counter(progress, warmup), None)
    except LoadInterrupted as interrupted:
        raise interrupted.error from None
    return WarmUp(warm.seconds * requests / max(warm.requests, 1), warm.rps or None)
