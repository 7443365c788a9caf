"""The run registry: what a zprof run started, kept on disk while it runs, so that nothing it
started outlives it, even when it is killed with SIGKILL.

Every process zprof starts carries `ZPROF_RUN=<run id>` in its environment, and so does whatever
that process starts in turn (a compiler's workers, the server a wrapper script launches, a daemon
that left its process group). A run that ends in any way stops every process that carries its mark
(`Registry.finish`). A run killed with SIGKILL cannot; its entry stays in `<cache>/registry/`, and
the next zprof run finds it (`sweep`), stops what still carries the dead run's mark, removes the
directories it made, and says so.

A process is named by its pid and its start time (clock ticks after boot, from /proc/PID/stat),
which together never name two processes: a pid that an unrelated process reused does not match,
and a process is only signalled through a pidfd opened after it was matched, so that it cannot be
replaced in between.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from zprof.paths import cache_dir, cache_root

ENV_VAR = "ZPROF_RUN"
REGISTRY_DIR = "registry"
STOP_GRACE_S = 5.0


@dataclass(frozen=True)
class ProcessId:
    """One process, for the whole life of the machine's boot: its pid and when it started."""

    pid: int
    start: int

    def running(self) -> bool:
        """Still this process, and not yet exited (a zombie has exited)."""
        stat = _stat(self.pid)
        return stat is not None and stat.start == self.start and stat.state != "Z"

    @property
    def name(self) -> str:
        try:
            return Path(f"/proc/{self.pid}/comm").read_text().strip()
        except OSError:
            return "?"


@dataclass(frozen=True)
class _Stat:
    state: str
    pgid: int
    start: int


def _stat(pid: int) -> _Stat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold anything: the fields after its last ")".
    fields = text[text.rindex(b")") + 2 :].split()
    return _Stat(state=fields[0].decode(), pgid=int(fields[2]), start=int(fields[19]))


