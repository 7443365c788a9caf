"""Unit tests of the pure parts: RESP, workloads, versions, build.zig.zon, the allocation maths."""

from __future__ import annotations

import random

import pytest

from tests.shim_fakes import ARENA_FN, FIXED, GPA, PAGE, FakeSymbolizer, layer, site, snapshot
from zprof.analysis.allocations import RetainedRule, Window, analyse, layer_name
from zprof.builder.project import load_project
from zprof.builder.toolchain import Version
from zprof.errors import ZprofError
from zprof.load.driver import Workload
from zprof.load.resp import ErrorReply, encode, parse
from zprof.load.workloads import workload_for
from zprof.units import size_class_label


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
    assert size_class_label(1, 1) == "1 B"
    assert size_class_label(32, 63) == "32-63 B"
    assert size_class_label(2 << 20, (4 << 20) - 1) == "2.0 MiB-4.0 MiB"


# --- The allocation maths on hand-made snapshots --------------------------------

def test_per_request_figures_subtract_the_idle_rate_and_split_kept_from_temporary():
    before = snapshot([layer(GPA), layer(ARENA_FN)], {}, time=10.0)
    after = snapshot(
        [layer(GPA, allocs=300, alloc_bytes=300 * 16 + 100 * 64, frees=200, live=100 * 64),
         layer(ARENA_FN, allocs=100)],
        {1: site(0, 0x501, 200, 16, frees=200), 2: site(0, 0x502, 100, 64), 3: site(1, 0x503, 100, 48)},
        {5: 200, 7: 100, 6: 100}, time=12.0,
    )
    # The idle server allocated 10 small blocks over a window as long as the run.
    idle_before = snapshot([layer(GPA), layer(ARENA_FN)], {1: site(0, 0x501, 0, 16)}, time=7.0)
    idle_after = snapshot([layer(GPA, allocs=10, alloc_bytes=160, frees=10), layer(ARENA_FN)],
                          {1: site(0, 0x501, 10, 16, frees=10)}, time=9.0)
    window = Window(before, after, idle_before=idle_before, idle_after=idle_after)
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
    result = analyse(Window(empty, empty), requests=10, symbolizer=FakeSymbolizer())  # type: ignore[arg-type]
    assert result.per_request.allocs == 0
    assert result.sites == [] and result.flags == []


def test_retained_bytes_count_once_whatever_the_allocators_shape():
    """arena -> GPA -> page, and a FixedBufferAllocator seen handing out addresses again."""
    layers = [layer(GPA), layer(ARENA_FN), layer(PAGE), layer(FIXED, reissues=5)]
    rule = RetainedRule.of(snapshot(layers, {}), ["debug/GPA", "arena", "page", "fixed-buffer"])
    assert rule.en_bloc == {1, 3}
    assert rule.counts(0, None)  # the program's own GPA blocks
    assert rule.counts(0, 1)  # what the arena took from the GPA
    assert not rule.counts(2, 0)  # the GPA's pages under either of them
    assert not rule.counts(1, None) and not rule.counts(3, None)  # blocks handed out en bloc
    assert rule.counts(2, 1)  # an arena straight over the page allocator


def test_a_site_that_only_grew_a_block_in_place_keeps_its_bytes():
    """No allocation and no free in the window, only a remap: its growth is retained."""
    grower = site(0, 0x600, 0, 0, alloc_bytes=0)
    before = snapshot([layer(GPA)], {1: grower}, time=1.0)
    after = snapshot([layer(GPA, alloc_bytes=6400, remaps_in_place=100)],
                     {1: site(0, 0x600, 0, 0, alloc_bytes=6400)}, time=2.0)
    middle = snapshot([layer(GPA, alloc_bytes=3200, remaps_in_place=50)],
                      {1: site(0, 0x600, 0, 0, alloc_bytes=3200)}, time=1.5)
    result = analyse(Window(before, after, middle=middle), requests=100, symbolizer=FakeSymbolizer(),  # type: ignore[arg-type]
                     halves=(50, 50))
    (grown,) = result.sites
    assert grown.retained_bytes_per_request == 64 and grown.retained_halves == (64, 64)
    assert result.per_request.remaps == 1 and result.per_request.bytes_retained == 64
    assert [(flag.kind, flag.function) for flag in result.flags] == [("growth", "app.fn600")]


def test_growth_once_in_one_half_or_given_back_by_flushall_is_not_flagged():
    before = snapshot([layer(GPA)], {1: site(0, 0x700, 0, 64), 2: site(0, 0x800, 0, 64)}, time=1.0)
    middle = snapshot([layer(GPA)], {1: site(0, 0x700, 100, 64), 2: site(0, 0x800, 100, 64)}, time=1.5)
    # Site 1 doubled a table once (first half only); site 2 stored keys that FLUSHALL freed.
    after = snapshot([layer(GPA)], {1: site(0, 0x700, 100, 64), 2: site(0, 0x800, 200, 64)}, time=2.0)
    flushed = snapshot([layer(GPA)], {1: site(0, 0x700, 100, 64), 2: site(0, 0x800, 200, 64, frees=200)}, time=3.0)
    result = analyse(Window(before, after, middle=middle, origin=before, flushed=flushed), requests=200,
                     symbolizer=FakeSymbolizer(), halves=(100, 100))  # type: ignore[arg-type]
    assert result.per_request.bytes_retained == 96
    assert [flag for flag in result.flags if flag.kind == "growth"] == []
    assert result.kept_bytes_per_request == 32
