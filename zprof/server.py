"""Server lifecycle: start on a free loopback port in a private directory, wait
for PING, keep the log, and always stop it."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from zprof.collect.crash import CrashStack, allow_core_dumps, capture
from zprof.errors import EXIT_TARGET, ServerCrashed, ZprofError
from zprof.load.resp import ErrorReply, ProtocolError, SyncClient
from zprof.model.common import Note
from zprof.paths import cache_dir
from zprof.procs import kill_group, spawn

HOST = "127.0.0.1"
DEFAULT_START_COMMAND = "{binary} --port {port}"
READY_TIMEOUT_S = 20.0
# A server that listens on other ports, not its own, for this long is taken to ignore the port it was given.
ELSEWHERE_GRACE_S = 2.0
STOP_TIMEOUT_S = 5.0
LOG_TAIL_LINES = 25
# Server logs kept for the error messages that quote them, newest first (zprof's cache, logs/).
KEPT_LOGS = 50
# How long a fixed port may stay taken after the previous server on it exited, and how often zprof looks.
PORT_FREE_WAIT_S = 5.0
PORT_POLL_S = 0.05
# Error replies a server gives while it starts (Redis loading its data): PING is asked again.
STILL_STARTING = ("LOADING", "BUSY")
# A server that dies before it answers PING is started again, up to this many times in all: a start-up
# crash is the target's bug, to report, not a reason to lose the measurement.
START_ATTEMPTS = 20
# A port zprof chose can be taken by another program before the server binds it: the server is
# started again on another port, up to this many times in all.
PORT_ATTEMPTS = 5


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


class NeverStarted(ZprofError):
    """The server crashed in every start zprof made: nothing of it could be measured."""


class PingRefused(ZprofError):
    """The server listens and answers PING with an error: bad input (a server zprof cannot drive as it is
    started), said at once rather than after the ready timeout."""

    def __init__(self, port: int, reply: str, log_tail: str) -> None:
        super().__init__(f"the server answered PING on {HOST}:{port} with an error: -{reply}",
                         detail="zprof drives a server that answers PING with PONG (a password or a protocol "
                                "it expects first is not supported)." + (f"\n{log_tail}" if log_tail else ""))
        self.port, self.reply = port, reply


def keep_log(log: Path, name: str) -> Path | None:
    """A copy of `log` in the cache's logs directory, which keeps the newest KEPT_LOGS; None if it cannot."""
    try:
        directory = cache_dir("logs")
        kept = directory / name
        shutil.copyfile(log, kept)
        for old in sorted(directory.glob("*.log"), key=lambda path: path.stat().st_mtime)[:-KEPT_LOGS]:
            old.unlink(missing_ok=True)
    except (OSError, ZprofError):
        return None
    return kept


def wait_for_port(port: int, seconds: float = PORT_FREE_WAIT_S) -> float:
    """Waits until nothing listens on `port`, up to `seconds`: a server that has just exited may keep its
    listening socket a moment longer (a child that inherited it, io_uring's deferred close). The seconds
    waited; ZprofError naming who holds the port when it stays taken."""
    started = time.monotonic()
    while port_in_use(port):
        if time.monotonic() - started >= seconds:
            holders = port_holders(port)
            who = ("; it is held by " + ", ".join(holders)) if holders else ""
            raise ZprofError(f"port {port} on {HOST} is still in use after {seconds:g} s{who}",
                             detail="Stop the process that holds it; a server on a fixed port cannot move to another"
                                    " (for one that takes --port, pick a free one with --port).")
        time.sleep(PORT_POLL_S)
    return time.monotonic() - started


def port_holders(port: int) -> list[str]:
    """The processes with a socket listening on `port` (pid and command line), those zprof may see."""
    holders = []
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return []
    pids = {connection.pid for connection in connections if connection.laddr and connection.laddr.port == port
            and connection.status == psutil.CONN_LISTEN and connection.pid}
    for pid in sorted(pids):
        try:
            holders.append(f"pid {pid} ({' '.join(psutil.Process(pid).cmdline()) or '?'})")
        except psutil.Error:
            holders.append(f"pid {pid}")
    return holders


