"""The DWARF zprof reads itself: the scopes (functions, inlined calls) that cover given
addresses, and the line table, for the symboliser's pure-Python path.

pyelftools finds the sections, compile-unit headers, abbreviation tables, file
tables and range lists; the walk over the DIEs and the line program are decoded
here, because pyelftools' generic parsing costs some 20 µs a DIE and a Zig
server's one compile unit has hundreds of thousands. This walk reads only the
DIEs that can hold code (functions, inlined calls, lexical blocks) and skips
every subtree whose ranges hold no wanted address without decoding it.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass

# DW_TAG_* values and DW_AT_* names zprof reads.
SUBPROGRAM, INLINED, LEXICAL_BLOCK = "DW_TAG_subprogram", "DW_TAG_inlined_subroutine", "DW_TAG_lexical_block"
CODE_SCOPES = (SUBPROGRAM, INLINED, LEXICAL_BLOCK)
NAME_KEYS = ("DW_AT_linkage_name", "DW_AT_MIPS_linkage_name", "DW_AT_name")
_WANTED_ATTRIBUTES = frozenset({
    "DW_AT_low_pc", "DW_AT_high_pc", "DW_AT_ranges", "DW_AT_call_file", "DW_AT_call_line", "DW_AT_decl_line",
    "DW_AT_abstract_origin", "DW_AT_specification", *NAME_KEYS,
})
# Forms whose size does not depend on the data; None: the address or offset size.
_FIXED_FORMS: dict[str, int | None] = {
    "DW_FORM_addr": None, "DW_FORM_data1": 1, "DW_FORM_data2": 2, "DW_FORM_data4": 4, "DW_FORM_data8": 8,
    "DW_FORM_data16": 16, "DW_FORM_flag": 1, "DW_FORM_flag_present": 0, "DW_FORM_implicit_const": 0,
    "DW_FORM_ref1": 1, "DW_FORM_ref2": 2, "DW_FORM_ref4": 4, "DW_FORM_ref8": 8, "DW_FORM_ref_sig8": 8,
    "DW_FORM_ref_sup4": 4, "DW_FORM_ref_sup8": 8, "DW_FORM_strx1": 1, "DW_FORM_strx2": 2, "DW_FORM_strx3": 3,
    "DW_FORM_strx4": 4, "DW_FORM_addrx1": 1, "DW_FORM_addrx2": 2, "DW_FORM_addrx3": 3, "DW_FORM_addrx4": 4,
    "DW_FORM_strp": None, "DW_FORM_line_strp": None, "DW_FORM_sec_offset": None, "DW_FORM_ref_addr": None,
    "DW_FORM_strp_sup": None, "DW_FORM_GNU_ref_alt": None, "DW_FORM_GNU_strp_alt": None,
}
_OFFSET_SIZED = frozenset({"DW_FORM_strp", "DW_FORM_line_strp", "DW_FORM_sec_offset", "DW_FORM_ref_addr",
                           "DW_FORM_strp_sup", "DW_FORM_GNU_ref_alt", "DW_FORM_GNU_strp_alt"})
_LEB_FORMS = frozenset({"DW_FORM_udata", "DW_FORM_sdata", "DW_FORM_ref_udata", "DW_FORM_strx", "DW_FORM_addrx",
                        "DW_FORM_loclistx", "DW_FORM_rnglistx", "DW_FORM_GNU_addr_index", "DW_FORM_GNU_str_index"})
_UNSIGNED = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}


class UnsupportedDwarf(Exception):
    """Something this reader does not decode; the caller falls back to pyelftools."""


def uleb(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def sleb(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return (result - (1 << shift) if byte & 0x40 else result), pos


def cstring(data: bytes, pos: int) -> str:
    return data[pos:data.index(b"\0", pos)].decode(errors="replace")


@dataclass(frozen=True)
class _Abbrev:
    tag: str
    has_children: bool
    specs: tuple[tuple[str, str, int | None], ...]  # (attribute, form, implicit constant)
    size: int | None  # every attribute together, when no form's size depends on the data
    wanted: bool  # a code scope, whose attributes are decoded


@dataclass
class Scope:
    """A function or inlined call covering some wanted address."""

    depth: int
    offset: int  # of its DIE, for its name and declaration line
    ranges: list[tuple[int, int]]
    call_file: int | None  # an index into the line table's files
    call_line: int | None

    @property
    def entry(self) -> int:
        return min(lo for lo, _ in self.ranges)


class UnitReader:
    """One compile unit's DIEs, read straight from .debug_info's bytes."""

    def __init__(self, reader: DwarfReader, cu) -> None:  # type: ignore[no-untyped-def]
        self.dwarf, self.cu, self.info = reader.dwarf, cu, reader.section("debug_info")
        self.strings, self.line_strings = reader.section("debug_str"), reader.section("debug_line_str")
        self._section = reader.section
        self.address_size = cu["address_size"]
        self.offset_size = 8 if cu.dwarf_format() == 64 else 4
        self.end = cu.cu_offset + cu.size
        self._table = cu.get_abbrev_table()
        self._abbrevs: dict[int, _Abbrev] = {}
        self._die_at = reader.die_at  # a DIE anywhere in .debug_info, for references across units
        top = cu.get_top_DIE().attributes
        self._top = top
        self._str_offsets_base = top["DW_AT_str_offsets_base"].value if "DW_AT_str_offsets_base" in top else 8
        self._addr_base = top["DW_AT_addr_base"].value if "DW_AT_addr_base" in top else 8
        self._rnglists_base = top["DW_AT_rnglists_base"].value if "DW_AT_rnglists_base" in top else None
        self.base_address = top["DW_AT_low_pc"].value if "DW_AT_low_pc" in top else 0
        self._ranges_cache: dict[int, list[tuple[int, int]]] = {}

    # Abbreviations ---------------------------------------------------------
    def abbrev(self, code: int) -> _Abbrev:
        known = self._abbrevs.get(code)
        if known is not None:
            return known
        decl = self._table.get_abbrev(code)
        specs = tuple((str(spec.name), spec.form, getattr(spec, "value", None) if spec.form ==
                       "DW_FORM_implicit_const" else None) for spec in decl["attr_spec"])
        size: int | None = 0
        for _, form, _ in specs:
            if form not in _FIXED_FORMS:
                size = None
                break
            fixed = _FIXED_FORMS[form]
            size += fixed if fixed is not None else (self.offset_size if form in _OFFSET_SIZED
                                                     else self.address_size)  # type: ignore[operator]
        made = _Abbrev(decl["tag"], decl.has_children(), specs, size, decl["tag"] in CODE_SCOPES)
        self._abbrevs[code] = made
        return made

    # Attribute values ------------------------------------------------------
    def _skip_form(self, form: str, pos: int) -> int:
        fixed = _FIXED_FORMS.get(form, -1)
        if fixed is None:
            return pos + (self.offset_size if form in _OFFSET_SIZED else self.address_size)
        if fixed != -1:
            return pos + fixed  # type: ignore[operator]
        data = self.info
        if form in _LEB_FORMS:
            while data[pos] & 0x80:
                pos += 1
            return pos + 1
        if form == "DW_FORM_string":
            return data.index(b"\0", pos) + 1
        if form in ("DW_FORM_exprloc", "DW_FORM_block"):
            length, pos = uleb(data, pos)
            return pos + length
        if form == "DW_FORM_block1":
            return pos + 1 + data[pos]
        if form == "DW_FORM_block2":
            return pos + 2 + struct.unpack_from("<H", data, pos)[0]
        if form == "DW_FORM_block4":
            return pos + 4 + struct.unpack_from("<I", data, pos)[0]
        if form == "DW_FORM_indirect":
            actual, pos = uleb(data, pos)
            raise UnsupportedDwarf(f"DW_FORM_indirect ({actual})")
        raise UnsupportedDwarf(form)

    def skip(self, abbrev: _Abbrev, pos: int) -> int:
        if abbrev.size is not None:
            return pos + abbrev.size
        for _, form, _ in abbrev.specs:
            pos = self._skip_form(form, pos)
        return pos

    def _value(self, form: str, pos: int) -> int | str:
        data = self.info
        if form == "DW_FORM_addr":
            return struct.unpack_from(_UNSIGNED[self.address_size], data, pos)[0]
        if form in ("DW_FORM_data1", "DW_FORM_ref1", "DW_FORM_flag", "DW_FORM_strx1", "DW_FORM_addrx1"):
            value = data[pos]
        elif form in ("DW_FORM_data2", "DW_FORM_ref2", "DW_FORM_strx2", "DW_FORM_addrx2"):
            value = struct.unpack_from("<H", data, pos)[0]
        elif form in ("DW_FORM_strx3", "DW_FORM_addrx3"):
            value = int.from_bytes(data[pos:pos + 3], "little")
        elif form in ("DW_FORM_data4", "DW_FORM_ref4", "DW_FORM_strx4", "DW_FORM_addrx4"):
            value = struct.unpack_from("<I", data, pos)[0]
        elif form in ("DW_FORM_data8", "DW_FORM_ref8"):
            value = struct.unpack_from("<Q", data, pos)[0]
        elif form in _OFFSET_SIZED:
            value = struct.unpack_from(_UNSIGNED[self.offset_size], data, pos)[0]
        elif form in ("DW_FORM_udata", "DW_FORM_ref_udata", "DW_FORM_strx", "DW_FORM_addrx", "DW_FORM_rnglistx"):
            value = uleb(data, pos)[0]
        elif form == "DW_FORM_sdata":
            return sleb(data, pos)[0]
        elif form == "DW_FORM_string":
            return cstring(data, pos)
        elif form == "DW_FORM_flag_present":
            return 1
        else:
            raise UnsupportedDwarf(form)
        if form.startswith("DW_FORM_ref") and form != "DW_FORM_ref_addr":
            return value + self.cu.cu_offset  # unit-relative references made absolute
        if form == "DW_FORM_strp":
            return cstring(self.strings, value)
        if form == "DW_FORM_line_strp":
            return cstring(self.line_strings, value)
        if form.startswith("DW_FORM_strx"):
            return cstring(self.strings, self._indexed("debug_str_offsets", self._str_offsets_base, value,
                                                       self.offset_size))
        if form.startswith("DW_FORM_addrx"):
            return self._indexed("debug_addr", self._addr_base, value, self.address_size)
        return value

    def _indexed(self, section: str, base: int, index: int, size: int) -> int:
        return struct.unpack_from(_UNSIGNED[size], self._section(section), base + index * size)[0]

    def read(self, abbrev: _Abbrev, pos: int) -> tuple[dict[str, int | str], int]:
        """The wanted attributes of a DIE whose attributes start at `pos`, and where the DIE ends."""
        attrs: dict[str, int | str] = {}
        for name, form, constant in abbrev.specs:
            if name in _WANTED_ATTRIBUTES:
                if form == "DW_FORM_implicit_const":
                    attrs[name] = constant  # type: ignore[assignment]
                else:
                    attrs[name] = self._value(form, pos)
                if form == "DW_FORM_rnglistx":
                    attrs["rnglistx"] = 1
                if name == "DW_AT_high_pc" and form != "DW_FORM_addr" and not form.startswith("DW_FORM_addrx"):
                    attrs["high_is_offset"] = 1
            pos = self._skip_form(form, pos)
        return attrs, pos

    def die(self, offset: int) -> dict[str, int | str]:
        code, pos = uleb(self.info, offset)
        return self.read(self.abbrev(code), pos)[0] if code else {}

    # Ranges ----------------------------------------------------------------
    def ranges(self, attrs: dict[str, int | str]) -> list[tuple[int, int]]:
        low = attrs.get("DW_AT_low_pc")
        if low is not None and "DW_AT_high_pc" in attrs:
            high = attrs["DW_AT_high_pc"]
            return [(low, low + high if "high_is_offset" in attrs else high)]  # type: ignore[list-item,operator]
        if "DW_AT_ranges" not in attrs:
            return []
        offset = int(attrs["DW_AT_ranges"])
        if "rnglistx" in attrs:
            if self._rnglists_base is None:
                return []
            offset = self._rnglists_base + self._indexed("debug_rnglists", self._rnglists_base, offset,
                                                         self.offset_size)
        cached = self._ranges_cache.get(offset)
        if cached is None:
            cached = self._ranges_cache[offset] = self._range_list(offset, low)  # type: ignore[arg-type]
        return cached

    def _range_list(self, offset: int, low: int | None) -> list[tuple[int, int]]:
        range_lists = self.dwarf.range_lists()
        if range_lists is None:
            return []
        base = low if low is not None else self.base_address
        try:
            entries = range_lists.get_range_list_at_offset(offset, cu=self.cu)
        except Exception:  # a malformed list loses detail, not the run
            return []
        found: list[tuple[int, int]] = []
        for entry in entries:
            if hasattr(entry, "begin_offset"):
                begin, end = entry.begin_offset, entry.end_offset
                if not getattr(entry, "is_absolute", False):
                    begin, end = begin + base, end + base
                found.append((begin, end))
            elif hasattr(entry, "base_address"):
                base = entry.base_address
        return found

    # The walk --------------------------------------------------------------
    def scopes(self, wanted: list[int]) -> list[Scope]:
        """Functions and inlined calls covering any of `wanted` (sorted), depth 0 for the unit's children."""
        info, found = self.info, []
        code, pos = uleb(info, self.cu.cu_die_offset)
        top = self.abbrev(code)
        pos = self.skip(top, pos)
        if not top.has_children:
            return []
        depth, end = 0, self.end
        while pos < end:
            offset = pos
            code = info[pos]
            if code < 0x80:
                pos += 1
            else:
                code, pos = uleb(info, pos)
            if code == 0:
                depth -= 1
                if depth < 0:
                    break
                continue
            abbrev = self.abbrev(code)
            if not abbrev.wanted:
                pos = self.skip(abbrev, pos)
                if abbrev.has_children:
                    depth += 1
                continue
            attrs, pos = self.read(abbrev, pos)
            ranges = self.ranges(attrs)
            if ranges and not _covers_any(ranges, wanted):
                if abbrev.has_children:
                    pos = self.skip_subtree(pos)
                continue
            if ranges and abbrev.tag != LEXICAL_BLOCK:
                call_file, call_line = attrs.get("DW_AT_call_file"), attrs.get("DW_AT_call_line")
                found.append(Scope(depth, offset, ranges, call_file, call_line))  # type: ignore[arg-type]
            if abbrev.has_children:
                depth += 1
        return found

    def skip_subtree(self, pos: int) -> int:
        """Past the children of a DIE whose attributes end at `pos`, decoding none of them."""
        info, level = self.info, 1
        abbrevs = self._abbrevs
        while level:
            code = info[pos]
            if code < 0x80:
                pos += 1
            else:
                code, pos = uleb(info, pos)
            if code == 0:
                level -= 1
                continue
            abbrev = abbrevs.get(code) or self.abbrev(code)
            size = abbrev.size
            pos = pos + size if size is not None else self.skip(abbrev, pos)
            if abbrev.has_children:
                level += 1
        return pos

    # Names -----------------------------------------------------------------
    def origin_attribute(self, offset: int, keys: tuple[str, ...]) -> int | str | None:
        """The first of `keys` on the DIE at `offset` or on what it is an instance of."""
        attrs = self._die_at(offset)
        for _ in range(8):
            for key in keys:
                if key in attrs:
                    return attrs[key]
            origin = attrs.get("DW_AT_abstract_origin", attrs.get("DW_AT_specification"))
            if origin is None:
                return None
            attrs = self._die_at(int(origin))
        return None


