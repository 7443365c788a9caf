"""zprof memory: memory over time, leaks and massif, against minikv's ground truth."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import MINIKV
from tests.shim_fakes import layer, snapshot
from zprof.analysis.growth import RawSample, Recording, analyse, massif_peak
from zprof.analysis.symbols import SourceFrame
from zprof.builder.shim import MASSIF, hooks_source
from zprof.collect.massif import alloc_fns, parse_massif
from zprof.collect.shim_counters import SiteCounters
from zprof.errors import ZprofError
from zprof.load.workloads import workload_for
from zprof.model.memory import AFTER_FLUSH, IDLE, LOAD, WARMUP, Phase
from zprof.sessions.memory import plan_phases

PHASE_LABELS = ("idle", "warm-up", "load SET", "after FLUSHALL")
LEAK_BYTES_PER_SET = 64  # defects.audit_record_len
STORED_PER_KEY = 300  # a SET's key, value and hash-map slot, with the map's spare capacity: about 150 B in minikv


@pytest.fixture(scope="session")
def memory_run(run_zprof, tmp_path_factory):
    """`zprof memory` on minikv: (output directory, JSON report, stdout), each distinct run once per session."""
    runs: dict[tuple[str, ...], tuple[Path, dict, str]] = {}

    def run(*args: str) -> tuple[Path, dict, str]:
        if args not in runs:
            base = tmp_path_factory.mktemp("memory")
            done = run_zprof("memory", "--project", str(MINIKV), "--output", str(base / "out"),
                             "--json", str(base / "report.json"), *args)
            assert done.returncode == 0, done.output
            assert "Traceback" not in done.output
            saved = json.loads((base / "report.json").read_text())
            assert saved == json.loads((base / "out" / "run.json").read_text())
            runs[args] = (base / "out", {**saved, **saved.get("analysis", {})}, done.stdout)
        return runs[args]

    return run


def set_run(memory_run, *server_args: str) -> tuple[Path, dict, str]:
    extra = ("--server-args", " ".join(server_args)) if server_args else ()
    return memory_run("--command", "SET", "--duration", "2", "--interval", "0.1", *extra)


@pytest.mark.slow
def test_leak_is_64_bytes_per_set_kept_after_flushall_in_leaky_audit(memory_run):
    _, report, stdout = set_run(memory_run, "--defect", "leak")
    leak = report["leak"]
    assert leak["checked"] and leak["detected"]
    assert leak["bytes_per_request"] == pytest.approx(LEAK_BYTES_PER_SET, rel=0.10)
    top = leak["sites"][0]
    assert top["function"].endswith("leakyAudit"), leak["sites"]
    assert top["bytes_per_request"] == pytest.approx(LEAK_BYTES_PER_SET, rel=0.10)
    # The growth under load is the leak, and the thousand keys the load adds (their share per request is larger
    # on a busy machine, where the phase makes fewer requests): at most STORED_PER_KEY bytes each.
    load = next(phase for phase in report["growth"]["phases"] if phase["phase"] == "load SET")
    stored = STORED_PER_KEY * load["new_keys"] / load["requests"]
    assert 0.9 * LEAK_BYTES_PER_SET <= report["growth"]["bytes_per_request"] <= 1.1 * LEAK_BYTES_PER_SET + stored
    assert "Leak" in stdout and "leakyAudit" in stdout


@pytest.mark.slow
def test_set_without_the_defect_is_given_back_by_flushall_and_is_no_leak(memory_run):
    _, report, stdout = set_run(memory_run)
    growth, leak = report["growth"], report["leak"]
    assert leak["checked"] and not leak["detected"]
    assert leak["bytes_per_request"] == 0 and leak["sites"] == []
    stored = growth["load_end_bytes"] - growth["idle_bytes"]
    assert stored > 0 and growth["given_back_bytes"] >= 0.9 * stored
    assert abs(growth["after_flush_bytes"] - growth["idle_bytes"]) <= 0.1 * stored
    assert {v["kind"] for v in report["verdicts"]} & {"given-back"}
    assert "leak" not in {v["kind"] for v in report["verdicts"]}
    assert "No leak" in stdout


@pytest.mark.slow
@pytest.mark.slow
def test_a_value_made_large_by_an_inline_array_is_named_with_what_boxing_it_saves(memory_run):
    """minikv built with -Dfat-value=true: keyspace.Value gains a variant holding [4096]u8 inline, used by no
    command. The memory per key names the type, its size and the field; the saving boxing it would bring is
    within 10% of what the option costs per new key, measured against the build without it."""
    _, fat, stdout = memory_run("--command", "SET", "--duration", "2", "--build-arg", "-Dfat-value=true")
    _, plain, _ = set_run(memory_run)
    entry = fat["entries"][0]
    assert entry["container"].startswith("hash_map.HashMapUnmanaged([]const u8,keyspace.Value,")
    assert entry["element"] == "keyspace.Value" and entry["element_bytes"] > 4096
    assert entry["cause"][0].startswith("sketch: keyspace.Sketch")
    assert entry["cause"][-1].startswith("registers: [4096]u8")
    measured = (next(p for p in fat["growth"]["phases"] if p["phase"] == "load SET")["bytes_per_new_key"]
                - next(p for p in plain["growth"]["phases"] if p["phase"] == "load SET")["bytes_per_new_key"])
    assert entry["saving_per_key"] == pytest.approx(measured, rel=0.10), (entry, measured)
    assert "keyspace.Value of 4,104 B" in " ".join(stdout.split()) and "registers: [4096]u8" in stdout
    # Without the option Value is 48 B; its largest variant (zset, 40 B) is all boxing could take off.
    unboxed = plain["entries"][0]
    assert unboxed["element"] == "keyspace.Value" and unboxed["element_bytes"] < 64
    assert not any("registers" in part for part in unboxed["cause"])
    assert (unboxed["saving_per_key"] or 0) < entry["saving_per_key"] / 100


def test_the_json_has_the_time_series_by_phase(memory_run):
    _, report, _ = set_run(memory_run, "--defect", "leak")
    samples = report["samples"]
    assert len(samples) >= 20
    assert {"time", "live_bytes", "rss_bytes", "phase"} <= samples[0].keys()
    assert [s["time"] for s in samples] == sorted(s["time"] for s in samples)
    assert list(dict.fromkeys(s["phase"] for s in samples)) == list(PHASE_LABELS)
    assert all(s["rss_bytes"] and s["rss_bytes"] >= s["anon_rss_bytes"] for s in samples)
    phases = {p["label"]: p for p in report["phases"]}
    assert phases["load SET"]["requests"] > 0 and phases["idle"]["requests"] == 0


@pytest.mark.slow
def test_the_saved_run_prints_again_as_it_printed(memory_run, replays_as_printed):
    out, _, stdout = set_run(memory_run, "--defect", "leak")
    replays_as_printed(out, stdout)


@pytest.mark.slow
def test_the_pictures_exist_and_name_the_phases(memory_run):
    out, _, stdout = set_run(memory_run, "--defect", "leak")
    svg, png = out / "memory.svg", out / "memory.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "</svg>" in text
    for label in PHASE_LABELS:
        assert f">{label}<" in text, label
    assert "memory.svg" in stdout


@pytest.mark.slow
def test_massif_peak_names_scratch_copy_with_its_two_mib(memory_run):
    out, report, stdout = memory_run("--engine", "massif", "--command", "LPUSH", "--requests", "30",
                                     "--server-args", "--defect large-alloc")
    peak = report["peak"]
    top = peak["sites"][0]
    assert top["function"].endswith("scratchCopy"), peak["sites"][:3]
    assert top["bytes"] >= 2 * 1024 * 1024
    assert peak["heap_bytes"] >= top["bytes"]
    assert (out / "massif.out").stat().st_size > 0
    assert (out / "memory.svg").stat().st_size > 0 and (out / "memory.png").stat().st_size > 0
    assert "scratchCopy" in stdout


@pytest.mark.slow
def test_a_target_that_dies_under_valgrind_points_to_the_shim(run_zprof, tmp_path):
    done = run_zprof("memory", "--project", str(MINIKV), "--engine", "massif", "--command", "GET",
                     "--requests", "10", "--server-args", "--no-such-flag", "--output", str(tmp_path / "out"))
    assert done.returncode == 1, done.output
    assert "valgrind could not run the target" in done.output
    assert "==" in done.output  # valgrind's own first lines
    assert "zprof memory without --engine" in done.output and "Traceback" not in done.output


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_a_server_zprof_did_not_build_is_named_as_such(run_zprof, tmp_path):
    # A plain redis-server never writes to the shim's counter file.
    start = "sh -c 'exec redis-server --port \"$1\" --save \"\" --appendonly no' {binary} {port}"
    done = run_zprof("memory", "--project", str(MINIKV), "--command", "SET", "--duration", "1",
                     "--start-command", start, "--output", str(tmp_path / "out"))
    assert done.returncode == 2, done.output
    assert "not built by zprof" in done.output and "Traceback" not in done.output


@pytest.mark.slow
def test_a_server_that_dies_mid_run_still_gets_its_picture(run_zprof, tmp_path):
    # The wrapper kills the real server during the load phase.
    start = ("sh -c '\"$0\" --port \"$1\" & pid=$!; sleep 2.5; echo zprof-test-crash; kill -9 $pid; wait' "
             "{binary} {port}")
    done = run_zprof("memory", "--project", str(MINIKV), "--command", "SET", "--duration", "3",
                     "--start-command", start, "--output", str(tmp_path / "out"), "--json", str(tmp_path / "r.json"))
    assert done.returncode == 1, done.output
    assert "crashed during load SET" in done.output and "zprof-test-crash" in done.output
    assert "Traceback" not in done.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert not report["complete"] and not report["analysis"]["leak"]["checked"]
    assert (tmp_path / "out" / "memory.svg").stat().st_size > 0


def test_valgrind_missing_is_bad_input(run_zprof, tmp_path):
    done = run_zprof("memory", "--project", str(MINIKV), "--engine", "massif", "--output", str(tmp_path / "out"),
                     env={"PATH": str(tmp_path)})
    assert done.returncode == 2, done.output
    assert "valgrind is not installed" in done.output and "Traceback" not in done.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("interval", "duration", "phrase"), [("0.005", "5", "under 10 ms"),
                                                               ("3", "2", "longer than --duration"),
                                                               ("0.01", "3600", "more than 50,000 samples")])
def test_intervals_out_of_range_are_refused(run_zprof, tmp_path, interval, duration, phrase):
    done = run_zprof("memory", "--project", str(MINIKV), "--interval", interval, "--duration", duration,
                     "--output", str(tmp_path / "out"))
    assert done.returncode == 2, done.output
    assert "--interval" in done.output and phrase in done.output and "Traceback" not in done.output
    assert not (tmp_path / "out").exists()


# Units: the analysis on made-up counters, and massif's format -----------------------
class FakeSymbolizer:
    """Layer 0 is the GPA, layer 1 the page allocator; site frames name themselves."""

    def symbol(self, address: int) -> str:
        return {1: "heap.debug_allocator.DebugAllocator(.{}).alloc", 2: "heap.PageAllocator.alloc"}[address]

    def locate(self, addresses):
        return {address: (SourceFrame(f"app.f{address}", "/src/app.zig", address),) for address in addresses}


def _site(frame: int, layer: int = 0, parent: int | None = None) -> SiteCounters:
    return SiteCounters(layer=layer, parent_layer=parent, frames=(frame + 1, frame + 1), allocs=0, alloc_bytes=0,
                        frees=0, free_bytes=0, min_size=0, max_size=0)




def synthetic_recording(leak_per_request: float, stored_per_request: float) -> Recording:
    """1,000 requests per second for 4 s of load: one site leaks, one stores data that FLUSHALL frees,
    one fills a cache once, and the GPA's pages (a backing allocator) must not count."""
    sites = {0: _site(100), 1: _site(200), 2: _site(300), 3: _site(400, layer=1, parent=0)}
    samples, phases, requests = [], [], 0
    plan = [(IDLE, IDLE, 1.0, 0), (WARMUP, WARMUP, 1.0, 1000), ("load SET", LOAD, 4.0, 1000),
            (AFTER_FLUSH, AFTER_FLUSH, 1.0, 0)]
    clock, stored = 0.0, 0.0
    for label, kind, seconds, rate in plan:
        start = clock
        if kind == AFTER_FLUSH:
            stored = 0.0
        for _ in range(int(seconds * 10)):
            clock += 0.1
            requests += int(rate * 0.1)
            stored += stored_per_request * rate * 0.1
            held = {0: int(leak_per_request * requests), 1: int(stored), 2: 50_000 if requests else 0,
                    3: 1 << 20}
            samples.append(RawSample(clock, label, requests, held, requests * 3, (0, 0), 10 << 20, 5 << 20))
        phases.append(Phase(label, kind, "SET" if kind == LOAD else None, start, clock,
                            int(rate * seconds)))
    final = snapshot([layer(1), layer(2)], sites)
    return Recording(samples, phases, final)


