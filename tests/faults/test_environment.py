"""Faults of the machine: an output directory zprof may not write, a damaged cache, perf that may not record
or does not run, valgrind, redis-benchmark or redis-server missing."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MINIKV, write_project
from tests.faults.conftest import assert_clean, path_without
from zprof import registry
from zprof.builder.stamp import STAMP_FILE

SMALL_ALLOCS = ("--requests", "2000", "--warmup", "500")


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody may write in, root included (the immutable attribute)."""
    directory = tmp_path / "immutable"
    directory.mkdir()
    subprocess.run(["chattr", "+i", str(directory)], check=True)
    try:
        yield directory
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


def test_an_output_directory_zprof_may_not_write(faults, minikv_digest, immutable):
    output = immutable / "run"
    zprof, done = faults.run("allocs", "GET", "--project", str(MINIKV), "--output", str(output))
    assert_clean(zprof, done, 2, f"cannot create the output directory {output}", "Operation not permitted",
                 project=MINIKV, digest=minikv_digest, output=output)


def test_a_json_copy_zprof_may_not_write_is_refused_before_any_work(faults, minikv_digest, immutable, tmp_path):
    output = tmp_path / "out"
    zprof, done = faults.run("bench", "--project", str(MINIKV), "--json", str(immutable / "run.json"),
                             "--output", str(output))
    assert_clean(zprof, done, 2, f"cannot write --json {immutable / 'run.json'}", "not writable",
                 project=MINIKV, digest=minikv_digest, output=output)


def test_a_report_zprof_may_not_write(faults, immutable, tmp_path):
    saved = Path(__file__).parents[1] / "data" / "runs" / "allocs.json"
    zprof, done = faults.run("report", str(saved), "--format", "md", "--output", str(immutable / "report.md"))
    assert_clean(zprof, done, 2, f"cannot write {immutable / 'report.md'}")
    assert list(immutable.iterdir()) == []


def test_a_cache_that_is_not_a_directory(faults, minikv_digest, tmp_path):
    cache = tmp_path / "cache"
    cache.write_text("not a directory\n")
    output = tmp_path / "out"
    zprof, done = faults.run("allocs", "GET", "--project", str(MINIKV), "--output", str(output),
                             env={"ZPROF_CACHE": str(cache)})
    assert_clean(zprof, done, 2, f"cannot use zprof's cache directory {cache}", "Not a directory",
                 project=MINIKV, digest=minikv_digest, output=output)
    assert cache.read_text() == "not a directory\n"


# A tiny project builds in Debug in a second (in ReleaseFast, with its own compiler runtime, in fifteen).
DEBUG = ("--optimize", "Debug")


