"""Type layouts from a Zig binary's DWARF, in pahole's spirit: each type's size and alignment, its fields
(or a union's variants) at their offsets, the holes between them and the tail padding; the chain of
members that makes a type large; what the type would weigh with one member's payload boxed; and what a
standard container (a hash map, an array list) holds in each slot.

What Zig 0.15 writes, which this module reads:

- With the LLVM backend (every release mode), types are named fully qualified ("keyspace.Value",
  "hash_map.HashMapUnmanaged([]const u8,keyspace.Value,hash_map.StringContext,80)") and live at the compile
  unit's top level. A type that is the value of an expression rather than of a declaration (`const Value =
  if (c) union(enum) {...} else union(enum) {...}`) is named with a suffix, "keyspace.Value__union_4100",
  in its own name and in every name that holds it. An alias (`const Map = std.StringHashMapUnmanaged(V)`)
  has no name of its own.
  A tagged union (`union(enum)`) is a structure of two members: `payload`, a union named "<name>:Payload"
  whose members are the variants that have a runtime payload, and `tag`, an enumeration nested in the
  structure, named '@typeInfo(<name>).@"union".tag_type.?', whose enumerators name every variant, void ones
  included. The more aligned of the two comes first (the tag when they are as aligned), and the tag
  follows the payload's unrounded size: union(enum) { [12]u8, u64 } has its tag at 12 and is 16 bytes. A
  union whose tag takes no bits (one variant) is written as a plain union; one whose variants are all void
  as a structure with no member but the nested enumeration.
  A union's DW_AT_byte_size is its payload's size, not rounded up to its alignment (`extern union { u64,
  [12]u8 }` says 12 where @sizeOf says 16): this module rounds it. Slices are structures "[]T" of `ptr` and
  `len` (`const` is dropped: []const u8 is "[]u8"), optionals "?T" of `data` and `some` (an optional
  pointer is the bare pointer), error unions "E!T" of `value` and `tag`; a packed struct is a base type of
  its backing integer's size; arrays have no name and pointers no size. Zero-size fields are left out.
- Zig's own x86_64 backend (Debug builds) writes DWARF 5 with short names, each declaration naming its
  namespace through a vendor attribute (0x2ccd), which this module follows to qualify them the same way;
  tagged unions, optionals and error unions are unions holding a DW_TAG_variant_part whose discriminant is
  the tag (`has_value`, `is_error`); enums and packed structs take their size from their integer type; and
  a pointer's DW_AT_alignment is its pointee's, which is ignored.

pyelftools finds the sections and the units; the DIEs are read with zprof.analysis.dwarf's UnitReader. The
walk that finds the named types decodes only type DIEs and skips every function's subtree whole, about
60 ms for minikv's ReleaseFast build (51,000 DIEs); a layout is decoded when first asked for.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from zprof.analysis.dwarf import DwarfReader, UnitReader, UnsupportedDwarf, uleb

POINTER_SIZE = 8  # what a boxed payload weighs: a pointer on the 64-bit targets zprof profiles

STRUCT, UNION, TAGGED_UNION, ENUM, ARRAY, POINTER, BASE = "struct", "union", "tagged union", "enum", "array", \
    "pointer", "base"
SLICE, OPTIONAL, ERROR_UNION, FUNCTION, OPAQUE = "slice", "optional", "error union", "function", "opaque"
PACKED = "packed struct"  # Zig's own backend; the LLVM backend makes a packed struct a base type

FIELD, VARIANT, TAG = "field", "variant", "tag"

_STRUCTURE, _UNION, _ENUMERATION = "DW_TAG_structure_type", "DW_TAG_union_type", "DW_TAG_enumeration_type"
_CLASS, _BASE, _POINTER, _ARRAY = "DW_TAG_class_type", "DW_TAG_base_type", "DW_TAG_pointer_type", "DW_TAG_array_type"
_MEMBER, _VARIANT_PART, _VARIANT = "DW_TAG_member", "DW_TAG_variant_part", "DW_TAG_variant"
_QUALIFIERS = frozenset({"DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type", "DW_TAG_restrict_type",
                         "DW_TAG_atomic_type", "DW_TAG_immutable_type", "DW_TAG_packed_type"})
_POINTERS = frozenset({_POINTER, "DW_TAG_reference_type", "DW_TAG_rvalue_reference_type", "DW_TAG_ptr_to_member_type"})
_TYPE_TAGS = frozenset({_STRUCTURE, _UNION, _ENUMERATION, _CLASS, _BASE, _ARRAY, "DW_TAG_subroutine_type",
                        "DW_TAG_unspecified_type", *_QUALIFIERS, *_POINTERS})
# Subtrees that hold code, never a type this module is asked for: skipped without being decoded.
_CODE_TAGS = frozenset({"DW_TAG_subprogram", "DW_TAG_inlined_subroutine", "DW_TAG_lexical_block"})
_PARENT = str(0x2CCD)  # Zig's own backend: the namespace a declaration belongs to (a reference; named as UnitReader
# names an attribute pyelftools does not know)
_ATTRIBUTES = frozenset({"DW_AT_name", "DW_AT_byte_size", "DW_AT_alignment", "DW_AT_type",
                         "DW_AT_data_member_location", "DW_AT_data_bit_offset", "DW_AT_count", "DW_AT_upper_bound",
                         "DW_AT_lower_bound", "DW_AT_byte_stride", "DW_AT_declaration", "DW_AT_external",
                         "DW_AT_discr", "DW_AT_const_expr", _PARENT})
_BLOCK_FORMS = frozenset({"DW_FORM_exprloc", "DW_FORM_block", "DW_FORM_block1", "DW_FORM_block2", "DW_FORM_block4"})
_DW_OP_PLUS_UCONST, _DW_OP_CONSTU = 0x23, 0x10
_ANONYMOUS_SUFFIX = re.compile(r"__(?:struct|union|enum|opaque)_\d+")
_CONST = re.compile(r"(?<=[\]*])const ")


# The layouts -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """A field of a structure, a variant of a union (its payload), or a tagged union's tag."""

    name: str
    offset: int
    size: int
    type_name: str
    alignment: int | None = None
    role: str = FIELD  # FIELD, VARIANT or TAG