def test_a_steady_leak_is_told_from_stored_data_and_a_cache_filled_once():
    analysis = analyse(synthetic_recording(leak_per_request=64, stored_per_request=30), FakeSymbolizer())
    assert analysis.leak.detected
    assert analysis.leak.bytes_per_request == pytest.approx(64, rel=0.01)
    assert [site.function for site in analysis.leak.sites] == ["app.f100"]
    # The cache (site 2) stays after FLUSHALL but is not part of the leak.
    assert analysis.leak.one_time_bytes == pytest.approx(50_000, abs=100)
    assert analysis.growth.bytes_per_request == pytest.approx(64 + 30, rel=0.01)
    # The page allocator's megabyte backs the GPA: never counted as live.
    assert max(s.live_bytes for s in analysis.samples) < 1 << 20
    assert {v.kind for v in analysis.verdicts} >= {"leak", "given-back"}


def test_no_leak_when_flushall_gives_the_data_back():
    analysis = analyse(synthetic_recording(leak_per_request=0, stored_per_request=30), FakeSymbolizer())
    assert not analysis.leak.detected and analysis.leak.bytes_per_request == 0 and analysis.leak.sites == []
    assert analysis.growth.given_back_bytes == pytest.approx(30 * 5000, rel=0.01)
    assert "no-leak" in {v.kind for v in analysis.verdicts} or "once" in {v.kind for v in analysis.verdicts}