def built(faults, *args: str, project: Path = MINIKV) -> tuple[Path, str]:
    """The cached build's binary, and how zprof got it ("cached" or "built")."""
    zprof, done = faults.run("build", "--project", str(project), *args)
    assert_clean(zprof, done, 0)
    return Path(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.fixture
def tiny_project(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A Zig project that builds in seconds (the cache's checks are the same for any project), with sources of
    the test's own: builds are keyed by the sources, and no other test may share this one's."""
    return write_project(tmp_path / "tiny", f"pub fn main() void {{}}\n// {request.node.name}\n")


def test_a_truncated_binary_in_the_cache_is_rebuilt(faults, tiny_project):
    binary, _ = built(faults, *DEBUG, project=tiny_project)
    whole = binary.read_bytes()
    with open(binary, "r+b") as handle:
        handle.truncate(len(whole) // 2)
    again, how = built(faults, *DEBUG, project=tiny_project)
    assert again == binary and "built in" in how, how
    assert binary.read_bytes() == whole
    assert "cached" in built(faults, *DEBUG, project=tiny_project)[1]


def test_a_half_written_build_entry_is_rebuilt(faults, tiny_project):
    binary, _ = built(faults, "--no-shim", *DEBUG, project=tiny_project)
    entry = binary.parents[2]
    # As a build killed before its stamp, the last thing written: the metadata half there, no stamp.
    (entry / STAMP_FILE).unlink()
    (entry / "build.json").write_text((entry / "build.json").read_text()[:40])
    again, how = built(faults, "--no-shim", *DEBUG, project=tiny_project)
    assert again == binary and "built in" in how, how
    assert json.loads((entry / "build.json").read_text())["executables"] == ["tiny"]


def test_a_damaged_shim_overlay_is_made_again(faults, fresh_cache, tmp_path):
    """In a cache of its own (the overlay is shared by every build of the cache): the next build that needs
    the overlay finds it damaged, makes it again whole, and builds."""
    env = {"ZPROF_CACHE": str(fresh_cache)}
    zprof, done = faults.run("build", "--project", str(write_project(tmp_path / "one", "pub fn main() void {}\n")),
                             *DEBUG, env=env)
    assert_clean(zprof, done, 0)
    overlays = [path for path in (fresh_cache / "overlays").iterdir() if (path / STAMP_FILE).is_file()]
    hooks = [path / "lib" / "std" / "zprof_hooks.zig" for path in overlays]
    assert hooks
    for path in hooks:
        path.write_text(path.read_text()[:100])
    other = write_project(tmp_path / "two", "pub fn main() void { _ = 2; }\n")
    zprof, done = faults.run("build", "--project", str(other), *DEBUG, env=env)
    assert_clean(zprof, done, 0, "built in")
    shim = [path for path in hooks if path.is_file() and "zprof's counting-allocator shim" in path.read_text()]
    assert shim, "the overlay was made again, whole"


def test_a_half_written_counter_file_of_a_killed_run_is_never_read(faults, minikv_digest, tmp_path):
    """A run killed mid-way left its run directory, with a counter file half written; the next run removes
    it and measures with a counter file of its own."""
    stale = faults.cache / "runs" / "allocs-killed"
    stale.mkdir(parents=True)
    (stale / "counters.shm").write_bytes(b"ZPROFSH1" + b"\x07" * 1000)
    directory = faults.cache / registry.REGISTRY_DIR
    directory.mkdir(exist_ok=True)
    (directory / "2-2.json").write_text(json.dumps({"zprof": {"pid": 2, "start": 2}, "processes": [],
                                                    "directories": [str(stale)]}))
    output = tmp_path / "out"
    zprof, done = faults.run("allocs", "GET", "--project", str(MINIKV), *SMALL_ALLOCS, "--output", str(output))
    assert_clean(zprof, done, 0, "an earlier zprof run (pid 2) ended without cleaning up",
                 "removed its 1 temporary directory", project=MINIKV, digest=minikv_digest)
    assert not stale.exists()
    assert json.loads((output / "run.json").read_text())["complete"] is True


def fake_perf(tmp_path: Path, script: str) -> str:
    """A PATH whose perf is `script` (a shell script), ahead of the system's."""
    directory = tmp_path / "fake-perf"
    directory.mkdir()
    perf = directory / "perf"
    perf.write_text("#!/bin/sh\n" + script)
    perf.chmod(0o755)
    return f"{directory}{os.pathsep}{os.environ['PATH']}"


# What perf says where perf_event_paranoid forbids it (perf 6.1), for the `record` it is asked for.
NOT_PERMITTED = """case "$1" in
  --version) echo "perf version 6.1.0" ;;
  *) echo "Error:" >&2
     echo "Access to performance monitoring and observability operations is limited." >&2
     echo "Consider adjusting /proc/sys/kernel/perf_event_paranoid setting to open" >&2
     exit 255 ;;
esac
"""
# Debian's perf wrapper when the tools for the running kernel are not installed.
UNUSABLE = """echo "E: linux-perf-6.99 is not installed." >&2
exit 1
"""


@pytest.mark.parametrize(("script", "message"), [
    (NOT_PERMITTED, "perf may not record the server here"),
    (UNUSABLE, "does not run: E: linux-perf-6.99 is not installed."),
], ids=["not-permitted", "unusable"])
def test_perf_that_cannot_record(faults, minikv_digest, tmp_path, script, message):
    output = tmp_path / "out"
    zprof, done = faults.run("flame", "--command", "GET", "--project", str(MINIKV), "--duration", "2",
                             "--output", str(output), env={"PATH": fake_perf(tmp_path, script)})
    assert_clean(zprof, done, 2, message, project=MINIKV, digest=minikv_digest, output=output)


@pytest.mark.parametrize("command", [("flame", "--engine", "callgrind"), ("memory", "--engine", "massif")],
                         ids=["callgrind", "massif"])
def test_valgrind_missing(faults, minikv_digest, tmp_path, command):
    output = tmp_path / "out"
    zprof, done = faults.run(*command, "--command", "GET", "--project", str(MINIKV), "--output", str(output),
                             env={"PATH": path_without(tmp_path, "valgrind")})
    assert_clean(zprof, done, 2, "valgrind is not installed", "apt-get install valgrind", project=MINIKV,
                 digest=minikv_digest, output=output)


def test_redis_benchmark_missing(faults, minikv_digest, tmp_path):
    output = tmp_path / "out"
    zprof, done = faults.run("bench", "--project", str(MINIKV), "--commands", "SET", "--trials", "1",
                             "--requests", "2000", "--warmup", "200", "--keys", "0", "--min-trial-seconds", "0.1",
                             "--output", str(output), env={"PATH": path_without(tmp_path, "redis-benchmark")})
    assert_clean(zprof, done, 0, "redis-benchmark is not installed (apt-get install redis-tools)",
                 project=MINIKV, digest=minikv_digest)
    assert json.loads((output / "run.json").read_text())["settings"]["tool"] == "zprof"


def test_redis_server_missing(faults, minikv_digest, tmp_path):
    output = tmp_path / "out"
    zprof, done = faults.run("bench", "--project", str(MINIKV), "--output", str(output),
                             env={"PATH": path_without(tmp_path, "redis-server")})
    assert_clean(zprof, done, 2, "redis-server is not installed", project=MINIKV, digest=minikv_digest,
                 output=output)


def test_two_runs_that_need_the_same_build_compile_it_once(faults, tiny_project, fresh_cache):
    """Started together on an empty cache: one compiles, the other waits for its lock and takes its build."""
    env = {"ZPROF_CACHE": str(fresh_cache)}
    runs = [faults.start("build", "--project", str(tiny_project), *DEBUG, env=env) for _ in range(2)]
    done = [zprof.finish() for zprof in runs]
    for zprof, finished in zip(runs, done, strict=True):
        assert_clean(zprof, finished, 0)
    assert sorted("cached" in finished.stderr for finished in done) == [False, True], [d.stderr for d in done]
    assert done[0].stdout == done[1].stdout  # the same binary
