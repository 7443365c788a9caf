"""What a server writes to disk while it is measured: a server that appends every write to a log file
(Redis' AOF, Zoltraak's) does work that a Redis run without persistence does not, and a comparison should
say so. The kernel counts, per process, the bytes it caused to be written to storage (`write_bytes` in
/proc/PID/io, counted when the page cache is dirtied, so also for a file opened and closed per write);
the files are those the process holds open for writing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psutil

# open(2) access modes in /proc/PID/fdinfo's flags (octal).
_WRITE_MODES = (os.O_WRONLY, os.O_RDWR)


@dataclass(frozen=True)
class DiskWrites:
    """Bytes a process tree caused to be written to storage (its output log included), and the regular files it
    holds open for writing (its standard streams left out)."""

    bytes: int
    files: tuple[str, ...]


def _tree(pid: int) -> list[int]:
    try:
        return [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    except psutil.Error:
        return []


def _write_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            name, _, value = line.partition(":")
            if name == "write_bytes":
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _files_open_for_writing(pid: int) -> list[str]:
    found = []
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []
    for descriptor in descriptors:
        if descriptor in ("0", "1", "2"):  # the log zprof gives it, not a file of its own
            continue
        try:
            target = os.readlink(f"/proc/{pid}/fd/{descriptor}")
            if not target.startswith("/") or target.startswith(("/dev/", "/proc/")) or target.endswith(" (deleted)"):
                continue
            flags = next((int(line.split()[1], 8) for line in
                          Path(f"/proc/{pid}/fdinfo/{descriptor}").read_text().splitlines()
                          if line.startswith("flags:")), 0)
            if flags & os.O_ACCMODE in _WRITE_MODES and Path(target).is_file():
                found.append(target)
        except (OSError, ValueError):
            continue
    return found


def disk_writes(pid: int) -> DiskWrites:
    """The counts so far of a process and its descendants (a start command may wrap the server)."""
    pids = _tree(pid)
    return DiskWrites(sum(_write_bytes(each) for each in pids),
                      tuple(sorted({path for each in pids for path in _files_open_for_writing(each)})))


def written_between(before: DiskWrites, after: DiskWrites) -> DiskWrites:
    return DiskWrites(max(0, after.bytes - before.bytes), tuple(sorted(set(before.files) | set(after.files))))
