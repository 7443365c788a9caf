"""zprof flame against minikv's CPU defects, with real perf on the real build; and what it reads from a profile's
frames, on synthetic profiles."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import MINIKV
from zprof.analysis.hotspots import debug_capture_share, share_changes, summarise
from zprof.analysis.perf_script import parse_perf_script
from zprof.analysis.stacks import Frame, ProfileBuilder, StackProfile, parse_folded, profile_from_json
from zprof.collect.perf import script
from zprof.errors import ZprofError
from zprof.report.notes import sentence
from zprof.report.svg import render_flame_svg
from zprof.sessions.flame import read_profile


@pytest.fixture(scope="session")
def flame_run(run_zprof, tmp_path_factory):
    """`zprof flame` output directories, each distinct run made once per session."""
    runs: dict[tuple[str, ...], tuple[Path, str]] = {}

    def run(*args: str) -> tuple[Path, str]:
        if args not in runs:
            out = tmp_path_factory.mktemp("flame") / "out"
            done = run_zprof("flame", "--project", str(MINIKV), "--output", str(out), *args)
            assert done.returncode == 0, done.output
            assert "Traceback" not in done.output
            runs[args] = (out, done.stdout)
        return runs[args]

    return run


def summary(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())["summary"]


@pytest.mark.slow
@pytest.mark.smoke
def test_hot_loop_puts_spin_score_first_by_self_time(flame_run):
    out, stdout = flame_run("--command", "ZADD", "--duration", "4", "--server-args", "--defect hot-loop")
    first = summary(out)["by_self"][0]
    assert first["function"].endswith("spinScore")
    assert first["self_share"] > 0.30
    assert first["flagged"] and first["kind"] == "project"
    assert first["file"].endswith("examples/minikv/src/defects.zig")
    assert "spinScore" in stdout


def inclusive_share(out: Path, function_suffix: str) -> float:
    """The share of samples (or instructions) with `function_suffix` anywhere on their stack."""
    profile = profile_from_json(json.loads((out / "profile.zprof.json").read_text()))
    wanted = {index for index, frame in enumerate(profile.frames) if frame.name.endswith(function_suffix)}
    return profile.weight_of(lambda sample: wanted.intersection(sample.stack)) / profile.total_weight


@pytest.mark.slow
def test_the_saved_run_prints_again_as_it_printed(flame_run, replays_as_printed):
    out, stdout = flame_run("--command", "ZADD", "--duration", "4", "--server-args", "--defect hot-loop")
    replays_as_printed(out, stdout)


@pytest.mark.slow
def test_linear_lookup_shows_as_a_large_share_of_the_cpu(flame_run):
    """ZRANGE sits near the end of the command table, so the linear scan compares ~235 names per
    request: about 10% of all samples here, most of the user-space time. The assertion's margin is a
    threefold drop, far beyond what sampling noise or a loaded machine moves a share."""
    out, _ = flame_run("--command", "ZRANGE", "--duration", "4", "--server-args", "--defect linear-lookup")
    assert inclusive_share(out, "findCommandLinear") >= 0.03


@pytest.mark.slow
def test_callgrind_counts_the_linear_lookup_exactly(run_zprof, tmp_path):
    """Instructions, not samples: the scan's share of ZRANGE's cost is the same in every run."""
    shares = []
    for requests in (50, 100):
        out = tmp_path / f"lookup-{requests}"
        done = run_zprof("flame", "--project", str(MINIKV), "--engine", "callgrind", "--command", "ZRANGE",
                         "--requests", str(requests), "--clients", "1", "--pipeline", "1",
                         "--server-args", "--defect linear-lookup", "--output", str(out))
        assert done.returncode == 0, done.output
        shares.append(inclusive_share(out, "findCommandLinear"))
    assert shares[0] > 0.4
    assert shares[0] == pytest.approx(shares[1], rel=0.05)


@pytest.mark.slow
def test_outputs_agree_with_what_perf_recorded(flame_run):
    out, _ = flame_run("--command", "ZADD", "--duration", "4", "--server-args", "--defect hot-loop")
    for name in ("stacks.folded", "profile.speedscope.json", "flame.svg", "profile.pb.gz", "perf.data"):
        assert (out / name).stat().st_size > 0, name
    recorded = sum(1 for _ in parse_perf_script(script(out / "perf.data")))
    profile = profile_from_json(json.loads((out / "profile.zprof.json").read_text()))
    assert profile.total_weight == recorded == profile.recorded_samples
    speedscope = json.loads((out / "profile.speedscope.json").read_text())
    assert sum(sum(p["weights"]) for p in speedscope["profiles"]) == recorded


@pytest.mark.slow
def test_folded_stacks_round_trip_and_keep_zig_names_whole(flame_run):
    out, _ = flame_run("--command", "ZADD", "--duration", "4", "--server-args", "--defect hot-loop")
    lines = (out / "stacks.folded").read_text().splitlines()
    stacks = parse_folded(lines)
    re_emitted = [f"{stack} {count}" for stack, count in sorted(stacks.items())]
    assert parse_folded(re_emitted) == stacks
    assert sum(stacks.values()) == summary(out)["total"]
    frames = {frame for stack in stacks for frame in stack.split(";")}
    # Generic names keep their parentheses (stackcollapse-perf.pl cuts them).
    assert any("(" in frame and ")" in frame for frame in frames), sorted(frames)[:20]
    assert any(frame.endswith("_[k]") for frame in frames)
    assert any(frame == "defects.spinScore" for frame in frames)


@pytest.mark.slow
def test_a_truncated_perf_data_is_reported(flame_run, tmp_path):
    out, _ = flame_run("--command", "ZADD", "--duration", "4", "--server-args", "--defect hot-loop")
    data = (out / "perf.data").read_bytes()
    truncated = tmp_path / "perf.data"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(ZprofError, match="truncated or corrupt"):
        script(truncated)


@pytest.mark.slow
def test_diff_names_the_function_that_moved(flame_run, run_zprof, tmp_path):
    before, _ = flame_run("--command", "ZADD", "--duration", "4")
    after, _ = flame_run("--command", "ZADD", "--duration", "4", "--server-args", "--defect hot-loop")
    out = tmp_path / "diff"
    done = run_zprof("flame", "--diff", str(before), str(after), "--output", str(out))
    assert done.returncode == 0, done.output
    changes = json.loads((out / "changes.json").read_text())
    assert changes[0]["function"].endswith("spinScore") and changes[0]["delta"] > 0.3
    assert (out / "flame-diff.svg").stat().st_size > 0


@pytest.mark.slow
def test_an_existing_output_directory_is_never_overwritten(run_zprof, tmp_path):
    (tmp_path / "keep.txt").write_text("a previous run")
    done = run_zprof("flame", "--project", str(MINIKV), "--output", str(tmp_path), "--duration", "1")
    assert done.returncode == 2 and "already exists" in done.output
    assert (tmp_path / "keep.txt").read_text() == "a previous run"


@pytest.mark.slow
@pytest.mark.parametrize("duration", ["0.5", "3601"])
def test_durations_out_of_range_are_refused(run_zprof, duration):
    done = run_zprof("flame", "--project", str(MINIKV), "--duration", duration)
    assert done.returncode == 2 and "--duration" in done.output and "Traceback" not in done.output


@pytest.mark.slow
def test_an_idle_process_gives_no_samples_and_a_clear_message(tmp_path):
    # A sleeping process never runs on a CPU, so real perf records nothing of it.
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        data = tmp_path / "perf.data"
        subprocess.run(["perf", "record", "-F", "997", "-g", "-p", str(sleeper.pid), "-o", str(data), "--",
                        "sleep", "0.5"], capture_output=True, timeout=60, check=True)
    finally:
        sleeper.kill()
        sleeper.wait()
    with pytest.raises(ZprofError, match="no samples"):
        read_profile(data, Path(shutil.which("sleep")), frequency_hz=997, duration_s=0.5)


@pytest.mark.slow
def test_callgrind_counts_the_same_instructions_per_request_every_time(run_zprof, tmp_path):
    per_request = []
    for requests in (60, 120):
        out = tmp_path / f"callgrind-{requests}"
        done = run_zprof("flame", "--project", str(MINIKV), "--engine", "callgrind", "--command", "ZADD",
                         "--requests", str(requests), "--clients", "1", "--pipeline", "1",
                         "--server-args", "--defect hot-loop", "--output", str(out))
        assert done.returncode == 0, done.output
        report = summary(out)
        assert report["unit"] == "instructions"
        first = report["by_self"][0]
        assert first["function"].endswith("spinScore") and first["self_share"] > 0.9
        per_request.append(first["self_weight"] / requests)
        assert (out / "flame.svg").stat().st_size > 0 and (out / "stacks.folded").stat().st_size > 0
    # spinScore runs a fixed loop: its instructions per request do not depend on the run.
    assert per_request[0] == pytest.approx(per_request[1], rel=0.001)


@pytest.mark.slow
def test_a_target_valgrind_cannot_run_points_to_perf(run_zprof, tmp_path):
    done = run_zprof("flame", "--project", str(MINIKV), "--engine", "callgrind", "--command", "GET",
                     "--server-args", "--no-such-flag", "--output", str(tmp_path / "out"))
    assert done.returncode == 1, done.output
    assert "valgrind could not run the target" in done.output
    assert "perf" in done.output and "Traceback" not in done.output


@pytest.mark.slow
def test_a_server_that_breaks_under_load_is_profiled_gently_and_said_so(run_zprof, tmp_path):
    # minikv's garble-under-load passes the probes, then garbles replies once two clients are connected.
    out = tmp_path / "garbled"
    done = run_zprof("flame", "--project", str(MINIKV), "--command", "SET", "--duration", "2",
                     "--server-args", "--fault garble-under-load", "--output", str(out))
    assert done.returncode == 0, done.output
    printed = " ".join(done.stdout.split())
    assert "ended within its warm-up" in printed and "zprof profiled it under 1 client" in printed
    run = json.loads((out / "run.json").read_text())
    assert run["load"].startswith("zprof's driver, 1 client(s), pipeline 1")
    assert [note["code"] for note in run["notes"]].count("flame.gentler-load") == 1
    assert run["summary"]["total"] > 0


@pytest.mark.slow
def test_error_replies_under_load_are_counted_not_fatal(run_zprof, tmp_path):
    # redis-benchmark stops at the first error reply; zprof's driver counts them and goes on.
    out = tmp_path / "errors"
    done = run_zprof("flame", "--project", str(MINIKV), "--command", "SET", "--duration", "2",
                     "--server-args", "--fault sporadic-errors", "--output", str(out))
    assert done.returncode == 0, done.output
    run = json.loads((out / "run.json").read_text())
    assert run["load"].startswith("zprof's driver")
    counted = next(note["values"] for note in run["notes"] if note["code"] == "flame.error-replies")
    assert counted["first_error"] == "ERR planted sporadic error"
    # One request in 200 fails; the share is counted, so it is exact to a request either side.
    assert counted["errors"] == pytest.approx(counted["requests"] / 200, abs=2)


# --- On synthetic profiles -----------------------------------------------------------------------------------

UNKNOWN = Frame("[unknown]", kind="other")
MAIN = Frame("main.main", "/work/app/src/main.zig", 3)
LOOP = Frame("server.loop", "/work/app/src/server.zig", 20)
HANDLE = Frame("commands.get", "/work/app/src/commands.zig", 80)
XEV = Frame("loop.Loop.run", "/root/.cache/zig/p/libxev-0.0.0-86vtc" + "x" * 39 + "/src/loop.zig", 10, "dependency")


def profile_of(*stacks: tuple[list[Frame], int]) -> StackProfile:
    builder = ProfileBuilder()
    for stack, weight in stacks:
        builder.add("app 1", stack, weight)
    return builder.build()


def test_an_unresolved_root_alone_is_no_broken_stack():
    """The frame-pointer chain of a Zig server's main thread ends in an [unknown] frame below main.main: every
    stack starts there and is whole above it, so nothing suggests --call-graph dwarf."""
    summary = summarise(profile_of(([UNKNOWN, MAIN, LOOP, HANDLE], 90), ([UNKNOWN, MAIN, LOOP], 10)))
    assert summary.unknown_share == 0 and summary.notes == []


def test_unresolved_frames_inside_stacks_suggest_dwarf_with_their_share():
    summary = summarise(profile_of(([UNKNOWN, MAIN, LOOP, HANDLE], 60),
                                   ([UNKNOWN, MAIN, UNKNOWN, HANDLE], 25),  # a frame the chain skipped
                                   ([MAIN, LOOP, UNKNOWN], 15)))  # a leaf in code without symbols
    assert summary.unknown_share == pytest.approx(0.40)
    (note,) = summary.notes
    assert note.code == "flame.unknown-frames"
    assert sentence(note).startswith("40% of the samples have [unknown] frames inside their stack")


def test_dependencies_are_drawn_and_listed_with_their_own_colour():
    svg = render_flame_svg(profile_of(([MAIN, XEV, LOOP, HANDLE], 10)), "app")
    assert 'data-name="loop.Loop.run" data-kind="dependency"' in svg
    assert '>dependency</text>' in svg  # in the legend
    colours = re.findall(r'<rect x="[\d.]+" y="34" width="12" height="12" rx="2" fill="([^"]+)"', svg)
    assert len(colours) == len(set(colours)) == 7  # the six kinds and search matches



def test_a_diff_names_the_function_whose_own_code_moved_before_the_callers_it_lifts():
    """A thread's entry frame sits under every stack of its thread: when the kernel's stacks (no user frames)
    give way to the server's, its total share moves more than that of the function whose own code grew."""
    entry = Frame("Thread.entryFn", "/lib/std/Thread.zig", 778, "std")
    spin = Frame("defects.spinScore", "/work/app/src/defects.zig", 130)
    kernel = Frame("do_syscall_64", None, None, "kernel")
    before = profile_of(([kernel], 90), ([entry, LOOP, HANDLE], 10))
    after = profile_of(([entry, LOOP, HANDLE], 40), ([entry, LOOP, HANDLE, spin], 60))
    changes = share_changes(before, after)
    assert changes[0].function == "defects.spinScore" and changes[0].self_delta == pytest.approx(0.60)
    entry_change = next(change for change in changes if change.function == "Thread.entryFn")
    assert entry_change.delta == pytest.approx(0.90) and entry_change.self_delta == 0


def test_the_debug_allocators_stack_capture_is_counted_apart_from_its_other_work():
    """Zoltraak-like Debug builds spend most samples in DebugAllocator's captureStackTrace (process_vm_readv
    under debug.MemoryAccessor): those count, the allocator's own bookkeeping does not."""
    alloc = Frame("heap.debug_allocator.DebugAllocator(.{}).alloc", "/lib/std/heap/debug_allocator.zig", 700, "std")
    capture = Frame("debug.captureStackTrace", "/lib/std/debug.zig", 500, "std")
    read = Frame("debug.MemoryAccessor.read", "/lib/std/debug/MemoryAccessor.zig", 40, "std")
    profile = profile_of(([MAIN, HANDLE, alloc, capture, read], 76), ([MAIN, HANDLE, alloc], 14), ([MAIN, LOOP], 10))
    assert debug_capture_share(profile) == pytest.approx(0.76)
    assert debug_capture_share(profile_of(([MAIN, HANDLE, alloc], 14), ([MAIN, LOOP], 10))) == 0
