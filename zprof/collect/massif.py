"""valgrind's massif: running the target under it, asking it for its snapshots,
and reading its output format.

Zig's allocators get their memory with mmap, which massif does not see as heap;
the massif variant of zprof's shim tells valgrind about each block the program
holds (client requests), so massif charges it to the stack that asked for it.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from zprof.builder.project import SourceRoots
from zprof.collect.valgrind import valgrind_path, valgrind_tool
from zprof.errors import EXIT_TARGET, ZprofError
from zprof.procs import run_bounded

VGDB_TIMEOUT_S = 60
# Functions massif should look through to the code that asked for memory: the
# hooks that make the client requests, the Allocator API where the compiler kept
# it out of line, and the allocators whose blocks are charged to their caller
# (an arena's chunks, the C allocator's malloc). massif 3.19 matches --alloc-fn
# names exactly, so zprof lists every symbol of the binary that starts so.
ALLOC_FN_PREFIXES = (
    "zprof_hooks.alloc", "zprof_hooks.free", "zprof_hooks.resize", "zprof_hooks.remap",
    "mem.Allocator.", "heap.arena_allocator.ArenaAllocator.", "heap.CAllocator.", "heap.rawC",
)
MASSIF_OPTIONS = (
    "--tool=massif",
    "--pages-as-heap=no",  # Zig's mmap'd pages are not the program's blocks; the client requests are
    "--heap-admin=0",      # client-request blocks have no malloc header
    "--stacks=no",
    "--time-unit=ms",
    "--threshold=0.5",     # percent of the peak below which a call site is folded into "N places"
    "--peak-inaccuracy=0.0",
    "--depth=40",
    "--fullpath-after=",   # whole source paths, to tell project code from Zig's std
    "--vgdb=yes",
)


@dataclass
class MassifNode:
    """One line of a massif heap tree: bytes allocated through this frame."""

    bytes: int
    function: str
    file: str | None = None
    line: int | None = None
    address: int | None = None
    # "in N places, all below massif's threshold": no frame, only a count.
    below_threshold: int | None = None
    children: list[MassifNode] = field(default_factory=list)


@dataclass
class MassifSnapshot:
    index: int
    time: float
    heap_bytes: int
    heap_extra_bytes: int
    stack_bytes: int
    kind: str  # empty | detailed | peak
    tree: MassifNode | None = None


@dataclass
class MassifOutput:
    command: str
    time_unit: str
    snapshots: list[MassifSnapshot]

    @property
    def peak(self) -> MassifSnapshot | None:
        """The snapshot massif marked as the peak, else the largest detailed one."""
        marked = [s for s in self.snapshots if s.kind == "peak"]
        if marked:
            return marked[0]
        detailed = [s for s in self.snapshots if s.tree is not None]
        return max(detailed, key=lambda s: s.heap_bytes, default=None)


def alloc_fns(symbols: Iterable[str]) -> list[str]:
    return sorted({name for name in symbols if name.startswith(ALLOC_FN_PREFIXES)})


def massif_start_command(start_command: str, out_file: Path, functions: list[str]) -> str:
    """The target's start command, run under massif."""
    tool = [valgrind_path(), *MASSIF_OPTIONS, f"--massif-out-file={out_file}",
            *(f"--alloc-fn={name}" for name in functions)]
    return shlex.join(tool) + " " + start_command


def vgdb_path() -> str:
    return valgrind_tool("vgdb")


def request_snapshots(pid: int, out_file: Path) -> None:
    """Ask the running massif for every snapshot so far (the peak's tree included).

    massif writes its file when the program exits; a server may never exit
    cleanly on SIGTERM, so zprof asks through vgdb instead.
    """
    # massif opens the file itself, from the target's working directory.
    out_file = out_file.resolve()
    try:
        done = run_bounded([vgdb_path(), f"--pid={pid}", "all_snapshots", str(out_file)], VGDB_TIMEOUT_S)
    except subprocess.TimeoutExpired as expired:
        raise ZprofError(f"massif did not answer vgdb within {VGDB_TIMEOUT_S} s", exit_code=EXIT_TARGET) from expired
    if done.returncode != 0 or not out_file.is_file():
        raise ZprofError("massif did not write its snapshots when asked through vgdb",
                         detail=(done.stdout + done.stderr).strip(), exit_code=EXIT_TARGET)


