"""`zprof init`: what it takes to build, start and drive a project's server, found by trying.

The project is built as the other commands build it; then zprof finds how the server
takes its port (a `--port` flag, or a fixed port it listens on), probes concurrency and
pipelining, and checks each command of Redis' tiers 1-3, and of the commands zprof
itself relies on: which the server does (`zprof.load.support`), which it rejects, and which
it only pretends to do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from zprof.builder.build import REQUESTED
from zprof.errors import ZprofError
from zprof.load.driver import Workload
from zprof.load.probe import PROBE_TIMEOUT_S, probe
from zprof.load.resp import ErrorReply, SyncClient
from zprof.load.support import NOT_CHECKED, ZPROF_OWN, Support, check
from zprof.load.workloads import MIX, TIERS, bench_workload
from zprof.progress import Reporter
from zprof.server import HOST, PingRefused, Server, ServerSpec, Starts, free_port, fresh_server
from zprof.sessions.target import Built, TargetOptions, build_target, run_directory, server_spec

# What zprof does without a command it relies on (its own, or MSET for bench's memory load) when the server
# fakes it (zprof.load.support).
WITHOUT_IT = {"FLUSHALL": "no leak check in memory, no bytes kept after FLUSHALL in allocs",
              "DBSIZE": "no count of new keys, no memory per key in bench",
              "MSET": "bench's memory load uses SET", "CONFIG GET": "redis-benchmark warns at start-up"}
# How long a server that ignored --port may take to open its own port.
LISTEN_WAIT_S = 3.0


@dataclass
class Found:
    """What `zprof init` found about a project's server."""

    built: Built
    start_command: str
    port: int | None  # a fixed port, or None when zprof chooses one
    env: dict[str, str]
    how: str  # how zprof found the start: "given", "port flag", "fixed port"
    concurrent_clients: bool
    pipelining: bool
    binds: str | None
    answers: list[str] = field(default_factory=list)  # tier 1-3 commands the server does
    rejects: dict[str, str] = field(default_factory=dict)  # command: the first error
    relied_on: dict[str, bool] = field(default_factory=dict)  # FLUSHALL, DBSIZE...: done
    start_crashes: int = 0
    # Commands, of the tiers or zprof's own, the server answers without doing: command, "answers +OK without
    # doing it" (zprof.load.support).
    unsupported: dict[str, str] = field(default_factory=dict)


def discover(options: TargetOptions, start_given: bool, progress: Reporter) -> Found:
    built = build_target(options, progress, with_shim=False)
    with run_directory("init") as run_dir:
        progress.status("Finding how the server starts...")
        spec, how = _start(options, start_given, built, run_dir)
        starts = Starts()
        progress.status("Probing the server...")
        with fresh_server(spec, run_dir, starts) as server:
            capabilities = probe(HOST, server.port, 4, 16)
            binds = server.binds_beyond_loopback()
            progress.status("Checking which commands the server does...")
            tiers = _commands(server.port)
            own = {name: _ask(server.port, workload) for name, workload in ZPROF_OWN.items()}
    checked = {**tiers, **own}
    return Found(built, spec.start_command, spec.port, dict(spec.env), how, capabilities.concurrent_clients,
                 capabilities.pipelining, binds,
                 answers=[name for name, found in tiers.items() if found.supported],
                 rejects={name: found.error for name, found in tiers.items() if found.error is not None},
                 relied_on={name: found.supported for name, found in own.items()}, start_crashes=starts.crashes,
                 unsupported={name: found.faked for name, found in checked.items() if found.faked is not None})


def _start(options: TargetOptions, start_given: bool, built: Built, run_dir: Path) -> tuple[ServerSpec, str]:
    """A start command that works: the one given, `{binary} --port {port}`, or the binary on its fixed port."""
    if start_given or options.port is not None or any("{port}" in pair for pair in options.env):
        spec = server_spec(options, built.binary, {})
        _check_starts(spec, run_dir)
        return spec, "given"
    spec = server_spec(options, built.binary, {})
    port = free_port()
    try:
        with fresh_server(replace(spec, port=port), run_dir, Starts()):
            return spec, "port flag"
    except PingRefused:
        raise  # it took the port and answered: the reply is what is wrong, not where it listens
    except ZprofError as failed:
        first_error = failed
    # No answer on the port zprof chose: the server ignores --port (or refuses it). Where does it listen?
    silent: set[int] = set()  # ports it listened on without answering PING there
    for start_command in (options.start_command, "{binary}"):
        listening = _listens_on(replace(spec, start_command=start_command, port=None), run_dir, silent)
        if listening is not None:
            return replace(spec, start_command=start_command.replace(" --port {port}", ""), port=listening), \
                "fixed port"
    where = (f"it listened on {HOST} port {', '.join(map(str, sorted(silent)))} but did not answer PING there"
             if silent else "it listened on no port zprof could find")
    raise ZprofError("zprof init could not find how to start the server",
                     detail=f"With `{options.start_command}` it did not answer PING on the port zprof chose "
                            f"({first_error.message}), and {where}. Pass "
                            "--start-command (with {port} where the port goes), --port N for a server on a fixed "
                            "port, or --env NAME={port} for one that reads its port from the environment.")


