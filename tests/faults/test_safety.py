"""What zprof does with what is not its own: servers in private directories, in process groups of their
own, on loopback; user text never run through a shell; errors without tracebacks unless asked for."""

from __future__ import annotations

import os
import shutil
import signal
import stat
from pathlib import Path

import psutil
import pytest

from tests.conftest import MINIKV
from tests.faults.conftest import assert_clean, load_under_way, started, wait_for

ENDLESS = ("--requests", "50000000")


def listening(server: psutil.Process) -> psutil.Process | None:
    try:
        return server if any(c.status == psutil.CONN_LISTEN for c in server.net_connections("inet")) else None
    except psutil.NoSuchProcess:
        return None


@pytest.mark.parametrize(("command", "server_name"), [
    (("allocs", "SET", *ENDLESS), "minikv"),
    # Redis against itself: the first server bench starts is a redis-server.
    (("bench", "--target-binary", shutil.which("redis-server") or "redis-server", "--commands", "SET", *ENDLESS),
     "redis-server"),
], ids=["minikv", "redis-server"])
def test_a_server_runs_apart_in_a_private_directory_on_loopback(faults, minikv_digest, tmp_path, command,
                                                                 server_name):
    output = tmp_path / "out"
    zprof = faults.start(*command, "--project", str(MINIKV), "--output", str(output))

    def inspected(server: psutil.Process) -> tuple[Path, set[str], int, int, int] | None:
        """Where it runs, what it listens on, its group and session; None when it exited meanwhile (bench's
        first redis-server only answers the support checks, and may be gone as soon as it listens)."""
        try:
            return (Path(server.cwd()),
                    {c.laddr.ip for c in server.net_connections("inet") if c.status == psutil.CONN_LISTEN},
                    os.getpgid(server.pid), os.getsid(server.pid), server.pid)
        except (psutil.NoSuchProcess, ProcessLookupError):
            return None

    try:
        if server_name == "minikv":
            found = inspected(load_under_way(zprof))
        else:
            found = wait_for(lambda: next((seen for s in started(zprof, server_name)
                                           if listening(s) and (seen := inspected(s))), None),
                             "redis-server listening", zprof)
    finally:
        zprof.send(signal.SIGINT)
        done = zprof.finish()
    assert found is not None, "the loaded server exited under the load"
    workdir, addresses, group, session, server_pid = found
    assert_clean(zprof, done, 130, project=MINIKV, digest=minikv_digest, output=output)
    assert workdir.is_relative_to(faults.cache / "runs") and not workdir.is_relative_to(MINIKV)
    assert any(workdir.is_relative_to(path) for path in zprof.directories), "its directory is in the registry"
    assert not workdir.exists(), "the private directory goes with the run"
    assert addresses == {"127.0.0.1"}
    # A session of its own, so a process group of its own: the terminal's Ctrl-C reaches zprof alone, which
    # stops the group.
    assert group == session == server_pid


def test_the_private_directory_is_private(faults, tmp_path):
    """Mode 0700, checked while the server runs in it."""
    output = tmp_path / "out"
    zprof = faults.start("allocs", "SET", *ENDLESS, "--project", str(MINIKV), "--output", str(output))
    server = load_under_way(zprof)
    try:
        workdir = Path(server.cwd())
        modes = {path: stat.S_IMODE(path.stat().st_mode) for path in (workdir, workdir.parent)}
    finally:
        zprof.send(signal.SIGINT)
        done = zprof.finish()
    assert_clean(zprof, done, 130, output=output)
    assert set(modes.values()) == {0o700}, modes


def test_user_text_never_reaches_a_shell(faults, minikv_digest, tmp_path):
    canary = tmp_path / "canary"
    output = tmp_path / "out"
    zprof, done = faults.run("allocs", "GET", "--project", str(MINIKV), "--output", str(output),
                             "--server-args", f"$(touch {canary}-1); touch {canary}-2 `touch {canary}-3`")
    # The words reach minikv as they are, and it refuses the first.
    assert_clean(zprof, done, 1, "unknown flag '$(touch", project=MINIKV, digest=minikv_digest, output=output)
    zprof, done = faults.run("allocs", "GET", "--project", str(MINIKV), "--output", str(output),
                             "--start-command", f"{{binary}} --port {{port}}; touch {canary}-4")
    assert_clean(zprof, done, 1, "invalid port", project=MINIKV, digest=minikv_digest, output=output)
    assert list(tmp_path.glob("canary*")) == []


def test_a_start_command_with_placeholders_zprof_does_not_know(faults, minikv_digest, tmp_path):
    output = tmp_path / "out"
    zprof, done = faults.run("allocs", "GET", "--project", str(MINIKV), "--output", str(output),
                             "--start-command", "{binary} --port {port} --config {config}")
    assert_clean(zprof, done, 1, "unknown flag '--config'", project=MINIKV, digest=minikv_digest, output=output)
    zprof, done = faults.run("allocs", "GET", "--project", str(MINIKV), "--output", str(output),
                             "--start-command", "{binary} --port {port} 'unbalanced")
    assert_clean(zprof, done, 2, "cannot split the start command", "No closing quotation", project=MINIKV,
                 digest=minikv_digest, output=output)


def test_a_traceback_only_when_asked_for(faults, tmp_path):
    missing = tmp_path / "missing"
    _, done = faults.run("allocs", "GET", "--project", str(missing))
    assert done.returncode == 2 and "Traceback" not in done.output and "is not a directory" in done.output
    _, done = faults.run("--debug", "allocs", "GET", "--project", str(missing))
    assert done.returncode == 2 and "Traceback" in done.output and "is not a directory" in done.output