def port_in_use(port: int) -> bool:
    """Whether something listens on the port (connections still in TIME_WAIT from a server
    that stopped do not count: the next server binds it as servers do, with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return True
    return False


LOOPBACK = ("127.0.0.1", "::1")


@dataclass
class ServerSpec:
    binary: Path
    start_command: str = DEFAULT_START_COMMAND
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    port: int | None = None
    ready_timeout: float = READY_TIMEOUT_S
    stop_timeout: float = STOP_TIMEOUT_S
    start_attempts: int = START_ATTEMPTS  # starts that may crash before the server counts as never started
    # Run before every start, a restart after a crash included: what a start must find fresh (the shim's
    # counter file, which the first process to attach owns, and whose counts would hold the crashed one's).
    before_start: Callable[[], object] | None = None

    def argv(self, port: int) -> list[str]:
        """The start command split into arguments as a shell would, then {binary} and {port} filled in
        argument by argument: it never runs through a shell, and nothing else in it is a placeholder."""
        try:
            words = shlex.split(self.start_command)
        except ValueError as error:
            raise ZprofError(f"cannot split the start command `{self.start_command}`: {error}") from error
        return [fill(word, self.binary, port) for word in words] + self.extra_args

    def environment(self, port: int) -> dict[str, str]:
        """The variables zprof sets for the server, {port} and {binary} filled in."""
        return {name: fill(value, self.binary, port) for name, value in self.env.items()}


def fill(text: str, binary: Path, port: int) -> str:
    return text.replace("{binary}", str(binary)).replace("{port}", str(port))


class Server:
    """A running target. Use as a context manager; leaving it stops the server."""

    def __init__(self, spec: ServerSpec, run_dir: Path) -> None:
        self.spec = spec
        self.run_dir = run_dir
        # Private (mode 0700, as mkdtemp makes it): the server's working directory, for whatever it writes.
        self.workdir = Path(tempfile.mkdtemp(prefix="server-", dir=run_dir))
        self.log_path = run_dir / "server.log"
        self.port = spec.port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.waited_for_port = 0.0  # seconds the fixed port took to come free before the start
        self._log_start = 0  # where this start's lines begin in the log, which restarts share
        self._crash: CrashStack | None = None

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Starts the server and waits until it answers PING on its port; stops it on any failure."""
        self.launch()
        try:
            self._wait_until_ready()
        except BaseException:  # Ctrl-C included: never leave it running
            self.stop()
            raise

    def launch(self) -> None:
        """Starts the server's process, without waiting for it to answer."""
        if self.spec.port is not None:
            self.waited_for_port = wait_for_port(self.spec.port)
        argv = self.spec.argv(self.port)
        with open(self.log_path, "ab") as log:
            self._log_start = log.tell()
            try:
                self.process = spawn(argv, cwd=self.workdir, env={**os.environ, **self.spec.environment(self.port)},
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     before_exec=allow_core_dumps)
            except OSError as error:
                raise ZprofError(f"cannot start the server ({shlex.join(argv)}): {error}") from error

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.spec.ready_timeout
        last_error: Exception | None = None
        elsewhere = _Elsewhere(self)
        while time.monotonic() < deadline:
            if not self.alive():
                raise self.crashed("exited before it answered PING")
            if (ports := elsewhere.settled()) is not None:
                raise ZprofError(
                    f"the server listens on {HOST} port {', '.join(map(str, ports))}, not on the port zprof gave it "
                    f"({self.port})",
                    detail="A server on a fixed port: pass that port with --port N (zprof init finds and writes it)."
                           + (f"\n{tail}" if (tail := self.log_tail()) else ""),
                    exit_code=EXIT_TARGET)
            try:
                with SyncClient(HOST, self.port, timeout=1.0) as client:
                    reply = client.call("PING")
                if reply in ("PONG", b"PONG"):
                    return
                if isinstance(reply, ErrorReply) and not reply.message.startswith(STILL_STARTING):
                    # It listens and answers, with an error: waiting longer tells nothing more.
                    raise PingRefused(self.port, reply.message, self.log_tail())
                last_error = RuntimeError(f"PING answered {reply!r}")
            except ProtocolError as error:
                # Not a RESP server (or not one yet, on this port): no point in asking again.
                raise ZprofError(f"the server answered PING on {HOST}:{self.port} with bytes that are not RESP "
                                 f"({error})", detail=self.log_tail(), exit_code=EXIT_TARGET) from error
            except (OSError, TimeoutError, ConnectionError) as error:
                last_error = error
            time.sleep(0.05)
        raise ZprofError(
            f"the server did not answer PING on {HOST}:{self.port} within {self.spec.ready_timeout:.0f} s "
            f"({last_error})",
            detail=self.log_tail(),
            exit_code=EXIT_TARGET,
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exited_within(self, seconds: float) -> bool:
        """True if the server is gone now or within `seconds` (a dying one may need a moment)."""
        if self.process is None:
            return True
        try:
            self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def _listening(self) -> list[tuple[str, int]]:
        """(address, port) of every socket the server (or a process its start command started) listens on."""
        try:
            root = psutil.Process(self.pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        found = []
        for process in processes:
            try:
                connections = process.net_connections(kind="inet")
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            found += [(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN]
        return sorted(set(found))

    def listening_ports(self) -> list[int]:
        return sorted({port for _, port in self._listening()})

    def listen_addresses(self) -> list[str]:
        """The addresses the server listens on for its port."""
        return sorted({address for address, port in self._listening() if port == self.port})

    def binds_beyond_loopback(self) -> str | None:
        """The address when the server listens on more than loopback (0.0.0.0, ::, an interface)."""
        outside = [address for address in self.listen_addresses() if address not in LOOPBACK]
        return outside[0] if outside else None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The log's last lines, for an error message, and a copy of the whole log that outlives the run's
        directory (removed when the run ends): the path the message quotes must exist when it is read."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        tail = text.splitlines()[-lines:]
        if not tail:
            return ""
        kept = keep_log(self.log_path, f"{self.run_dir.name}-server.log")
        return f"Last lines of the server log ({kept or self.log_path}):\n" + "\n".join(tail)

    def crashed(self, what: str) -> ZprofError:
        code = self.process.poll() if self.process else None
        how = _how(code) if code is not None else "still running"
        stack = self.crash_stack()
        if stack is None:
            return ZprofError(f"the server {what} ({how})", detail=self.log_tail(), exit_code=EXIT_TARGET)
        return ServerCrashed(f"the server {what} ({how})", stack=stack,
                             detail=self.log_tail() + f"\nWhere it crashed: {stack.summary()}")

    def crash_stack(self) -> CrashStack | None:
        """Where the server was when it died of a signal of its own; None while it runs or when it exited."""
        code = self.process.poll() if self.process else None
        if not _own_signal(code):
            return None
        if self._crash is None:
            try:
                with open(self.log_path, "rb") as log:
                    log.seek(self._log_start)
                    printed = log.read().decode(errors="replace")
            except OSError:
                printed = ""
            self._crash = capture(self.spec.binary, self.workdir, printed, self.pid, _how(code))  # type: ignore[arg-type]
        return self._crash

    def stop(self) -> None:
        """SIGTERM to the server's process group, then SIGKILL; idempotent."""
        if self.process is not None:
            kill_group(self.process, self.spec.stop_timeout)


def _own_signal(code: int | None) -> bool:
    """Whether a server was killed by a signal of its own (SIGSEGV, SIGABRT...): not a port in use, a command
    that cannot run, a deliberate exit status, or a silent server zprof stopped itself."""
    return code is not None and code < 0 and code not in (-signal.SIGTERM, -signal.SIGKILL)


@dataclass
class Starts:
    """How a server's starts went, over a run: crashes before it answered PING included."""

    starts: int = 0
    crashes: int = 0
    last_crash: str | None = None  # "signal 11, SIGSEGV"
    stack: CrashStack | None = None  # where the first crash was

    def note(self, label: str) -> Note | None:
        """The run's note on crashed starts, with where the first one crashed; None when none did."""
        if not self.crashes:
            return None
        return Note("server.start-crashes", {"server": label, "crashes": self.crashes, "starts": self.starts,
                                              "how": self.last_crash,
                                              "stack": self.stack.to_json() if self.stack else None})


class _Elsewhere:
    """Whether a starting server listens on other ports and still not on its own, for long enough to say so:
    a server on a fixed port never answers on the one zprof chose, and waiting out the ready timeout tells
    nothing more. A server that opens another port first (metrics, say) has ELSEWHERE_GRACE_S to open its own."""

    CHECK_EVERY_S = 0.5

    def __init__(self, server: Server) -> None:
        self._server = server
        self._next_check = time.monotonic()
        self._since: float | None = None

    def settled(self) -> list[int] | None:
        now = time.monotonic()
        if now < self._next_check:
            return None
        self._next_check = now + self.CHECK_EVERY_S
        ports = self._server.listening_ports()
        if not ports or self._server.port in ports:
            self._since = None
            return None
        self._since = self._since if self._since is not None else now
        return ports if now - self._since >= ELSEWHERE_GRACE_S else None


def _how(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"signal {-returncode}, {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"


def _lost_its_port(spec: ServerSpec, server: Server) -> bool:
    """The server exited before it answered PING, on a port zprof chose that another program holds now:
    taken between zprof's choice and the server's bind."""
    return (spec.port is None and server.process is not None and server.process.returncode is not None
            and port_in_use(server.port))


@contextmanager
def fresh_server(spec: ServerSpec, run_dir: Path, starts: Starts, label: str = "the server",
                 first: Callable[[Server], object] | None = None) -> Iterator[Server]:
    """A newly started server, stopped afterwards; one that died of a signal of its own before it answered
    PING is started again, up to START_ATTEMPTS times, and counted in `starts`; one that lost the port zprof
    chose for it to another program is started again on another port, up to PORT_ATTEMPTS times. `first`:
    what zprof asks a server before any load (its probes); a server that dies of its own signal under them
    crashed at start-up too (a race in its start, as Zoltraak's), and is started again like one."""
    port_losses = crashes = 0
    while True:
        server = Server(spec, run_dir)
        starts.starts += 1
        try:
            if spec.before_start is not None:
                spec.before_start()
            server.start()
            if first is not None:
                try:
                    first(server)
                except BaseException:
                    server.exited_within(0.5)  # a crash under the probes: its exit status, for the retry below
                    server.stop()
                    raise
        except ZprofError as error:
            if _lost_its_port(spec, server) and port_losses + 1 < PORT_ATTEMPTS:
                port_losses += 1
                continue
            code = server.process.returncode if server.process is not None else None
            if code is not None and not _own_signal(code) and not isinstance(error, NeverStarted):
                # It exited of itself before any load (a flag it refuses, a file it cannot open): never started.
                raise NeverStarted(error.message, detail=error.detail, exit_code=error.exit_code) from error
            if not _own_signal(code):
                raise
            crashes += 1
            starts.crashes += 1
            starts.last_crash = _how(code)
            if starts.stack is None:
                starts.stack = server.crash_stack()
            if crashes == spec.start_attempts:
                raise NeverStarted(f"{label} crashed during start-up in all {spec.start_attempts} attempts "
                                   f"({starts.last_crash})", detail=error.detail, exit_code=error.exit_code) \
                    from error
            continue
        try:
            yield server
        finally:
            server.stop()
        return
