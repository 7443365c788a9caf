"""The fault-injection suite's machinery: zprof started as a user starts it (a process of its own, so that
it can be signalled), events awaited with generous deadlines, and zprof's guarantees checked after every
fault: the exit code and message, no process left (its run's mark, its process groups, the binaries
involved), the project byte for byte as it was, and no half-written output."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import psutil
import pytest

from tests.conftest import MINIKV, REPO
from zprof import registry

T = TypeVar("T")
FAKE_SERVERS = REPO / "tests" / "fake_servers.py"
# Waits are for events (a process appears, a load is under way); the deadlines only stop a broken test.
EVENT_TIMEOUT_S = 180.0
RUN_TIMEOUT_S = 600.0
POLL_S = 0.05


def wait_for(condition: Callable[[], T], what: str, zprof: Zprof | None = None,
             timeout: float = EVENT_TIMEOUT_S) -> T:
    """The condition's first true value; fails when `zprof` exits first, or after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if zprof is not None and zprof.process.poll() is not None:
            raise AssertionError(f"zprof exited ({zprof.process.returncode}) before {what}:\n{zprof.output()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f} s")
        time.sleep(POLL_S)


def tree_digest(root: Path) -> str:
    """Every file, directory and link under `root`: names, modes and contents."""
    digest = hashlib.sha256()
    for directory, subdirs, files in os.walk(root):
        subdirs.sort()
        for name in sorted([*subdirs, *files]):
            path = Path(directory, name)
            info = path.lstat()
            digest.update(f"{path.relative_to(root)}\0{stat.S_IMODE(info.st_mode):o}\0".encode())
            if stat.S_ISLNK(info.st_mode):
                digest.update(os.readlink(path).encode())
            elif stat.S_ISREG(info.st_mode):
                digest.update(path.read_bytes())
    return digest.hexdigest()


def started(zprof: Zprof, name: str | None = None) -> list[psutil.Process]:
    """The running processes of what the zprof run started (named `name`, if given): those that carry its
    mark, and those in the process groups its registry entry names."""
    zprof.note_registry()
    recorded = [registry.ProcessId(pid, start) for pid, start in zprof.recorded]
    found = []
    for process in registry.leftovers(zprof.run_id, recorded):
        if name is None or process.name == name:
            try:
                found.append(psutil.Process(process.pid))
            except psutil.NoSuchProcess:
                continue
    return found


def _is_ours(process: psutil.Process, mark: bytes, cache: str) -> bool:
    """Whether a process is the run's: it carries the run's mark (everything zprof starts inherits it), or it
    names or works in the test's cache, where zprof keeps every binary and run directory (redis-server writes
    its title over its environment, so its mark cannot be read). Another zprof, redis-server or
    redis-benchmark on the machine is neither."""
    try:
        with open(f"/proc/{process.pid}/environ", "rb") as handle:
            if mark in handle.read().split(b"\0"):
                return True
        return cache in " ".join(process.cmdline()) or process.cwd().startswith(cache)
    except (OSError, psutil.Error):
        return False


def processes_of_run(zprof: Zprof, *texts: str) -> list[str]:
    """The run's processes (not this test's own) that are in the process groups it recorded, or whose command
    line names one of `texts` or the test's cache."""
    mine = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    mark, cache = f"{registry.ENV_VAR}={zprof.run_id}".encode(), str(zprof.cache)
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        command = " ".join(process.info["cmdline"] or [])
        try:
            in_group = os.getpgid(process.pid) in zprof.groups
        except (ProcessLookupError, psutil.Error):
            continue
        if (process.info["pid"] not in mine and process.info["status"] != psutil.STATUS_ZOMBIE
                and (in_group or any(text in command for text in (cache, *texts)))
                and _is_ours(process, mark, cache)):
            found.append(f"{process.info['pid']} {command}")
    return found


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def flat(self) -> str:
        """The output with its line breaks (rich wraps long messages) as spaces."""
        return " ".join(self.output.split())


@dataclass
class Zprof:
    """One `zprof` command running as a process of its own."""

    process: subprocess.Popen
    run_id: str
    cache: Path
    logs: Path
    groups: set[int] = field(default_factory=set)
    recorded: set[tuple[int, int]] = field(default_factory=set)  # (pid, start) of the processes it started
    directories: set[str] = field(default_factory=set)

    def output(self) -> str:
        return "".join(path.read_text(errors="replace") for path in (self.logs / "out", self.logs / "err")
                       if path.exists())

    def entry(self) -> Path:
        return self.cache / registry.REGISTRY_DIR / f"{self.run_id}.json"

    def note_registry(self) -> None:
        """Remembers the process groups and directories the run's registry entry names now."""
        try:
            body = json.loads(self.entry().read_text())
        except (OSError, ValueError):
            return
        self.groups |= {process["pid"] for process in body.get("processes", [])}
        self.recorded |= {(process["pid"], process["start"]) for process in body.get("processes", [])}
        self.directories |= set(body.get("directories", []))

    def send(self, signum: int) -> None:
        self.note_registry()
        self.process.send_signal(signum)

    def finish(self, timeout: float = RUN_TIMEOUT_S) -> Finished:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"zprof did not end within {timeout:.0f} s:\n{self.output()}") from None
        return Finished(self.process.returncode, (self.logs / "out").read_text(errors="replace"),
                        (self.logs / "err").read_text(errors="replace"))


