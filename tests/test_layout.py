"""zprof.analysis.layout on real Zig builds of tests/data/layout/types.zig, one per backend (LLVM's, in
ReleaseFast, and Zig's own, in Debug): the sizes, alignments and offsets read from the DWARF are the ones the
program itself prints with @sizeOf, @alignOf and @offsetOf; the holes and padding are where they fall; the
cause of a big tagged union names its variant and the variant's field; and boxing a variant or field gives the
@sizeOf of the same type written with a pointer there."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from zprof.analysis.layout import (
    OPTIONAL,
    SLICE,
    TAG,
    TAGGED_UNION,
    UNION,
    VARIANT,
    Hole,
    LayoutReader,
    boxed_size,
    cause,
    container_name,
    read_layouts,
    recomputed_size,
    render,
    slot_size,
    type_arguments,
    zig_name,
)

SOURCE = Path(__file__).parent / "data" / "layout" / "types.zig"
MAP = "hash_map.HashMapUnmanaged([]const u8,types.Big,hash_map.StringContext,80)"
# Each type, and the same type with one member's payload behind a pointer.
BOXED = [("Big", "sketch", "Boxed"), ("Odd", "blob", "OddBoxed"), ("TagFirst", "c", "TagFirstBoxed"),
         ("Record", "blob", "RecordBoxed")]


@dataclass(frozen=True)
class Program:
    mode: str
    binary: Path
    sizes: dict[str, tuple[int, int]]  # name -> (@sizeOf, @alignOf)
    offsets: dict[str, int]  # "Type.field" -> @offsetOf


@pytest.fixture(scope="module", params=["ReleaseFast", "Debug"])
def program(request, zig_exe: str, tmp_path_factory: pytest.TempPathFactory) -> Program:
    """types.zig built once per mode (ReleaseFast: LLVM's DWARF; Debug: Zig's own backend's) and run."""
    out = tmp_path_factory.mktemp(f"layout-{request.param}")
    binary = out / "types"
    built = subprocess.run([zig_exe, "build-exe", "-O", request.param, "-fno-strip", str(SOURCE),
                            f"-femit-bin={binary}", "--cache-dir", str(out / "cache")],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    ran = subprocess.run([str(binary)], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    sizes, offsets = {}, {}
    for line in ran.stdout.splitlines():
        what, name, *values = line.split()
        if what == "size":
            sizes[name] = (int(values[0]), int(values[1]))
        else:
            offsets[name] = int(values[0])
    return Program(request.param, binary, sizes, offsets)


def qualified(name: str) -> str:
    # Map is an alias (`const Map = std.StringHashMapUnmanaged(Big)`): the DWARF knows only the type's own name.
    return MAP if name == "Map" else f"types.{name}"


@pytest.fixture(scope="module")
def layouts(program: Program):
    return read_layouts(program.binary, [qualified(name) for name in program.sizes])


@pytest.mark.slow
def test_sizes_and_alignments_are_the_ones_zig_prints(program, layouts):
    read = {name: (layouts[qualified(name)].size, layouts[qualified(name)].alignment) for name in program.sizes}
    assert read == program.sizes


@pytest.mark.slow
def test_field_offsets_are_the_ones_zig_prints(program, layouts):
    read = {}
    for key in program.offsets:
        type_name, field = key.rsplit(".", 1)
        member = layouts[qualified(type_name)].member(field)
        assert member is not None, key
        read[key] = member.offset
    assert read == program.offsets


@pytest.mark.slow
def test_the_layout_model_gives_back_every_size(program, layouts):
    """recomputed_size (Zig's layout rules applied to the members read) is the size the DWARF gives."""
    assert {name: recomputed_size(layouts[qualified(name)]) for name in program.sizes} == \
        {name: size for name, (size, _) in program.sizes.items()}


@pytest.mark.slow
def test_the_layout_model_gives_back_the_size_of_every_type_in_a_release_build(program):
    """Every type of the program and of Zig's std it uses, in LLVM's DWARF. (Zig's own backend also describes
    comptime-only types, builtin.Type and the like, whose members are types: no layout to give back.)"""
    if program.mode != "ReleaseFast":
        pytest.skip("LLVM's DWARF only")
    with LayoutReader(program.binary) as reader:
        names = reader.names()
        wrong = {name: (layout.size, recomputed_size(layout)) for name in names
                 if (layout := reader.layout(name)) is not None
                 and recomputed_size(layout) not in (None, layout.size)}
    assert len(names) > 500 and wrong == {}


@pytest.mark.slow
def test_a_tagged_union_has_its_variants_in_order_then_its_tag(layouts):
    big = layouts["types.Big"]
    assert big.kind == TAGGED_UNION
    assert [(m.name, m.size, zig_name(m.type_name)) for m in big.variants] == [
        ("string", 16, big.member("string").type_name), ("number", 8, "i64"), ("pair", 8, "types.Pair"),
        ("sketch", 4096, "types.Sketch"), ("empty", 0, "void")]
    assert big.member("string").type_name in ("[]u8", "[]const u8")
    assert {m.offset for m in big.variants} == {0}
    assert big.tag is not None and (big.tag.offset, big.tag.size, big.tag.role) == (4096, 1, TAG)
    assert big.members[-1] == big.tag
    assert (big.holes, big.tail_padding, big.padding) == ((), 7, 7)
    # As aligned as its payload (1), the tag goes first, and the payload after it.
    tag_first = layouts["types.TagFirst"]
    assert tag_first.tag.offset == 0 and {m.offset for m in tag_first.variants} == {1}
    assert tag_first.padding == 0


@pytest.mark.slow
def test_holes_and_padding_are_where_they_fall(layouts):
    extern = layouts["types.HoleyExtern"]
    assert [(m.name, m.offset, m.size) for m in extern.members] == [("flag", 0, 1), ("count", 8, 8), ("tail", 16, 2)]
    assert extern.holes == (Hole(1, 7, "flag"),)
    assert (extern.tail_padding, extern.padding) == (6, 13)
    # Zig reorders an auto-layout struct by alignment: no hole is left, only the tail.
    holey = layouts["types.Holey"]
    assert [m.name for m in holey.members] == ["count", "tail", "flag"]
    assert (holey.holes, holey.tail_padding) == ((), 5)
    # A bare union is as large as its largest member rounded to its alignment: 12 -> 16.
    bare = layouts["types.Bare"]
    assert (bare.kind, bare.size, bare.tail_padding) == (UNION, 16, 4)
    assert all(m.role == VARIANT and m.offset == 0 for m in bare.members)


@pytest.mark.slow
def test_slices_optionals_and_nested_arrays(layouts):
    misc = layouts["types.Misc"]
    types = {m.name: m.type_name for m in misc.members}
    assert types["grid"] == "[3][5]u16" and misc.member("grid").size == 30
    assert layouts["[3][5]u16"].count == 3 and layouts["[3][5]u16"].element("element") == "[5]u16"
    assert layouts[types["name"]].kind == SLICE and layouts[types["name"]].element("element") == "u8"
    maybe = layouts[types["maybe"]]
    assert (maybe.kind, maybe.size, maybe.element("element")) == (OPTIONAL, 8, "u32")
    assert misc.member("maybe_ptr").size == 8  # ?*T is a pointer


@pytest.mark.slow
def test_the_cause_of_a_big_union_is_its_variant_and_the_variants_field(layouts):
    chain = cause(layouts["types.Big"], layouts)
    assert [(m.name, m.role, m.type_name, m.size) for m in chain] == [
        ("sketch", VARIANT, "types.Sketch", 4096), ("registers", "field", "[4096]u8", 4096)]
    # The same union without it: its largest variant is a slice, which has no cause of its own.
    assert [m.name for m in cause(layouts["types.Small"], layouts)] == ["string"]
    # A struct no member dominates has none.
    assert cause(layouts["types.Misc"], layouts) == []  # its largest field, 30 B of 64


@pytest.mark.slow
def test_boxing_gives_the_size_of_the_type_written_with_a_pointer(program, layouts):
    """Each boxed size is @sizeOf of the twin declared with a pointer: Zig's rules, not a rounder guess (Odd's
    12-byte payload is not rounded to 16 before its tag: OddBoxed is 16 bytes, not 24)."""
    read = {name: boxed_size(layouts[f"types.{name}"], member) for name, member, _ in BOXED}
    assert read == {name: program.sizes[twin][0] for name, _, twin in BOXED}
    assert boxed_size(layouts["types.Big"], "no such variant") is None


@pytest.mark.slow
def test_a_hash_maps_slot_holds_its_key_and_value(program, layouts):
    table = layouts[MAP]
    assert table.size == program.sizes["Map"][0]
    assert table.element("value") == "types.Big"
    key = table.element("key")
    assert key in ("[]u8", "[]const u8") and layouts[key].kind == SLICE
    # Its slots are in the allocation: a key, a value and a metadata byte each.
    assert slot_size(table, layouts) == 16 + program.sizes["Big"][0] + 1
    # From a method of the map, as a profile names it, to the map and what it holds.
    assert container_name(f"{MAP}.grow") == MAP
    assert type_arguments(f"{MAP}.grow") == ["[]const u8", "types.Big", "hash_map.StringContext", "80"]


@pytest.mark.slow
def test_names_are_matched_whole_without_zigs_suffix_or_by_a_unique_last_part(program, layouts):
    chosen = layouts["types.Chosen"]  # "types.Chosen__union_N" in the DWARF
    assert chosen.name.startswith("types.Chosen__union_") and zig_name(chosen.name) == "types.Chosen"
    assert chosen.kind == TAGGED_UNION and chosen.size == program.sizes["Chosen"][0]
    found = read_layouts(program.binary, ["Chosen", "Big", "Inner", "Left.Inner", "[]const u8"])
    assert found["Chosen"] == chosen and found["Big"] == layouts["types.Big"]
    assert "Inner" not in found  # types.Left.Inner or types.Right.Inner
    assert found["Left.Inner"].size == program.sizes["Left.Inner"][0]
    assert found["[]const u8"].kind == SLICE
    assert read_layouts(program.binary, ["types.NoSuchType"]) == {}


@pytest.mark.slow
def test_render_shows_each_member_and_the_padding(layouts):
    lines = render(layouts["types.HoleyExtern"])
    assert lines[0] == "types.HoleyExtern: struct, 24 B, align 8"
    assert [line.split()[:3] for line in lines[2:7]] == [
        ["0", "1", "flag"], ["1", "7", "(hole,"], ["8", "8", "count"], ["16", "2", "tail"], ["18", "6", "(tail"]]
    assert lines[-1] == "  size 24 B, padding 13 B"
    big = render(layouts["types.Big"])
    assert any(line.split()[:3] == ["0", "4,096", "sketch"] and line.endswith("types.Sketch") for line in big)
    assert any(line.split()[:2] == ["4,097", "7"] and "(tail padding, 7 B)" in line for line in big)


@pytest.mark.parametrize(("name", "arguments"), [
    ("hash_map.HashMapUnmanaged([]const u8,keyspace.Value,hash_map.StringContext,80).grow",
     ["[]const u8", "keyspace.Value", "hash_map.StringContext", "80"]),
    ("hash_map.HashMapUnmanaged([]const u8,keyspace.Value__union_4100,hash_map.StringContext,80).getOrPutAssumeCapacity"
     "Context", ["[]const u8", "keyspace.Value__union_4100", "hash_map.StringContext", "80"]),
    ("array_list.Aligned(keyspace.SortedSet.Entry,null).append", ["keyspace.SortedSet.Entry", "null"]),
    ("hash_map.HashMapUnmanaged(usize,*debug.Dwarf.ElfModule,hash_map.AutoContext(usize),80).put",
     ["usize", "*debug.Dwarf.ElfModule", "hash_map.AutoContext(usize)", "80"]),
    ("multi_array_list.MultiArrayList(array_hash_map.ArrayHashMapUnmanaged(u64,[2]u8,array_hash_map.AutoContext(u64),"
     "false).Data).Slice", ["array_hash_map.ArrayHashMapUnmanaged(u64,[2]u8,array_hash_map.AutoContext(u64),false)"
                            ".Data"]),
    ("heap.debug_allocator.DebugAllocator(.{ .stack_trace_frames = 0, .safety = false }).alloc",
     [".{ .stack_trace_frames = 0, .safety = false }"]),
    ('fmt.Formatter(u8,"a,(b").format', ["u8", '"a,(b"']),
    ("Outer(u8).Inner([4]u16,struct { a: u8, b: u8 }).get", ["[4]u16", "struct { a: u8, b: u8 }"]),
    ("keyspace.Keyspace.put", []),
    ("mem.sortUnstable__anon_1234", []),
])
def test_type_arguments_split_the_last_instantiation_at_its_top_level_commas(name, arguments):
    assert type_arguments(name) == arguments


def test_container_name_is_the_name_before_the_last_top_level_dot():
    assert container_name("array_list.Aligned(keyspace.SortedSet.Entry,null).append") == \
        "array_list.Aligned(keyspace.SortedSet.Entry,null)"
    assert container_name("keyspace.Keyspace.put") == "keyspace.Keyspace"
    assert container_name("main") == ""


def test_zig_name_drops_the_suffix_of_a_type_made_by_an_expression():
    assert zig_name("hash_map.HashMapUnmanaged([]const u8,keyspace.Value__union_4100,hash_map.StringContext,80)") == \
        "hash_map.HashMapUnmanaged([]const u8,keyspace.Value,hash_map.StringContext,80)"
    assert zig_name("os.linux.k_sigaction__struct_6802") == "os.linux.k_sigaction"
    assert zig_name("mem.sortUnstable__anon_1234") == "mem.sortUnstable__anon_1234"  # a function, not a type