def test_a_flushall_error_means_no_leak_verdict():
    recording = synthetic_recording(leak_per_request=64, stored_per_request=0)
    recording.flushall_error = "ERR unknown command 'FLUSHALL'"
    analysis = analyse(recording, FakeSymbolizer())
    assert not analysis.leak.checked and not analysis.leak.detected
    assert any(v.kind == "unchecked" and v.values["flushall_error"] for v in analysis.verdicts)


MASSIF_OUT = """\
desc: --time-unit=ms
cmd: /cache/minikv --port 1
time_unit: ms
#-----------
snapshot=0
#-----------
time=0
mem_heap_B=0
mem_heap_extra_B=0
mem_stacks_B=0
heap_tree=empty
#-----------
snapshot=1
#-----------
time=12
mem_heap_B=2162688
mem_heap_extra_B=0
mem_stacks_B=0
heap_tree=peak
n3: 2162688 (heap allocation functions) malloc/new/new[], --alloc-fns, etc.
 n1: 2097152 0x10474E7: rawAlloc (/z/lib/std/mem/Allocator.zig:130)
  n1: 2097152 0x10474E7: defects.scratchCopy (/src/defects.zig:93)
   n0: 2097152 0x1047471: commands.lpush (/src/commands.zig:327)
 n2: 65000 0x10458F3: array_list.Aligned(u8,null).ensureTotalCapacityPrecise (/z/lib/std/array_list.zig:1231)
  n0: 40000 0x101F288: init (/src/server.zig:113)
  n0: 25000 0x101F300: keyspace.put (/src/keyspace.zig:40)
 n0: 536 in 8 places, all below massif's threshold (0.50%)
#-----------
snapshot=2
#-----------
time=15
mem_heap_B=65536
mem_heap_extra_B=0
mem_stacks_B=0
heap_tree=empty
"""


