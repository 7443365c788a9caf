"""System calls per request, from a perf recording of the raw_syscalls tracepoints: each call's name
(from the syscall table Zig itself ships), the descriptor it was made on, how long it took (entry to
exit on the same thread), and the call site in the program that made it (the innermost frame of the
project's own code in the user-space stack at entry, with the std or libc function it called there).

Counts are exact for the calls perf saw: the tracepoints fire on every call, nothing is sampled. What a
request costs is the load window's count less what the server does on its own: the idle window's rate
over the load's duration (zero for a server that makes no call while idle, then the figure is exact)."""

from __future__ import annotations

import platform
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from zprof.analysis.perf_script import PerfSymbolizer, RawFrame, parse_records
from zprof.analysis.symbols import Symbolizer, source_kind
from zprof.model.syscalls import SyscallRow, SyscallSite

_RECORD = re.compile(r"^(?P<comm>.*?)\s+(?P<tid>\d+)\s+(?P<time>\d+\.\d+):\s+raw_syscalls:sys_(?P<kind>enter|exit):"
                     r"\s+NR (?P<nr>-?\d+) (?:\((?P<args>[^)]*)\)|= (?P<ret>-?\d+))")
# The syscall table of each architecture in Zig's lib/std/os/linux/syscalls.zig.
_ZIG_TABLES = {"x86_64": "X64", "aarch64": "Arm64", "arm64": "Arm64", "riscv64": "RiscV64"}
# Calls whose first argument is a file descriptor: their rows are split by what it is (a socket, a file).
FD_CALLS = frozenset({"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2",
                      "pwritev2", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "fsync",
                      "fdatasync", "ftruncate", "lseek", "sendfile", "splice", "close", "fstat", "shutdown"})
# The largest errno: a return value in [-MAX_ERRNO, -1] is an error.
MAX_ERRNO = 4095
# Sites per row kept in the run (the rest are in the row's count).
SITES_PER_ROW = 5


def syscall_names(zig_lib_dir: Path, machine: str | None = None) -> dict[int, str]:
    """Number to name for this machine's architecture, from Zig's own table (zprof always has a Zig)."""
    table = _ZIG_TABLES.get(machine or platform.machine())
    path = zig_lib_dir / "std" / "os" / "linux" / "syscalls.zig"
    if table is None or not path.exists():
        return {}
    names: dict[int, str] = {}
    inside = False
    for line in path.read_text().splitlines():
        if line.startswith(f"pub const {table} = enum"):
            inside = True
        elif inside and line.startswith("};"):
            break
        elif inside and (match := re.match(r"\s+(@\"[^\"]+\"|\w+) = (\d+),", line)):
            names[int(match[2])] = match[1].strip('@"')
    return names


def descriptor_kind(link: str) -> str:
    """What /proc/PID/fd/N points at, as a row's target: "socket", "pipe", "epoll", or a file's name."""
    if link.startswith("socket:"):
        return "socket"
    if link.startswith("pipe:"):
        return "pipe"
    if link.startswith("anon_inode:"):
        return link.split(":", 1)[1].strip("[]")
    return Path(link).name or link


@dataclass(frozen=True)
class _Call:
    tid: int
    time: float
    name: str
    target: str
    site: tuple[str, str | None, int | None, str | None]  # function, file, line, via
    seconds: float | None
    failed: bool


@dataclass(frozen=True)
class SyscallCounts:
    rows: list[SyscallRow]
    per_request: float
    idle_per_second: float
    threads: int