@dataclass(frozen=True)
class Hole:
    offset: int
    size: int
    after: str | None  # the member it follows (None: before the first)


@dataclass(frozen=True)
class TypeLayout:
    """One type as the DWARF lays it out. `members` are a structure's fields by offset, or a union's variants
    (each with its payload's size; a void variant weighs 0) followed, for a tagged union, by the tag.
    `elements` name the types a pointer, array, slice, optional or container holds: ("target", T) for a
    pointer, ("element", T) for an array, slice or array list, ("key", K) and ("value", V) for a hash map."""

    name: str
    kind: str
    size: int
    alignment: int | None
    members: tuple[Member, ...] = ()
    holes: tuple[Hole, ...] = ()
    tail_padding: int = 0
    elements: tuple[tuple[str, str], ...] = ()
    count: int | None = None  # an array's length

    @property
    def padding(self) -> int:
        """Bytes no member uses: the holes between members plus the tail padding (for a union, beyond its
        largest variant; the bytes a smaller variant leaves unused are not counted)."""
        return sum(hole.size for hole in self.holes) + self.tail_padding

    @property
    def variants(self) -> tuple[Member, ...]:
        return tuple(member for member in self.members if member.role == VARIANT)

    @property
    def tag(self) -> Member | None:
        return next((member for member in self.members if member.role == TAG), None)

    def member(self, name: str) -> Member | None:
        return next((member for member in self.members if member.name == name), None)

    def element(self, role: str) -> str | None:
        return next((type_name for each, type_name in self.elements if each == role), None)


# Names -----------------------------------------------------------------------------------------------------


def _scan(name: str) -> Iterator[tuple[int, str, int]]:
    """Each character of `name` outside quotes, with its nesting depth (parentheses, brackets, braces); an
    opening or closing character at the depth outside it."""
    depth, quoted = 0, False
    for index, char in enumerate(name):
        if quoted:
            quoted = char != '"'
        elif char == '"':
            quoted = True
        elif char in "([{":
            yield index, char, depth
            depth += 1
        elif char in ")]}":
            depth = max(depth - 1, 0)
            yield index, char, depth
        else:
            yield index, char, depth


def _top_level(name: str) -> list[tuple[int, str]]:
    """Each character of `name` at nesting depth 0 (outside parentheses, brackets, braces and quotes)."""
    return [(index, char) for index, char, depth in _scan(name) if depth == 0 and char not in "([{)]}"]


def type_arguments(function_name: str) -> list[str]:
    """The arguments of the last generic instantiation in a Zig name, e.g. for
    "hash_map.HashMapUnmanaged([]const u8,keyspace.Value,hash_map.StringContext,80).grow" the list
    ["[]const u8", "keyspace.Value", "hash_map.StringContext", "80"]: commas inside nested parentheses,
    brackets, braces (".{ .a = 1, .b = 2 }") and quotes do not split. A name with no group gives []."""
    groups = [index for index, char, depth in _scan(function_name) if depth == 0 and char in "()"]
    opening = [index for index in groups if function_name[index] == "("]
    closing = [index for index in groups if function_name[index] == ")"]
    if not opening or not closing or closing[-1] < opening[-1]:
        return []
    inner = function_name[opening[-1] + 1:closing[-1]]
    cuts = [index for index, char, depth in _scan(inner) if depth == 0 and char == ","]
    arguments = [inner[begin + 1:end].strip() for begin, end in zip([-1, *cuts], [*cuts, len(inner)], strict=True)]
    return [argument for argument in arguments if argument]


def container_name(function_name: str) -> str:
    """The type a method belongs to: its name without the last top-level component
    ("hash_map.HashMapUnmanaged([]const u8,keyspace.Value,hash_map.StringContext,80).grow" -> the hash map);
    a name with one component gives ""."""
    cuts = [index for index, char in _top_level(function_name) if char == "."]
    return function_name[:cuts[-1]] if cuts else ""


def zig_name(name: str) -> str:
    """A DWARF type name as Zig source spells the type: without the "__union_4100" that Zig appends to the
    name of a type made by an expression."""
    return _ANONYMOUS_SUFFIX.sub("", name)


def _normal(name: str) -> str:
    """The form names are compared in: Zig's suffixes dropped, `const` after a pointer or slice dropped (the
    DWARF calls []const u8 "[]u8"), no spaces after commas."""
    return _CONST.sub("", zig_name(name)).replace(", ", ",")


def _declared(name: str) -> bool:
    """Whether `name` names a declared type (a container), not a pointer, slice, array, optional or error union
    of one, which are matched by their whole name only."""
    return bool(name) and name[0] not in "*[?" and all(char != "!" for _, char in _top_level(name))


def _components(name: str) -> list[str]:
    """A qualified name split at its top-level dots: "a.B(c.D).E" -> ["a", "B(c.D)", "E"]."""
    cuts = [index for index, char in _top_level(name) if char == "."]
    parts, begin = [], 0
    for cut in cuts:
        parts.append(name[begin:cut])
        begin = cut + 1
    parts.append(name[begin:])
    return parts


# Reading the DWARF -----------------------------------------------------------------------------------------


@dataclass
class _Node:
    offset: int
    tag: str
    attrs: dict[str, int | str]
    children: list[_Node]


class _Unit(UnitReader):
    """A unit whose DIEs are read with the attributes of types."""

    def attributes(self, abbrev, pos: int) -> tuple[dict[str, int | str], int]:  # type: ignore[no-untyped-def]
        attrs: dict[str, int | str] = {}
        for name, form, constant in abbrev.specs:
            if name in _ATTRIBUTES:
                if form == "DW_FORM_implicit_const":
                    attrs[name] = constant
                elif form in _BLOCK_FORMS:
                    start = self._skip_form(form, pos)
                    value = _block_constant(self.info, pos, start, form)
                    if value is not None:
                        attrs[name] = value
                else:
                    attrs[name] = self._value(form, pos)
            pos = self._skip_form(form, pos)
        return attrs, pos


