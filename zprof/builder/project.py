"""What zprof reads from a Zig project directory (and never writes to it)."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from zprof.errors import ZprofError

# Directories that hold build outputs or other tools' state, not sources.
SKIPPED_DIRS = {".git", ".zig-cache", "zig-cache", "zig-out", "node_modules", ".venv", "__pycache__"}
SOURCE_SUFFIXES = {".zig", ".zon", ".c", ".h", ".cpp", ".cc", ".hpp", ".S", ".s", ".ld"}


@dataclass(frozen=True)
class Dependency:
    name: str
    url: str | None
    hash: str | None
    path: str | None


@dataclass(frozen=True)
class ZigProject:
    root: Path
    name: str
    minimum_zig_version: str | None
    dependencies: list[Dependency] = field(default_factory=list)

    @property
    def build_file(self) -> Path:
        return self.root / "build.zig"


@dataclass(frozen=True)
class SourceRoots:
    """The checkout a binary was compiled in, whose paths its DWARF holds, and the checkout it stands for
    now: a build is shared by checkouts with the same sources (builder.build.build_key), so a file under
    the first is the same file under the second."""

    compiled_in: str
    project: str

    def place(self, path: str | None) -> str | None:
        if path and self.compiled_in and path.startswith(self.compiled_in + "/"):
            return self.project + path[len(self.compiled_in):]
        return path

    @property
    def moved(self) -> bool:
        return bool(self.compiled_in) and self.compiled_in != self.project


_DEPENDENCY = re.compile(r"\.(@\"[^\"]+\"|\w+)\s*=\s*\.\{(.*?)\}", re.S)


def _zon_string(block: str, key: str) -> str | None:
    match = re.search(rf"\.{key}\s*=\s*\"([^\"]*)\"", block)
    return match.group(1) if match else None


def load_project(directory: str | os.PathLike[str]) -> ZigProject:
    root = Path(directory).expanduser().resolve()
    if not root.is_dir():
        raise ZprofError(f"{root} is not a directory")
    if not (root / "build.zig").is_file():
        raise ZprofError(
            f"{root} has no build.zig, so it is not a Zig project zprof can build",
            detail="Run zprof in the project's root directory, or pass --project DIR.",
        )
    zon_path = root / "build.zig.zon"
    zon = zon_path.read_text(errors="replace") if zon_path.is_file() else ""
    name_match = re.search(r"\.name\s*=\s*(?:\.@?\"?([\w-]+)\"?|\"([^\"]+)\")", zon)
    name = (name_match.group(1) or name_match.group(2)) if name_match else root.name
    dependencies: list[Dependency] = []
    deps_start = zon.find(".dependencies")
    if deps_start >= 0:
        for dep_name, body in _DEPENDENCY.findall(zon[deps_start + len(".dependencies") :]):
            if dep_name == "paths":  # the next top-level field: the dependencies are over
                break
            dependencies.append(
                Dependency(
                    name=dep_name.strip('@"'),
                    url=_zon_string(body, "url"),
                    hash=_zon_string(body, "hash"),
                    path=_zon_string(body, "path"),
                )
            )
    dependencies = [dep for dep in dependencies if dep.url or dep.path]
    return ZigProject(
        root=root,
        name=name,
        minimum_zig_version=_zon_string(zon, "minimum_zig_version"),
        dependencies=dependencies,
    )


def source_files(root: Path) -> list[Path]:
    """Files whose contents decide the build, in a stable order."""
    found: list[Path] = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in SKIPPED_DIRS and not d.startswith("."))
        for name in sorted(files):
            path = Path(directory, name)
            if path.suffix in SOURCE_SUFFIXES:
                found.append(path)
    return found


def hash_sources(root: Path, digest: hashlib._Hash) -> None:
    for path in source_files(root):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")


