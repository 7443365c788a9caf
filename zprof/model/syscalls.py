"""A `zprof syscalls` run: the system calls one command makes per request, by name, with the time
spent in them and the call sites in the program that make them."""

from __future__ import annotations

from dataclasses import dataclass, field

from zprof.model.allocs import LoadInfo
from zprof.model.common import Note, TargetInfo


@dataclass
class SyscallSite:
    """Where the program makes a system call: its innermost frame of the project's own code (or, when the
    stack holds none, the innermost frame zprof could name), and the library function it called there."""

    function: str
    file: str | None
    line: int | None
    via: str | None  # the std or libc function that made the call ("posix.write")
    per_request: float


@dataclass
class SyscallRow:
    """One system call on one kind of descriptor ("socket", a file's name, "" for calls without one)."""

    name: str
    target: str
    calls: int  # during the load
    idle_calls: int  # during the idle window before it, as long as the load or shorter
    per_request: float  # (calls - the idle rate over the load's time) / requests
    microseconds_per_call: float | None  # wall time inside the call, waiting included (None: no exits seen)
    microseconds_per_request: float | None
    errors: int  # calls that returned an error (a negative value)
    sites: list[SyscallSite] = field(default_factory=list)


@dataclass
class SyscallsRun:
    command: str
    args: list[str]
    requests: int
    target: TargetInfo
    load: LoadInfo
    rows: list[SyscallRow]
    per_request: float  # every system call, net of the idle rate
    idle_per_second: float  # system calls per second while no request was sent
    threads: int  # the server's threads that made a call during the load
    events_lost: int  # perf's lost events (a ring buffer that overflowed); 0 when every call was seen
    call_graph: str
    notes: list[Note] = field(default_factory=list)
    complete: bool = True
    error: str | None = None
