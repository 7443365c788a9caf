"""zprof allocs against the defects planted in minikv, end to end: the real
compiler, the real shim, the real server under load."""

from __future__ import annotations

import json

import pytest

from tests.conftest import MINIKV, flat_allocs
from zprof.units import human_bytes

pytestmark = pytest.mark.slow

REQUESTS = "4000"


def sites_of(report: dict, function_suffix: str) -> list[dict]:
    return [site for site in report["sites"] if site["function"].endswith(function_suffix)]


def flags_of(report: dict, kind: str, function_suffix: str) -> list[dict]:
    return [flag for flag in report["flags"] if flag["kind"] == kind and flag["function"].endswith(function_suffix)]


@pytest.mark.smoke
@pytest.mark.parametrize("clients", ["4", "16"])
def test_alloc_reply_costs_one_more_allocation_per_hset(allocs_json, clients):
    baseline = allocs_json("HSET", "--requests", REQUESTS, "--clients", clients)
    defect = allocs_json("HSET", "--requests", REQUESTS, "--clients", clients, "--server-args", "--defect alloc-reply")
    extra = defect["per_request"]["allocs"] - baseline["per_request"]["allocs"]
    assert extra == pytest.approx(1.0, abs=0.02)
    program_sites = [s for s in sites_of(defect, "formatReplyAlloc") if s["nested_in"] is None]
    assert program_sites, defect["sites"]
    assert program_sites[0]["allocs_per_request"] == pytest.approx(1.0, abs=0.05)
    assert program_sites[0]["layer"] == "debug/GPA"
    assert program_sites[0]["file"].endswith("examples/minikv/src/defects.zig")
    assert not sites_of(baseline, "formatReplyAlloc")


def test_small_allocs_are_flagged_in_split_member_tags(allocs_json):
    report = allocs_json("SADD", "--requests", REQUESTS, "--server-args", "--defect small-allocs")
    (flag,) = flags_of(report, "small", "splitMemberTags")
    assert flag["value"] >= 8
    site = next(s for s in sites_of(report, "splitMemberTags") if s["nested_in"] is None)
    assert site["allocs_per_request"] >= 8
    assert site["bytes_per_request"] / site["allocs_per_request"] < 64


def test_large_alloc_is_flagged_in_scratch_copy(allocs_json):
    report = allocs_json("LPUSH", "--requests", "1000", "--server-args", "--defect large-alloc")
    assert flags_of(report, "large", "scratchCopy")
    site = next(s for s in sites_of(report, "scratchCopy") if s["nested_in"] is None)
    assert site["bytes_per_request"] == pytest.approx(2 * 1024 * 1024, rel=0.01)
    assert report["large_allocs_per_request"] >= 0.99


def retained_at(report: dict, function_suffix: str) -> float:
    return sum(site["retained_bytes_per_request"] for site in sites_of(report, function_suffix))


def test_leak_retains_64_bytes_per_set_and_is_reported(allocs_json):
    report = allocs_json("SET", "--requests", REQUESTS, "--server-args", "--defect leak")
    assert retained_at(report, "leakyAudit") == pytest.approx(64, rel=0.1)
    (flag,) = flags_of(report, "growth", "leakyAudit")
    assert flag["value"] == pytest.approx(64, rel=0.1)
    assert report["kept_bytes_per_request"] == pytest.approx(64, rel=0.1)
    assert report["growth"]["live_bytes"] >= 64 * int(REQUESTS) * 0.9


def test_set_stores_its_new_keys_and_flushall_gives_them_back(allocs_json):
    report = allocs_json("SET", "--requests", REQUESTS)
    # The measured run writes keys the warm-up never made: each new key costs memory...
    assert report["keys"]["after"] - report["keys"]["before"] > 900
    assert report["per_request"]["bytes_retained"] > 5
    assert 16 + 3 <= report["retained_bytes_per_new_key"] < 1024
    # ...which is stored data, not growth: FLUSHALL gives all of it back.
    assert abs(report["kept_bytes_per_request"]) < 1
    assert not [flag for flag in report["flags"] if flag["kind"] == "growth"]


@pytest.mark.parametrize("clients", ["1", "16"])
def test_a_fixed_buffer_scratch_reset_per_request_retains_nothing(allocs_json, clients):
    """A FixedBufferAllocator rewound after each request never frees a block: the shim sees it
    hand out the same addresses again, and zprof counts those blocks as released en bloc."""
    report = allocs_json("GET", "--requests", REQUESTS, "--clients", clients, "--server-args", "--scratch fba")
    (fixed,) = [layer for layer in report["by_layer"] if layer["layer"] == "fixed-buffer"]
    assert fixed["allocs_per_request"] == pytest.approx(1.0) and fixed["releases_en_bloc"]
    assert abs(report["per_request"]["bytes_retained"]) < 0.5
    assert not [flag for flag in report["flags"] if flag["kind"] == "growth"]
    stored = allocs_json("SET", "--requests", REQUESTS, "--clients", clients, "--server-args", "--scratch fba")
    assert retained_at(stored, "parseMultibulk") == 0
    assert not [flag for flag in stored["flags"] if flag["kind"] == "growth"]


