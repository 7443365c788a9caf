"""Shared fixtures: the real Zig compiler, a zprof cache for the session, and a runner for the real CLI,
in this process (tests/faults/ starts zprof as a process of its own where the process is what is tested)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import psutil
import pytest

from tests.in_process import CliResult, run_cli

REPO = Path(__file__).resolve().parents[1]
MINIKV = REPO / "examples" / "minikv"
CLI_TIMEOUT_S = 900


def processes_mentioning(text: str) -> list[str]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if text in command and "pytest" not in command:
            found.append(command)
    return found


# The longest files first: run in parallel a file at a time (make test), the last file to start bounds the run.
LONGEST_FIRST = ("test_shapes.py", "test_validate.py", "test_regress.py", "test_bench.py", "test_memory.py",
                 "test_flame.py", "test_signals.py", "test_environment.py", "test_target_faults.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each file's tests keep their order


@pytest.fixture
def taken_port():
    """A loopback port another socket is listening on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


@pytest.fixture(scope="session")
def replays_as_printed(run_zprof):
    """Checks that `zprof report DIR` prints exactly what the live command printed (its report,
    without the closing line that says where the run was saved)."""

    def check(directory: Path, live_stdout: str) -> None:
        replay = run_zprof("report", str(directory))
        assert replay.returncode == 0, replay.output
        printed = "".join(line for line in live_stdout.splitlines(keepends=True)
                          if not line.startswith("Run saved to "))
        assert replay.stdout == printed

    return check


@pytest.fixture(scope="session")
def zig_exe() -> str:
    import ziglang

    return str(Path(ziglang.__file__).parent / "zig")


# What zprof's cache holds that the test processes of one run share: builds (keyed by the sources, so copies of
# minikv share them too), their locks, the shim overlays, Zig's own cache and symbols. Each process keeps its
# own runs and registry, so that "no process is left" is checked for its own runs alone.
SHARED_CACHE_PARTS = ("builds", "locks", "overlays", "zig-local-cache", "symbols")


def _shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """$ZPROF_TEST_CACHE (kept between runs, for make check), else the directory the workers of a parallel
    run share (pytest-xdist), else none: a lone process's own cache is all there is."""
    if os.environ.get("ZPROF_TEST_CACHE"):
        return Path(os.environ["ZPROF_TEST_CACHE"])
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return tmp_path_factory.getbasetemp().parent / "zprof-shared-cache"
    return None


@pytest.fixture(scope="session")
def zprof_env(tmp_path_factory: pytest.TempPathFactory, zig_exe: str) -> dict[str, str]:
    """One zprof cache for the whole session, so minikv is built once per flavour; its builds shared with the
    other workers of a parallel run (and one worker waits for another building the same thing)."""
    cache = tmp_path_factory.mktemp("zprof-cache")
    shared = _shared_cache(tmp_path_factory)
    if shared is not None:
        for part in SHARED_CACHE_PARTS:
            (shared / part).mkdir(parents=True, exist_ok=True)
            (cache / part).symlink_to(shared / part, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k not in ("ZPROF_SHM", "ZIG")}
    env.update(ZPROF_CACHE=str(cache), ZIG=zig_exe, COLUMNS="160")
    return env


@pytest.fixture(scope="session")
def run_zprof(zprof_env: dict[str, str]):
    """Runs `zprof ARGS` through `zprof.cli.main`, in this process: the CLI as a user runs it (its parsing,
    its errors and exit codes, the clean-up at exit) without a second of imports per command."""

    def run(*args: str, cwd: Path | None = None, timeout: float = CLI_TIMEOUT_S,
            env: dict[str, str] | None = None) -> CliResult:
        done = run_cli(args, cwd=cwd or REPO, env={**zprof_env, **(env or {})}, timeout=timeout)
        # Every server zprof started runs a binary from this session's cache: none may remain.
        assert processes_mentioning(zprof_env["ZPROF_CACHE"]) == [], "zprof left a process running"
        return done

    return run


def write_project(root: Path, main_zig: str, zon_extra: str = "", minimum: str = "0.15.0") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "build.zig").write_text(
        'const std = @import("std");\n'
        "pub fn build(b: *std.Build) void {\n"
        "    const exe = b.addExecutable(.{ .name = \"tiny\", .root_module = b.createModule(.{\n"
        '        .root_source_file = b.path("main.zig"), .target = b.standardTargetOptions(.{}),\n'
        "        .optimize = b.standardOptimizeOption(.{}) }) });\n"
        "    b.installArtifact(exe);\n}\n"
    )
    (root / "build.zig.zon").write_text(
        ".{ .name = .tiny, .version = \"0.0.1\", .fingerprint = 0x50b897c9ddc30cb5,\n"
        f'   .minimum_zig_version = "{minimum}", .dependencies = .{{ {zon_extra} }},\n'
        '   .paths = .{ "build.zig", "build.zig.zon", "main.zig" } }\n'
    )
    (root / "main.zig").write_text(main_zig)
    return root


def flat_allocs(run: dict) -> dict:
    """An allocs run with its analysis' fields beside the run's own, as the tests read them."""
    return {**run, **run["analysis"]}


@pytest.fixture(scope="session")
def allocs_json(run_zprof, tmp_path_factory: pytest.TempPathFactory):
    """`zprof allocs` on minikv, returning its saved run (flattened, `flat_allocs`); each distinct run once
    per session."""
    results: dict[tuple[str, ...], dict] = {}
    out_dir = tmp_path_factory.mktemp("allocs")

    def run(command: str, *extra: str) -> dict:
        key = (command, *extra)
        if key not in results:
            output = out_dir / f"run-{len(results)}"
            done = run_zprof("allocs", command, "--project", str(MINIKV), "--output", str(output), *extra)
            assert done.returncode == 0, done.output
            assert "Traceback" not in done.output
            results[key] = flat_allocs(json.loads((output / "run.json").read_text()))
        return results[key]

    return run


# Other processes took at most this factor of a side's CPU (analysis.verdicts.interference), and the machine
# was not saturated: a quiet enough machine for two or three trials to make a tenfold slowdown conclusive.
QUIET_INTERFERENCE = 1.5


def quiet_comparison(command: dict) -> bool:
    """Whether a bench command (its run.json form) ran on a machine quiet enough that zprof must be conclusive
    about a defect an order of magnitude wide; on a busier one it guarantees only that it never passes it."""
    return (max(command["target_interference"], command["redis_interference"]) < QUIET_INTERFERENCE
            and not command["machine_saturated"] and not command["load_generator_bound"])