def _block_constant(data: bytes, pos: int, end: int, form: str) -> int | None:
    """A member location written as an expression (DW_OP_plus_uconst N, or DW_OP_constu N)."""
    if form in ("DW_FORM_exprloc", "DW_FORM_block"):
        _, pos = uleb(data, pos)
    else:
        pos += {"DW_FORM_block1": 1, "DW_FORM_block2": 2, "DW_FORM_block4": 4}[form]
    if pos < end and data[pos] in (_DW_OP_PLUS_UCONST, _DW_OP_CONSTU):
        return uleb(data, pos + 1)[0]
    return None


def _align_forward(value: int, alignment: int | None) -> int:
    if not alignment or alignment <= 1:
        return value
    return (value + alignment - 1) // alignment * alignment


def _natural_alignment(size: int) -> int:
    return min(1 << max(size - 1, 0).bit_length(), 16) if size > 0 else 1


class LayoutReader:
    """The type layouts of one binary, read on demand. The first lookup walks every unit once to find the
    named types (a few tens of milliseconds for minikv); each layout is decoded when first asked for."""

    def __init__(self, binary: Path) -> None:
        from elftools.elf.elffile import ELFFile

        self._file = open(binary, "rb")  # noqa: SIM115 - kept open for pyelftools' lazy reads; closed by close()
        try:
            elf = ELFFile(self._file)
            self._dwarf = elf.get_dwarf_info() if elf.has_dwarf_info() else None
        except Exception:
            self._file.close()
            raise
        self._reader = DwarfReader(self._dwarf) if self._dwarf is not None else None
        self._units: list[_Unit] = []
        self._starts: list[int] = []
        self._names: dict[int, str] = {}  # offset -> the DIE's own name, for the named type DIEs
        self._parents: dict[int, int] = {}  # offset -> its namespace's offset (Zig's own backend)
        self._by_name: dict[str, list[int]] | None = None  # qualified name -> offsets
        self._by_normal: dict[str, list[int]] = {}
        self._nodes: dict[int, _Node] = {}
        self._layouts: dict[int, TypeLayout] = {}
        self._type_names: dict[int, str] = {}
        self._offset_of: dict[str, int] = {}  # a layout's name -> its DIE

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> LayoutReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # The units and the walk ------------------------------------------------------------------------------
    def _load_units(self) -> None:
        if self._units or self._reader is None:
            return
        for cu in self._dwarf.iter_CUs():
            unit = _Unit(self._reader, cu)
            self._units.append(unit)
            self._starts.append(cu.cu_offset)

    def _unit_at(self, offset: int) -> _Unit:
        self._load_units()
        index = bisect.bisect_right(self._starts, offset) - 1
        if index < 0:
            raise UnsupportedDwarf(f"no unit holds offset {offset:#x}")
        return self._units[index]

    def _index(self) -> dict[str, list[int]]:
        if self._by_name is not None:
            return self._by_name
        self._load_units()
        for unit in self._units:
            self._walk(unit)
        by_name: dict[str, list[int]] = {}
        for offset in self._names:
            by_name.setdefault(self._qualified(offset), []).append(offset)
        for name, offsets in by_name.items():
            self._by_normal.setdefault(_normal(name), []).extend(offsets)
        self._by_name = by_name
        return by_name

    def _walk(self, unit: _Unit) -> None:
        """Every named type DIE of `unit`: its name (and namespace) recorded, every other DIE skipped, and
        every function's subtree skipped whole."""
        info, end = unit.info, unit.end
        code, pos = uleb(info, unit.cu.cu_die_offset)
        top = unit.abbrev(code)
        pos = unit.skip(top, pos)
        if not top.has_children:
            return
        kinds: dict[int, int] = {}  # abbreviation code -> 0: skip, 1: a type, 2: code (its subtree skipped)
        names, parents = self._names, self._parents
        while pos < end:
            offset = pos
            code = info[pos]
            if code < 0x80:
                pos += 1
            else:
                code, pos = uleb(info, pos)
            if code == 0:
                continue
            abbrev = unit.abbrev(code)
            kind = kinds.get(code)
            if kind is None:
                attributes = {name for name, _, _ in abbrev.specs}
                kind = kinds[code] = (1 if abbrev.tag in _TYPE_TAGS and "DW_AT_name" in attributes
                                      else 2 if abbrev.tag in _CODE_TAGS and abbrev.has_children else 0)
            if kind == 1:
                attrs, pos = unit.attributes(abbrev, pos)
                name = attrs.get("DW_AT_name")
                if isinstance(name, str):
                    names[offset] = name
                    parent = attrs.get(_PARENT)
                    if isinstance(parent, int):
                        parents[offset] = parent
                continue
            size = abbrev.size
            pos = pos + size if size is not None else unit.skip(abbrev, pos)
            if kind == 2:
                pos = unit.skip_subtree(pos)

    def _qualified(self, offset: int) -> str:
        """A type DIE's name, prefixed with its namespaces' where the DWARF gives them as a parent."""
        name = self._names.get(offset, "")
        seen = {offset}
        parent = self._parents.get(offset)
        while parent is not None and parent not in seen and parent in self._names:
            seen.add(parent)
            name = f"{self._names[parent]}.{name}"
            parent = self._parents.get(parent)
        return name

    # DIEs ------------------------------------------------------------------------------------------------
    def _node(self, offset: int) -> _Node:
        """The DIE at `offset` and its subtree (a type's members, variants and nested types)."""
        known = self._nodes.get(offset)
        if known is not None:
            return known
        unit = self._unit_at(offset)
        node, _ = self._read_node(unit, offset)
        self._nodes[offset] = node
        return node

    def _read_node(self, unit: _Unit, offset: int) -> tuple[_Node, int]:
        code, pos = uleb(unit.info, offset)
        if code == 0:
            return _Node(offset, "", {}, []), pos
        abbrev = unit.abbrev(code)
        attrs, pos = unit.attributes(abbrev, pos)
        node = _Node(offset, abbrev.tag, attrs, [])
        if abbrev.has_children:
            if abbrev.tag in _CODE_TAGS:
                return node, unit.skip_subtree(pos)
            while True:
                code, _ = uleb(unit.info, pos)
                if code == 0:
                    pos = uleb(unit.info, pos)[1]
                    break
                child, pos = self._read_node(unit, pos)
                self._nodes.setdefault(child.offset, child)
                node.children.append(child)
        return node, pos

    def _target(self, node: _Node) -> _Node | None:
        ref = node.attrs.get("DW_AT_type")
        return self._node(int(ref)) if isinstance(ref, int) else None

    def _resolved(self, node: _Node) -> _Node:
        """Past typedefs and qualifiers, and from a declaration to the definition of the same name."""
        for _ in range(16):
            if node.tag in _QUALIFIERS:
                target = self._target(node)
                if target is None:
                    return node
                node = target
                continue
            if node.attrs.get("DW_AT_declaration") and node.offset in self._names:
                for other in self._index().get(self._qualified(node.offset), []):
                    candidate = self._node(other)
                    if not candidate.attrs.get("DW_AT_declaration"):
                        return candidate
            return node
        return node

    # Names, sizes and alignments of DIEs -----------------------------------------------------------------
    def type_name(self, node: _Node) -> str:
        known = self._type_names.get(node.offset)
        if known is None:
            known = self._type_names[node.offset] = self._make_name(node, 0)
            self._offset_of.setdefault(known, node.offset)  # for layouts() to find it by name, named or not
        return known

    def _make_name(self, node: _Node, depth: int) -> str:
        if depth > 16:
            return "?"
        if "DW_AT_name" in node.attrs and node.tag not in _QUALIFIERS:
            self._index()
            return self._qualified(node.offset) if node.offset in self._names else str(node.attrs["DW_AT_name"])
        target = self._target(node)
        if node.tag in _QUALIFIERS:
            return self._make_name(target, depth + 1) if target is not None else "void"
        if node.tag in _POINTERS:
            return "*" + (self._make_name(target, depth + 1) if target is not None else "anyopaque")
        if node.tag == _ARRAY:
            counts = "".join(f"[{count}]" for count in self._counts(node))
            return counts + (self._make_name(target, depth + 1) if target is not None else "?")
        if node.tag == "DW_TAG_subroutine_type":
            return "fn"
        return f"<anonymous {node.tag.removeprefix('DW_TAG_').removesuffix('_type')}>"

    def _counts(self, node: _Node) -> list[int]:
        counts = []
        for child in node.children:
            if child.tag == "DW_TAG_subrange_type":
                if "DW_AT_count" in child.attrs:
                    counts.append(int(child.attrs["DW_AT_count"]))
                elif "DW_AT_upper_bound" in child.attrs:
                    counts.append(int(child.attrs["DW_AT_upper_bound"]) - int(child.attrs.get("DW_AT_lower_bound", 0))
                                  + 1)
                else:
                    counts.append(0)
        return counts

    def size(self, node: _Node, depth: int = 0) -> int:
        node = self._resolved(node)
        if depth > 16:
            return 0
        if node.tag == _ARRAY:
            target = self._target(node)
            each = self.size(target, depth + 1) if target is not None else 0
            stride = node.attrs.get("DW_AT_byte_stride")
            total = 1
            for count in self._counts(node):
                total *= count
            return total * (int(stride) if stride else each)
        if "DW_AT_byte_size" in node.attrs:
            size = int(node.attrs["DW_AT_byte_size"])
            if node.tag == _UNION:  # Zig's LLVM backend gives the payload's size, not rounded to the alignment
                size = _align_forward(size, self.alignment(node, depth + 1))
            elif node.tag == _BASE:  # an f80 is 10 bytes of data in 16 of memory
                size = _align_forward(size, _natural_alignment(size))
            return size
        if node.tag in _POINTERS:
            return self._unit_at(node.offset).address_size
        if node.tag in (_ENUMERATION, _STRUCTURE):  # Zig's own backend: an enum's or packed struct's integer's
            target = self._target(node)
            return self.size(target, depth + 1) if target is not None else 0
        return 0

    def alignment(self, node: _Node, depth: int = 0) -> int | None:
        node = self._resolved(node)
        if node.tag in _POINTERS:  # Zig's own backend gives a pointer type its pointee's alignment
            return self._unit_at(node.offset).address_size
        if "DW_AT_alignment" in node.attrs:
            return int(node.attrs["DW_AT_alignment"])
        if depth > 16:
            return None
        if node.tag == _ARRAY or (node.tag == _STRUCTURE and "DW_AT_type" in node.attrs):
            target = self._target(node)
            return self.alignment(target, depth + 1) if target is not None else None
        if node.tag in (_BASE, _ENUMERATION):
            return _natural_alignment(self.size(node, depth + 1))
        members = [child for child in node.children if child.tag == _MEMBER]
        aligns = [self._member_alignment(member, depth + 1) for member in members]
        return max((align for align in aligns if align), default=None) if members else None

    def _member_alignment(self, member: _Node, depth: int = 0) -> int | None:
        """A member's alignment: its own, else its type's. A pointer's is the pointer's, whatever the member
        says: Zig's own backend gives a pointer member its pointee's alignment (*align(1) T: 1)."""
        target = self._target(member)
        if target is not None and self._resolved(target).tag in _POINTERS:
            return self.alignment(target, depth + 1)
        if "DW_AT_alignment" in member.attrs:
            return int(member.attrs["DW_AT_alignment"])
        return self.alignment(target, depth + 1) if target is not None else None

    def _member(self, node: _Node, role: str, base: int = 0) -> tuple[Member, _Node | None]:
        target = self._target(node)
        offset = node.attrs.get("DW_AT_data_member_location")
        if offset is None and "DW_AT_data_bit_offset" in node.attrs:
            offset = int(node.attrs["DW_AT_data_bit_offset"]) // 8
        member = Member(
            name=str(node.attrs.get("DW_AT_name", "")),
            offset=base + int(offset or 0),
            size=self.size(target) if target is not None else 0,
            type_name=self.type_name(self._resolved(target)) if target is not None else "void",
            alignment=self._member_alignment(node),
            role=role,
        )
        return member, (self._resolved(target) if target is not None else None)

    # Layouts ---------------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """The name of every named type in the DWARF, qualified, as find() matches them exactly."""
        return sorted(self._index())

    def find(self, name: str) -> int | None:
        """The DIE of the type `name` names: its exact DWARF name; else the same name without Zig's
        "__union_N" suffixes and with []const u8 read as []u8; else, when exactly one type matches, a name whose
        last components are `name`'s ("Value" or "keyspace.Value" for "minikv.keyspace.Value__union_4100").
        Of several DIEs of one name, a definition (not a declaration) is preferred."""
        index = self._index()
        offsets = index.get(name) or self._by_normal.get(_normal(name))
        if not offsets:
            wanted = _components(_normal(name))
            matches = {normal for normal in self._by_normal if _declared(normal)
                       and _components(normal)[-len(wanted):] == wanted}
            if len(matches) != 1:
                return None
            offsets = self._by_normal[matches.pop()]
        return self._best(offsets)

    def _best(self, offsets: list[int]) -> int:
        for offset in offsets:
            node = self._node(offset)
            if not node.attrs.get("DW_AT_declaration") and (node.children or "DW_AT_byte_size" in node.attrs):
                return offset
        return offsets[0]

    def layout(self, name: str) -> TypeLayout | None:
        offset = self.find(name)
        return self.layout_at(offset) if offset is not None else None

    def layout_at(self, offset: int) -> TypeLayout:
        known = self._layouts.get(offset)
        if known is None:
            node = self._resolved(self._node(offset))
            known = self._layouts.get(node.offset) or self._build(node)
            self._layouts[offset] = self._layouts[node.offset] = known
            self._offset_of.setdefault(known.name, node.offset)
        return known

    def _build(self, node: _Node) -> TypeLayout:
        name, tag = self.type_name(node), node.tag
        size, alignment = self.size(node), self.alignment(node)
        if tag == _ARRAY:
            target = self._target(node)
            element = self.type_name(self._resolved(target)) if target is not None else "void"
            counts = self._counts(node)
            inner = name[name.index("]") + 1:] if len(counts) > 1 else element
            return TypeLayout(name, ARRAY, size, alignment, elements=(("element", inner),),
                              count=counts[0] if counts else None)
        if tag in _POINTERS:
            target = self._target(node)
            target_name = self.type_name(self._resolved(target)) if target is not None else "anyopaque"
            return TypeLayout(name, POINTER, size, alignment, elements=(("target", target_name),))
        if tag == _BASE:
            return TypeLayout(name, BASE, size, alignment)
        if tag == _ENUMERATION:
            return TypeLayout(name, ENUM, size, alignment)
        if tag == "DW_TAG_subroutine_type":
            return TypeLayout(name, FUNCTION, size, alignment)
        if tag not in (_STRUCTURE, _CLASS, _UNION):
            return TypeLayout(name, OPAQUE, size, alignment)
        variant_part = next((child for child in node.children if child.tag == _VARIANT_PART), None)
        if variant_part is not None:
            return self._variant_part_union(variant_part, name, size, alignment)
        members = [child for child in node.children if child.tag == _MEMBER and not child.attrs.get("DW_AT_declaration")
                   and not child.attrs.get("DW_AT_external") and not child.attrs.get("DW_AT_const_expr")]
        by_name = {str(child.attrs.get("DW_AT_name", "")): child for child in members}
        tag_enum = next((child for child in node.children if child.tag == _ENUMERATION
                         and '.@"union".tag_type' in str(child.attrs.get("DW_AT_name", ""))), None)
        payload = by_name.get("payload")
        payload_type = self._resolved(self._target(payload)) if payload is not None and self._target(payload) else None
        if tag != _UNION and ((payload_type is not None and payload_type.tag == _UNION
                               and str(payload_type.attrs.get("DW_AT_name", "")).endswith(":Payload"))
                              or (tag_enum is not None and set(by_name) <= {"tag", "payload"})):
            return self._tagged_union(name, size, alignment, payload, payload_type, by_name.get("tag"), tag_enum)
        role = VARIANT if tag == _UNION else FIELD
        fields = tuple(self._member(child, role)[0] for child in members)
        if tag == _STRUCTURE and ("DW_AT_type" in node.attrs or any(
                "DW_AT_data_bit_offset" in child.attrs for child in members)):  # packed: its fields share bytes
            return TypeLayout(name, PACKED, size, alignment, tuple(sorted(fields, key=lambda m: m.offset)))
        kind = UNION if tag == _UNION else self._struct_kind(name, set(by_name))
        elements: tuple[tuple[str, str], ...] = ()
        if kind == SLICE:
            pointer = self._target(by_name["ptr"])
            target = self._target(pointer) if pointer is not None else None
            elements = (("element", self.type_name(self._resolved(target)) if target is not None else "void"),)
        elif kind == OPTIONAL:
            elements = (("element", fields[[m.name for m in fields].index("data")].type_name),)
        elif kind == STRUCT:
            elements = self._container_elements(name, by_name)
        if kind == UNION:
            return TypeLayout(name, kind, size, alignment, fields,
                              tail_padding=max(size - max((m.size for m in fields), default=0), 0))
        holes, tail = _holes(sorted(fields, key=lambda m: (m.offset, -m.size)), size)
        return TypeLayout(name, kind, size, alignment, tuple(sorted(fields, key=lambda m: m.offset)), holes, tail,
                          elements)

    @staticmethod
    def _struct_kind(name: str, members: set[str]) -> str:
        if name.startswith("[]") and members == {"ptr", "len"}:
            return SLICE
        if name.startswith("?") and members == {"data", "some"}:
            return OPTIONAL
        if any(char == "!" for _, char in _top_level(name)) and members <= {"value", "tag"}:
            return ERROR_UNION
        return STRUCT

    def _tagged_union(self, name: str, size: int, alignment: int | None, payload: _Node | None,
                      payload_type: _Node | None, tag: _Node | None, tag_enum: _Node | None) -> TypeLayout:
        """Zig's LLVM backend: a structure of `payload` (a union of the variants with a payload) and `tag`."""
        members: list[Member] = []
        base = int(payload.attrs.get("DW_AT_data_member_location", 0)) if payload is not None else 0
        if payload_type is not None:
            for child in payload_type.children:
                if child.tag == _MEMBER:
                    members.append(self._member(child, VARIANT, base)[0])
        tag_member = self._member(tag, TAG)[0] if tag is not None else None
        if tag_enum is None and tag is not None:
            tag_enum = self._resolved(self._target(tag)) if self._target(tag) is not None else None
        with_payload = {member.name for member in members}
        if tag_enum is not None:  # the void variants, which the payload leaves out
            order = [str(child.attrs.get("DW_AT_name", "")) for child in tag_enum.children
                     if child.tag == "DW_TAG_enumerator"]
            for variant in order:
                if variant not in with_payload:
                    members.append(Member(variant, base, 0, "void", None, VARIANT))
            rank = {variant: index for index, variant in enumerate(order)}
            members.sort(key=lambda member: rank.get(member.name, len(rank)))
            if tag_member is None and not with_payload:  # every variant void: the tag is all there is
                tag_member = Member("tag", 0, self.size(tag_enum), self.type_name(tag_enum),
                                    self.alignment(tag_enum), TAG)
        return self._union_layout(name, size, alignment, members, tag_member, base)

    def _variant_part_union(self, part: _Node, name: str, size: int, alignment: int | None) -> TypeLayout:
        """Zig's own backend: a union holding a DW_TAG_variant_part, whose discriminant is the tag (for an
        optional, `has_value`, and its one variant with a payload is named "?")."""
        discriminant = part.attrs.get("DW_AT_discr")
        tag_member, variants = None, []
        for child in part.children:
            if child.tag == _MEMBER and (discriminant is None or child.offset == discriminant):
                tag_member = self._member(child, TAG)[0]
            elif child.tag == _VARIANT:
                variants += [self._member(inner, VARIANT)[0] for inner in child.children if inner.tag == _MEMBER]
        if {variant.name for variant in variants} == {"value", "error"}:  # an error union: its error is the tag
            fields = sorted((Member(variant.name, variant.offset, variant.size, variant.type_name,
                                    variant.alignment, FIELD) for variant in variants), key=lambda m: m.offset)
            holes, tail = _holes(fields, size)
            return TypeLayout(name, ERROR_UNION, size, alignment, tuple(fields), holes, tail)
        payloads = [variant for variant in variants if variant.name == "?"]
        if name.startswith("?") and len(payloads) == 1:
            data = payloads[0]
            fields = [Member("data", data.offset, data.size, data.type_name, data.alignment, FIELD)]
            if tag_member is not None and tag_member.offset >= data.offset + data.size:  # else the null pointer
                fields.append(Member("some", tag_member.offset, tag_member.size, tag_member.type_name,
                                     tag_member.alignment, FIELD))
            holes, tail = _holes(fields, size)
            return TypeLayout(name, OPTIONAL, size, alignment, tuple(fields), holes, tail,
                              (("element", data.type_name),))
        base = min((member.offset for member in variants), default=0)
        return self._union_layout(name, size, alignment, variants, tag_member, base)

    @staticmethod
    def _union_layout(name: str, size: int, alignment: int | None, variants: list[Member], tag: Member | None,
                      base: int) -> TypeLayout:
        payload_size = max((member.size for member in variants), default=0)
        regions = [Member("payload", base, payload_size, "", None, VARIANT)] if payload_size else []
        if tag is not None:
            regions.append(tag)
        holes, tail = _holes(sorted(regions, key=lambda m: m.offset), size)
        members = tuple(variants) + ((tag,) if tag is not None else ())
        return TypeLayout(name, TAGGED_UNION, size, alignment, members, holes, tail)

    def _container_elements(self, name: str, members: dict[str, _Node]) -> tuple[tuple[str, str], ...]:
        """What a standard container holds, from the DWARF: a hash map's key and value (its Header's `keys`
        and `values`, or its KV's `key` and `value`), an array hash map's (its Data), an array list's element
        (its `items` slice); a managed container's, through its `unmanaged` member."""
        plain = zig_name(name)
        if plain.startswith("hash_map.HashMapUnmanaged("):
            header = self._named_node(f"{name}.Header")
            if header is not None:
                fields = {str(child.attrs.get("DW_AT_name")): child for child in header.children
                          if child.tag == _MEMBER}
                found = []
                for role, field in (("key", "keys"), ("value", "values")):
                    pointer = self._target(fields[field]) if field in fields else None
                    target = self._target(self._resolved(pointer)) if pointer is not None else None
                    found.append((role, self.type_name(self._resolved(target)) if target is not None else "void"))
                if type_arguments(name)[1:2] == ["void"]:  # a set: its [*]void is a pointer to anyopaque
                    found[1] = ("value", "void")
                return tuple(found)
            for suffix, key, value in ((".KV", "key", "value"), (".Entry", "key_ptr", "value_ptr")):
                kv = self._named_node(name + suffix)
                if kv is not None:
                    return self._key_value(kv, key, value, suffix == ".Entry")
            arguments = type_arguments(name)
            return (("key", arguments[0]), ("value", arguments[1])) if len(arguments) >= 2 else ()
        if plain.startswith("array_hash_map.ArrayHashMapUnmanaged("):
            data = self._named_node(f"{name}.Data")
            if data is not None:
                return self._key_value(data, "key", "value", False)
            arguments = type_arguments(name)
            return (("key", arguments[0]), ("value", arguments[1])) if len(arguments) >= 2 else ()
        if plain.startswith(("array_list.Aligned(", "array_list.AlignedManaged(")) and "items" in members:
            items = self._target(members["items"])
            if items is not None:
                items_layout = self.layout_at(items.offset)
                return tuple(pair for pair in items_layout.elements if pair[0] == "element")
        if "unmanaged" in members:
            inner = self._target(members["unmanaged"])
            if inner is not None:
                return self.layout_at(inner.offset).elements
        if plain.startswith("multi_array_list.MultiArrayList("):
            arguments = type_arguments(name)
            return (("element", arguments[0]),) if arguments else ()
        return ()

    def _key_value(self, node: _Node, key: str, value: str, through_pointers: bool) -> tuple[tuple[str, str], ...]:
        fields = {str(child.attrs.get("DW_AT_name")): child for child in node.children if child.tag == _MEMBER}
        found = []
        for role, field in (("key", key), ("value", value)):
            target = self._target(fields[field]) if field in fields else None
            if through_pointers and target is not None:
                target = self._target(self._resolved(target))
            found.append((role, self.type_name(self._resolved(target)) if target is not None else "void"))
        return tuple(found)

    def _named_node(self, name: str) -> _Node | None:
        offsets = self._index().get(name)
        return self._node(self._best(offsets)) if offsets else None

    def layouts(self, names: Iterable[str]) -> dict[str, TypeLayout]:
        """The layouts of `names` (keyed by the names asked for; one not found is left out) and of every type
        they hold by value, through fields, variants and container elements, but not through pointers (keyed
        by their DWARF names)."""
        found: dict[str, TypeLayout] = {}
        queue: list[TypeLayout] = []
        for name in names:
            layout = self.layout(name)
            if layout is not None:
                found[name] = layout
                queue.append(layout)
        seen: set[str] = set()
        while queue:
            layout = queue.pop()
            if layout.name in seen:
                continue
            seen.add(layout.name)
            found.setdefault(layout.name, layout)
            held = [member.type_name for member in layout.members if member.role != TAG]
            held += [type_name for role, type_name in layout.elements if role != "target"]
            for type_name in held:
                if type_name in seen or type_name == "void":
                    continue
                offset = self._offset_of.get(type_name)
                inner = self.layout_at(offset) if offset is not None else self.layout(type_name)
                if inner is not None:
                    found.setdefault(type_name, inner)
                    queue.append(inner)
        return found