def test_massif_output_is_read_tree_and_all():
    output = parse_massif(MASSIF_OUT)
    assert output.time_unit == "ms" and [s.heap_bytes for s in output.snapshots] == [0, 2162688, 65536]
    peak = output.peak
    assert peak is not None and peak.index == 1 and peak.tree is not None
    first = peak.tree.children[0]
    assert (first.function, first.line, first.address) == ("rawAlloc", 130, 0x10474E7)
    generic = peak.tree.children[1]
    assert generic.function == "array_list.Aligned(u8,null).ensureTotalCapacityPrecise"
    assert generic.file == "/z/lib/std/array_list.zig" and len(generic.children) == 2
    assert peak.tree.children[2].below_threshold == 8


def test_massif_peak_is_charged_to_the_first_frame_outside_std():
    peak = massif_peak(parse_massif(MASSIF_OUT))
    assert peak is not None
    by_function = {site.function: site for site in peak.sites}
    assert by_function["defects.scratchCopy"].bytes == 2097152
    assert by_function["defects.scratchCopy"].inlined == ["rawAlloc (std/mem/Allocator.zig:130)"]
    # A std container with two callers is two call sites.
    assert by_function["init"].bytes == 40000 and by_function["keyspace.put"].bytes == 25000
    assert peak.sites[0].function == "defects.scratchCopy"
    assert peak.timeline == [(0.0, 0), (12.0, 2162688), (15.0, 65536)]


