"""zprof doctor: every tool zprof may use, and the exact fix for what is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from zprof.builder.toolchain import Version, find_zig
from zprof.errors import ZprofError
from zprof.procs import run_bounded

TOOL_TIMEOUT_S = 10
SUPPORTED_ZIG = "0.15.0"
APT = "apt-get install -y"


@dataclass(frozen=True)
class Check:
    tool: str
    ok: bool
    found: str
    fix: str = ""
    needed_for: str = ""


def _version_of(argv: list[str]) -> str | None:
    try:
        done = run_bounded(argv, TOOL_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if done.returncode == 0 and text else None


def _tool(name: str, argv: list[str], package: str, needed_for: str) -> Check:
    path = shutil.which(argv[0])
    version = _version_of(argv) if path else None
    if version is None:
        return Check(name, False, "not found" if not path else f"{path} does not run", f"{APT} {package}", needed_for)
    return Check(name, True, f"{version} ({path})", needed_for=needed_for)


def check_zig(explicit: str | None) -> Check:
    try:
        zig = find_zig(explicit)
    except ZprofError as error:
        return Check("zig", False, error.message, "pip install ziglang==0.15.2", "building the target")
    if Version.parse(zig.version) < Version.parse(SUPPORTED_ZIG):
        return Check("zig", False, f"{zig.version} at {zig.exe} (zprof's shim needs 0.15)",
                     "pip install ziglang==0.15.2, then --zig PATH", "building the target")
    return Check("zig", True, f"{zig.version} ({zig.exe}, from {zig.found_by})", needed_for="building the target")


def check_perf() -> Check:
    base = _tool("perf", ["perf", "--version"], "linux-perf", "zprof flame")
    if not base.ok:
        return base
    paranoid_file = Path("/proc/sys/kernel/perf_event_paranoid")
    paranoid = int(paranoid_file.read_text()) if paranoid_file.exists() else None
    # Recording another process needs paranoid <= 1, or root (CAP_PERFMON).
    if os.geteuid() == 0 or (paranoid is not None and paranoid <= 1):
        return Check("perf", True, f"{base.found}; perf_event_paranoid={paranoid}", needed_for="zprof flame")
    return Check("perf", False, f"{base.found}; perf_event_paranoid={paranoid} forbids recording other processes",
                 "sudo sysctl kernel.perf_event_paranoid=1", "zprof flame")


def run_checks(zig: str | None) -> list[Check]:
    return [
        check_zig(zig),
        check_perf(),
        _tool("valgrind", ["valgrind", "--version"], "valgrind", "zprof memory --engine massif"),
        _tool("redis-server", ["redis-server", "--version"], "redis-server", "zprof bench"),
        _tool("redis-benchmark", ["redis-benchmark", "--version"], "redis-tools", "zprof bench"),
    ]


@click.command("doctor")
@click.option("--zig", default=None, help="The Zig compiler to check (default: as zprof finds it).")
def doctor_command(zig: str | None) -> int:
    """Check every tool zprof may use and print the fix for what is missing."""
    console = Console()
    checks = run_checks(zig)
    table = Table(title="zprof doctor", title_justify="left")
    for column in ("tool", "status", "found", "needed for"):
        table.add_column(column)
    for check in checks:
        table.add_row(check.tool, "[green]ok[/]" if check.ok else "[red]missing[/]", check.found, check.needed_for)
    console.print(table)
    missing = [check for check in checks if not check.ok]
    for check in missing:
        console.print(f"To fix {check.tool}: [bold]{check.fix}[/]", highlight=False)
    if not missing:
        console.print("Everything zprof uses is here.")
    return 1 if missing else 0