# "n2: 2097152 0x10474E7: defects.scratchCopy (/src/defects.zig:93)", with the
# frame part also "(heap allocation functions) ...", "0x1: ???", "0x1: fn (in /bin)",
# or "in 3 places, all below massif's threshold (0.50%)".
_NODE = re.compile(r"^( *)n(\d+): (\d+) (.*)$")
_FRAME = re.compile(r"^0x([0-9A-Fa-f]+): (.*?)(?: \((?:in )?([^()]*?)(?::(\d+))?\))?$")
_BELOW = re.compile(r"^in ([\d,]+) places?, (?:all )?below")


def parse_massif(text: str, roots: SourceRoots | None = None) -> MassifOutput:
    """massif's output file (format version of valgrind 3.x); `roots` names the project's files under its own
    checkout when the binary was compiled in another."""
    lines = text.splitlines()
    header: dict[str, str] = {}
    snapshots: list[MassifSnapshot] = []
    position = 0
    try:
        while position < len(lines):
            line = lines[position]
            position += 1
            if line.startswith("snapshot="):
                fields: dict[str, str] = {"snapshot": line.split("=", 1)[1]}
                while position < len(lines) and not lines[position].startswith("heap_tree="):
                    if "=" in lines[position]:
                        key, value = lines[position].split("=", 1)
                        fields[key] = value
                    position += 1
                kind = lines[position].split("=", 1)[1] if position < len(lines) else "empty"
                position += 1
                tree = None
                if kind in ("detailed", "peak"):
                    tree, position = _parse_node(lines, position, 0)
                snapshots.append(MassifSnapshot(
                    index=int(fields["snapshot"]), time=float(fields["time"]), heap_bytes=int(fields["mem_heap_B"]),
                    heap_extra_bytes=int(fields.get("mem_heap_extra_B", 0)),
                    stack_bytes=int(fields.get("mem_stacks_B", 0)), kind=kind, tree=tree,
                ))
            elif ":" in line and not line.startswith("#") and not snapshots:
                key, value = line.split(":", 1)
                header[key.strip()] = value.strip()
    except (KeyError, ValueError, IndexError) as error:
        raise ZprofError(f"cannot read massif's output near line {position}: {error}", exit_code=EXIT_TARGET) from error
    if not snapshots:
        raise ZprofError("massif's output holds no snapshots", exit_code=EXIT_TARGET)
    if roots is not None:
        nodes = [snapshot.tree for snapshot in snapshots if snapshot.tree is not None]
        while nodes:
            node = nodes.pop()
            node.file = roots.place(node.file)
            nodes.extend(node.children)
    return MassifOutput(command=header.get("cmd", ""), time_unit=header.get("time_unit", "i"), snapshots=snapshots)


def _parse_node(lines: list[str], position: int, depth: int) -> tuple[MassifNode, int]:
    match = _NODE.match(lines[position])
    if match is None or len(match.group(1)) != depth:
        raise ValueError(f"expected a heap tree line at depth {depth}: {lines[position]!r}")
    children, size, rest = int(match.group(2)), int(match.group(3)), match.group(4)
    node = _node(size, rest)
    position += 1
    for _ in range(children):
        child, position = _parse_node(lines, position, depth + 1)
        node.children.append(child)
    return node, position


def _node(size: int, rest: str) -> MassifNode:
    below = _BELOW.match(rest)
    if below:
        places = int(below.group(1).replace(",", ""))
        return MassifNode(size, f"({places} places below massif's threshold)", below_threshold=places)
    frame = _FRAME.match(rest)
    if frame is None:  # the root: "(heap allocation functions) malloc/new/new[], --alloc-fns, etc."
        return MassifNode(size, rest)
    address, function, where, line = frame.groups()
    # "(in /path/binary)" names the object, not a source file.
    file = where if where and line else None
    return MassifNode(size, function, file, int(line) if line else None, int(address, 16))
