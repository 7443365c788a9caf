"""Child processes that never outlive zprof: each in a process group of its own, marked with the
run's id and recorded in the run registry (zprof.registry), run with a deadline, and stopped with
SIGTERM, then SIGKILL after a grace period, together with everything they started in their group."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from zprof import registry

_PR_SET_PDEATHSIG = 1
STOP_GRACE_S = 5.0
# After a process group was stopped: how long its pipes may still take to close.
DRAIN_TIMEOUT_S = 5.0


def die_with_parent() -> None:
    """Runs in the child before exec: the kernel kills it if zprof dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(argv: list[str], *, env: Mapping[str, str] | None = None, before_exec: Callable[[], None] | None = None,
          **popen: Any) -> subprocess.Popen:
    """Popen in a new session (so a process group of its own, out of reach of the terminal's Ctrl-C,
    which zprof handles), with the run's mark in its environment, recorded before it can do anything
    worth stopping: the registry's entry exists before the process does. `before_exec` runs in the child
    too (a server's core limit, `zprof.collect.crash`)."""
    run = registry.current()
    environment = {**(os.environ if env is None else env), **run.environment()}

    def prepare() -> None:
        die_with_parent()
        if before_exec is not None:
            before_exec()

    process = subprocess.Popen(argv, env=environment, start_new_session=True, preexec_fn=prepare, **popen)
    run.add_process(process.pid)
    return process


def kill_group(process: subprocess.Popen, timeout: float = STOP_GRACE_S) -> None:
    """SIGTERM to the child and every process of its group, then SIGKILL to those still running after
    `timeout` seconds; idempotent. A group whose leader zprof already reaped is matched by the run's
    mark only, since its id may by then name someone else's group."""
    run = registry.current()
    members = registry.group_members(process.pid, None if process.returncode is None else run.run_id)
    registry.stop(members, timeout)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout)  # reaped: it exited (or was killed) above
    run.remove_process(process.pid)


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


def run_bounded(argv: list[str], timeout: float, **popen: Any) -> Completed:
    """Like subprocess.run, but on a timeout, Ctrl-C or any exception the whole process group goes
    (a `zig build` leaves compiler children behind otherwise), and so does anything the command left
    running in its group when it exited.

    Raises subprocess.TimeoutExpired when the deadline passes.
    """
    process = spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                    **popen)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except BaseException:
        kill_group(process)
        # A process outside the group may still hold the pipes: never wait for it for long.
        with contextlib.suppress(subprocess.TimeoutExpired, ValueError, OSError):
            process.communicate(timeout=DRAIN_TIMEOUT_S)
        raise
    kill_group(process)
    return Completed(process.returncode, stdout, stderr)