def read_calls(text: str, binary: Path, symbolizer: Symbolizer, names: dict[int, str],
               descriptors: dict[int, str]) -> list[_Call]:
    """Every call in `perf script` text, entry paired with exit on its thread, each at its call site."""
    records = []
    for header, frames in parse_records(text):
        match = _RECORD.match(header)
        if match is not None:
            records.append((match, frames))
    perf_symbols = PerfSymbolizer(binary, symbolizer)
    perf_symbols.prefetch_stacks({frames for match, frames in records if match["kind"] == "enter"})
    sites: dict[tuple[RawFrame, ...], tuple[str, str | None, int | None, str | None]] = {}
    open_calls: dict[int, tuple[re.Match[str], tuple[RawFrame, ...]]] = {}
    calls: list[_Call] = []

    def finish(entry: re.Match[str], frames: tuple[RawFrame, ...], exit_time: float | None, ret: int | None) -> None:
        number = int(entry["nr"])
        name = names.get(number, f"syscall {number}")
        target = ""
        if name in FD_CALLS and entry["args"]:
            fd = int(entry["args"].split(",")[0].strip(), 16)
            target = descriptors.get(fd, f"fd {fd}")
        site = sites.get(frames)
        if site is None:
            site = sites[frames] = _call_site(frames, perf_symbols)
        start = float(entry["time"])
        calls.append(_Call(int(entry["tid"]), start, name, target, site,
                           exit_time - start if exit_time is not None else None,
                           ret is not None and -MAX_ERRNO <= ret < 0))

    for match, frames in records:
        tid = int(match["tid"])
        if match["kind"] == "enter":
            if tid in open_calls:  # an entry without its exit (exit, execve, a lost event): no duration
                finish(*open_calls.pop(tid), None, None)
            open_calls[tid] = (match, frames)
        elif tid in open_calls and open_calls[tid][0]["nr"] == match["nr"]:
            finish(*open_calls.pop(tid), float(match["time"]), int(match["ret"]))
    for entry, frames in open_calls.values():
        finish(entry, frames, None, None)
    return calls


def _call_site(frames: tuple[RawFrame, ...], perf_symbols: PerfSymbolizer) -> tuple[str, str | None, int | None,
                                                                                      str | None]:
    """The innermost frame of the project's own code in a stack (leaf first), with the library function it
    called; else the innermost frame with a name."""
    via: str | None = None
    first_named: tuple[str, str | None, int | None, str | None] | None = None
    for raw in frames:
        if raw.dso.startswith("[kernel"):
            continue
        chain = perf_symbols.source_chain(raw, is_leaf=False)
        sources = chain if chain is not None else ()
        if not sources:
            if raw.symbol is not None:
                first_named = first_named or (raw.symbol, None, None, None)
                via = via or raw.symbol
            continue
        for source in sources:  # innermost inlined call first
            if source.file is not None and source_kind(source.file) == "project":
                return source.function, source.file, source.line, via
            first_named = first_named or (source.function, source.file, source.line, None)
            via = source.function
    return first_named or ("[unknown]", None, None, None)


def count(calls: list[_Call], idle: tuple[float, float], load: tuple[float, float], requests: int) -> SyscallCounts:
    """Per request, the load window's calls less the idle window's rate over the load's duration."""
    idle_seconds = max(idle[1] - idle[0], 1e-9)
    load_seconds = load[1] - load[0]
    in_load = [call for call in calls if load[0] <= call.time <= load[1]]
    idle_counts = Counter((call.name, call.target) for call in calls if idle[0] <= call.time <= idle[1])
    by_row: dict[tuple[str, str], list[_Call]] = defaultdict(list)
    for call in in_load:
        by_row[(call.name, call.target)].append(call)
    rows = []
    for (name, target), row_calls in by_row.items():
        idle_calls = idle_counts.get((name, target), 0)
        expected_idle = idle_calls * load_seconds / idle_seconds
        timed = [call.seconds for call in row_calls if call.seconds is not None]
        micros = 1e6 * sum(timed) / len(timed) if timed else None
        net = max(0.0, len(row_calls) - expected_idle) / requests
        site_counts = Counter(call.site for call in row_calls)
        sites = [SyscallSite(function, file, line, via, round(n / requests, 3))
                 for (function, file, line, via), n in site_counts.most_common(SITES_PER_ROW)]
        rows.append(SyscallRow(name=name, target=target, calls=len(row_calls), idle_calls=idle_calls,
                               per_request=round(net, 3),
                               microseconds_per_call=round(micros, 2) if micros is not None else None,
                               microseconds_per_request=round(micros * net, 2) if micros is not None else None,
                               errors=sum(call.failed for call in row_calls), sites=sites))
    rows.sort(key=lambda row: (-row.per_request, -row.calls, row.name, row.target))
    idle_total = sum(idle_counts.values())
    total = max(0.0, len(in_load) - idle_total * load_seconds / idle_seconds) / requests
    return SyscallCounts(rows, round(total, 3), round(idle_total / idle_seconds, 1),
                         len({call.tid for call in in_load}))