def _holes(members: list[Member], size: int) -> tuple[tuple[Hole, ...], int]:
    """The gaps between members (sorted by offset) and after the last, up to `size`."""
    holes, end, last = [], 0, None
    for member in members:
        if member.offset > end:
            holes.append(Hole(end, member.offset - end, last))
        if member.offset + member.size >= end:
            end, last = member.offset + member.size, member.name
    return tuple(holes), max(size - end, 0)


def read_layouts(binary: Path, names: Iterable[str]) -> dict[str, TypeLayout]:
    """The layouts of the types `names` name in `binary`'s DWARF, and of every type they hold by value (see
    LayoutReader.layouts; LayoutReader.find says how a name is matched). A binary without DWARF gives {}."""
    with LayoutReader(binary) as reader:
        return reader.layouts(names)


# What makes a type large, and what boxing would save --------------------------------------------------------


_LEAVES = frozenset({BASE, ENUM, POINTER, SLICE, FUNCTION, OPAQUE})


def cause(layout: TypeLayout, layouts: Mapping[str, TypeLayout], share: float = 0.5) -> list[Member]:
    """The chain of members that makes `layout` as large as it is: at each level the largest field or variant
    (ties: the first), as long as it makes at least `share` of its type's size, down to a type with no members
    (an integer, a pointer, a slice) or an array of such, or to a type `layouts` does not hold. An array of
    structures or unions continues into its element, as a member named "[]" (its size is one element's).
    E.g. keyspace.Value -> variant `sketch` (keyspace.Sketch) -> field `registers` ([4096]u8). A type no
    member dominates (four fields of 16 B in a 64-byte struct) gives an empty chain."""
    chain: list[Member] = []
    current: TypeLayout | None = layout
    seen: set[str] = set()
    while current is not None and current.name not in seen:
        seen.add(current.name)
        if current.kind == ARRAY:  # into the element, when it is a structure or union (through arrays of them)
            inner = layouts.get(current.element("element") or "")
            innermost = inner
            while innermost is not None and innermost.kind == ARRAY:
                innermost = layouts.get(innermost.element("element") or "")
            if inner is None or innermost is None or innermost.kind in _LEAVES:
                break
            chain.append(Member("[]", 0, inner.size, inner.name, inner.alignment, FIELD))
            current = inner
            continue
        if current.kind in _LEAVES:
            break
        candidates = [member for member in current.members if member.role != TAG]
        if not candidates:
            break
        biggest = max(candidates, key=lambda member: member.size)  # max keeps the first of equals
        if biggest.size == 0 or biggest.size < share * current.size:
            break
        chain.append(biggest)
        current = layouts.get(biggest.type_name)
    return chain


