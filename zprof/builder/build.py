"""Building the target with `zig build`, into zprof's cache, never into the checkout."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from zprof import registry
from zprof.builder import shim, stamp
from zprof.builder.project import ZigProject, hash_sources
from zprof.builder.toolchain import Zig, check_minimum_version
from zprof.errors import ZprofError
from zprof.paths import cache_dir, cache_root
from zprof.procs import Completed, run_bounded

BUILD_TIMEOUT_S = 1800
LOCK_POLL_S = 0.2
LOG_TAIL_LINES = 40
DEFAULT_OPTIMIZE = "ReleaseFast"
# Where a binary's build mode came from (BuildResult.optimize_source).
REQUESTED, DECLARED, ZIG_DEFAULT = "requested", "build.zig", "zig default"
# System libraries build.zig files commonly link, and the Debian package that provides each.
DEBIAN_PACKAGES = {
    "luajit-5.1": "libluajit-5.1-dev", "lua5.4": "liblua5.4-dev", "lua5.3": "liblua5.3-dev", "ssl": "libssl-dev",
    "crypto": "libssl-dev", "z": "zlib1g-dev", "zstd": "libzstd-dev", "lz4": "liblz4-dev", "uring": "liburing-dev",
    "sqlite3": "libsqlite3-dev", "pq": "libpq-dev", "curl": "libcurl4-openssl-dev", "uv": "libuv1-dev",
    "jemalloc": "libjemalloc-dev", "hiredis": "libhiredis-dev", "pcre2-8": "libpcre2-dev",
    "readline": "libreadline-dev", "event": "libevent-dev", "sodium": "libsodium-dev", "xxhash": "libxxhash-dev",
    "mimalloc": "libmimalloc-dev",
}


@dataclass(frozen=True)
class BuildRequest:
    project: ZigProject
    zig: Zig
    with_shim: bool = True
    # shim.COUNTING, or shim.MASSIF for a target run under valgrind's massif.
    shim_variant: str = shim.COUNTING
    optimize: str = DEFAULT_OPTIMIZE
    # False when the mode is zprof's default: a project without an optimize option is then
    # built as it declares, instead of refused.
    optimize_asked: bool = False
    exe: str | None = None
    extra_args: tuple[str, ...] = ()


@dataclass
class BuildResult:
    binary: Path
    executables: list[str]
    key: str
    cached: bool
    seconds: float
    with_shim: bool
    zig_version: str
    # Set when `zig build` failed but still produced the executable.
    warnings: list[str] = field(default_factory=list)
    optimize: str = DEFAULT_OPTIMIZE  # the build mode of the binary
    optimize_source: str = REQUESTED  # REQUESTED, DECLARED or ZIG_DEFAULT
    build_args: tuple[str, ...] = ()  # what zprof passed to zig build beyond its own flags
    # The checkout the binary was compiled in, which its DWARF names: another checkout with the same sources
    # (a copy, a git worktree) reuses the build, and zprof names its files under its own root
    # (SourceRoots).
    source_root: str = ""


def build_key(request: BuildRequest) -> str:
    """The sources' contents and the build's settings, not the checkout's path: copies and worktrees of the
    same sources share one build. Whether the mode was asked for is not part of it either: a project with
    an optimize option builds the same binary either way (see _cached for one without)."""
    digest = hashlib.sha256()
    hash_sources(request.project.root, digest)
    digest.update(f"{request.zig.version}|{request.optimize}|{request.extra_args}".encode())
    digest.update((shim.shim_fingerprint(request.shim_variant) if request.with_shim else "no-shim").encode())
    return digest.hexdigest()[:20]


def _no_optimize_option_asked(request: BuildRequest) -> ZprofError:
    return ZprofError(f"--optimize {request.optimize}: {request.project.root}'s build.zig declares no optimize "
                      "option (zig build: invalid option -Doptimize)",
                      detail="Build it as the project declares: leave out --optimize (and optimize in zprof.toml).")


def _executables(prefix: Path) -> list[str]:
    bin_dir = prefix / "bin"
    if not bin_dir.is_dir():
        return []
    return sorted(p.name for p in bin_dir.iterdir() if p.is_file() and os.access(p, os.X_OK))


def choose_executable(project: ZigProject, executables: list[str], wanted: str | None) -> str:
    if wanted:
        if wanted not in executables:
            raise ZprofError(
                f"the build produced no executable named {wanted!r}",
                detail=f"It produced: {', '.join(executables) or 'nothing'}.",
            )
        return wanted
    if len(executables) == 1:
        return executables[0]
    for name in (project.name, project.root.name):
        if name in executables:
            return name
    raise ZprofError(
        f"the build produced several executables and none is named like the project ({project.name})",
        detail=f"Pick one with --exe NAME: {', '.join(executables)}.",
    )


def _error_lines(log: str) -> str:
    lines = log.splitlines()
    errors = [line for line in lines if "error" in line.lower() or "note:" in line]
    chosen = errors[:LOG_TAIL_LINES] if errors else lines[-LOG_TAIL_LINES:]
    return "\n".join(chosen)


def _missing_dependency(log: str, project: ZigProject) -> ZprofError | None:
    """A package that is not in Zig's cache and could not be downloaded."""
    if not re.search(r"unable to (?:connect|resolve|download|fetch)|ConnectionRefused|TemporaryNameServerFailure"
                     r"|NetworkUnreachable|UnknownHostName|ConnectionTimedOut", log):
        return None
    missing = [dep for dep in project.dependencies if dep.url and dep.url in log] or [
        dep for dep in project.dependencies if dep.url
    ]
    names = ", ".join(f"{dep.name} ({dep.url})" for dep in missing) or "a package"
    hints = "\n".join(
        f"  zig fetch /path/to/{dep.name}-checkout   # must print {dep.hash}" for dep in missing if dep.hash
    )
    return ZprofError(
        f"zig build needs {names}, which is not in Zig's package cache, and this machine could not download it",
        detail=(
            "Bring the package in on a machine with network access, or from a checkout of its source at the "
            "version named in build.zig.zon, then add it to the cache with:\n"
            f"{hints}\n\n{_error_lines(log)}"
        ),
    )