def _check_starts(spec: ServerSpec, run_dir: Path) -> None:
    with fresh_server(spec, run_dir, Starts()):
        pass


def _listens_on(spec: ServerSpec, run_dir: Path, silent: set[int]) -> int | None:
    """Starts the server without waiting for PING on a port of zprof's, and finds the port it
    listens on by itself; None when it listens on none that answers PING (or exits). The ports it
    listened on without answering go into `silent`."""
    probe_spec = replace(spec, port=free_port())  # a port for {port}, which this start command does not use
    server = Server(probe_spec, run_dir)
    try:
        server.launch()
        deadline = time.monotonic() + LISTEN_WAIT_S
        while time.monotonic() < deadline and server.alive():
            ports = server.listening_ports()
            for port in ports:
                if _answers_ping(port):
                    return port
                silent.add(port)
            time.sleep(0.1)
        return None
    except PingRefused as refused:
        raise PingRefused(refused.port, refused.reply, server.log_tail()) from refused
    finally:
        server.stop()


def _answers_ping(port: int) -> bool:
    """Whether the server answers PING on `port`; PingRefused when it answers with an error."""
    try:
        with SyncClient(HOST, port, PROBE_TIMEOUT_S) as client:
            reply = client.call("PING")
    except (OSError, TimeoutError, ConnectionError):
        return False
    if isinstance(reply, ErrorReply):
        raise PingRefused(port, reply.message, "")
    return reply in ("PONG", b"PONG")


def _ask(port: int, workload: Workload) -> Support:
    """Whether the server does the command; a server that does not answer rejects it."""
    try:
        return check(HOST, port, workload, PROBE_TIMEOUT_S)
    except ZprofError as failure:
        return Support(workload.command, NOT_CHECKED, error=failure.message)


def _commands(port: int) -> dict[str, Support]:
    names = [name for tier in ("1", "2", "3") for name in TIERS[tier] if name != MIX]
    return {name: _ask(port, bench_workload(name, 1000)) for name in names}


def config_sections(found: Found, options: TargetOptions) -> dict[str, dict[str, Any]]:
    """What `zprof init` writes: the settings the other commands read, and what it found, for the reader."""
    result = found.built.result
    target: dict[str, Any] = {}
    if options.exe or len(result.executables) > 1:
        target["exe"] = result.binary.name
    if options.build_args:
        target["build_args"] = list(options.build_args)
    if result.optimize_source == REQUESTED:
        target["optimize"] = result.optimize
    target["start_command"] = found.start_command
    if found.port is not None:
        target["port"] = found.port
    if found.env:
        target["env"] = found.env
    workload: dict[str, Any] = {"commands": found.answers}
    if not found.concurrent_clients:
        workload["clients"] = 1
    if not found.pipelining:
        workload["pipeline"] = 1
    server = {
        "concurrent_clients": found.concurrent_clients, "pipelining": found.pipelining,
        "binds": found.binds or HOST, "fixed_port": found.how == "fixed port",
        "answers": [name for name, answered in found.relied_on.items() if answered],
        "rejects": sorted(found.rejects), "optimize_source": result.optimize_source,
    }
    if found.unsupported:
        # Answered, but not done: left out of [workload] commands, each with why and what zprof goes without.
        server["unsupported"] = [f"{name}: unsupported ({why})" + (f"; {WITHOUT_IT[name]}" if name in WITHOUT_IT
                                                                   else "")
                                 for name, why in found.unsupported.items()]
    return {"target": target, "workload": workload, "server": server}


COMMENTS = {
    "target": "How zprof builds and starts the server.",
    "workload": "The commands of Redis' tiers 1-3 the server answered, and the load it takes.",
    "server": "What zprof init found (for the reader; zprof probes again at every run).",
}