def _covers_any(ranges: list[tuple[int, int]], wanted: list[int]) -> bool:
    for lo, hi in ranges:
        index = bisect.bisect_left(wanted, lo)
        if index < len(wanted) and wanted[index] < hi:
            return True
    return False


class DwarfReader:
    """The units of one binary's DWARF, read on demand, and the sections they read."""

    def __init__(self, dwarf) -> None:  # type: ignore[no-untyped-def]
        self.dwarf = dwarf
        self._sections: dict[str, bytes] = {}
        self._units: dict[int, UnitReader] = {}
        self._unit_starts: list[int] = []
        self._unit_list: list = []  # type: ignore[type-arg]
        self._dies: dict[int, dict[str, int | str]] = {}

    def section(self, name: str) -> bytes:
        data = self._sections.get(name)
        if data is None:
            descriptor = getattr(self.dwarf, f"{name}_sec", None)
            data = self._sections[name] = descriptor.stream.getvalue() if descriptor is not None else b""
        return data

    def unit(self, cu) -> UnitReader:  # type: ignore[no-untyped-def]
        reader = self._units.get(cu.cu_offset)
        if reader is None:
            reader = self._units[cu.cu_offset] = UnitReader(self, cu)
        return reader

    def die_at(self, offset: int) -> dict[str, int | str]:
        """The wanted attributes of the DIE at `offset` in .debug_info, in whichever unit holds it."""
        known = self._dies.get(offset)
        if known is None:
            if not self._unit_starts:
                self._unit_list = list(self.dwarf.iter_CUs())
                self._unit_starts = [cu.cu_offset for cu in self._unit_list]
            index = bisect.bisect_right(self._unit_starts, offset) - 1
            known = self._dies[offset] = self.unit(self._unit_list[index]).die(offset) if index >= 0 else {}
        return known

    def line_rows(self, line_program, files: list[str | None]) -> list[tuple[int, str | None, int | None]]:  # type: ignore[no-untyped-def]
        return line_rows(line_program, files, self.section("debug_line"))