def _missing_libraries(log: str, project: ZigProject) -> ZprofError | None:
    """A link failure for system libraries that are not installed: each named, with its Debian package."""
    libraries = list(dict.fromkeys(re.findall(r"unable to find (?:dynamic|static) system library '([^']+)'", log)))
    if not libraries:
        return None
    known = [DEBIAN_PACKAGES[name] for name in libraries if name in DEBIAN_PACKAGES]
    unknown = [name for name in libraries if name not in DEBIAN_PACKAGES]
    fixes = ([f"apt-get install {' '.join(dict.fromkeys(known))}"] if known else []) + [
        f"install the development package of lib{name} (`apt-cache search lib{name}` names it)" for name in unknown]
    return ZprofError(
        f"zig build failed in {project.root}: it links the system librar{'ies' if len(libraries) > 1 else 'y'} "
        f"{', '.join(libraries)}, which {'are' if len(libraries) > 1 else 'is'} not installed",
        detail="Fix: " + "; ".join(fixes) + "\n\n" + _error_lines(log))


def declared_mode(project: ZigProject) -> tuple[str, str]:
    """The build mode a project without an optimize option builds in, and where zprof found it."""
    try:
        text = project.build_file.read_text(errors="replace")
    except OSError:
        text = ""
    found = re.search(r"\.(Debug|ReleaseSafe|ReleaseFast|ReleaseSmall)\b", text)
    return (found.group(1), DECLARED) if found else ("Debug", ZIG_DEFAULT)


def _no_optimize_option(log: str) -> bool:
    return bool(re.search(r"invalid option: -Doptimize", log))


def _explain_partial_failure(log: str, returncode: int) -> list[str]:
    """Why `zig build` reported a failure although the executable is there."""
    if returncode != 0:
        warnings = [f"zig build exited with status {returncode}, but it produced the executable; zprof uses it."]
    else:
        warnings = ["zig build reported a failed step but exited 0 and produced the executable; zprof uses it."]
    named = {path.rstrip("'\":,.") for path in re.findall(r"/[\w.+-]+(?:/[\w.+-]+)+", log)}
    absent = sorted(path for path in named if not Path(path).exists())
    if absent:
        warnings.append(
            "The build names paths that do not exist on this machine "
            f"({', '.join(absent[:4])}); on Linux these are usually macOS-only library directories "
            "added in build.zig (for example /opt/homebrew/...)."
        )
    warnings.append("zig build's error output:\n" + _error_lines(log))
    return warnings


def _zig_build(request: BuildRequest, prefix: Path, lib_dir: Path | None,
               optimize_flag: str | None) -> tuple[Completed, str]:
    command = [
        str(request.zig.exe), "build",
        *([optimize_flag] if optimize_flag else []),
        "--prefix", str(prefix),
        # Both caches go outside the checkout; the global one keeps Zig's default
        # location so packages already fetched there are found.
        "--cache-dir", str(cache_root() / "zig-local-cache"),
        *(["--zig-lib-dir", str(lib_dir)] if lib_dir else []),
        *request.extra_args,
    ]
    env = {k: v for k, v in os.environ.items() if k != shim.ENV_VAR}
    try:
        done = run_bounded(command, BUILD_TIMEOUT_S, cwd=request.project.root, env=env)
    except subprocess.TimeoutExpired as expired:
        raise ZprofError(f"zig build did not finish within {BUILD_TIMEOUT_S} s") from expired
    return done, (done.stdout or "") + (done.stderr or "")


