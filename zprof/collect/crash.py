"""Where a server that died of a signal was: its own stack trace when it printed one (Zig's panic and
segfault handlers do, in Debug and ReleaseSafe), otherwise the core dump it left in its working
directory, read with gdb.

zprof lets the servers it starts dump core (their RLIMIT_CORE, set before exec, `core_limit`); where the
kernel writes the file is the machine's `kernel.core_pattern`. A relative pattern (Debian's default,
"core") puts it in the server's working directory, which is inside zprof's run directory and removed
with it. A pattern that pipes cores to a program (systemd-coredump, apport) keeps them from zprof: the
stack is then missing, and the reason says how to let zprof read it.
"""

from __future__ import annotations

import glob
import json
import os
import re
import resource
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from zprof.analysis.symbols import display_path, source_kind
from zprof.procs import run_bounded

CORE_PATTERN_FILE = Path("/proc/sys/kernel/core_pattern")
CORE_USES_PID_FILE = Path("/proc/sys/kernel/core_uses_pid")
# A bound on one core file: a server that crashes with gigabytes resident must not fill the disk. The
# stack is in the core's last segments, so a core cut at this size may lack it; gdb then says so.
CORE_LIMIT_BYTES = 2 << 30
GDB_TIMEOUT_S = 60.0
MAX_FRAMES = 48
_FRAMES_MARK = "ZPROF_FRAMES "
# Where a system library's debug info says its sources were.
SYSTEM_SOURCES = ("/usr/", "/build/")
# gdb's own Python walks the crashed thread's frames (inlined ones included) and prints them as JSON:
# no parsing of `bt`'s text, whose function names and arguments both contain parentheses.
_GDB_SCRIPT = f"""
import gdb, json
frames = []
frame = gdb.newest_frame()
while frame is not None and len(frames) < {MAX_FRAMES}:
    sal = frame.find_sal()
    frames.append({{"function": frame.name(), "line": sal.line or None,
                   "file": sal.symtab.fullname() if sal.symtab else None}})
    frame = frame.older()
print("{_FRAMES_MARK}" + json.dumps(frames))
"""
# One frame of Zig's printed trace: `/src/faults.zig:61:5: 0x1139a9f in crashAtStart (minikv)`.
_ZIG_FRAME = re.compile(r"^(?P<file>\S.*?):(?P<line>\d+):\d+: 0x[0-9a-f]+ in (?P<function>.+?) \((?P<module>[^()]*)\)$")


@dataclass(frozen=True)
class CrashFrame:
    function: str
    file: str | None
    line: int | None

    @property
    def own(self) -> bool:
        """The project's own code: not Zig's std, a dependency, an unknown frame, or a system library's (whose
        DWARF names its build tree's relative paths, `./nptl/pthread_create.c`, or /usr)."""
        return (self.file is not None and source_kind(self.file) == "project" and os.path.isabs(self.file)
                and not self.file.startswith(SYSTEM_SOURCES))

    def text(self) -> str:
        if not self.file:
            return self.function
        path = display_path(self.file)
        here = os.getcwd() + os.sep
        return f"{self.function} ({path[len(here):] if path.startswith(here) else path}:{self.line})"


@dataclass(frozen=True)
class CrashStack:
    """Where one crash happened, innermost frame first; `missing` says why there are no frames."""

    how: str  # "signal 11, SIGSEGV"
    frames: list[CrashFrame] = field(default_factory=list)
    source: str | None = None  # "the server's own trace" or "its core dump, read with gdb"
    missing: str | None = None

    @property
    def first_own(self) -> CrashFrame | None:
        return next((frame for frame in self.frames if frame.own), None)

    def summary(self) -> str:
        """One line: the innermost frame of the project's own code, and what called it."""
        if not self.frames:
            return f"no stack: {self.missing}"
        own = [frame for frame in self.frames if frame.own]
        shown = own[:3] or self.frames[:3]
        return " < ".join(frame.text() for frame in shown) + f" (from {self.source})"

    @classmethod
    def from_json(cls, data: dict) -> CrashStack:
        return cls(data["how"], [CrashFrame(f["function"], f["file"], f["line"]) for f in data["frames"]],
                   data["source"], data["missing"])

    def to_json(self) -> dict:
        return {"how": self.how, "source": self.source, "missing": self.missing,
                "frames": [{"function": f.function, "file": f.file, "line": f.line} for f in self.frames]}


