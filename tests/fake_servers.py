"""Small RESP servers, each with one fault a real target may have, for tests.

minikv cannot be made to misbehave like this, so these play the faults:

- `one-at-a-time`: serves one connection at a time and answers only the first
  command of each read, as Zoltraak does today;
- `drops-pipelined`: serves connections concurrently, but answers only the
  first command of each read;
- `stalls-on-config`: serves everything, pipelining included, but never
  answers CONFIG, the first thing redis-benchmark sends and waits for: the
  connection and pipelining probes pass, and redis-benchmark would hang.
- `garbage`: answers every command with bytes that are not RESP (an HTTP
  error, as a web server on the port would);
- `silent`: accepts connections and reads them, but never answers anything,
  PING included.
- `slow-start`: serves connections concurrently, but answers nothing in its
  first 5 seconds (then everything it was asked): a concurrent server on a
  machine too busy to answer within the probes' first deadline.

Used in-process (`FakeServer(fault)`), or as a target zprof starts itself:

    python tests/fake_servers.py one-at-a-time --port 6400 [--binary PATH]

(`--binary` is ignored: it lets a start command that must name {binary} start a fake instead.)
"""

from __future__ import annotations

import argparse
import socket
import threading
import time

from zprof.load.resp import ProtocolError, parse

FAULTS = ("one-at-a-time", "drops-pipelined", "stalls-on-config", "garbage", "silent", "slow-start")
NOT_RESP = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
POLL_S = 0.2
SLOW_START_S = 5.0


def reply_to(command: list[bytes]) -> bytes:
    name = command[0].upper() if command else b""
    if name == b"PING":
        return b"+PONG\r\n"
    if name == b"ECHO" and len(command) > 1:
        return b"$%d\r\n%s\r\n" % (len(command[1]), command[1])
    if name == b"NOPE":
        return b"-ERR unknown command\r\n"
    if name == b"CONFIG" and len(command) > 2:  # CONFIG GET name: an empty value
        return b"*2\r\n$%d\r\n%s\r\n$0\r\n\r\n" % (len(command[2]), command[2])
    if name == b"DBSIZE":
        return b":0\r\n"
    return b"+OK\r\n"


class FakeServer:
    """Listens on 127.0.0.1 (`port` 0: a free port) from a thread of its own until `close`."""

    def __init__(self, fault: str, port: int = 0) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
        self.one_at_a_time = fault == "one-at-a-time"
        self.first_command_only = fault in ("one-at-a-time", "drops-pipelined")
        self.silent_on = {b"CONFIG"} if fault == "stalls-on-config" else set()
        self.garbage = fault == "garbage"
        self.silent = fault == "silent"
        self.answers_from = time.monotonic() + (SLOW_START_S if fault == "slow-start" else 0.0)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(128)
        self.listener.settimeout(POLL_S)
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    def start(self) -> FakeServer:
        self.thread.start()
        return self

    def serve_forever(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            if self.one_at_a_time:
                self._handle(connection)
            else:
                threading.Thread(target=self._handle, args=(connection,), daemon=True).start()

    def _handle(self, connection: socket.socket) -> None:
        buffer = bytearray()
        with connection:
            connection.settimeout(POLL_S)
            while not self.stopping.is_set():
                try:
                    data = connection.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                time.sleep(max(0.0, self.answers_from - time.monotonic()))
                try:
                    replies = self._replies(buffer)
                    if replies:
                        connection.sendall(replies)
                except (OSError, ProtocolError, ValueError):
                    return

    def _replies(self, buffer: bytearray) -> bytes:
        """Replies to the complete commands in `buffer`, which loses them (and, with
        `first_command_only`, everything after the first)."""
        replies, position = [], 0
        while (parsed := parse(buffer, position)) is not None:
            command, position = parsed
            if self.silent:
                continue
            if self.garbage:
                replies.append(NOT_RESP)
            elif isinstance(command, list) and not (command and command[0].upper() in self.silent_on):
                replies.append(reply_to(command))  # type: ignore[arg-type]
            if self.first_command_only:
                position = len(buffer)
                break
        del buffer[:position]
        return b"".join(replies)

    def close(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(5)
        self.listener.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fault", choices=FAULTS)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--binary", help="ignored")
    options = parser.parse_args()
    # In the foreground until a signal ends the process (zprof sends SIGTERM).
    FakeServer(options.fault, options.port).serve_forever()


if __name__ == "__main__":
    main()
