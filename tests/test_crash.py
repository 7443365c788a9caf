"""Where a server crashed: Zig's own printed trace (Debug), and a core dump read with gdb (ReleaseFast, which
prints nothing), from a real program compiled here and really crashing; and the core pattern's cases."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import MINIKV
from zprof.collect import crash
from zprof.collect.crash import allow_core_dumps, capture, core_file

CRASHING = """const std = @import("std");

noinline fn crashHere(address: usize) void {
    const target: *volatile u8 = @ptrFromInt(address);
    target.* = 1;
}

pub fn main() void {
    var zero: usize = 0;
    _ = &zero;
    crashHere(zero);
}
"""
CRASH_LINE = 5  # `target.* = 1;`


@pytest.fixture(scope="module")
def crashing(tmp_path_factory: pytest.TempPathFactory, zig_exe: str) -> dict[str, Path]:
    """The program, built in Debug (Zig's segfault handler prints a trace) and in ReleaseFast (none)."""
    root = tmp_path_factory.mktemp("crashing")
    source = root / "crashing.zig"
    source.write_text(CRASHING)
    built = {}
    for mode in ("Debug", "ReleaseFast"):
        binary = root / f"crashing-{mode}"
        subprocess.run([zig_exe, "build-exe", "-O", mode, "-fno-omit-frame-pointer", str(source),
                        f"-femit-bin={binary}"], cwd=root, check=True, timeout=300, capture_output=True)
        built[mode] = binary
    return built


def crash_in(binary: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    workdir.mkdir()
    return subprocess.run([str(binary)], cwd=workdir, preexec_fn=allow_core_dumps, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.slow
def test_a_debug_build_is_read_from_its_own_trace(crashing, tmp_path):
    done = crash_in(crashing["Debug"], tmp_path / "run")
    assert done.returncode < 0
    stack = capture(crashing["Debug"], tmp_path / "run", done.stderr, 0, "signal 6, SIGABRT")
    assert stack.source == "the server's own trace"
    own = stack.first_own
    assert own is not None and own.function == "crashHere"
    # Debug's safety check stops the cast of 0 to a pointer a line before the store.
    assert own.file.endswith("crashing.zig") and own.line in (CRASH_LINE - 1, CRASH_LINE)
    assert [frame.function for frame in stack.frames[:2]] == ["crashHere", "main"]


@pytest.mark.slow
@pytest.mark.skipif(Path("/proc/sys/kernel/core_pattern").read_text().startswith("|"),
                    reason="this machine pipes core dumps to a program")
def test_a_release_build_is_read_from_its_core_with_gdb(crashing, tmp_path):
    done = crash_in(crashing["ReleaseFast"], tmp_path / "run")
    assert done.returncode == -11
    assert done.stderr == ""  # nothing printed: the core is all there is
    stack = capture(crashing["ReleaseFast"], tmp_path / "run", done.stderr, 0, "signal 11, SIGSEGV")
    assert stack.source == "its core dump, read with gdb", stack.missing
    assert stack.frames[0].function.endswith("crashHere")
    assert stack.frames[0].file.endswith("crashing.zig") and stack.frames[0].line == CRASH_LINE
    assert "crashHere" in stack.summary() and f"crashing.zig:{CRASH_LINE}" in stack.summary()


def test_a_piped_core_pattern_says_how_to_let_zprof_read_cores(tmp_path, monkeypatch):
    pattern = tmp_path / "core_pattern"
    pattern.write_text("|/usr/lib/systemd/systemd-coredump %P %u %g %s %t %c %h\n")
    monkeypatch.setattr(crash, "CORE_PATTERN_FILE", pattern)
    core, missing = core_file(tmp_path, 1234)
    assert core is None and "systemd-coredump" in missing and "kernel.core_pattern=core" in missing


def test_a_pattern_with_the_pid_finds_that_process_core(tmp_path, monkeypatch):
    pattern = tmp_path / "core_pattern"
    pattern.write_text("core.%e.%p\n")
    monkeypatch.setattr(crash, "CORE_PATTERN_FILE", pattern)
    (tmp_path / "core.minikv.1233").write_text("another process' core")
    (tmp_path / "core.minikv.1234").write_text("")
    core, missing = core_file(tmp_path, 1234)
    assert core == tmp_path / "core.minikv.1234" and missing is None
    core, missing = core_file(tmp_path, 99)
    assert core is None and "no core file" in missing


# minikv's crash-at-start fault crashes the processes whose pid is even: half the starts. A run whose starts all
# came out odd shows no crash; this many runs make that a one-in-4096 event.
CRASH_TRIES = 12


@pytest.mark.slow
def test_a_start_up_crash_is_measured_past_and_its_stack_named(run_zprof, tmp_path):
    for attempt in range(CRASH_TRIES):
        out = tmp_path / f"run-{attempt}"
        done = run_zprof("syscalls", "SET", "--project", str(MINIKV), "--requests", "200", "--output", str(out),
                         "--server-args", "--fault crash-at-start")
        assert done.returncode == 0, done.output  # measured, after the crashed starts
        notes = json.loads((out / "run.json").read_text())["notes"]
        crashed = [note["values"] for note in notes if note["code"] == "server.start-crashes"]
        if crashed:
            break
    else:
        pytest.fail(f"no start crashed in {CRASH_TRIES} runs")
    stack = crashed[0]["stack"]
    assert crashed[0]["how"] == "signal 11, SIGSEGV"
    first = stack["frames"][0]
    assert first["function"] == "faults.crashAtStart"
    assert first["file"].endswith("examples/minikv/src/faults.zig") and first["line"] > 0
    flat = " ".join(done.stdout.split())
    assert f"Where the first crash was: faults.crashAtStart (examples/minikv/src/faults.zig:{first['line']})" in flat