def recomputed_size(layout: TypeLayout, replace: Mapping[str, tuple[int, int]] | None = None) -> int | None:
    """The size of `layout` worked out again from its members' sizes and alignments, as Zig 0.15 lays types
    out, with the members named in `replace` given another (size, alignment). None when a member's alignment
    is unknown, or for a kind that has no members to lay out.

    - A tagged union: the payload is as large as its largest variant and as aligned as its most aligned one
      (not rounded: a [12]u8 and a u64 make a 12-byte payload); the more aligned of tag and payload goes
      first (the tag, when as aligned); then: {payload, tag}: the payload's size rounded to the tag's
      alignment, plus the tag, rounded to the payload's alignment; {tag, payload}: the tag's size rounded to
      the payload's alignment, plus the payload, rounded to the tag's alignment.
    - A bare union: the largest variant, rounded to the most aligned.
    - A structure: when its fields are in descending alignment (Zig's auto layout sorts them so), sorted so
      again; otherwise (an extern struct) in their order; each field at the next offset its alignment
      allows, the end rounded to the largest alignment."""
    replace = replace or {}
    shapes: list[tuple[int, int]] = []
    for member in layout.members:
        if member.role == TAG:
            continue
        size, alignment = replace.get(member.name, (member.size, member.alignment))
        if alignment is None:
            if size:
                return None
            alignment = 1
        shapes.append((size, alignment))
    if layout.kind == TAGGED_UNION:
        with_payload = [(size, alignment) for size, alignment in shapes if size > 0]
        payload_size = max((size for size, _ in with_payload), default=0)
        payload_align = max((alignment for _, alignment in with_payload), default=1)
        tag = layout.tag
        if tag is None or tag.size == 0:
            return _align_forward(payload_size, payload_align)
        tag_align = tag.alignment or _natural_alignment(tag.size)
        if payload_size == 0:
            return _align_forward(tag.size, tag_align)
        if tag_align >= payload_align:
            return _align_forward(_align_forward(tag.size, payload_align) + payload_size, tag_align)
        return _align_forward(_align_forward(payload_size, tag_align) + tag.size, payload_align)
    if layout.kind == UNION:
        if not shapes:
            return None
        return _align_forward(max(size for size, _ in shapes), max(alignment for _, alignment in shapes))
    if layout.kind in (STRUCT, SLICE, OPTIONAL, ERROR_UNION):
        if not shapes:
            return layout.size
        declared = [member.alignment or 1 for member in layout.members]
        if all(a >= b for a, b in itertools.pairwise(declared)):
            shapes.sort(key=lambda shape: -shape[1])
        offset = 0
        for size, alignment in shapes:
            offset = _align_forward(offset, alignment) + size
        # A type more aligned than any of its members (an explicit alignment) stays so.
        floor = layout.alignment if layout.alignment and layout.alignment > max(declared) else 1
        return _align_forward(offset, max(floor, *(alignment for _, alignment in shapes)))
    return None


