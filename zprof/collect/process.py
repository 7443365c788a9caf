"""What the operating system says about the server process (psutil, /proc)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psutil
from elftools.elf.elffile import ELFFile


@dataclass(frozen=True)
class ProcessSample:
    rss_bytes: int
    cpu_seconds: float


def sample(pid: int) -> ProcessSample | None:
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            times = process.cpu_times()
            return ProcessSample(process.memory_info().rss, times.user + times.system)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def load_bias(pid: int, binary: Path) -> int:
    """How far the kernel moved the binary (0 unless it is position-independent).

    Symbol and DWARF addresses are link-time addresses; the hook records
    run-time ones.
    """
    real = os.path.realpath(binary)
    with open(binary, "rb") as handle:
        elf = ELFFile(handle)
        if elf["e_type"] != "ET_DYN":
            return 0
        first_vaddr = min(seg["p_vaddr"] for seg in elf.iter_segments() if seg["p_type"] == "PT_LOAD")
    try:
        with open(f"/proc/{pid}/maps") as maps:
            for line in maps:
                fields = line.split()
                if len(fields) >= 6 and os.path.realpath(fields[5]) == real and int(fields[2], 16) == 0:
                    return int(fields[0].split("-")[0], 16) - (first_vaddr & ~0xFFF)
    except OSError:
        pass
    return 0


def descriptors(pid: int) -> dict[int, str]:
    """What each of a process's open file descriptors points at (/proc/PID/fd), by number."""
    found = {}
    directory = Path(f"/proc/{pid}/fd")
    try:
        entries = list(directory.iterdir())
    except OSError:
        return found
    for entry in entries:
        try:
            found[int(entry.name)] = os.readlink(entry)
        except (OSError, ValueError):
            continue
    return found
