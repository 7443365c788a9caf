"""The symboliser on real Zig builds of minikv: llvm-symbolizer and zprof's own DWARF reader
give the same frames, Debug builds (Zig's own backend, inlined calls without a call file)
go to the reader that places each call in its caller's file, and results are cached by
the binary's contents, not its path. And what a frame's file says it belongs to: the project,
Zig's std, or a dependency in Zig's package cache."""

from __future__ import annotations

import shutil
from dataclasses import astuple
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from tests.conftest import MINIKV
from zprof.analysis.allocations import attribute
from zprof.analysis.callgrind import _frame, _Function
from zprof.analysis.dwarf import DwarfReader, inlined_calls_lack_files
from zprof.analysis.perf_script import classify
from zprof.analysis.symbols import LLVM_SYMBOLIZER, PYTHON_DWARF, SourceFrame, Symbolizer, source_kind
from zprof.collect.shim_counters import SiteCounters

HAS_LLVM = shutil.which(LLVM_SYMBOLIZER) is not None


@pytest.fixture(scope="module")
def built(run_zprof):
    """minikv's server binary per build mode, built once."""
    binaries: dict[str, Path] = {}

    def build(mode: str) -> Path:
        if mode not in binaries:
            done = run_zprof("build", "--project", str(MINIKV), "--no-shim", "--optimize", mode)
            assert done.returncode == 0, done.output
            binaries[mode] = Path(done.stdout.strip().splitlines()[-1])
        return binaries[mode]

    return build


def sample_addresses(binary: Path) -> list[int]:
    """Two addresses inside every function of the symbol table."""
    with Symbolizer(binary) as symbolizer:
        return sorted({start + size * part // 4 for start, size, _ in symbolizer._symbols if size > 4
                       for part in (1, 3)})


def resolve(binary: Path, addresses: list[int], backend: str | None = None,
            cache: Path | None = None) -> tuple[dict, str | None]:
    with Symbolizer(binary, cache, backend=backend) as symbolizer:
        return symbolizer.locate(addresses), symbolizer.backend_used


@pytest.mark.slow
@pytest.mark.skipif(not HAS_LLVM, reason="llvm-symbolizer is not installed")
def test_llvm_symbolizer_and_zprofs_reader_agree_frame_for_frame(built):
    binary = built("ReleaseFast")
    addresses = sample_addresses(binary)
    by_llvm, used = resolve(binary, addresses, LLVM_SYMBOLIZER)
    assert used == LLVM_SYMBOLIZER
    by_zprof, used = resolve(binary, addresses, PYTHON_DWARF)
    assert used == PYTHON_DWARF
    assert {a: [astuple(f) for f in frames] for a, frames in by_llvm.items()} == \
           {a: [astuple(f) for f in frames] for a, frames in by_zprof.items()}
    chains = list(by_zprof.values())
    # ReleaseFast inlines: chains of several frames, each with its file, line and declaration line.
    inlined = [chain for chain in chains if len(chain) > 1]
    assert len(inlined) > 20
    assert all(frame.file and frame.file.endswith(".zig") and frame.line is not None and frame.decl_line
               for chain in inlined for frame in chain)
    assert any(frame.file.endswith("examples/minikv/src/commands.zig") for chain in inlined for frame in chain)
    # The default is llvm-symbolizer, for DWARF it reads right.
    assert resolve(binary, addresses[:5])[1] == LLVM_SYMBOLIZER


@pytest.mark.slow
def test_a_debug_build_places_each_inlined_call_in_its_callers_file(built):
    """Zig's own backend leaves DW_AT_call_file out; zprof takes the caller's file from where the
    caller's code is, and so picks its own reader for such a binary."""
    binary = built("Debug")
    with Symbolizer(binary) as symbolizer:
        assert inlined_calls_lack_files(symbolizer._elf.get_section_by_name(".debug_abbrev").data())
        starts = symbolizer.function_starts()
    addresses = sample_addresses(binary)
    chains, used = resolve(binary, addresses)
    assert used == PYTHON_DWARF
    inlined = {address: chain for address, chain in chains.items() if len(chain) > 1 and chain[-1].function in starts}
    entries, _ = resolve(binary, sorted({starts[chain[-1].function] for chain in inlined.values()}))
    for address, chain in inlined.items():
        outer = chain[-1]
        assert entries[starts[outer.function]][-1].file == outer.file, (hex(address), chain)
    assert len(inlined) > 20
    if HAS_LLVM:  # what llvm-symbolizer says instead: the unit's first file for every such call
        by_llvm, _ = resolve(binary, addresses, LLVM_SYMBOLIZER)
        assert any(by_llvm[a][-1].file != chains[a][-1].file for a in addresses if len(chains[a]) > 1)


@pytest.mark.slow
def test_results_are_cached_by_the_binarys_contents_not_its_path(built, tmp_path):
    binary = built("ReleaseFast")
    addresses = sample_addresses(binary)[:200]
    first, second = tmp_path / "a" / "server", tmp_path / "b" / "server"
    for copy in (first, second):
        copy.parent.mkdir()
        shutil.copy2(binary, copy)
    cache = tmp_path / "cache"
    cold, used = resolve(first, addresses, cache=cache)
    assert used is not None
    warm, used = resolve(second, addresses, cache=cache)
    assert used is None and warm == cold  # the same binary elsewhere: nothing resolved again
    with open(second, "ab") as changed:
        changed.write(b"\0")
    _, used = resolve(second, addresses, cache=cache)
    assert used is not None  # other contents: another entry
    assert len(list(cache.iterdir())) == 2


