"""What a project needs before `zig build` can succeed here, read from its build.zig.zon and build.zig
(`zprof doctor --project`): a Zig at least as new as its `minimum_zig_version`, each dependency in Zig's
package cache (a machine without network cannot fetch one during the build), and each system library
build.zig links, where the linker looks for it. Read, never run: nothing here builds or writes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from zprof.builder.project import ZigProject
from zprof.builder.toolchain import Version, Zig
from zprof.errors import ZprofError
from zprof.procs import run_bounded

TOOL_TIMEOUT_S = 10
# Where GNU ld looks when it cannot be asked (`ld --verbose`): Debian's multiarch directories first.
DEFAULT_LIBRARY_DIRS = ("/usr/local/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
                        "/usr/local/lib64", "/lib64", "/usr/lib64", "/usr/local/lib", "/lib", "/usr/lib")
# exe.linkSystemLibrary("luajit-5.1"), linkSystemLibrary2("ssl", .{...}), root_module.linkSystemLibrary("z", .{})
_LINKS = re.compile(r"\blinkSystemLibrary2?\(\s*\"([^\"]+)\"")


@dataclass(frozen=True)
class Need:
    """One thing the project needs: what it is, whether this machine has it, what was found, and the fix."""

    what: str
    ok: bool
    found: str
    fix: str = ""


def project_needs(project: ZigProject, zig: Zig | None) -> list[Need]:
    return [*_zig_version(project, zig), *_dependencies(project, zig), *_system_libraries(project)]


def _zig_version(project: ZigProject, zig: Zig | None) -> list[Need]:
    wanted = project.minimum_zig_version
    if wanted is None or zig is None:
        return []
    what = f"zig {wanted} or newer (minimum_zig_version)"
    try:
        new_enough = Version.parse(zig.version) >= Version.parse(wanted)
    except ZprofError:
        return [Need(what, False, f"cannot compare {zig.version} with {wanted}")]
    if new_enough:
        return [Need(what, True, zig.version)]
    return [Need(what, False, f"{zig.version} ({zig.exe})", f"pip install ziglang=={wanted}, or pass --zig PATH")]


def _dependencies(project: ZigProject, zig: Zig | None) -> list[Need]:
    needs = []
    for dependency in project.dependencies:
        what = f"dependency {dependency.name}"
        if dependency.path is not None:
            place = project.root / dependency.path
            needs.append(Need(what, place.is_dir(), str(place) if place.is_dir() else f"{place} is missing",
                              "" if place.is_dir() else f"restore {dependency.path} (build.zig.zon names it)"))
        elif dependency.hash is not None and zig is not None:
            place = zig.global_cache_dir / "p" / dependency.hash
            if place.is_dir():
                needs.append(Need(what, True, f"in Zig's package cache ({place})"))
            else:
                needs.append(Need(what, False, f"not in Zig's package cache ({zig.global_cache_dir / 'p'})",
                                  f"zig fetch {dependency.url or dependency.name} (without network: zig fetch a "
                                  "copy's directory; the hash covers only the files its build.zig.zon lists under "
                                  "paths)"))
    return needs


def linked_libraries(build_zig: str) -> list[str]:
    """The system libraries build.zig links, in the order it names them first."""
    return list(dict.fromkeys(_LINKS.findall(build_zig)))


def _system_libraries(project: ZigProject) -> list[Need]:
    if not project.build_file.is_file():
        return []
    names = linked_libraries(project.build_file.read_text(errors="replace"))
    directories = _library_dirs() if names else []
    needs = []
    for name in names:
        found = _find_library(name, directories)
        what = f"system library {name}"
        if found is not None:
            needs.append(Need(what, True, found))
        else:
            needs.append(Need(what, False, f"lib{name}.so (or .a) is in none of the linker's directories, and "
                                           "pkg-config does not know it", _install_hint(name)))
    return needs


def _library_dirs() -> list[Path]:
    """The directories the system linker searches, as `ld --verbose` lists them."""
    try:
        done = run_bounded(["ld", "--verbose"], TOOL_TIMEOUT_S)
        listed = re.findall(r"SEARCH_DIR\(\"=?([^\"]+)\"\)", done.stdout or "")
    except (OSError, subprocess.TimeoutExpired):
        listed = []
    return [Path(directory) for directory in (listed or DEFAULT_LIBRARY_DIRS)]


def _find_library(name: str, directories: list[Path]) -> str | None:
    """Where the linker would find `-l<name>`, or pkg-config's word for it (zig build asks pkg-config first)."""
    for directory in directories:
        for suffix in (".so", ".a"):
            candidate = directory / f"lib{name}{suffix}"
            if candidate.exists():
                return str(candidate)
    if shutil.which("pkg-config"):
        try:
            done = run_bounded(["pkg-config", "--libs", name], TOOL_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if done.returncode == 0:
            return f"pkg-config {name}: {done.stdout.strip()}"
    return None


def _install_hint(name: str) -> str:
    """The Debian package with the library's development files, when apt knows one by the usual name."""
    package = f"lib{name}-dev"
    if shutil.which("apt-cache"):
        try:
            done = run_bounded(["apt-cache", "search", "--names-only", f"^{re.escape(package)}$"], TOOL_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired):
            done = None
        if done is not None and done.stdout.strip():
            return f"apt-get install -y {package}"
    return f"install the package with lib{name}.so (apt-file search lib{name}.so names it)"
