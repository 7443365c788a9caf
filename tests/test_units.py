"""Unit tests of the pure parts: RESP, workloads, versions, build.zig.zon, the allocation maths."""

from __future__ import annotations

import random

import pytest

from zprof.analysis.allocations import Window, _size_label, analyse, layer_name
from zprof.analysis.symbols import SourceFrame
from zprof.collect.shim_counters import LayerCounters, LossCounters, ShimSnapshot, SiteCounters
from zprof.errors import ZprofError
from zprof.load.driver import Workload
from zprof.load.resp import ErrorReply, encode, parse
from zprof.load.workloads import workload_for
from zprof.target.project import load_project
from zprof.target.toolchain import Version


def test_resp_round_trip_and_partial_input():
    assert encode([b"SET", b"k", b"v"]) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"
    buffer = b"+OK\r\n:42\r\n$3\r\nabc\r\n*2\r\n$1\r\na\r\n$-1\r\n-ERR nope\r\n"
    replies, position = [], 0
    while (parsed := parse(buffer, position)) is not None:
        reply, position = parsed
        replies.append(reply)
    assert replies == ["OK", 42, b"abc", [b"a", None], ErrorReply("ERR nope")]
    assert parse(b"$10\r\nabc", 0) is None
    assert parse(b"*2\r\n:1\r\n", 0) is None


def test_workload_placeholders_follow_the_keyspace():
    workload = Workload.from_template("HSET h f:__rand_int__ v", keyspace=10)
    request = workload.expand(random.Random(3))
    assert request.startswith(b"*4\r\n$4\r\nHSET\r\n")
    number = int(request.split(b"f:")[1].split(b"\r\n")[0])
    assert 0 <= number < 10


def test_workload_defaults_and_their_errors():
    assert workload_for("hset", None).command == "HSET"
    with pytest.raises(ZprofError, match="no default arguments"):
        workload_for("XADD", None)
    with pytest.raises(ZprofError, match="starts with GET"):
        workload_for("SET", "GET key")


def test_zig_versions_order_dev_builds_before_releases():
    assert Version.parse("0.15.0-dev.1234+abc") < Version.parse("0.15.0") < Version.parse("0.15.2")
    assert Version.parse("0.14.1") < Version.parse("0.15.0")
    with pytest.raises(ZprofError):
        Version.parse("banana")


def test_build_zig_zon_is_read_without_writing(tmp_path):
    (tmp_path / "build.zig").write_text("")
    (tmp_path / "build.zig.zon").write_text(
        '.{ .name = .zoltraak, .version = "0.1.0", .minimum_zig_version = "0.15.0",\n'
        '  .dependencies = .{ .sailor = .{ .url = "https://example.invalid/s.tar.gz", .hash = "sailor-1" },\n'
        '                     .local = .{ .path = "../local" } },\n'
        '  .paths = .{ "build.zig", "src" } }\n'
    )
    project = load_project(tmp_path)
    assert project.name == "zoltraak"
    assert project.minimum_zig_version == "0.15.0"
    assert [(d.name, d.url, d.hash, d.path) for d in project.dependencies] == [
        ("sailor", "https://example.invalid/s.tar.gz", "sailor-1", None),
        ("local", None, None, "../local"),
    ]


def test_layer_names_come_from_allocator_symbols():
    assert layer_name("heap.arena_allocator.ArenaAllocator.alloc") == "arena"
    assert layer_name("heap.debug_allocator.DebugAllocator(.{ .safety = false }).alloc") == "debug/GPA"
    assert layer_name("heap.PageAllocator.alloc") == "page"
    assert layer_name("heap.c_allocator_impl.alloc") == "c"
    assert layer_name("pool.SlabPool.alloc") == "pool.SlabPool"


def test_size_class_labels():
    assert _size_label(1) == "1 B"
    assert _size_label(6) == "32-63 B"
    assert _size_label(22) == "2.0 MiB-4.0 MiB"


