"""Finding the Zig compiler and checking it against what a project asks for."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from zprof.errors import ZprofError
from zprof.procs import run_bounded

ZIG_ENV_TIMEOUT_S = 30


@dataclass(frozen=True)
class Zig:
    exe: Path
    version: str
    lib_dir: Path
    global_cache_dir: Path
    found_by: str


@dataclass(frozen=True, order=True)
class Version:
    """A Zig version; a `-dev.N` build sorts before its release."""

    major: int
    minor: int
    patch: int
    is_release: bool
    dev: int

    @classmethod
    def parse(cls, text: str) -> Version:
        match = re.match(r"^\s*(\d+)\.(\d+)\.(\d+)(?:-dev\.(\d+))?", text)
        if not match:
            raise ZprofError(f"cannot read a Zig version from {text!r}")
        major, minor, patch, dev = match.groups()
        return cls(int(major), int(minor), int(patch), dev is None, int(dev or 0))


def _candidates(explicit: str | None) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if explicit:
        found.append((explicit, "--zig"))
    elif os.environ.get("ZIG"):
        found.append((os.environ["ZIG"], "$ZIG"))
    else:
        on_path = shutil.which("zig")
        if on_path:
            found.append((on_path, "PATH"))
        try:
            import ziglang  # the compiler from PyPI

            found.append((str(Path(ziglang.__file__).parent / "zig"), "the ziglang Python package"))
        except ImportError:
            pass
    return found


def read_zig_env(exe: str) -> dict[str, str]:
    """`zig env` prints ZON in 0.15 and JSON before; both are `key = "value"`-ish."""
    try:
        done = run_bounded([exe, "env"], ZIG_ENV_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ZprofError(f"cannot run the Zig compiler at {exe}: {error}") from error
    if done.returncode != 0:
        raise ZprofError(f"`{exe} env` failed", detail=done.stderr.strip())
    pairs = re.findall(r'"?\.?(\w+)"?\s*[=:]\s*"([^"]*)"', done.stdout)
    return dict(pairs)


def find_zig(explicit: str | None = None) -> Zig:
    """Zig from `--zig`, else `$ZIG`, else `zig` on PATH, else the ziglang package."""
    candidates = _candidates(explicit)
    if not candidates:
        raise ZprofError(
            "no Zig compiler found",
            detail="Install one with `pip install ziglang==0.15.2`, or pass --zig PATH, or set $ZIG.",
        )
    exe, found_by = candidates[0]
    if not Path(exe).exists() and not shutil.which(exe):
        raise ZprofError(f"the Zig compiler named by {found_by} does not exist: {exe}")
    env = read_zig_env(exe)
    try:
        return Zig(
            exe=Path(shutil.which(exe) or exe),
            version=env["version"],
            # zig env may print paths relative to the working directory.
            lib_dir=Path(env["lib_dir"]).resolve(),
            global_cache_dir=Path(env["global_cache_dir"]).resolve(),
            found_by=found_by,
        )
    except KeyError as missing:
        raise ZprofError(f"`{exe} env` did not report {missing}; is it a Zig compiler?") from None


def check_minimum_version(zig: Zig, minimum: str | None, project: Path) -> None:
    if minimum is None:
        return
    if Version.parse(zig.version) < Version.parse(minimum):
        raise ZprofError(
            f"{project} needs Zig {minimum} or newer, but the compiler found by {zig.found_by} "
            f"({zig.exe}) is {zig.version}",
            detail="Pass a newer one with --zig PATH, or `pip install ziglang==0.15.2`.",
        )
