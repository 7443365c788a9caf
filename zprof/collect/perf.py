"""Linux perf: recording the server's CPU samples and reading them back as text."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from zprof.errors import EXIT_TARGET, ZprofError
from zprof.procs import run_bounded

PARANOID_FILE = Path("/proc/sys/kernel/perf_event_paranoid")
# perf needs a moment after the sleep to write perf.data, longer for DWARF stacks.
RECORD_GRACE_S = 120
SCRIPT_TIMEOUT_S = 900
# Fields zprof parses; inline expansion is done by zprof from DWARF, which is
# far faster than perf's own addr2line calls.
SCRIPT_FIELDS = "comm,tid,period,ip,sym,symoff,dso"
VERSION_TIMEOUT_S = 30
# What perf says when the kernel will not let it record (perf_event_paranoid, a container's seccomp
# profile, missing CAP_PERFMON).
NOT_PERMITTED = ("paranoid", "Permission denied", "Access to performance monitoring", "Operation not permitted",
                 "No permission")


@dataclass(frozen=True)
class Recording:
    data: Path
    seconds: float
    frequency_hz: int
    call_graph: str
    log: str


def perf_paranoid() -> int | None:
    try:
        return int(PARANOID_FILE.read_text())
    except (OSError, ValueError):
        return None


def check_perf() -> str:
    """The perf executable, or a clear error naming the fix: perf missing, perf that does not run (Debian's
    wrapper without the tools for the running kernel, a broken install), or a kernel that forbids it."""
    perf = shutil.which("perf")
    if perf is None:
        raise ZprofError("perf is not installed", detail="Install it with: apt-get install linux-perf")
    try:
        version = run_bounded([perf, "--version"], VERSION_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ZprofError(f"perf ({perf}) does not run: {error}",
                         detail="Reinstall it: apt-get install --reinstall linux-perf") from error
    if version.returncode != 0:
        said = (version.stderr.strip() or version.stdout.strip()).splitlines()[-1:] or [f"exit status "
                                                                                         f"{version.returncode}"]
        raise ZprofError(f"perf ({perf}) does not run: {said[0]}",
                         detail="Install the perf that matches the running kernel: apt-get install linux-perf")
    paranoid = perf_paranoid()
    if os.geteuid() != 0 and (paranoid is None or paranoid > 1):
        raise ZprofError(
            f"perf may not record other processes here: kernel.perf_event_paranoid is {paranoid}",
            detail="Allow it with: sudo sysctl kernel.perf_event_paranoid=1 (or run zprof as root).",
        )
    return perf


def record(pid: int, seconds: float, frequency_hz: int, call_graph: str, output: Path) -> Recording:
    """`perf record` attached to one process for `seconds` (it stops early if the process exits)."""
    perf = check_perf()
    graph = "dwarf,16384" if call_graph == "dwarf" else "fp"
    argv = [perf, "record", "-F", str(frequency_hz), "--call-graph", graph, "-p", str(pid), "-o", str(output),
            "--", "sleep", f"{seconds:g}"]
    try:
        done = run_bounded(argv, seconds + RECORD_GRACE_S)
    except subprocess.TimeoutExpired as expired:
        raise ZprofError(f"perf record did not finish within {seconds + RECORD_GRACE_S:.0f} s") from expired
    log = (done.stdout + done.stderr).strip()
    if done.returncode != 0 and not output.exists():
        if any(phrase in log for phrase in NOT_PERMITTED):
            raise ZprofError(f"perf may not record the server here (kernel.perf_event_paranoid is {perf_paranoid()})",
                             detail=log[-2000:] + "\nAllow it with: sudo sysctl kernel.perf_event_paranoid=1 (or run "
                                    "zprof as root), or profile with --engine callgrind.")
        raise ZprofError("perf record failed", detail=log, exit_code=EXIT_TARGET)
    return Recording(output, seconds, frequency_hz, call_graph, log)


def script(data: Path) -> str:
    """`perf script` text of a recording; a truncated or corrupt file is an error."""
    perf = check_perf()
    try:
        done = run_bounded([perf, "script", "-i", str(data), "-F", SCRIPT_FIELDS, "--no-inline"], SCRIPT_TIMEOUT_S)
    except subprocess.TimeoutExpired as expired:
        raise ZprofError(f"perf script did not finish within {SCRIPT_TIMEOUT_S} s") from expired
    if done.returncode != 0:
        raise ZprofError(
            f"perf could not read {data}: it is truncated or corrupt",
            detail=done.stderr.strip()[-2000:],
            exit_code=EXIT_TARGET,
        )
    return done.stdout
