"""Code addresses to functions, files, lines and inlined-frame chains.

llvm-symbolizer resolves a batch of addresses in a fraction of a second when it
is installed; otherwise, and for DWARF it reads wrongly, zprof's own reader
(zprof.analysis.dwarf, over pyelftools) does. Both name a frame by its DWARF
linkage name, keep Zig's generic names (`array_list.Aligned(u8,null).append`)
whole, and name the outermost frame as the symbol table does, as perf does.
Results are cached on disk per binary, keyed by its build id (or its contents'
hash), since symbolising is the slow part.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from zprof.analysis.dwarf import NAME_KEYS, DwarfReader, Scope, UnsupportedDwarf, inlined_calls_lack_files
from zprof.builder.project import SourceRoots
from zprof.errors import ZprofError
from zprof.procs import run_bounded

# Bumped when what is cached changes meaning.
CACHE_VERSION = 5
LLVM_SYMBOLIZER = "llvm-symbolizer"
PYTHON_DWARF = "zprof"  # zprof's own DWARF reader
SYMBOLIZER_TIMEOUT_S = 120
_STT_FUNC = 2


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


def _within(addresses: list[int], lo: int, hi: int) -> list[int]:
    """The sorted `addresses` in [lo, hi)."""
    return addresses[bisect.bisect_left(addresses, lo):bisect.bisect_left(addresses, hi)]


def is_std_file(path: str | None) -> bool:
    """Zig's std or compiler runtime, rather than the project's own code."""
    return bool(path) and display_path(path).startswith(tuple(f"{lib}/" for lib in _ZIG_LIBRARIES))  # type: ignore[arg-type]


# A package in Zig's global cache (~/.cache/zig, $ZIG_GLOBAL_CACHE_DIR): `p/<hash>/`, the hash as Zig 0.14+
# names it (`name-version-` and 44 base64url characters) or as Zig 0.11-0.13 did (a 1220 multihash in hex).
_PACKAGE_DIR = re.compile(r"(?:^|/)p/(?:[^/]+-[A-Za-z0-9_-]{44}|1220[0-9a-f]{64})/")


def is_dependency_file(path: str | None) -> bool:
    """A file of a package the project depends on (build.zig.zon), which Zig fetched into its package cache."""
    return bool(path) and _PACKAGE_DIR.search(path) is not None  # type: ignore[arg-type]


def is_library_file(path: str | None) -> bool:
    """Code the project calls but does not own: Zig's std and the packages it depends on."""
    return is_std_file(path) or is_dependency_file(path)


def source_kind(path: str | None) -> str:
    """What code in the target's own binary belongs to: Zig's std, a dependency, or the project."""
    if is_std_file(path):
        return "std"
    return "dependency" if is_dependency_file(path) else "project"


