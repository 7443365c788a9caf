"""`perf stat` counting one event of a running process over a window zprof opens and closes.

perf starts attached with its counters disabled (`-D -1`), and zprof enables and disables them
through perf's control FIFO, waiting for each acknowledgement: the count covers exactly the
requests sent in between, not perf's own start-up. Hardware events (instructions) need a PMU the
kernel exposes; many virtual machines have none, and perf then reports `<not supported>`.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from zprof.errors import EXIT_TARGET, ZprofError
from zprof.procs import die_with_parent, kill_group, run_bounded

INSTRUCTIONS = "instructions:u"
PROBE_TIMEOUT_S = 20.0
ACK_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


def event_unavailable(event: str) -> str | None:
    """Why `perf stat -e EVENT` cannot count here, or None when it can."""
    perf = shutil.which("perf")
    if perf is None:
        return "perf is not installed (apt-get install linux-perf)"
    try:
        done = run_bounded([perf, "stat", "-x,", "-e", event, "--", "true"], PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"perf stat could not run: {error}"
    for line in done.stderr.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2] == event:
            if fields[0].strip().lstrip("<").startswith("not "):  # <not supported>, <not counted>
                return f"perf stat reports {event} as {fields[0]}: the machine exposes no hardware counters to perf"
            return None
    return f"perf stat -e {event} failed: {(done.stderr.strip().splitlines() or ['no output'])[-1]}"


class PerfCounter:
    """`with PerfCounter(pid, event) as counter: counter.enable(); ...; counter.disable()`, then
    `counter.count`."""

    def __init__(self, pid: int, event: str) -> None:
        self.pid, self.event = pid, event
        self.count: int | None = None

    def __enter__(self) -> PerfCounter:
        perf = shutil.which("perf")
        if perf is None:
            raise ZprofError("perf is not installed", detail="Install it with: apt-get install linux-perf")
        self._dir = Path(tempfile.mkdtemp(prefix="zprof-perf-stat-"))
        control, ack = self._dir / "control", self._dir / "ack"
        os.mkfifo(control)
        os.mkfifo(ack)
        self._output = self._dir / "stat.csv"
        self._process = subprocess.Popen(
            [perf, "stat", "-x,", "-e", self.event, "-D", "-1", "--control", f"fifo:{control},{ack}",
             "-o", str(self._output), "-p", str(self.pid)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True, preexec_fn=die_with_parent)
        # Opened read-write so that neither open waits for perf, which opens them once it is attached.
        self._control = os.open(control, os.O_RDWR)
        self._ack = os.open(ack, os.O_RDWR)
        return self

    def _command(self, command: str) -> None:
        os.write(self._control, f"{command}\n".encode())
        ready, _, _ = select.select([self._ack], [], [], ACK_TIMEOUT_S)
        if not ready or b"ack" not in os.read(self._ack, 64):
            raise ZprofError(f"perf stat did not acknowledge {command!r} within {ACK_TIMEOUT_S:.0f} s",
                             detail=self._stderr(), exit_code=EXIT_TARGET)

    def enable(self) -> None:
        self._command("enable")

    def disable(self) -> None:
        self._command("disable")

    def _stderr(self) -> str:
        if self._process.poll() is None:
            return ""
        return (self._process.stderr.read() if self._process.stderr else "").strip()

    def __exit__(self, *exc: object) -> None:
        try:
            if self._process.poll() is None:
                self._process.send_signal(signal.SIGINT)  # perf stat prints its counts on SIGINT
                try:
                    self._process.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    kill_group(self._process)
            if exc[0] is None:
                self.count = _parse_count(self._output.read_text() if self._output.exists() else "", self.event)
        finally:
            for descriptor in (self._control, self._ack):
                os.close(descriptor)
            if self._process.stderr:
                self._process.stderr.close()
            shutil.rmtree(self._dir, ignore_errors=True)


def _parse_count(csv: str, event: str) -> int:
    for line in csv.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2] == event:
            try:
                return int(float(fields[0]))
            except ValueError:
                raise ZprofError(f"perf stat counted no {event}: it reported {fields[0]!r}",
                                 exit_code=EXIT_TARGET) from None
    raise ZprofError(f"perf stat wrote no count of {event}", detail=csv.strip()[-2000:], exit_code=EXIT_TARGET)
