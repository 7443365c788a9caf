"""zprof doctor: every tool zprof may use, and the exact fix for what is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from zprof.builder.needs import project_needs
from zprof.builder.project import load_project
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
    optional: bool = False  # zprof does without it, more slowly: missing, it fails nothing


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


def project_checks(directory: str, zig: str | None) -> list[Check]:
    """What the project at `directory` needs to build here (zprof.builder.needs)."""
    project = load_project(directory)
    try:
        found = find_zig(zig)
    except ZprofError:
        found = None  # the zig row says why
    needed_for = f"building {project.name}"
    return [Check(need.what, need.ok, need.found, need.fix, needed_for) for need in project_needs(project, found)]


def check_zig(explicit: str | None) -> Check:
    try:
        zig = find_zig(explicit)
    except ZprofError as error:
        return Check("zig", False, error.message, "pip install ziglang==0.15.2", "building the target")
    if Version.parse(zig.version) < Version.parse(SUPPORTED_ZIG):
        return Check("zig", False, f"{zig.version} at {zig.exe} (zprof's shim needs 0.15)",
                     "pip install ziglang==0.15.2, then --zig PATH", "building the target")
    return Check("zig", True, f"{zig.version} ({_shown(zig.exe)}, from {zig.found_by})",
                 needed_for="building the target")


def _shown(path: Path) -> str:
    """A path under the working directory relative to it (the checkout's .venv): shorter, and the same in
    every checkout, so the table is laid out alike wherever it runs."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return str(path)


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
        replace(_tool("llvm-symbolizer", ["llvm-symbolizer", "--version"], "llvm",
                      "naming code fast (without it, zprof reads the DWARF itself)"), optional=True),
        replace(_tool("gdb", ["gdb", "--version"], "gdb", "where a crashed server was (its core dump)"),
                optional=True),
    ]


@click.command("doctor")
@click.option("--zig", default=None, help="The Zig compiler to check (default: as zprof finds it).")
@click.option("--project", "project", default=None, metavar="DIR",
              help="Also check what this project needs to build here: Zig against its minimum_zig_version, its "
                   "build.zig.zon dependencies in Zig's package cache, the system libraries its build.zig links.")
def doctor_command(zig: str | None, project: str | None) -> int:
    """Check every tool zprof may use and print the fix for what is missing."""
    console = Console()
    checks = run_checks(zig) + (project_checks(project, zig) if project is not None else [])
    table = Table(title="zprof doctor", title_justify="left")
    for column in ("tool", "status", "found", "needed for"):
        table.add_column(column)
    for check in checks:
        status = "[green]ok[/]" if check.ok else "[yellow]optional[/]" if check.optional else "[red]missing[/]"
        table.add_row(check.tool, status, check.found, check.needed_for)
    console.print(table)
    for check in checks:
        if not check.ok and check.optional:
            console.print(f"Optional, {check.tool}: [bold]{check.fix}[/]", highlight=False)
    missing = [check for check in checks if not check.ok and not check.optional]
    for check in missing:
        console.print(f"To fix {check.tool}: [bold]{check.fix}[/]", highlight=False)
    if not missing:
        console.print("Everything zprof uses is here" + (", and everything the project needs to build." if project
                                                          else "."))
    else:
        lacking: dict[str, list[str]] = {}
        for check in missing:
            lacking.setdefault(check.needed_for, []).append(check.tool)
        console.print("Will not work: " + "; ".join(f"{what} (missing {', '.join(tools)})"
                                                    for what, tools in lacking.items()), highlight=False)
    return 1 if missing else 0