def build(request: BuildRequest) -> BuildResult:
    """Build (or reuse) the target; the checkout is read, never written. A build is made in a staging
    directory and moved into the cache whole, with a stamp; one found without a valid stamp (a build
    killed halfway, a truncated binary) is made again."""
    project, zig = request.project, request.zig
    check_minimum_version(zig, project.minimum_zig_version, project.root)
    started = time.monotonic()
    key = build_key(request)
    builds = cache_dir("builds")
    out_dir = builds / f"{project.name}-{key}"
    cached = _cached(request, out_dir, key, started)
    if cached is not None:
        return cached
    with _one_build_at_a_time(out_dir.name):
        cached = _cached(request, out_dir, key, started)  # another zprof may have made it meanwhile
        if cached is not None:
            return cached
        stamp.discard(out_dir)
        lib_dir = shim.overlay_lib_dir(zig, cache_root(), request.shim_variant) if request.with_shim else None
        staging = Path(tempfile.mkdtemp(prefix=f"{out_dir.name}.partial-", dir=builds))
        run = registry.current()
        run.add_directory(staging)
        try:
            result = _build_into(request, staging, out_dir / "prefix", lib_dir, key, started)
            meta = {k: v for k, v in asdict(result).items() if k not in ("cached", "seconds")}
            meta["binary"] = str(result.binary)
            (staging / "build.json").write_text(json.dumps(meta, indent=2))
            stamp.write_stamp(staging, key, [staging / "build.json",
                                             *(staging / "prefix" / "bin" / name for name in result.executables)])
            stamp.put_in_place(staging, out_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            run.remove_directory(staging)
    return result


@contextmanager
def _one_build_at_a_time(entry: str) -> Iterator[None]:
    """Two zprof runs that need the same build (two checkouts, CI jobs, a suite run in parallel) compile it
    once: the second waits for the first's lock, then finds the build in the cache. The kernel releases
    the lock of a process that dies, so a killed build never blocks the next."""
    with open(cache_dir("locks") / f"{entry}.lock", "a") as handle:
        deadline = time.monotonic() + BUILD_TIMEOUT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ZprofError(f"another zprof has been building {entry} for over {BUILD_TIMEOUT_S} s",
                                     detail=f"Its lock is {handle.name}.") from None
                time.sleep(LOCK_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cached(request: BuildRequest, out_dir: Path, key: str, started: float) -> BuildResult | None:
    """The build in the cache, if it is whole."""
    if not stamp.verified(out_dir, key):
        return None
    try:
        meta = json.loads((out_dir / "build.json").read_text())
    except (OSError, ValueError):
        return None
    if request.optimize_asked and meta["optimize_source"] != REQUESTED:
        raise _no_optimize_option_asked(request)  # as the build itself would have refused it
    exe = choose_executable(request.project, meta["executables"], request.exe)
    binary = out_dir / "prefix" / "bin" / exe
    meta.update(binary=binary, cached=True, seconds=time.monotonic() - started,
                build_args=tuple(meta.get("build_args", ())))
    return BuildResult(**meta)


def _build_into(request: BuildRequest, staging: Path, final_prefix: Path, lib_dir: Path | None, key: str,
                started: float) -> BuildResult:
    """`zig build` into `staging`; the result names the binary where it will be once in place."""
    project, zig = request.project, request.zig
    prefix = staging / "prefix"
    optimize, source = request.optimize, REQUESTED
    done, log = _zig_build(request, prefix, lib_dir, f"-Doptimize={optimize}")
    if done.returncode != 0 and _no_optimize_option(log):
        if request.optimize_asked:
            raise _no_optimize_option_asked(request)
        optimize, source = declared_mode(project)
        done, log = _zig_build(request, prefix, lib_dir, None)
    (staging / "build.log").write_text(log)

    executables = _executables(prefix)
    warnings: list[str] = []
    if done.returncode != 0:
        for explained in (_missing_dependency(log, project), _missing_libraries(log, project)):
            if explained:
                raise explained
        if not executables:
            raise ZprofError(f"zig build failed in {project.root}", detail=_error_lines(log))
    if done.returncode != 0 or re.search(r"\berror:|\bfailure\b", log):
        # Zig prints some linker warnings as "error: warning: ..." under a step
        # marked "failure", even when the build succeeds.
        warnings = _explain_partial_failure(log, done.returncode)
    if not executables:
        raise ZprofError(f"zig build succeeded but installed no executable under {prefix / 'bin'}")
    exe = choose_executable(project, executables, request.exe)
    return BuildResult(
        binary=final_prefix / "bin" / exe,
        executables=executables,
        key=key,
        cached=False,
        seconds=time.monotonic() - started,
        with_shim=request.with_shim,
        zig_version=zig.version,
        warnings=warnings,
        optimize=optimize,
        optimize_source=source,
        build_args=request.extra_args,
        source_root=str(project.root),
    )