def boxed_size(layout: TypeLayout, member: Member | str, pointer_size: int = POINTER_SIZE) -> int | None:
    """The size `layout` would have if `member`'s payload were held through a pointer (`pointer_size` bytes,
    as aligned), worked out from the other members, the tag and the alignments (recomputed_size). None when
    that model does not give back the type's actual size with nothing boxed (a layout it does not know), or
    when the member is not one of the type's fields or variants."""
    name = member if isinstance(member, str) else member.name
    found = layout.member(name)
    if found is None or found.role == TAG or recomputed_size(layout) != layout.size:
        return None
    return recomputed_size(layout, {name: (pointer_size, pointer_size)})


def slot_size(layout: TypeLayout, layouts: Mapping[str, TypeLayout]) -> int | None:
    """The bytes one slot of a container takes in its allocation: a hash_map.HashMapUnmanaged's key, value and
    metadata byte; otherwise the sum of its key and value, or its element. None when a type is not known."""
    roles = dict(layout.elements)
    held = [roles[role] for role in ("key", "value") if role in roles] or (
        [roles["element"]] if "element" in roles else [])
    if not held:
        return None
    total = 0
    for type_name in held:
        if type_name == "void":
            continue
        inner = layouts.get(type_name)
        if inner is None:
            return None
        total += inner.size
    if zig_name(layout.name).startswith("hash_map.HashMapUnmanaged("):
        total += 1
    return total