def line_rows(line_program, files: list[str | None], data: bytes) -> list[tuple[int, str | None, int | None]]:  # type: ignore[no-untyped-def]
    """(address, file, line) for every row of a unit's line program, sorted by address, as pyelftools'
    entries give them (an end of sequence is a row without file or line)."""
    header = line_program.header
    if header.get("maximum_operations_per_instruction", 1) != 1:
        raise UnsupportedDwarf("VLIW line programs")
    opcode_base, line_base, line_range = header["opcode_base"], header["line_base"], header["line_range"]
    min_length = header["minimum_instruction_length"]
    lengths = header["standard_opcode_lengths"]
    count = len(files)
    rows: list[tuple[int, str | None, int | None]] = []
    append = rows.append
    # Each special opcode's address and line advance, worked out once.
    advance = [((op - opcode_base) // line_range * min_length, line_base + (op - opcode_base) % line_range)
               for op in range(256)]
    const_add_pc = advance[255][0]
    address, file, line = 0, 1, 1
    pos, end = line_program.program_start_offset, line_program.program_end_offset
    while pos < end:
        op = data[pos]
        pos += 1
        if op >= opcode_base:
            step, delta = advance[op]
            address += step
            line += delta
            append((address, files[file] if 0 <= file < count else None, line))
        elif op == 0:
            length, pos = uleb(data, pos)
            after = pos + length
            sub = data[pos]
            if sub == 1:  # DW_LNE_end_sequence
                append((address, None, None))
                address, file, line = 0, 1, 1
            elif sub == 2:  # DW_LNE_set_address
                address = int.from_bytes(data[pos + 1:after], "little")
            pos = after  # define_file, set_discriminator and the unknown change no row zprof keeps
        elif op == 1:  # DW_LNS_copy
            append((address, files[file] if 0 <= file < count else None, line))
        elif op == 2:  # advance_pc
            operand, pos = uleb(data, pos)
            address += operand * min_length
        elif op == 3:  # advance_line
            operand, pos = sleb(data, pos)
            line += operand
        elif op == 4:  # set_file
            file, pos = uleb(data, pos)
        elif op == 8:  # const_add_pc
            address += const_add_pc
        elif op == 9:  # fixed_advance_pc
            address += struct.unpack_from("<H", data, pos)[0]
            pos += 2
        else:  # set_column, negate_stmt, basic_block, prologue/epilogue, isa, vendor opcodes: operands skipped
            for _ in range(lengths[op - 1]):
                _, pos = uleb(data, pos)
    rows.sort(key=lambda row: row[0])
    return rows


_TAG_INLINED, _AT_CALL_FILE, _AT_CALL_LINE, _FORM_IMPLICIT_CONST = 0x1D, 0x58, 0x59, 0x21


def inlined_calls_lack_files(abbreviations: bytes) -> bool:
    """Whether any abbreviation of an inlined call (in .debug_abbrev's bytes) has a call line but no call
    file, as Zig's own backend writes them in Debug builds."""
    pos, end = 0, len(abbreviations)
    while pos < end:
        code, pos = uleb(abbreviations, pos)
        if code == 0:  # the end of one unit's table; another may follow
            continue
        tag, pos = uleb(abbreviations, pos)
        pos += 1  # has-children flag
        attributes = set()
        while True:
            attribute, pos = uleb(abbreviations, pos)
            form, pos = uleb(abbreviations, pos)
            if form == _FORM_IMPLICIT_CONST:
                _, pos = sleb(abbreviations, pos)
            if attribute == 0 and form == 0:
                break
            attributes.add(attribute)
        if tag == _TAG_INLINED and _AT_CALL_LINE in attributes and _AT_CALL_FILE not in attributes:
            return True
    return False
