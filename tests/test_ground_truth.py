"""zprof allocs against the defects planted in minikv, end to end: the real
compiler, the real shim, the real server under load."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

REQUESTS = "4000"


def sites_of(report: dict, function_suffix: str) -> list[dict]:
    return [site for site in report["sites"] if site["function"].endswith(function_suffix)]


def flags_of(report: dict, kind: str, function_suffix: str) -> list[dict]:
    return [flag for flag in report["flags"] if flag["kind"] == kind and flag["function"].endswith(function_suffix)]


def test_alloc_reply_costs_one_more_allocation_per_hset(allocs_json):
    baseline = allocs_json("HSET", "--requests", REQUESTS)
    defect = allocs_json("HSET", "--requests", REQUESTS, "--server-args", "--defect alloc-reply")
    extra = defect["per_request"]["allocs"] - baseline["per_request"]["allocs"]
    assert extra == pytest.approx(1.0, abs=0.05)
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


def test_leak_retains_64_bytes_per_set_and_is_reported(allocs_json):
    report = allocs_json("SET", "--requests", REQUESTS, "--server-args", "--defect leak")
    assert report["per_request"]["bytes_retained"] == pytest.approx(64, rel=0.1)
    (flag,) = flags_of(report, "growth", "leakyAudit")
    assert flag["value"] == pytest.approx(64, rel=0.1)
    assert report["growth"]["live_bytes"] >= 64 * int(REQUESTS) * 0.9


def test_set_without_the_leak_retains_nothing(allocs_json):
    report = allocs_json("SET", "--requests", REQUESTS)
    assert report["per_request"]["bytes_retained"] < 2
    assert not [flag for flag in report["flags"] if flag["kind"] == "growth"]


def test_json_contract_has_the_documented_fields(allocs_json):
    report = allocs_json("HSET", "--requests", REQUESTS)
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
