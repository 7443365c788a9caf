"""Child processes with a deadline that never outlive zprof."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from dataclasses import dataclass

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Runs in the child before exec: the kernel kills it if zprof dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def kill_group(process: subprocess.Popen, timeout: float = 5.0) -> None:
    """SIGTERM to the child's process group, then SIGKILL."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)
    except ProcessLookupError:
        pass


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


def run_bounded(argv: list[str], timeout: float, **popen: object) -> Completed:
    """Like subprocess.run, but on a timeout or Ctrl-C the whole process group
    goes (a `zig build` leaves compiler children behind otherwise).

    Raises subprocess.TimeoutExpired when the deadline passes.
    """
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, preexec_fn=die_with_parent, **popen,  # type: ignore[call-overload]
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except BaseException:
        kill_group(process)
        process.communicate()
        raise
    return Completed(process.returncode, stdout, stderr)