def allow_core_dumps() -> None:
    """Runs in a server's process before exec: a crash leaves a core (bounded in size) for `capture`."""
    resource.setrlimit(resource.RLIMIT_CORE, (CORE_LIMIT_BYTES, CORE_LIMIT_BYTES))


def printed_frames(log: str) -> list[CrashFrame]:
    """The last stack trace a Zig program printed (a panic's or the segfault handler's), innermost first."""
    traces: list[list[CrashFrame]] = []
    current: list[CrashFrame] | None = None
    for line in log.splitlines():
        match = _ZIG_FRAME.match(line.strip())
        if match is None:
            if line.startswith(("Segmentation fault", "thread ", "panic:", "Illegal instruction", "Bus error")):
                current = None  # the header of a new trace
            continue
        if current is None:
            current = []
            traces.append(current)
        unknown = match["file"] == "???"
        current.append(CrashFrame(match["function"] if match["function"] != "???" else "[unknown]",
                                  None if unknown else match["file"], None if unknown else int(match["line"])))
    return traces[-1] if traces else []


def core_file(workdir: Path, pid: int) -> tuple[Path | None, str | None]:
    """The core a crashed process `pid` left, and, when there is none to read, why."""
    try:
        pattern = CORE_PATTERN_FILE.read_text().strip()
    except OSError as error:
        return None, f"cannot read {CORE_PATTERN_FILE}: {error}"
    if pattern.startswith("|"):
        return None, (f"the kernel pipes core dumps to {pattern[1:].split()[0]} (kernel.core_pattern); "
                      "`sysctl kernel.core_pattern=core` lets zprof read them")
    if not pattern:
        return None, "kernel.core_pattern is empty: no core dumps are written"
    uses_pid = CORE_USES_PID_FILE.exists() and CORE_USES_PID_FILE.read_text().strip() == "1"
    expanded = _expand(pattern, pid) + (f".{pid}" if uses_pid and "%p" not in pattern else "")
    where = Path(expanded) if expanded.startswith("/") else workdir / expanded
    candidates = sorted((Path(found) for found in glob.glob(str(where))), key=lambda path: path.stat().st_mtime)
    if not candidates:
        return None, (f"no core file at {where} (kernel.core_pattern is {pattern!r}; a start command that "
                      "changes directory, or a server that lowers its own core limit, leaves none there)")
    return candidates[-1], None


def _expand(pattern: str, pid: int) -> str:
    """core_pattern's specifiers: the pid filled in, every other one matched by a glob."""
    parts = re.split(r"(%.)", pattern)
    expanded = []
    for part in parts:
        if part in ("%p", "%P", "%i", "%I"):
            expanded.append(str(pid))
        elif part == "%%":
            expanded.append("%")
        elif len(part) == 2 and part.startswith("%"):
            expanded.append("*")
        else:
            expanded.append(glob.escape(part))
    return "".join(expanded)


def read_core(binary: Path, core: Path) -> tuple[list[CrashFrame], str | None]:
    """The crashed thread's frames in `core`, innermost first, read with gdb; or why there are none."""
    gdb = shutil.which("gdb")
    if gdb is None:
        return [], "gdb is not installed (apt-get install gdb)"
    script = core.parent / "zprof-frames.gdb"
    script.write_text(f"python\n{_GDB_SCRIPT}\nend\n")
    argv = [gdb, "-batch", "-nx", "-q", "-ex", "set debuginfod enabled off", "-x", str(script), str(binary),
            str(core)]
    try:
        done = run_bounded(argv, GDB_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        return [], f"gdb could not read the core dump: {error}"
    for line in done.stdout.splitlines():
        if line.startswith(_FRAMES_MARK):
            frames = [CrashFrame(frame["function"] or "[unknown]", frame["file"], frame["line"])
                      for frame in json.loads(line[len(_FRAMES_MARK):])]
            if frames:
                return frames, None
    said = (done.stderr.strip().splitlines() or ["no frames"])[-1]
    return [], f"gdb found no stack in the core dump ({said})"


def capture(binary: Path, workdir: Path, log: str, pid: int, how: str) -> CrashStack:
    """Where the crashed server `pid` was: its printed trace first, else its core dump."""
    printed = printed_frames(log)
    if printed:
        return CrashStack(how, printed, "the server's own trace")
    core, missing = core_file(workdir, pid)
    if core is None:
        return CrashStack(how, missing=missing)
    frames, missing = read_core(binary, core)
    if not frames:
        return CrashStack(how, missing=missing)
    return CrashStack(how, frames, "its core dump, read with gdb")
