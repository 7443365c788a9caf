"""Faults of the target: a server that crashes or hangs under load, never answers, answers garbage, answers
only the first pipelined command, serves one connection at a time, or loses its port to another program."""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import MINIKV
from tests.faults.conftest import FAKE_SERVERS, assert_clean
from zprof.server import free_port

SMALL_ALLOCS = ("--requests", "100000", "--warmup", "2000")
SMALL_BENCH = ("--commands", "SET,GET", "--trials", "1", "--requests", "500", "--warmup", "50", "--keys", "0",
               "--min-trial-seconds", "0.1", "--deadline", "3")


def fake(fault: str) -> tuple[str, ...]:
    """A Python server with one fault, started by zprof in place of the built one."""
    return ("--start-command", f"{sys.executable} {FAKE_SERVERS} {fault} --port {{port}} --binary {{binary}}")


def crashes_in_its_first_start(tmp_path: Path, crash_after: int) -> str:
    """A start command: the first start of minikv aborts after `crash_after` requests (--crash-after), every
    later one runs as it is; a marker file under `tmp_path` tells the two apart."""
    marker = tmp_path / "started-once"
    return ("sh -c 'if [ -e \"$2\" ]; then exec \"$0\" --port \"$1\"; fi; : > \"$2\"; "
            f"exec \"$0\" --port \"$1\" --crash-after {crash_after}' {{binary}} {{port}} {marker}")


def fake_target(fault: str) -> tuple[str, ...]:
    """The same, as bench's target (run as it is, not built)."""
    return ("--target-binary", sys.executable, "--start-command", f"{{binary}} {FAKE_SERVERS} {fault} --port {{port}}")


def test_the_server_crashes_mid_load(faults, minikv_digest, tmp_path):
    output = tmp_path / "out"
    zprof, done = faults.run("allocs", "SET", "--project", str(MINIKV), *SMALL_ALLOCS, "--server-args",
                             "--crash-after 20000", "--output", str(output))
    assert_clean(zprof, done, 1, "crashed after", "SIGABRT", "crashing after 20000 requests (--crash-after)",
                 project=MINIKV, digest=minikv_digest, output=output, partial=True)
    run = json.loads((output / "run.json").read_text())
    assert 0 < run["requests"] < 50_000


def test_the_server_hangs_mid_load(faults, minikv_digest, tmp_path):
    output = tmp_path / "out"
    zprof, done = faults.run("allocs", "SET", "--project", str(MINIKV), *SMALL_ALLOCS, "--server-args",
                             "--hang-after 20000", "--output", str(output))
    assert_clean(zprof, done, 1, "the server stopped answering (no reply within 10 s) after",
                 project=MINIKV, digest=minikv_digest, output=output, partial=True)


def test_the_server_never_answers_ping(faults, minikv_digest, tmp_path):
    output = tmp_path / "out"
    zprof, done = faults.run("allocs", "GET", "--project", str(MINIKV), *fake("silent"), "--ready-timeout", "3",
                             "--output", str(output))
    assert_clean(zprof, done, 1, "did not answer PING", "within 3 s", project=MINIKV, digest=minikv_digest,
                 output=output, binaries=(str(FAKE_SERVERS),))


@pytest.mark.parametrize("command", ["allocs", "flame", "bench"])
def test_the_server_answers_garbage(faults, minikv_digest, tmp_path, command):
    output = tmp_path / "out"
    target = fake_target("garbage") if command == "bench" else ("--project", str(MINIKV), *fake("garbage"))
    extra = {"allocs": ("GET",), "flame": ("--command", "GET", "--duration", "1"), "bench": SMALL_BENCH}[command]
    zprof, done = faults.run(command, *extra, *target, "--output", str(output))
    assert_clean(zprof, done, 1, "answered PING", "with bytes that are not RESP", "HTTP/1.1 400",
                 project=MINIKV, digest=minikv_digest, output=output, binaries=(str(FAKE_SERVERS),))


@pytest.mark.parametrize(("fault", "limitation", "clients", "pipeline"), [
    ("drops-pipelined", "answers only the first of pipelined commands", 50, 1),
    ("one-at-a-time", "serves one connection at a time", 1, 1),
])
def test_a_server_that_cannot_take_the_load_is_driven_as_it_can(faults, tmp_path, fault, limitation, clients,
                                                                 pipeline):
    output = tmp_path / "out"
    zprof, done = faults.run("bench", *fake_target(fault), *SMALL_BENCH, "--output", str(output))
    assert_clean(zprof, done, 0, limitation, binaries=(str(FAKE_SERVERS),))
    settings = json.loads((output / "run.json").read_text())["settings"]
    assert (settings["tool"], settings["clients"], settings["pipeline"]) == ("zprof", clients, pipeline)


class PortThief:
    """Serves port_thief.py: takes the first port it is told of (listening on it until closed), and lets
    every later one be."""

    def __init__(self, path: Path) -> None:
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(str(path))
        self.listener.listen()
        self.ports: list[int] = []
        self.taken: socket.socket | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:  # closed
                return
            with connection:
                port = int(connection.recv(16))
                if not self.ports:
                    self.taken = socket.socket()
                    self.taken.bind(("127.0.0.1", port))
                    self.taken.listen()
                self.ports.append(port)
                connection.sendall(b"go")

    def close(self) -> None:
        self.listener.close()
        self.thread.join(10)
        if self.taken is not None:
            self.taken.close()