def test_a_stack_fallback_scratch_is_released_en_bloc(allocs_json):
    report = allocs_json("GET", "--requests", REQUESTS, "--server-args", "--scratch stack-fallback")
    (layer,) = [layer for layer in report["by_layer"] if layer["layer"] == "stack-fallback"]
    assert layer["releases_en_bloc"]
    assert abs(report["per_request"]["bytes_retained"]) < 0.5


@pytest.mark.parametrize("clients", ["1", "16"])
def test_a_buffer_growing_in_place_is_retained_where_it_grows(allocs_json, clients):
    report = allocs_json("SET", "--requests", REQUESTS, "--clients", clients, "--server-args", "--defect grow-log")
    assert retained_at(report, "appendAuditLog") == pytest.approx(64, rel=0.1)
    (flag,) = flags_of(report, "growth", "appendAuditLog")
    assert flag["value"] == pytest.approx(64, rel=0.1)
    # It grows by remapping one block, not by allocating new ones.
    assert report["per_request"]["remaps"] >= 0.9


def test_an_arena_over_the_gpa_over_pages_is_counted_once(allocs_json):
    """No warm-up, 16 clients: the connections' arenas take their first blocks from the GPA during
    the measured run, and the defect makes the GPA map a page for every HSET. What the program holds
    is then exactly what the GPA holds: its blocks count, the pages under them do not."""
    report = allocs_json("HSET", "--requests", REQUESTS, "--clients", "16", "--warmup", "0",
                         "--server-args", "--defect alloc-reply")
    layers = {layer["layer"]: layer for layer in report["by_layer"]}
    assert layers["page"]["nested_allocs_per_request"] > 0.5  # the page layer is in play
    assert [site for site in report["sites"] if site["nested_in"] == "arena" and site["layer"] == "debug/GPA"]
    retained = report["per_request"]["bytes_retained"] * report["requests"]
    assert retained == pytest.approx(layers["debug/GPA"]["live_bytes_growth"], abs=1)
    assert report["growth"]["live_bytes"] == pytest.approx(retained, abs=1)


@pytest.mark.parametrize(("limits", "table", "message"), [
    ("sites=8", "sites", "allocations ({size}) found the call-site table (8 sites) full"),
    ("live=64", "live", "blocks ({size}) found the live-block table (64 blocks) full"),
    ("layers=1", "layers", "allocator calls ({size} asked for) went to allocators beyond the shim's layer table"),
])
def test_tables_forced_small_say_exactly_what_they_lost(allocs_json, run_zprof, tmp_path, limits, table, message):
    full = allocs_json("HSET", "--requests", REQUESTS)
    path = tmp_path / "small.json"
    done = run_zprof("allocs", "HSET", "--project", str(MINIKV), "--requests", REQUESTS, "--json", str(path),
                     "--output", str(tmp_path / "run"), env={"ZPROF_SHIM_LIMITS": limits})
    assert done.returncode == 0, done.output
    small = flat_allocs(json.loads(path.read_text()))
    loss = next(loss for loss in small["losses"] if loss["table"] == table)
    assert loss["count"] > 0 and loss["bytes"] > 0
    flat = " ".join(done.stdout.split())
    assert f"{loss['count']:,} " + message.format(size=human_bytes(loss["bytes"])) in flat, flat
    assert "detail lost" not in flat
    if table == "layers":
        # Calls to a layer beyond the table are not counted: the totals are lower bounds, and say so.
        assert small["per_request"]["allocs"] < full["per_request"]["allocs"]
        assert "every figure above is a lower bound" in flat
        return
    # The totals come from the layer counters, which never overflow.
    for key in ("allocs", "frees", "bytes_allocated", "nested_allocs"):
        assert small["per_request"][key] == full["per_request"][key], key
    if table == "sites":
        # Every allocation is in a call site or counted as dropped, none twice.
        in_sites = sum(site["allocs_per_request"] for site in small["sites"]) * small["requests"]
        every = (small["per_request"]["allocs"] + small["per_request"]["nested_allocs"]) * small["requests"]
        assert in_sites + loss["count"] == pytest.approx(every, abs=0.5)


def test_json_contract_has_the_documented_fields(allocs_json):
    report = allocs_json("HSET", "--requests", REQUESTS)
    assert report["schema"] == "zprof.allocs/3"
    assert report["command"] == "HSET"
    assert report["requests"] == int(REQUESTS)
    for key in ("allocs", "frees", "resizes", "remaps", "bytes_allocated", "bytes_retained"):
        assert key in report["per_request"]
    assert {"layer", "allocs_per_request"} <= report["by_layer"][0].keys()
    assert {layer["layer"] for layer in report["by_layer"]} >= {"debug/GPA", "arena"}
    assert report["size_classes"]
    site_fields = {"function", "file", "line", "inlined", "allocs_per_request", "bytes_per_request", "layer"}
    for site in report["sites"]:
        assert site_fields <= site.keys()
    # Request parsing uses the per-connection arena, which the GPA alone would never show.
    arena = next(layer for layer in report["by_layer"] if layer["layer"] == "arena")
    assert arena["allocs_per_request"] >= 1


def test_the_saved_run_prints_again_as_it_printed(run_zprof, replays_as_printed, tmp_path):
    done = run_zprof("allocs", "SADD", "--project", str(MINIKV), "--requests", "2000", "--server-args",
                     "--defect small-allocs", "--output", str(tmp_path / "run"))
    assert done.returncode == 0, done.output
    replays_as_printed(tmp_path / "run", done.stdout)
