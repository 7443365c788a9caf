"""Shared fixtures: the real Zig compiler, a zprof cache for the session, and
a runner for the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]
MINIKV = REPO / "examples" / "minikv"
CLI_TIMEOUT_S = 900


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str
    directory: Path | None = None  # the run's output directory, when a fixture chose it

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def processes_mentioning(text: str) -> list[str]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if text in command and "pytest" not in command:
            found.append(command)
    return found


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


@pytest.fixture(scope="session")
def zprof_env(tmp_path_factory: pytest.TempPathFactory, zig_exe: str) -> dict[str, str]:
    """One zprof cache for the whole session, so minikv is built once per flavour."""
    cache = os.environ.get("ZPROF_TEST_CACHE") or str(tmp_path_factory.mktemp("zprof-cache"))
    env = {k: v for k, v in os.environ.items() if k not in ("ZPROF_SHM", "ZIG")}
    env.update(ZPROF_CACHE=cache, ZIG=zig_exe, COLUMNS="160")
    return env


@pytest.fixture(scope="session")
def run_zprof(zprof_env: dict[str, str]):
    def run(*args: str, cwd: Path | None = None, timeout: float = CLI_TIMEOUT_S,
            env: dict[str, str] | None = None) -> CliResult:
        done = subprocess.run(
            [sys.executable, "-m", "zprof", *args],
            cwd=cwd or REPO, env={**zprof_env, **(env or {})}, capture_output=True, text=True,
            timeout=timeout, stdin=subprocess.DEVNULL, check=False,
        )
        # Every server zprof started runs a binary from this session's cache: none may remain.
        assert processes_mentioning(zprof_env["ZPROF_CACHE"]) == [], "zprof left a process running"
        return CliResult(done.returncode, done.stdout, done.stderr)

    return run


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