def test_the_port_is_taken_between_choosing_and_binding(faults, minikv_digest, tmp_path):
    thief = PortThief(tmp_path / "thief.sock")
    try:
        thief_script = Path(__file__).with_name("port_thief.py")
        start = f"{sys.executable} {thief_script} {tmp_path / 'thief.sock'} {{binary}} {{port}}"
        output = tmp_path / "out"
        zprof, done = faults.run("allocs", "GET", "--project", str(MINIKV), "--requests", "2000",
                                 "--start-command", start, "--output", str(output))
    finally:
        thief.close()
    assert_clean(zprof, done, 0, project=MINIKV, digest=minikv_digest)
    # The first server found its port taken and exited; zprof started the next one on another port.
    assert len(thief.ports) == 2 and thief.ports[0] != thief.ports[1], thief.ports
    assert json.loads((output / "run.json").read_text())["complete"] is True


def test_the_server_refuses_its_arguments(faults, minikv_digest, tmp_path):
    output = tmp_path / "out"
    zprof, done = faults.run("allocs", "GET", "--project", str(MINIKV), "--server-args", "--no-such-flag",
                             "--output", str(output))
    assert_clean(zprof, done, 1, "exited before it answered PING (exit status 2)", "unknown flag '--no-such-flag'",
                 project=MINIKV, digest=minikv_digest, output=output)


def test_a_server_that_crashes_at_start_up_is_counted_after_its_restart(faults, minikv_digest, tmp_path):
    """The first start attaches to the shim's counter file and crashes on its first request (PING); zprof
    starts it again, with a fresh counter file: the restarted server counts, not a file the dead one owned."""
    start = crashes_in_its_first_start(tmp_path, 0)
    output = tmp_path / "out"
    zprof, done = faults.run("allocs", "SET", "--project", str(MINIKV), "--requests", "2000", "--warmup", "500",
                             "--start-command", start, "--output", str(output))
    assert_clean(zprof, done, 0, "crashed during start-up (before it answered PING, or under zprof's first probes, "
                 "before any load), in 1 of 2 starts", project=MINIKV, digest=minikv_digest)
    run = json.loads((output / "run.json").read_text())
    # minikv's SET allocates in its arena and its GPA on every request; a file the dead process held counts none.
    assert run["analysis"]["per_request"]["allocs"] >= 1.0
    assert {layer["layer"] for layer in run["analysis"]["by_layer"]} >= {"arena", "debug/GPA"}


def test_a_server_that_crashes_under_the_probes_is_started_again(faults, minikv_digest, tmp_path):
    """Zoltraak's start-up race: the server answers PING, then dies of a signal of its own while zprof probes it,
    before any load. That is a crash at start-up, and zprof starts it again like one (it gave up the whole
    measurement before)."""
    # The ready check's PING is minikv's first request; the probes' third request is its fourth, and aborts it.
    start = crashes_in_its_first_start(tmp_path, 3)
    output = tmp_path / "out"
    zprof, done = faults.run("allocs", "SET", "--project", str(MINIKV), "--requests", "2000", "--warmup", "500",
                             "--start-command", start, "--output", str(output))
    assert_clean(zprof, done, 0, "under zprof's first probes, before any load), in 1 of 2 starts (signal 6, SIGABRT",
                 project=MINIKV, digest=minikv_digest)
    assert json.loads((output / "run.json").read_text())["complete"] is True


def test_a_server_that_answers_ping_with_an_error_is_said_at_once(faults, minikv_digest, tmp_path):
    """minikv answers every command, PING included, with -ERR Protocol error: allocs and init say so at once
    (not after the 20 s ready timeout, nor as "listened on no port"), as bad input, and the log they quote
    exists when the message is read."""
    output = tmp_path / "out"
    zprof, done = faults.run("allocs", "GET", "--project", str(MINIKV), "--server-args", "--fault error-ping",
                             "--output", str(output))
    assert_clean(zprof, done, 2, "answered PING on 127.0.0.1:", "with an error: -ERR Protocol error",
                 project=MINIKV, digest=minikv_digest, output=output)
    log = Path(re.search(r"server log \((\S+)\):", done.flat).group(1))  # type: ignore[union-attr]
    assert log.is_file() and "minikv listening" in log.read_text()
    zprof, done = faults.run("init", "--project", str(MINIKV), "--server-args", "--fault error-ping", "--dry-run")
    assert_clean(zprof, done, 2, "with an error: -ERR Protocol error", project=MINIKV, digest=minikv_digest)
    assert "listened on no port" not in done.flat


def test_init_waits_for_a_fixed_port_that_stays_taken_a_moment(faults, minikv_digest):
    """A server on a fixed port whose listening socket outlives it by 300 ms (a child holds it, as io_uring
    holds an exiting server's): init starts it several times in a row, waits for the port each time, and
    writes the fixed port. The port is one free now, not 6380: other runs on the machine may use that."""
    port = free_port()
    zprof, done = faults.run("init", "--project", str(MINIKV), "--port", str(port), "--start-command",
                             f"{{binary}} --port {port}", "--server-args", "--fault linger-port", "--dry-run")
    # The fault's child outlives the server by 300 ms, outside its process group: let it go before the check.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(f"--port {port}" in " ".join(p.info["cmdline"] or [])
                                             for p in psutil.process_iter(["cmdline"])):
        time.sleep(0.05)
    assert_clean(zprof, done, 0, project=MINIKV, digest=minikv_digest)
    assert f"port = {port}" in done.output and "already in use" not in done.output


def test_init_names_the_port_a_server_listens_on_without_answering(faults, minikv_digest):
    """minikv hangs on its first request (--hang-after 0): it listens on the port it was given and answers
    nothing. init does not call that "listened on no port": it names the port it saw and that PING went
    unanswered there."""
    zprof, done = faults.run("init", "--project", str(MINIKV), "--server-args", "--hang-after 0",
                             "--ready-timeout", "3", "--dry-run")
    assert_clean(zprof, done, 2, "could not find how to start the server", "but did not answer PING there",
                 project=MINIKV, digest=minikv_digest)
    assert "listened on no port" not in done.flat