def identify(pid: int) -> ProcessId | None:
    stat = _stat(pid)
    return ProcessId(pid, stat.start) if stat is not None else None


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _carries(pid: int, mark: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return mark in handle.read().split(b"\0")
    except OSError:  # gone, or another user's
        return False


def marked(run_id: str) -> list[ProcessId]:
    """The running processes that carry the run's mark (zprof itself never does)."""
    mark = f"{ENV_VAR}={run_id}".encode()
    found = []
    for pid in _all_pids():
        stat = _stat(pid)
        if pid != os.getpid() and stat is not None and stat.state != "Z" and _carries(pid, mark):
            found.append(ProcessId(pid, stat.start))
    return found


def leftovers(run_id: str, recorded: Iterable[ProcessId]) -> list[ProcessId]:
    """What still runs of what a run started: the processes it recorded, every process of their process
    groups, and every process that carries its mark (some programs, redis-server among them, write their
    title over their environment). A recorded group counts only while its id names the recorded process
    (running, or exited and not yet reaped): once the leader is gone its id is free, and a new process may
    lead a group of that id (pids wrap at 32,768 on many machines) that is none of this run's business."""
    groups = {process.pid for process in recorded
              if (now := identify(process.pid)) is not None and now.start == process.start}
    mark = f"{ENV_VAR}={run_id}".encode()
    found = []
    for pid in _all_pids():
        stat = _stat(pid)
        if (pid != os.getpid() and stat is not None and stat.state != "Z"
                and (stat.pgid in groups or _carries(pid, mark))):
            found.append(ProcessId(pid, stat.start))
    return found


def group_members(pgid: int, run_id: str | None) -> list[ProcessId]:
    """The running processes of process group `pgid`: those that carry the run's mark, or every one
    when `run_id` is None (for a group whose leader zprof has not reaped, so whose id is zprof's)."""
    mark = f"{ENV_VAR}={run_id}".encode()
    found = []
    for pid in _all_pids():
        stat = _stat(pid)
        if (stat is not None and stat.pgid == pgid and stat.state != "Z"
                and (run_id is None or _carries(pid, mark))):
            found.append(ProcessId(pid, stat.start))
    return found


def _open(process: ProcessId) -> int | None:
    """A pidfd for the process, or None when it is gone (or its pid now names another one)."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except OSError:
        return None
    if not process.running():  # checked after opening: the pidfd then names this very process
        os.close(pidfd)
        return None
    return pidfd


def _signal_all(pidfds: dict[ProcessId, int], signum: int) -> None:
    for pidfd in pidfds.values():
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(pidfd, signum)


def _wait_all(pidfds: dict[ProcessId, int], timeout: float) -> None:
    """Until every process exited (its pidfd turns readable) or the timeout passed; drops those that exited."""
    deadline = time.monotonic() + timeout
    while pidfds:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        poller = select.poll()
        for pidfd in pidfds.values():
            poller.register(pidfd, select.POLLIN)
        exited = {fd for fd, _ in poller.poll(remaining * 1000)}
        for process, pidfd in list(pidfds.items()):
            if pidfd in exited:
                os.close(pidfds.pop(process))


def stop(processes: list[ProcessId], grace: float = STOP_GRACE_S) -> list[ProcessId]:
    """SIGTERM, then SIGKILL after `grace` seconds; returns the processes still running after both."""
    pidfds = {process: pidfd for process in dict.fromkeys(processes) if (pidfd := _open(process)) is not None}
    try:
        for signum in (signal.SIGTERM, signal.SIGKILL):
            _signal_all(pidfds, signum)
            _wait_all(pidfds, grace)
        return list(pidfds)
    finally:
        for pidfd in pidfds.values():
            os.close(pidfd)


@dataclass
class Registry:
    """This run's entry: its processes and directories, rewritten (atomically) at every change."""

    owner: ProcessId
    path: Path
    processes: dict[int, ProcessId] = field(default_factory=dict)
    directories: list[str] = field(default_factory=list)
    # Output directories the run made where the user asked: removed after a kill only if still empty.
    outputs: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return f"{self.owner.pid}-{self.owner.start}"

    def environment(self) -> dict[str, str]:
        """What every process zprof starts gets in its environment."""
        return {ENV_VAR: self.run_id}

    def add_process(self, pid: int) -> None:
        process = identify(pid)
        if process is not None:
            self.processes[pid] = process
            self._write()

    def remove_process(self, pid: int) -> None:
        if self.processes.pop(pid, None) is not None:
            self._write()

    def add_directory(self, path: Path) -> None:
        self.directories.append(str(path))
        self._write()

    def remove_directory(self, path: Path) -> None:
        if str(path) in self.directories:
            self.directories.remove(str(path))
            self._write()

    def add_output(self, path: Path) -> None:
        self.outputs.append(str(path))
        self._write()

    def _write(self) -> None:
        body = {"zprof": {"pid": self.owner.pid, "start": self.owner.start},
                "processes": [{"pid": p.pid, "start": p.start} for p in self.processes.values()],
                "directories": self.directories, "outputs": self.outputs}
        handle, temporary = tempfile.mkstemp(prefix=".entry.", dir=self.path.parent)
        try:
            with os.fdopen(handle, "w") as file:
                json.dump(body, file)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def finish(self, grace: float = STOP_GRACE_S) -> tuple[list[ProcessId], list[ProcessId]]:
        """Stops whatever the run started that still runs; removes the entry. Returns what was still
        running (none when every part of zprof stopped what it started) and what would not stop."""
        left = leftovers(self.run_id, self.processes.values())
        stubborn = stop(left, grace)
        if not stubborn:
            self.path.unlink(missing_ok=True)
        return left, stubborn


_current: Registry | None = None


def current() -> Registry:
    """This process's registry entry, written to disk before the first process is started."""
    global _current
    me = identify(os.getpid())
    assert me is not None
    if _current is None or _current.owner != me or not _current.path.parent.is_dir():
        directory = cache_dir(REGISTRY_DIR)
        _current = Registry(me, directory / f"{me.pid}-{me.start}.json")
        _current._write()
    return _current


def finish() -> tuple[list[ProcessId], list[ProcessId]]:
    """At the end of a zprof command: see Registry.finish (nothing to do when it started nothing)."""
    global _current
    if _current is None:
        return [], []
    registry, _current = _current, None
    return registry.finish()


@dataclass(frozen=True)
class Leftovers:
    """What a run that died without cleaning up had left, and what became of it."""

    run_pid: int
    stopped: list[tuple[str, int]]  # (name, pid)
    stubborn: list[tuple[str, int]]
    directories: list[str]

    @property
    def anything(self) -> bool:
        return bool(self.stopped or self.stubborn or self.directories)


def sweep(grace: float = STOP_GRACE_S) -> list[Leftovers]:
    """Stops what earlier zprof runs that no longer run left behind, and removes their directories."""
    directory = cache_root() / REGISTRY_DIR
    try:
        entries = sorted(directory.glob("*.json"))
    except OSError:
        return []
    found = []
    for entry in entries:
        owner = _owner_of(entry)
        if owner is None or owner.running() or owner.pid == os.getpid():
            continue
        claimed = entry.with_name(f".sweeping-{os.getpid()}-{entry.name}")
        try:
            entry.rename(claimed)  # another zprof sweeping at the same moment gets nothing
        except OSError:
            continue
        found.append(_clean(claimed, owner, grace))
    return found


def _owner_of(entry: Path) -> ProcessId | None:
    pid, _, start = entry.stem.partition("-")
    return ProcessId(int(pid), int(start)) if pid.isdigit() and start.isdigit() else None


def _clean(claimed: Path, owner: ProcessId, grace: float) -> Leftovers:
    try:
        body = json.loads(claimed.read_text())
    except (OSError, ValueError):
        body = {}
    run_id = f"{owner.pid}-{owner.start}"
    recorded = [ProcessId(int(p["pid"]), int(p["start"])) for p in body.get("processes", [])]
    left = leftovers(run_id, recorded)
    names = {process: process.name for process in left}
    stubborn = stop(left, grace)
    removed = []
    root = cache_root().resolve()
    for path in map(Path, body.get("directories", [])):
        # Only what zprof made under its own cache, whatever the entry says.
        if path.resolve().is_relative_to(root) and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    for path in map(Path, body.get("outputs", [])):
        with contextlib.suppress(OSError):  # the user's place: only an output directory nothing was written to
            path.rmdir()
            removed.append(str(path))
    claimed.unlink(missing_ok=True)
    return Leftovers(owner.pid, [(names[p], p.pid) for p in left if p not in stubborn],
                     [(names[p], p.pid) for p in stubborn], removed)


def describe(leftovers: Leftovers) -> str:
    """The sentence zprof prints about a dead run's leftovers."""
    parts = []
    if leftovers.stopped:
        parts.append(f"stopped {len(leftovers.stopped)} process(es) it left running ("
                     + ", ".join(f"{name} pid {pid}" for name, pid in leftovers.stopped) + ")")
    if leftovers.stubborn:
        parts.append(f"could not stop {len(leftovers.stubborn)} ("
                     + ", ".join(f"{name} pid {pid}" for name, pid in leftovers.stubborn) + ")")
    if leftovers.directories:
        parts.append(f"removed its {len(leftovers.directories)} temporary director"
                     + ("ies" if len(leftovers.directories) > 1 else "y"))
    what = "; ".join(parts)
    return f"an earlier zprof run (pid {leftovers.run_pid}) ended without cleaning up: {what}"
