"""valgrind: running the target under a tool, and asking callgrind for its counts."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

from zprof.errors import EXIT_TARGET, ZprofError
from zprof.procs import run_bounded

CONTROL_TIMEOUT_S = 60
# valgrind cannot emulate AVX-512; Zig targets the build machine's CPU by default.
VALGRIND_CPU = "x86_64_v3"
# Starts of a server under valgrind that may crash before zprof gives up (natively: server.START_ATTEMPTS).
START_ATTEMPTS = 6
# A target under valgrind starts 20-50 times slower.
READY_TIMEOUT_S = 180.0
PROBE_TIMEOUT_S = 20.0
REPORT_LINES = 12


def valgrind_tool(name: str = "valgrind") -> str:
    """valgrind or one of the helpers its package installs (callgrind_control, vgdb)."""
    found = shutil.which(name)
    if found is None:
        what = "valgrind is not installed" if name == "valgrind" else f"{name} is missing (it comes with valgrind)"
        raise ZprofError(what, detail="Install it with: apt-get install valgrind")
    return found


def valgrind_path() -> str:
    return valgrind_tool()


def callgrind_start_command(start_command: str, out_file: Path) -> str:
    """The target's start command, run under callgrind."""
    tool = [valgrind_path(), "--tool=callgrind", f"--callgrind-out-file={out_file}", "--dump-instr=no",
            "--compress-strings=no", "--compress-pos=no"]
    return shlex.join(tool) + " " + start_command


def callgrind_control(option: str, pid: int) -> None:
    """`callgrind_control -z` (zero the counts) or `-d` (dump them) for a running target."""
    control = valgrind_tool("callgrind_control")
    try:
        done = run_bounded([control, option, str(pid)], CONTROL_TIMEOUT_S)
    except subprocess.TimeoutExpired as expired:
        raise ZprofError(f"callgrind_control {option} did not answer within {CONTROL_TIMEOUT_S} s") from expired
    if done.returncode != 0 or "OK" not in done.stdout:
        raise ZprofError(f"callgrind_control {option} failed", detail=(done.stdout + done.stderr).strip(),
                         exit_code=EXIT_TARGET)


def valgrind_report(log: str) -> str:
    """The first lines of what valgrind said, for a target it could not run."""
    lines = [line for line in log.splitlines() if line.startswith("==")]
    return "\n".join(lines[:REPORT_LINES])


def valgrind_failure(error: ZprofError, log_file: Path, instead: str) -> ZprofError:
    """A target that failed under valgrind: valgrind's first lines, and what to run instead."""
    log = log_file.read_text(errors="replace") if log_file.exists() else ""
    return ZprofError(
        f"valgrind could not run the target: {error.message}",
        detail=valgrind_report(log) + f"\nSome threaded Zig programs crash under valgrind: {instead}",
        exit_code=error.exit_code,
    )
