"""A baseline's builds, kept beside it so that `zprof regress` can run them again beside the current tree.

Each binary is copied once into the store's `binaries/SHA256/` directory, under its own name (which the
process and its profiles show), so that baselines of the
same build share one file and a file changed since cannot pass for the build that was measured. The record of
each (`StoredBinary`) says what it is: the server as measured, or its build with the allocation shim, with
its ELF build id where the linker wrote one, the Zig version and the build mode. A kept build stands in for
`zig build` (`StoredBuild.result`): the sessions run it exactly as they run one they built."""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from zprof.builder import shim
from zprof.builder.build import BuildResult
from zprof.collect.valgrind import VALGRIND_CPU
from zprof.errors import EXIT_TARGET, ZprofError
from zprof.model.baseline import SERVER_BUILD, SHIM_BUILD, VALGRIND_BUILD, StoredBinary

# The extra `zig build` arguments of each kept build beyond the project's own.
VALGRIND_ARGS = (f"-Dcpu={VALGRIND_CPU}",)

BINARIES = "binaries"
# ELF e_machine of the machines zprof runs on, by platform.machine().
_ELF_MACHINES = {"x86_64": "EM_X86_64", "aarch64": "EM_AARCH64", "arm64": "EM_AARCH64"}
LDD_TIMEOUT_S = 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _elf(path: Path) -> tuple[str | None, str | None]:
    """The binary's ELF machine and build id (None where the linker wrote none)."""
    try:
        with open(path, "rb") as file:
            elf = ELFFile(file)
            build_id = None
            for section in elf.iter_sections():
                if section.header.sh_type == "SHT_NOTE":
                    for note in section.iter_notes():
                        if note["n_type"] == "NT_GNU_BUILD_ID":
                            build_id = note["n_desc"]
            return elf.header.e_machine, build_id
    except (OSError, ELFError):
        return None, None


def kept_path(store: Path, digest: str, executable: str) -> Path:
    return store / BINARIES / digest / executable


def keep(result: BuildResult, role: str, store: Path) -> StoredBinary:
    """Copies the build's binary into `store`/binaries under its SHA-256 (once: the same build is kept once)."""
    digest = sha256_of(result.binary)
    kept = kept_path(store, digest, result.binary.name)
    kept.parent.mkdir(parents=True, exist_ok=True)
    ignore = store / BINARIES / ".gitignore"
    if not ignore.exists():  # builds are not sources: `git status` stays clean, and nobody commits them by mistake
        ignore.write_text("# Written by zprof baseline save: the builds baselines keep, not for git.\n*\n")
    if not kept.exists():
        temporary = kept.parent / f".{kept.name}.{os.getpid()}.new"
        shutil.copyfile(result.binary, temporary)
        temporary.chmod(0o755)
        temporary.replace(kept)
    _, build_id = _elf(kept)
    return StoredBinary(role=role, sha256=digest, size=kept.stat().st_size, executable=result.binary.name,
                        build_id=build_id, zig_version=result.zig_version, optimize=result.optimize,
                        optimize_source=result.optimize_source, build_key=result.key,
                        source_root=result.source_root, build_args=list(result.build_args))


def why_not_runnable(binary: StoredBinary, store: Path) -> str | None:
    """Why the kept binary cannot run here (missing, changed, another machine's, a library missing); None
    when it can."""
    path = kept_path(store, binary.sha256, binary.executable)
    if not path.is_file():
        return f"its {binary.role} binary {path} is not there"
    if sha256_of(path) != binary.sha256:
        return f"its {binary.role} binary {path} changed since it was saved (its SHA-256 differs)"
    machine, _ = _elf(path)
    wanted = _ELF_MACHINES.get(platform.machine())
    if machine is None:
        return f"its {binary.role} binary {path} is not an ELF executable"
    if wanted is not None and machine != wanted:
        return f"its {binary.role} binary is built for {machine}, this machine is {platform.machine()}"
    try:
        linked = subprocess.run(["ldd", str(path)], capture_output=True, text=True, timeout=LDD_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None  # no ldd: the start will say what is missing
    missing = [line.split("=>")[0].strip() for line in linked.stdout.splitlines() if "not found" in line]
    if missing:
        return f"its {binary.role} binary needs libraries this machine does not have: {', '.join(missing)}"
    return None


@dataclass(frozen=True)
class StoredBuild:
    """A baseline's kept builds, in place of `zig build`: the server, and its build with the counting shim."""

    store: Path
    binaries: tuple[StoredBinary, ...]

    def binary(self, role: str) -> StoredBinary | None:
        return next((binary for binary in self.binaries if binary.role == role), None)

    def why_not_runnable(self) -> str | None:
        if self.binary(SERVER_BUILD) is None:
            return "it kept no binary (it was saved before zprof kept them)"
        return next((reason for binary in self.binaries if (reason := why_not_runnable(binary, self.store))), None)

    def result(self, with_shim: bool, shim_variant: str, extra_args: tuple[str, ...] = ()) -> BuildResult:
        role = VALGRIND_BUILD if extra_args == VALGRIND_ARGS and not with_shim else \
            SHIM_BUILD if with_shim and not extra_args else SERVER_BUILD if not extra_args else None
        binary = self.binary(role) if role else None
        if binary is None or (with_shim and shim_variant != shim.COUNTING):
            what = (f"a build with the {shim_variant} shim" if with_shim else
                    f"a build with {' '.join(extra_args)}" if extra_args else "the server")
            raise ZprofError(f"the baseline kept no {what}: this measurement needs the tree built now",
                             exit_code=EXIT_TARGET)
        return BuildResult(binary=kept_path(self.store, binary.sha256, binary.executable),
                           executables=[binary.executable], key=binary.build_key, cached=True, seconds=0.0,
                           with_shim=with_shim, zig_version=binary.zig_version, optimize=binary.optimize,
                           optimize_source=binary.optimize_source, build_args=tuple(binary.build_args),
                           source_root=binary.source_root)