# --- The allocation maths on hand-made snapshots --------------------------------

GPA, ARENA_FN, PAGE = 0x1000, 0x2000, 0x3000
SYMBOLS = {GPA: "heap.debug_allocator.DebugAllocator(.{}).alloc", ARENA_FN: "heap.arena_allocator.ArenaAllocator.alloc",
           PAGE: "heap.PageAllocator.alloc"}


class FakeSymbolizer:
    """Stands in for DWARF: each frame address names one function in app.zig."""

    def symbol(self, address: int) -> str | None:
        return SYMBOLS.get(address)

    def locate(self, addresses):
        return {a: (SourceFrame(f"app.fn{a:x}", "/src/app.zig", a % 100),) for a in addresses}


def layer(fn: int, allocs: int = 0, alloc_bytes: int = 0, frees: int = 0, live: int = 0, nested: int = 0):
    return LayerCounters(fn, allocs, nested, alloc_bytes, 0, frees, 0, 0, live, live, 0, 0, 0, 0, 0)


def snapshot(layers, sites, size_classes=None) -> ShimSnapshot:
    classes = [0] * 64
    for index, count in (size_classes or {}).items():
        classes[index] = count
    return ShimSnapshot(1, layers, sites, classes, LossCounters(0, 0, 0, 0))


def site(layer_index: int, frame: int, allocs: int, size: int, frees: int = 0, parent=None):
    return SiteCounters(layer_index, parent, (0, frame + 1), allocs, allocs * size, frees, frees * size, size, size)


def test_per_request_figures_subtract_the_idle_rate_and_split_kept_from_temporary():
    before = snapshot([layer(GPA), layer(ARENA_FN)], {})
    after = snapshot(
        [layer(GPA, allocs=300, alloc_bytes=300 * 16 + 100 * 64, frees=200, live=100 * 64),
         layer(ARENA_FN, allocs=100)],
        {1: site(0, 0x501, 200, 16, frees=200), 2: site(0, 0x502, 100, 64), 3: site(1, 0x503, 100, 48)},
        {5: 200, 7: 100, 6: 100},
    )
    # The idle server allocated 10 small blocks over a window as long as the run.
    idle_before = snapshot([layer(GPA), layer(ARENA_FN)], {1: site(0, 0x501, 0, 16)})
    idle_after = snapshot([layer(GPA, allocs=10, alloc_bytes=160, frees=10), layer(ARENA_FN)],
                          {1: site(0, 0x501, 10, 16, frees=10)})
    window = Window(before, after, seconds=2.0, idle_before=idle_before, idle_after=idle_after, idle_seconds=2.0)
    result = analyse(window, requests=100, symbolizer=FakeSymbolizer())  # type: ignore[arg-type]

    assert result.per_request.allocs == pytest.approx(3.9)  # (300 - 10 + 100) / 100
    assert result.per_request.bytes_retained == pytest.approx(64)
    gpa = next(usage for usage in result.by_layer if usage.layer == "debug/GPA")
    assert gpa.allocs_per_request == pytest.approx(2.9)
    kinds = {(flag.kind, flag.function) for flag in result.flags}
    assert ("growth", "app.fn502") in kinds
    assert ("small", "app.fn501") in kinds
    # Arena allocations are request-scoped: never flagged small, never counted as retained.
    assert ("small", "app.fn503") not in kinds
    arena_site = next(s for s in result.sites if s.function == "app.fn503")
    assert arena_site.layer == "arena" and arena_site.retained_bytes_per_request == 0


def test_a_window_with_nothing_in_it_reports_zeros():
    empty = snapshot([layer(GPA)], {})
    result = analyse(Window(empty, empty, seconds=1.0), requests=10, symbolizer=FakeSymbolizer())  # type: ignore[arg-type]
    assert result.per_request.allocs == 0
    assert result.sites == [] and result.flags == []