@pytest.mark.slow
def test_without_llvm_symbolizer_zprof_reads_the_dwarf_itself(built, tmp_path, monkeypatch):
    binary = built("ReleaseFast")
    monkeypatch.setenv("PATH", str(tmp_path))  # a real PATH on which llvm-symbolizer is absent
    chains, used = resolve(binary, sample_addresses(binary)[:50])
    assert used == PYTHON_DWARF and any(len(chain) > 1 for chain in chains.values())


@pytest.mark.slow
def test_line_rows_are_pyelftools_rows(built):
    binary = built("ReleaseFast")
    with open(binary, "rb") as file:
        dwarf = ELFFile(file).get_dwarf_info()
        reader = DwarfReader(dwarf)
        for cu in dwarf.iter_CUs():
            program = dwarf.line_program_for_CU(cu)
            files = list(range(len(program.header["file_entry"]) + 1))  # indices stand for the names
            expected = sorted(((e.state.address, None, None) if e.state.end_sequence else
                               (e.state.address, files[e.state.file] if e.state.file < len(files) else None,
                                e.state.line)
                               for e in program.get_entries() if e.state is not None), key=lambda row: row[0])
            assert reader.line_rows(program, files) == expected


def test_inlined_calls_without_a_call_file_are_recognised():
    def table(*attributes: int) -> bytes:  # one abbreviation: DW_TAG_inlined_subroutine, no children
        pairs = b"".join(bytes([attribute, 0x0F]) for attribute in attributes)
        return bytes([1, 0x1D, 0]) + pairs + b"\0\0" + b"\0"

    assert inlined_calls_lack_files(table(0x31, 0x59))  # abstract origin, call line
    assert not inlined_calls_lack_files(table(0x31, 0x58, 0x59))  # with the call file
    assert not inlined_calls_lack_files(table(0x31))


# A dependency's file as a ReleaseFast build of a project with a `.url` dependency names it (zig fetch put the
# package in the global cache's p/ directory, under Zig 0.15's package hash).
DEPENDENCY = "/root/.cache/zig/p/dep-0.1.0-NsCrAYMBAAAEFLqNHqbLWX5sOJT0tYMLP18AF58Il1vE/src/dep.zig"


@pytest.mark.parametrize("path, kind", [
    (DEPENDENCY, "dependency"),
    ("/tmp/zig-global/p/libxev-0.0.0-86vtc-ziAgC5rZ5wSFfGdVqoDbd0_Ak3UPDcsMRlj1Ab/src/loop.zig",
     "dependency"),  # $ZIG_GLOBAL_CACHE_DIR
    ("/home/u/.cache/zig/p/1220" + "0f" * 32 + "/src/main.zig", "dependency"),  # Zig 0.11-0.13's hashes
    ("/work/app/src/main.zig", "project"),
    ("/work/app/p/server.zig", "project"),  # a project's own p/ directory, without a package hash
    ("/work/p/tools-v1-main/src/x.zig", "project"),
    ("std/heap/debug_allocator.zig", "std"),
    ("/opt/zig/lib/compiler_rt/memcpy.zig", "std"),
    (None, "project"),
])
def test_a_frames_file_says_whose_code_it_is(path, kind):
    assert source_kind(path) == kind


def test_perf_and_callgrind_frames_of_a_dependency_are_no_project_frames():
    assert classify("/work/app/zig-out/bin/app", DEPENDENCY, in_target=True) == "dependency"
    assert classify("/work/app/zig-out/bin/app", "/work/app/src/main.zig", in_target=True) == "project"
    assert _frame(_Function("dep.mix", DEPENDENCY, "/work/app/zig-out/bin/app")).kind == "dependency"
    assert _frame(_Function("main.main", "/work/app/src/main.zig", "/work/app/zig-out/bin/app")).kind == "project"


def test_an_allocation_in_a_dependency_is_charged_to_the_projects_call():
    """The project decides how it calls a package: the site is its own frame, the package's on the way there."""
    frames = {0x10: (SourceFrame("array_list.Aligned(u8,null).append", "std/array_list.zig", 600),),
              0x20: (SourceFrame("dep.Buffer.push", DEPENDENCY, 12),),
              0x30: (SourceFrame("commands.set", "/work/app/src/commands.zig", 40),)}
    site = SiteCounters(0, None, (0x11, 0x11, 0x21, 0x31), 1, 16, 0, 0, 16, 16)
    frame, chain = attribute(site, frames)
    assert frame.function == "commands.set"
    assert [text.split(" (")[0] for text in chain] == ["array_list.Aligned(u8,null).append", "dep.Buffer.push"]
    # Without a project frame (a thread of the package's own), the package's frame.
    frame, _ = attribute(SiteCounters(0, None, (0x11, 0x11, 0x21), 1, 16, 0, 0, 16, 16), frames)
    assert frame.function == "dep.Buffer.push"

