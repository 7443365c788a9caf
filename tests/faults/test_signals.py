"""Faults from the user's side: Ctrl-C (SIGINT) and SIGTERM while zprof builds, loads and records, and
SIGKILL, after which the next zprof run stops what the killed one left and says so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.conftest import MINIKV, write_project
from tests.faults.conftest import (
    assert_clean,
    load_under_way,
    started,
    stop_signal_name,
    tool_running,
    wait_for,
)
from zprof import registry

STOP_SIGNALS = [signal.SIGINT, signal.SIGTERM]
# A load far longer than any test: only a signal ends it.
ENDLESS = ("--requests", "50000000")


def compiling(zprof) -> psutil.Process:
    """The compiler, started by `zig build` (so not zprof's child, but in its process group)."""

    def compiler() -> psutil.Process | None:
        for process in started(zprof):
            try:
                if "build-exe" in process.cmdline():
                    return process
            except psutil.NoSuchProcess:
                continue
        return None

    return wait_for(compiler, "zig compiling minikv", zprof)


def assert_stopped(zprof, done, signum: int, **checks) -> None:
    assert_clean(zprof, done, 128 + signum, f"interrupted ({stop_signal_name(signum)})",
                 "everything it had started is stopped", **checks)


@pytest.mark.parametrize("signum", STOP_SIGNALS, ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_the_build(faults, fresh_cache, minikv_digest, tmp_path, signum):
    zprof = faults.start("build", "--project", str(MINIKV), env={"ZPROF_CACHE": str(fresh_cache)})
    compiling(zprof)
    zprof.send(signum)
    done = zprof.finish()
    assert_stopped(zprof, done, signum, project=MINIKV, digest=minikv_digest)
    # Nothing half-built is left to be mistaken for a build: no staging directory, no unstamped entry.
    assert list((fresh_cache / "builds").iterdir()) == []


@pytest.mark.parametrize("signum", STOP_SIGNALS, ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_the_load(faults, minikv_digest, tmp_path, signum):
    output = tmp_path / "out"
    zprof = faults.start("allocs", "SET", "--project", str(MINIKV), *ENDLESS, "--output", str(output))
    load_under_way(zprof)
    zprof.send(signum)
    done = zprof.finish()
    assert_stopped(zprof, done, signum, project=MINIKV, digest=minikv_digest, output=output)


@pytest.mark.parametrize("signum", STOP_SIGNALS, ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_the_perf_recording(faults, minikv_digest, tmp_path, signum):
    output = tmp_path / "out"
    zprof = faults.start("flame", "--command", "SET", "--project", str(MINIKV), "--duration", "600",
                         "--output", str(output))
    tool_running(zprof, "perf")
    zprof.send(signum)
    done = zprof.finish()
    assert_stopped(zprof, done, signum, project=MINIKV, digest=minikv_digest, output=output,
                   binaries=("perf record",))


def test_ctrl_c_while_redis_benchmark_loads_the_server(faults, minikv_digest, tmp_path):
    output = tmp_path / "out"
    zprof = faults.start("bench", "--project", str(MINIKV), "--commands", "SET", "--trials", "1", "--keys", "0",
                         "--warmup", "100", *ENDLESS, "--output", str(output))
    tool_running(zprof, "redis-benchmark")
    zprof.send(signal.SIGINT)
    done = zprof.finish()
    assert_stopped(zprof, done, signal.SIGINT, project=MINIKV, digest=minikv_digest, output=output,
                   binaries=("redis-benchmark", "redis-server"))


def test_sigterm_during_the_memory_load(faults, minikv_digest, tmp_path):
    output = tmp_path / "out"
    zprof = faults.start("memory", "--command", "SET", "--project", str(MINIKV), "--duration", "600",
                         "--output", str(output))
    load_under_way(zprof)
    zprof.send(signal.SIGTERM)
    done = zprof.finish()
    assert_stopped(zprof, done, signal.SIGTERM, project=MINIKV, digest=minikv_digest, output=output)


# A start command whose shell outlives nothing but leaves the server its child: killed with zprof (the
# kernel kills zprof's own children with it), the shell leaves the server orphaned and running.
WRAPPED = "sh -c '\"$0\" --port \"$1\"; :' {binary} {port}"


def test_sigkill_during_the_load_then_the_next_run_cleans_up(faults, minikv_digest, tmp_path):
    output = tmp_path / "killed"
    zprof = faults.start("allocs", "SET", "--project", str(MINIKV), *ENDLESS, "--start-command", WRAPPED,
                         "--output", str(output))
    server = load_under_way(zprof)
    zprof.note_registry()
    zprof.send(signal.SIGKILL)
    assert zprof.finish().returncode == -signal.SIGKILL
    # The fault is real: the server outlived zprof, with its run directory and registry entry.
    assert server.is_running() and server.status() != psutil.STATUS_ZOMBIE
    assert zprof.entry().exists() and all(Path(path).exists() for path in zprof.directories)

    after = tmp_path / "after"
    second, done = faults.run("allocs", "GET", "--project", str(MINIKV), "--requests", "2000", "--output",
                              str(after))
    assert_clean(second, done, 0, f"an earlier zprof run (pid {zprof.process.pid}) ended without cleaning up",
                 f"minikv pid {server.pid}", project=MINIKV, digest=minikv_digest)
    assert (after / "run.json").is_file()
    # Everything the killed run left is gone too: its server, its entry, its directories, its empty output.
    assert_clean(zprof, done, 0)
    assert not output.exists()


def test_sigkill_during_the_build_then_the_next_run_cleans_up(faults, fresh_cache, minikv_digest, tmp_path):
    env = {"ZPROF_CACHE": str(fresh_cache)}
    zprof = faults.start("build", "--project", str(MINIKV), env=env)
    compiling(zprof)
    zprof.note_registry()
    zprof.send(signal.SIGKILL)
    assert zprof.finish().returncode == -signal.SIGKILL
    assert [path for path in zprof.directories if ".partial-" in path and Path(path).exists()], \
        "the killed build left its staging directory"

    # The next run, whatever it builds (a project that builds in seconds), cleans up first.
    tiny = write_project(tmp_path / "tiny", "pub fn main() void {}\n")
    second, done = faults.run("build", "--project", str(tiny), "--optimize", "Debug", env=env)
    assert_clean(second, done, 0, f"an earlier zprof run (pid {zprof.process.pid}) ended without cleaning up",
                 "removed its", project=MINIKV, digest=minikv_digest)
    assert_clean(zprof, done, 0)
    binary = Path(done.stdout.strip().splitlines()[-1])
    assert binary.is_file() and ".partial-" not in str(binary)
    assert [path.name for path in (fresh_cache / "builds").iterdir() if ".partial-" in path.name] == []


def test_a_pid_reused_by_another_process_is_never_touched(faults, tmp_path):
    """The registry names processes by pid and start time: a dead run's entry whose pid now belongs to an
    unrelated process leaves that process alone, and so does the entry of a run that is still running."""
    unrelated = subprocess.Popen(["sleep", "600"])
    bystander = subprocess.Popen(["sleep", "600"])
    try:
        me = registry.identify(unrelated.pid)
        directory = Path(faults.cache) / registry.REGISTRY_DIR
        directory.mkdir(parents=True, exist_ok=True)
        # A run that died: it had started a process with the pid `unrelated` has now, but earlier.
        dead = directory / "1-1.json"
        dead.write_text(json.dumps({"zprof": {"pid": 1, "start": 1}, "directories": [],
                                    "processes": [{"pid": unrelated.pid, "start": me.start - 1}]}))
        # A run still running (this test process), which started `bystander`.
        alive = registry.identify(psutil.Process().pid)
        live = directory / f"{alive.pid}-{alive.start}.json"
        live.write_text(json.dumps({"zprof": {"pid": alive.pid, "start": alive.start}, "directories": [],
                                    "processes": [{"pid": bystander.pid,
                                                   "start": registry.identify(bystander.pid).start}]}))
        _, done = faults.run("report", str(tmp_path / "nothing"))
        assert done.returncode == 2 and "Traceback" not in done.output, done.output
        assert unrelated.poll() is None and bystander.poll() is None
        assert not dead.exists(), "the dead run's entry is dealt with"
        # It had left nothing that still runs (its pid names another process now): nothing to say.
        assert "earlier zprof run" not in done.output
        assert live.exists(), "a running zprof's entry is its own"
        live.unlink()
    finally:
        for process in (unrelated, bystander):
            process.kill()
            process.wait()


def test_a_group_whose_leader_is_gone_is_not_a_dead_runs_group(faults, tmp_path):
    """Once a recorded group leader is gone its pid is free, and another program can lead a group of that
    id: a dead run's entry naming that pid must not make zprof stop the other program's group."""
    # Another program's process group, whose leader exits while a member goes on (a shell that started a
    # background job): the group's id names no process now.
    leader = subprocess.Popen(["sh", "-c", "sleep 600 & echo $!"], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    member_pid = int(leader.stdout.readline())
    leader.wait()
    member = psutil.Process(member_pid)
    try:
        assert os.getpgid(member_pid) == leader.pid and registry.identify(leader.pid) is None
        directory = Path(faults.cache) / registry.REGISTRY_DIR
        directory.mkdir(parents=True, exist_ok=True)
        # A run that died long ago, which had recorded a process with that pid (then a group leader).
        dead = directory / "1-2.json"
        dead.write_text(json.dumps({"zprof": {"pid": 1, "start": 2}, "directories": [],
                                    "processes": [{"pid": leader.pid, "start": 3}]}))
        _, done = faults.run("report", str(tmp_path / "nothing"))
        assert done.returncode == 2 and "Traceback" not in done.output, done.output
        assert not dead.exists(), "the dead run's entry is dealt with"
        assert member.is_running() and member.status() != psutil.STATUS_ZOMBIE, "another program's process was stopped"
        assert "stopped" not in done.output
    finally:
        member.kill()
        leader.stdout.close()
