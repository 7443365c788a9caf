"""Code addresses to functions, files, lines and inlined-frame chains.

Reads the binary's symbol table and DWARF with pyelftools. Zig's generic names
(`array_list.Aligned(u8,null).ensureTotalCapacity`) are kept whole. Results
are cached per binary, since decoding DWARF is the slow part.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.dwarf.die import DIE
from elftools.elf.elffile import ELFFile

from zprof.errors import ZprofError

# Bumped when what is cached changes meaning.
CACHE_VERSION = 4


@dataclass(frozen=True)
class SourceFrame:
    function: str
    file: str | None
    line: int | None
    # Where the function itself is declared (DWARF's decl_line), when known.
    decl_line: int | None = None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.file else "?"


# Zig's own library directories, as `lib/NAME/` inside any Zig installation.
_ZIG_LIBRARIES = ("std", "compiler_rt")


def display_path(path: str) -> str:
    """Zig's library files by their place in it (the build compiled them from a copy)."""
    for library in _ZIG_LIBRARIES:
        marker = f"/lib/{library}/"
        if marker in path:
            return library + "/" + path.split(marker, 1)[1]
    return path


def is_std_file(path: str | None) -> bool:
    """Zig's std or compiler runtime, rather than the project's own code."""
    return bool(path) and display_path(path).startswith(tuple(f"{lib}/" for lib in _ZIG_LIBRARIES))  # type: ignore[arg-type]


@dataclass
class _Scope:
    """A subprogram or inlined subroutine that covers some wanted address."""

    depth: int
    name: str
    ranges: list[tuple[int, int]]
    call_file: str | None
    call_line: int | None
    decl_line: int | None

    @property
    def entry(self) -> int:
        return min(lo for lo, _ in self.ranges)