class Symbolizer:
    """`backend`: None picks llvm-symbolizer when it is installed and reads this binary's DWARF right,
    else zprof's own reader; LLVM_SYMBOLIZER or PYTHON_DWARF forces one (for benchmarks and tests).
    `roots`: files are named under the project's checkout rather than the one the binary was compiled in."""

    def __init__(self, binary: Path, cache_dir: Path | None = None, backend: str | None = None,
                 roots: SourceRoots | None = None) -> None:
        self.binary = binary
        self._roots = roots if roots is not None and roots.moved else None
        try:
            self._file = open(binary, "rb")  # noqa: SIM115 - kept open for lazy DWARF reads
            self._elf = ELFFile(self._file)
        except (OSError, ELFError) as error:
            raise ZprofError(f"cannot read {binary} as an ELF executable: {error}") from error
        self._starts: list[int] = []
        self._symbols: list[tuple[int, int, str]] = []
        self._load_symbols()
        self._requested_backend = backend
        self.backend_used: str | None = None  # the backend that resolved the last new addresses
        self._cache_path = cache_dir / f"symbols-{self.identity()}.json" if cache_dir else None
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
        if self._elf.elfclass == 64 and self._elf.little_endian:
            # Read straight from the section: pyelftools takes 0.1-0.3 s for a Zig server's table.
            names = self._elf.get_section(table["sh_link"]).data()
            found = sorted(
                (value, size, names[name:names.index(b"\0", name)].decode(errors="replace"))
                for name, info, _, _, value, size in struct.iter_unpack("<IBBHQQ", table.data())
                if info & 0xF == _STT_FUNC and value
            )
        else:
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
    def identity(self) -> str:
        """The binary's GNU build id when it has one, else a hash of its contents: a rebuilt binary
        at the same path is a new entry, the same binary copied elsewhere the same one."""
        note = self._elf.get_section_by_name(".note.gnu.build-id")
        if note is not None:
            for entry in note.iter_notes():
                if entry["n_type"] == "NT_GNU_BUILD_ID":
                    return f"{CACHE_VERSION}-id-{entry['n_desc']}"
        self._file.seek(0)
        return f"{CACHE_VERSION}-sha256-{hashlib.file_digest(self._file, 'sha256').hexdigest()[:32]}"

    def _read_cache(self) -> dict[int, tuple[SourceFrame, ...]]:
        if not self._cache_path or not self._cache_path.is_file():
            return {}
        try:
            raw = json.loads(self._cache_path.read_text())
            return {int(addr): tuple(SourceFrame(*frame) for frame in frames) for addr, frames in raw.items()}
        except (ValueError, TypeError):
            return {}

    def _write_cache(self) -> None:
        if not self._cache_path:
            return
        self._cache_path.parent.mkdir(parents=True, exist_ok=True)
        raw = {str(addr): [[f.function, f.file, f.line, f.decl_line] for f in frames]
               for addr, frames in self._cache.items()}
        # Written whole, then renamed: two runs at once never leave a half-written file.
        with tempfile.NamedTemporaryFile("w", dir=self._cache_path.parent, delete=False, suffix=".tmp") as out:
            json.dump(raw, out)
        os.replace(out.name, self._cache_path)

    # Resolving ------------------------------------------------------------
    def locate(self, addresses: Iterable[int]) -> dict[int, tuple[SourceFrame, ...]]:
        """For each code address, its frames innermost first (inlined ones before their caller)."""
        addresses = list(addresses)
        wanted = sorted(set(addresses) - self._cache.keys())
        if wanted:
            resolved = self._resolve(wanted) if self.has_debug_info else {}
            for address in wanted:
                frames = resolved.get(address)
                name = self.symbol(address)
                if frames and name:
                    # The function the address is in, as the symbol table (and perf) names it.
                    frames = (*frames[:-1], replace(frames[-1], function=name))
                self._cache[address] = frames or (SourceFrame(name or f"0x{address:x}", None, None),)
            self._write_cache()
        if self._roots is None:
            return {address: self._cache[address] for address in addresses}
        place = self._roots.place
        return {address: tuple(replace(frame, file=place(frame.file)) for frame in self._cache[address])
                for address in addresses}

    def _resolve(self, wanted: list[int]) -> dict[int, tuple[SourceFrame, ...]]:
        backend = self._requested_backend or self._default_backend()
        if backend == LLVM_SYMBOLIZER:
            resolved = self._resolve_llvm(wanted)
            if resolved is not None:
                self.backend_used = LLVM_SYMBOLIZER
                return resolved
            if self._requested_backend == LLVM_SYMBOLIZER:
                raise ZprofError(f"llvm-symbolizer could not read {self.binary}")
        self.backend_used = PYTHON_DWARF
        return self._resolve_dwarf(wanted)

    def _default_backend(self) -> str:
        if shutil.which(LLVM_SYMBOLIZER) is None or not self._inline_calls_name_their_files():
            return PYTHON_DWARF
        return LLVM_SYMBOLIZER

    def _inline_calls_name_their_files(self) -> bool:
        """False for DWARF whose inlined calls carry a line but no file (Zig's own backend, in Debug
        builds): llvm-symbolizer then puts every such call in the unit's first file."""
        section = self._elf.get_section_by_name(".debug_abbrev")
        return section is None or not inlined_calls_lack_files(section.data())

    def _resolve_llvm(self, wanted: list[int]) -> dict[int, tuple[SourceFrame, ...]] | None:
        """llvm-symbolizer over all addresses in one call; None when it failed or printed no JSON."""
        argv = [LLVM_SYMBOLIZER, f"--obj={self.binary}", "--inlining", "--output-style=JSON",
                "--functions=linkage", "--no-demangle", *(f"0x{address:x}" for address in wanted)]
        try:
            done = run_bounded(argv, SYMBOLIZER_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if done.returncode != 0:
            return None
        resolved: dict[int, tuple[SourceFrame, ...]] = {}
        try:
            answers = json.loads(done.stdout)  # one array, an object an address, in order
            if len(answers) != len(wanted):
                return None
            for address, answer in zip(wanted, answers, strict=True):
                frames = tuple(
                    SourceFrame(frame["FunctionName"], display_path(frame["FileName"]) if frame["FileName"] else None,
                                frame["Line"] if frame["FileName"] else None, frame["StartLine"] or None)
                    for frame in answer.get("Symbol", ())
                    if frame.get("FunctionName") not in (None, "", "??", "<invalid>")
                )
                # A lone frame without a line or declaration came from the symbol table alone: no DWARF.
                if frames and not (len(frames) == 1 and not frames[0].line and frames[0].decl_line is None):
                    resolved[address] = frames
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        return resolved

    def _resolve_dwarf(self, wanted: list[int]) -> dict[int, tuple[SourceFrame, ...]]:
        dwarf = self._elf.get_dwarf_info()
        reader = DwarfReader(dwarf)
        resolved: dict[int, tuple[SourceFrame, ...]] = {}
        for cu in dwarf.iter_CUs():
            top = cu.get_top_DIE()
            unit = reader.unit(cu)
            cu_ranges = unit.ranges({key: attr.value for key, attr in top.attributes.items()
                                     if key in ("DW_AT_low_pc", "DW_AT_high_pc", "DW_AT_ranges")}
                                    | ({"high_is_offset": 1} if "DW_AT_high_pc" in top.attributes and
                                       top.attributes["DW_AT_high_pc"].form != "DW_FORM_addr" else {}))
            in_cu = sorted({a for lo, hi in cu_ranges for a in _within(wanted, lo, hi)}) if cu_ranges else wanted
            if not in_cu:
                continue
            line_program = dwarf.line_program_for_CU(cu)
            if line_program is None:
                continue
            files = self._file_names(line_program, cu)
            try:
                lines = reader.line_rows(line_program, files)
                scopes = unit.scopes(in_cu)
            except (UnsupportedDwarf, IndexError, struct.error) as error:
                raise ZprofError(f"cannot read the DWARF of {self.binary}: {error}") from error
            self._chains(unit, scopes, in_cu, files, lines, resolved)
        return resolved

    def _chains(self, unit, scopes: list[Scope], addresses: list[int], files: list[str | None],  # type: ignore[no-untyped-def]
                lines: list[tuple[int, str | None, int | None]], resolved: dict[int, tuple[SourceFrame, ...]]) -> None:
        covering: dict[int, list[Scope]] = {}
        for scope in scopes:
            for address in {a for lo, hi in scope.ranges for a in _within(addresses, lo, hi)}:
                covering.setdefault(address, []).append(scope)
        for address, found in covering.items():
            chain = sorted(found, key=lambda s: s.depth, reverse=True)
            file, line = self._line_at(lines, address)
            frames: list[SourceFrame] = []
            for scope, caller in zip(chain, [*chain[1:], None], strict=True):
                name = unit.origin_attribute(scope.offset, NAME_KEYS)
                decl_line = unit.origin_attribute(scope.offset, ("DW_AT_decl_line",))
                frames.append(SourceFrame(str(name) if name is not None else "?", file, line, decl_line))
                index = scope.call_file
                file = files[index] if index is not None and 0 <= index < len(files) else None
                line = scope.call_line
                if index is None and caller is not None:
                    # Zig's own backend (Debug builds) leaves out DW_AT_call_file: the call is in
                    # the caller's file, which is where the caller's first instruction comes from.
                    file = self._line_at(lines, caller.entry)[0]
            resolved[address] = tuple(frames)

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
            if base and not directory.startswith("/"):  # a directory relative to the compilation's (C units)
                directory = f"{base.rstrip('/')}/{directory}" if directory not in ("", ".") else base
            path = name if name.startswith("/") else f"{directory.rstrip('/')}/{name}" if directory else name
            names.append(display_path(path))
        return names

    @staticmethod
    def _line_at(rows: list[tuple[int, str | None, int | None]], address: int) -> tuple[str | None, int | None]:
        index = bisect.bisect_right(rows, address, key=lambda row: row[0]) - 1
        if index < 0:
            return None, None
        _, file, line = rows[index]
        return file, line