def test_massif_output_without_snapshots_is_an_error():
    with pytest.raises(ZprofError, match="no snapshots"):
        parse_massif("desc: x\ncmd: y\ntime_unit: ms\n")


def test_alloc_fns_are_the_hooks_and_the_allocator_api():
    names = alloc_fns(["zprof_hooks.alloc", "zprof_hooks.attachedRegion", "mem.Allocator.free__anon_1",
                       "heap.arena_allocator.ArenaAllocator.alloc", "defects.scratchCopy"])
    assert names == ["heap.arena_allocator.ArenaAllocator.alloc", "mem.Allocator.free__anon_1", "zprof_hooks.alloc"]


def test_phases_plan_one_load_phase_per_command_and_room_for_samples():
    mixed = [workload_for(name, None) for name in ("SET", "GET", "LPUSH")]
    steps = plan_phases(mixed, True, duration=6, interval=0.1)
    assert [s.label for s in steps] == ["idle", "warm-up", "load SET", "load GET", "load LPUSH", "after FLUSHALL"]
    assert sum(s.seconds for s in steps if s.kind == LOAD) == pytest.approx(6)
    slow = plan_phases(mixed[:1], False, duration=4, interval=4)
    assert all(s.seconds >= 8 for s in slow if s.kind != LOAD)


@pytest.mark.slow
def test_the_massif_variant_of_the_hooks_compiles_and_forwards_every_call(zig_exe, tmp_path):
    # Outside valgrind the client requests are no-ops: every call must still reach the allocator.
    source = hooks_source(MASSIF).decode() + """
test "massif hooks forward and keep the caller stack balanced" {
    var arena: std.heap.ArenaAllocator = .init(std.heap.page_allocator);
    defer arena.deinit();
    for ([_]Allocator{ arena.allocator(), std.testing.allocator }) |a| {
        const memory = alloc(a, 100, .@"8", 0).?;
        const len: usize = if (resize(a, memory[0..100], .@"8", 50, 0)) 50 else 100;
        const moved = remap(a, memory[0..len], .@"8", 40, 0);
        free(a, if (moved) |m| m[0..40] else memory[0..len], .@"8", 0);
        try std.testing.expectEqual(Massif.Caller.program, Massif.caller);
    }
}
"""
    (tmp_path / "hooks.zig").write_text(source)
    done = subprocess.run([zig_exe, "test", "hooks.zig", "--cache-dir", str(tmp_path / "cache")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    assert "massif hooks forward and keep the caller stack balanced...OK" in done.stderr