class Symbolizer:
    def __init__(self, binary: Path, cache_dir: Path | None = None) -> None:
        self.binary = binary
        try:
            self._file = open(binary, "rb")  # noqa: SIM115 - kept open for lazy DWARF reads
            self._elf = ELFFile(self._file)
        except (OSError, ELFError) as error:
            raise ZprofError(f"cannot read {binary} as an ELF executable: {error}") from error
        self._starts: list[int] = []
        self._symbols: list[tuple[int, int, str]] = []
        self._load_symbols()
        self._cache_path = self._cache_file(cache_dir) if cache_dir else None
        self._cache: dict[int, tuple[SourceFrame, ...]] = self._read_cache()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Symbolizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Symbol table ---------------------------------------------------------
    def _load_symbols(self) -> None:
        table = self._elf.get_section_by_name(".symtab")
        if table is None:
            return
        found = sorted(
            (sym["st_value"], sym["st_size"], sym.name)
            for sym in table.iter_symbols()
            if sym["st_info"]["type"] == "STT_FUNC" and sym["st_value"]
        )
        self._symbols = found
        self._starts = [start for start, _, _ in found]

    def function_starts(self) -> dict[str, int]:
        """Function name to its address, as perf names functions."""
        return {name: start for start, _, name in self._symbols}

    def symbol(self, address: int) -> str | None:
        index = bisect.bisect_right(self._starts, address) - 1
        if index < 0:
            return None
        start, size, name = self._symbols[index]
        return name if address < start + max(size, 1) else None

    @property
    def has_debug_info(self) -> bool:
        return self._elf.has_dwarf_info() and self._elf.get_section_by_name(".debug_info") is not None

    # Cache ----------------------------------------------------------------
    def _cache_file(self, cache_dir: Path) -> Path:
        stat = self.binary.stat()
        identity = f"{CACHE_VERSION}|{self.binary.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        key = hashlib.sha256(identity.encode()).hexdigest()
        return cache_dir / f"symbols-{key[:16]}.json"

    def _read_cache(self) -> dict[int, tuple[SourceFrame, ...]]:
        if not self._cache_path or not self._cache_path.is_file():
            return {}
        try:
            raw = json.loads(self._cache_path.read_text())
            return {int(addr): tuple(SourceFrame(**frame) for frame in frames) for addr, frames in raw.items()}
        except (ValueError, TypeError):
            return {}

    def _write_cache(self) -> None:
        if not self._cache_path:
            return
        self._cache_path.parent.mkdir(parents=True, exist_ok=True)
        raw = {str(addr): [asdict(frame) for frame in frames] for addr, frames in self._cache.items()}
        self._cache_path.write_text(json.dumps(raw))

    # DWARF ----------------------------------------------------------------
    def locate(self, addresses: Iterable[int]) -> dict[int, tuple[SourceFrame, ...]]:
        """For each code address, its frames innermost first (inlined ones before their caller)."""
        wanted = sorted(set(addresses) - self._cache.keys())
        if wanted:
            resolved = self._resolve_dwarf(wanted) if self.has_debug_info else {}
            for address in wanted:
                self._cache[address] = resolved.get(address) or (
                    SourceFrame(self.symbol(address) or f"0x{address:x}", None, None),
                )
            self._write_cache()
        return {address: self._cache[address] for address in addresses}

    def _resolve_dwarf(self, wanted: list[int]) -> dict[int, tuple[SourceFrame, ...]]:
        dwarf = self._elf.get_dwarf_info()
        resolved: dict[int, tuple[SourceFrame, ...]] = {}
        for cu in dwarf.iter_CUs():
            top = cu.get_top_DIE()
            cu_ranges = self._die_ranges(dwarf, top, cu)
            in_cu = [a for a in wanted if any(lo <= a < hi for lo, hi in cu_ranges)] if cu_ranges else wanted
            if not in_cu:
                continue
            line_program = dwarf.line_program_for_CU(cu)
            if line_program is None:
                continue
            files = self._file_names(line_program, cu)
            lines = self._line_rows(line_program, files)
            scopes = self._scopes(dwarf, cu, top, in_cu, files)
            for address in in_cu:
                chain = sorted((s for s in scopes if any(lo <= address < hi for lo, hi in s.ranges)),
                               key=lambda s: s.depth, reverse=True)
                if not chain:
                    continue
                file, line = self._line_at(lines, address)
                frames: list[SourceFrame] = []
                for scope, caller in zip(chain, [*chain[1:], None], strict=True):
                    frames.append(SourceFrame(scope.name, file, line, scope.decl_line))
                    file, line = scope.call_file, scope.call_line
                    if file is None and caller is not None:
                        # Zig's own backend (Debug builds) leaves out DW_AT_call_file: the call is in
                        # the caller's file, which is where the caller's first instruction comes from.
                        file = self._line_at(lines, caller.entry)[0]
                resolved[address] = tuple(frames)
        return resolved

    @staticmethod
    def _file_names(line_program, cu) -> list[str | None]:  # type: ignore[no-untyped-def]
        header = line_program.header
        directories = [d.decode(errors="replace") if isinstance(d, bytes) else str(d)
                       for d in header["include_directory"]]
        comp_dir = cu.get_top_DIE().attributes.get("DW_AT_comp_dir")
        base = comp_dir.value.decode(errors="replace") if comp_dir else ""
        version = header["version"]
        names: list[str | None] = [] if version >= 5 else [None]  # DWARF < 5 counts files from 1
        for entry in header["file_entry"]:
            name = entry.name.decode(errors="replace")
            dir_index = entry.dir_index
            if version >= 5:
                directory = directories[dir_index] if dir_index < len(directories) else base
            else:
                directory = directories[dir_index - 1] if 0 < dir_index <= len(directories) else base
            path = name if name.startswith("/") else f"{directory.rstrip('/')}/{name}" if directory else name
            names.append(display_path(path))
        return names

    @staticmethod
    def _line_rows(line_program, files: list[str | None]) -> list[tuple[int, str | None, int | None]]:  # type: ignore[no-untyped-def]
        rows: list[tuple[int, str | None, int | None]] = []
        for entry in line_program.get_entries():
            state = entry.state
            if state is None:
                continue
            if state.end_sequence:
                rows.append((state.address, None, None))
            else:
                file = files[state.file] if 0 <= state.file < len(files) else None
                rows.append((state.address, file, state.line))
        rows.sort(key=lambda row: row[0])
        return rows

    @staticmethod
    def _line_at(rows: list[tuple[int, str | None, int | None]], address: int) -> tuple[str | None, int | None]:
        index = bisect.bisect_right(rows, address, key=lambda row: row[0]) - 1
        if index < 0:
            return None, None
        _, file, line = rows[index]
        return file, line

    @staticmethod
    def _die_ranges(dwarf, die: DIE, cu) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
        attrs = die.attributes
        if "DW_AT_low_pc" in attrs and "DW_AT_high_pc" in attrs:
            low = attrs["DW_AT_low_pc"].value
            high_attr = attrs["DW_AT_high_pc"]
            high = high_attr.value if high_attr.form == "DW_FORM_addr" else low + high_attr.value
            return [(low, high)]
        if "DW_AT_ranges" in attrs:
            range_lists = dwarf.range_lists()
            if range_lists is None:
                return []
            base = attrs["DW_AT_low_pc"].value if "DW_AT_low_pc" in attrs else (
                cu.get_top_DIE().attributes["DW_AT_low_pc"].value
                if "DW_AT_low_pc" in cu.get_top_DIE().attributes else 0
            )
            found: list[tuple[int, int]] = []
            try:
                entries = range_lists.get_range_list_at_offset(attrs["DW_AT_ranges"].value, cu=cu)
            except Exception:  # a malformed list loses detail, not the run
                return []
            for entry in entries:
                if hasattr(entry, "begin_offset"):
                    begin, end = entry.begin_offset, entry.end_offset
                    if not getattr(entry, "is_absolute", False):
                        begin, end = begin + base, end + base
                    found.append((begin, end))
                elif hasattr(entry, "base_address"):
                    base = entry.base_address
            return found
        return []

    @staticmethod
    def _origin_attribute(die: DIE, keys: tuple[str, ...]):  # type: ignore[no-untyped-def]
        """The first of `keys` on the DIE or on what it is an instance of."""
        for _ in range(8):
            attrs = die.attributes
            for key in keys:
                if key in attrs:
                    return attrs[key].value
            origin = attrs.get("DW_AT_abstract_origin") or attrs.get("DW_AT_specification")
            if origin is None:
                return None
            die = die.get_DIE_from_attribute(origin.name)
        return None

    def _scope_name(self, die: DIE) -> str:
        name = self._origin_attribute(die, ("DW_AT_linkage_name", "DW_AT_MIPS_linkage_name", "DW_AT_name"))
        return name.decode(errors="replace") if name else "?"

    def _scopes(self, dwarf, cu, top: DIE, wanted: list[int], files: list[str | None]) -> list[_Scope]:  # type: ignore[no-untyped-def]
        scopes: list[_Scope] = []
        stack: list[tuple[DIE, int]] = [(child, 0) for child in top.iter_children()]
        stack.reverse()
        while stack:
            die, depth = stack.pop()
            if die.tag in ("DW_TAG_subprogram", "DW_TAG_inlined_subroutine", "DW_TAG_lexical_block"):
                ranges = self._die_ranges(dwarf, die, cu)
                if ranges and not any(lo <= a < hi for lo, hi in ranges for a in wanted):
                    continue  # nothing wanted inside: skip the whole subtree
                if ranges and die.tag != "DW_TAG_lexical_block":
                    attrs = die.attributes
                    call_file = attrs["DW_AT_call_file"].value if "DW_AT_call_file" in attrs else None
                    scopes.append(_Scope(
                        depth=depth,
                        name=self._scope_name(die),
                        ranges=ranges,
                        call_file=files[call_file] if call_file is not None and call_file < len(files) else None,
                        call_line=attrs["DW_AT_call_line"].value if "DW_AT_call_line" in attrs else None,
                        decl_line=self._origin_attribute(die, ("DW_AT_decl_line",)),
                    ))
            if die.has_children:
                children = list(die.iter_children())
                stack.extend((child, depth + 1) for child in reversed(children))
        return scopes