# Rendering ---------------------------------------------------------------------------------------------------


def _bytes(count: int) -> str:
    return f"{count:,} B"


def render(layout: TypeLayout) -> list[str]:
    """`layout` as text in pahole's spirit: a header, one line per member (offset, size, name, type; a union's
    variants in declaration order, each marked as a variant), the holes and the tail padding where they
    fall, and a summary line."""
    alignment = f", align {layout.alignment}" if layout.alignment else ""
    lines = [f"{zig_name(layout.name)}: {layout.kind}, {_bytes(layout.size)}{alignment}"]
    gaps = [(hole.offset, hole.size, f"(hole, {_bytes(hole.size)})", "") for hole in layout.holes]
    if layout.tail_padding:
        gaps.append((layout.size - layout.tail_padding, layout.tail_padding,
                     f"(tail padding, {_bytes(layout.tail_padding)})", ""))
    placed = [(member.offset, member.size, member.name if member.role == FIELD else f"{member.name} ({member.role})",
               zig_name(member.type_name)) for member in layout.members if member.role != VARIANT]
    variants = [(member.offset, member.size, f"{member.name} (variant)", zig_name(member.type_name))
                for member in layout.variants]
    rows = variants + sorted(placed + gaps, key=lambda row: row[0])  # sorted() is stable: a member before a gap
    if rows:
        width = max(len(row[2]) for row in rows)
        lines.append(f"  {'offset':>8} {'size':>8}  {'name':<{width}}  type")
        lines += [f"  {offset:>8,} {size:>8,}  {label:<{width}}  {type_name}".rstrip()
                  for offset, size, label, type_name in rows]
    summary = f"  size {_bytes(layout.size)}, padding {_bytes(layout.padding)}"
    if layout.count is not None:
        summary += f", {layout.count:,} elements"
    if layout.elements:
        summary += "; holds: " + ", ".join(f"{role} {zig_name(type_name)}" for role, type_name in layout.elements)
    lines.append(summary)
    return lines
