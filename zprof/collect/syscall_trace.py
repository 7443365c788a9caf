"""perf recording every system call a process makes (the raw_syscalls tracepoints, entry and exit, with
the user-space stack at entry). perf acknowledges a command on its control FIFO once it records, so zprof
knows when the recording has begun; timestamps are CLOCK_MONOTONIC, the clock of Python's
time.monotonic(), so that the session's phases can be cut out of one recording.

The events are on from the start, not switched on later (perf's -D -1 and `enable`): a thread the process
starts while its events are off inherits them off, and `enable` does not reach it, so a thread per
connection started in between would make no event at all."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from pathlib import Path

from zprof.collect.perf import NOT_PERMITTED, SCRIPT_TIMEOUT_S, check_perf, perf_paranoid
from zprof.errors import EXIT_TARGET, ZprofError
from zprof.procs import kill_group, run_bounded, spawn

EVENTS = "raw_syscalls:sys_enter,raw_syscalls:sys_exit"
SCRIPT_FIELDS = "comm,tid,time,event,trace,ip,sym,symoff,dso"
ATTACH_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 120.0
TRACEPOINTS = Path("/sys/kernel/tracing/events/raw_syscalls")


class SyscallRecorder:
    """`perf record` of one process's system calls; `wait_until_recording()`, then `stop()` to finish."""

    def __init__(self, pid: int, directory: Path, call_graph: str) -> None:
        self.perf = check_perf()
        self.data = directory / "syscalls.data"
        self.log = directory / "perf-syscalls.log"
        self._control = directory / "perf-control"
        self._ack = directory / "perf-ack"
        for fifo in (self._control, self._ack):
            os.mkfifo(fifo, 0o600)
        graph = "dwarf,8192" if call_graph == "dwarf" else "fp"
        argv = [self.perf, "record", "-k", "CLOCK_MONOTONIC", "-e", EVENTS, "--call-graph", graph,
                "--control", f"fifo:{self._control},{self._ack}", "-p", str(pid), "-o", str(self.data)]
        with open(self.log, "wb") as log:
            self.process = spawn(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        # Opened read-write: neither open waits for perf to open its end.
        self._control_fd = os.open(self._control, os.O_RDWR)
        self._ack_fd = os.open(self._ack, os.O_RDWR)

    def wait_until_recording(self) -> None:
        """Returns once perf records: it acknowledges a command (`enable`, a no-op on events already on) only
        from its main loop, after it attached to every thread."""
        os.write(self._control_fd, b"enable\n")
        deadline = time.monotonic() + ATTACH_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._failed("perf record exited before it recorded anything")
            ready, _, _ = select.select([self._ack_fd], [], [], 0.1)
            if ready and os.read(self._ack_fd, 64).startswith(b"ack"):
                return
        self.close()
        raise ZprofError(f"perf record did not start recording within {ATTACH_TIMEOUT_S:.0f} s",
                         detail=self._log_text(), exit_code=EXIT_TARGET)

    def stop(self) -> None:
        """Ends the recording (SIGINT, as Ctrl-C would) and waits for perf to write it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.close()
                raise ZprofError(f"perf record did not finish within {STOP_TIMEOUT_S:.0f} s") from None
        self.close()
        if not self.data.exists():
            self._failed("perf record wrote nothing")

    def close(self) -> None:
        kill_group(self.process, 2.0)
        for fd in (self._control_fd, self._ack_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._control_fd = self._ack_fd = -1

    def lost_events(self) -> int:
        """Events perf reported lost (its ring buffer overflowed), from its own summary."""
        for line in self._log_text().splitlines():
            if "lost" in line.lower():
                digits = [int(word) for word in line.replace(",", " ").split() if word.isdigit()]
                if digits:
                    return digits[0]
        return 0

    def script(self) -> str:
        try:
            done = run_bounded([self.perf, "script", "-i", str(self.data), "-F", SCRIPT_FIELDS, "--ns",
                                "--no-inline"], SCRIPT_TIMEOUT_S)
        except subprocess.TimeoutExpired as expired:
            raise ZprofError(f"perf script did not finish within {SCRIPT_TIMEOUT_S} s") from expired
        if done.returncode != 0:
            raise ZprofError(f"perf could not read {self.data}", detail=done.stderr.strip()[-2000:],
                             exit_code=EXIT_TARGET)
        return done.stdout

    def _log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace").strip()
        except OSError:
            return ""

    def _failed(self, what: str) -> None:
        log = self._log_text()
        self.close()
        if any(phrase in log for phrase in NOT_PERMITTED):
            raise ZprofError(f"perf may not trace the server's system calls here (kernel.perf_event_paranoid is "
                             f"{perf_paranoid()})", detail=log[-2000:] + "\nRun zprof as root, or allow it with: "
                             "sudo sysctl kernel.perf_event_paranoid=-1")
        if "raw_syscalls" in log or not TRACEPOINTS.exists():
            raise ZprofError("perf cannot trace system calls here: the kernel's raw_syscalls tracepoints are not "
                             f"available ({TRACEPOINTS} is missing or unreadable)",
                             detail=log[-2000:] + "\nMount tracefs (mount -t tracefs nodev /sys/kernel/tracing) "
                             "and run zprof as root.")
        raise ZprofError(what, detail=log[-2000:], exit_code=EXIT_TARGET)