@dataclass
class Faults:
    """Starts zprof commands against one cache and checks what they leave."""

    env: dict[str, str]
    cache: Path
    logs: Path
    started: int = 0

    def start(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Zprof:
        self.started += 1
        logs = self.logs / f"run-{self.started}"
        logs.mkdir(parents=True)
        with open(logs / "out", "w") as out, open(logs / "err", "w") as err:
            process = subprocess.Popen([sys.executable, "-m", "zprof", *args], cwd=cwd or REPO,
                                       env={**self.env, **(env or {})}, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=err)
        # Read before anything reaps it: an exited child stays in the process table until then.
        identity = registry.identify(process.pid)
        assert identity is not None
        cache = Path((env or {}).get("ZPROF_CACHE", self.cache))
        return Zprof(process, f"{identity.pid}-{identity.start}", cache, logs)

    def run(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = RUN_TIMEOUT_S) -> tuple[Zprof, Finished]:
        zprof = self.start(*args, env=env, cwd=cwd)
        return zprof, zprof.finish(timeout)


def assert_clean(zprof: Zprof, done: Finished, code: int, *phrases: str, project: Path | None = None,
                 digest: str | None = None, output: Path | None = None, partial: bool = False,
                 binaries: tuple[str, ...] = ()) -> None:
    """zprof's guarantees after a run: exit code, message, nothing left running or on disk."""
    assert done.returncode == code, done.output
    assert "Traceback" not in done.output, done.output
    for phrase in phrases:
        assert phrase in done.flat, done.output
    left = [f"{p.pid} {' '.join(p.cmdline())}" for p in started(zprof)]
    left += processes_of_run(zprof, *binaries)
    assert left == [], f"zprof left processes running: {left}"
    assert not zprof.entry().exists(), "zprof left its run registry entry"
    assert [path for path in zprof.directories if Path(path).exists()] == [], "zprof left its directories"
    if project is not None:
        assert tree_digest(project) == digest, f"zprof changed {project}"
    if output is not None:
        assert_no_partial_output(output, partial)


def assert_no_partial_output(output: Path, partial: bool = False) -> None:
    """No output at all, or (for a run a failure cut short after it measured) a whole run.json that says it
    is incomplete; never a temporary file."""
    if not partial:
        assert not output.exists(), f"zprof left {output}: {list(output.iterdir())}"
        return
    assert output.is_dir(), "a run cut short is saved"
    assert [path.name for path in output.iterdir() if path.name.startswith(".")] == []
    run = json.loads((output / "run.json").read_text())
    assert run["complete"] is False and run["error"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every fault case runs the real zprof, as a process of its own: slow, all of them."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def faults(zprof_env: dict[str, str], tmp_path: Path) -> Faults:
    return Faults(zprof_env, Path(zprof_env["ZPROF_CACHE"]), tmp_path / "logs")


@pytest.fixture
def minikv_digest() -> Iterator[str]:
    """The sample project's digest: the same after the test, whatever it did."""
    digest = tree_digest(MINIKV)
    yield digest
    assert tree_digest(MINIKV) == digest, "a test changed examples/minikv"


@pytest.fixture
def fresh_cache(tmp_path: Path) -> Path:
    """A cache of the test's own, so that zprof has to build (the Zig compiler's own cache stays warm)."""
    return tmp_path / "cache"


def load_under_way(zprof: Zprof, name: str = "minikv", clients: int = 4, cpu_s: float = 0.2) -> psutil.Process:
    """The server, once zprof's load is running on it: its clients connected and its CPU time growing."""

    def busy() -> psutil.Process | None:
        for server in started(zprof, name):
            try:
                connected = [c for c in server.net_connections("tcp") if c.status == psutil.CONN_ESTABLISHED]
                times = server.cpu_times()
            except psutil.NoSuchProcess:
                continue
            if len(connected) >= clients and times.user + times.system >= cpu_s:
                return server
        return None

    return wait_for(busy, f"load on the {name} server", zprof)


def tool_running(zprof: Zprof, name: str) -> psutil.Process:
    return wait_for(lambda: next(iter(started(zprof, name)), None), f"{name} started by zprof", zprof)


def stop_signal_name(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


def path_without(tmp_path: Path, *missing: str) -> str:
    """A PATH with every program of the system's but `missing`."""
    directory = tmp_path / f"bin-without-{'-'.join(missing)}"
    directory.mkdir()
    for source in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep):
        if not os.path.isdir(source):
            continue
        for name in os.listdir(source):
            target = directory / name
            if name not in missing and not target.exists() and os.access(os.path.join(source, name), os.X_OK):
                target.symlink_to(os.path.join(source, name))
    return str(directory)
