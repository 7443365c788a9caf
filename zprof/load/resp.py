"""RESP2: encoding commands and parsing replies, for the probes and the driver."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass


class ProtocolError(ConnectionError):
    """Bytes that are not RESP: the connection is as good as lost (so code that handles lost
    connections handles this too)."""


@dataclass(frozen=True)
class ErrorReply:
    message: str


Reply = bytes | int | None | list["Reply"] | ErrorReply | str


def encode(args: list[bytes]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


def parse(buffer: bytes | bytearray, start: int = 0) -> tuple[Reply, int] | None:
    """One reply from `buffer[start:]`, and where it ends; None if incomplete. ProtocolError for bytes
    that are not RESP."""
    try:
        return _parse(buffer, start)
    except ValueError as error:  # a length or an integer that is not a number
        raise ProtocolError(f"not RESP: {bytes(buffer[start : start + 40])!r}") from error


def _parse(buffer: bytes | bytearray, start: int) -> tuple[Reply, int] | None:
    line_end = buffer.find(b"\r\n", start)
    if line_end < 0:
        return None
    kind, line = buffer[start : start + 1], bytes(buffer[start + 1 : line_end])
    after = line_end + 2
    if kind == b"+":
        return line.decode(errors="replace"), after
    if kind == b"-":
        return ErrorReply(line.decode(errors="replace")), after
    if kind == b":":
        return int(line), after
    if kind == b"$":
        length = int(line)
        if length < 0:
            return None, after
        if len(buffer) < after + length + 2:
            return None
        return bytes(buffer[after : after + length]), after + length + 2
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, after
        items: list[Reply] = []
        position = after
        for _ in range(count):
            parsed = _parse(buffer, position)
            if parsed is None:
                return None
            item, position = parsed
            items.append(item)
        return items, position
    raise ProtocolError(f"unexpected RESP type byte {bytes(kind)!r} in {bytes(buffer[start : start + 40])!r}")


class SyncClient:
    """A blocking client where every call has a deadline; for probes and set-up."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = bytearray()

    def send(self, *commands: list[bytes]) -> None:
        self.sock.sendall(b"".join(encode(command) for command in commands))

    def read(self, count: int = 1) -> list[Reply]:
        deadline = time.monotonic() + self.timeout
        replies: list[Reply] = []
        position = 0
        while len(replies) < count:
            parsed = parse(self.buffer, position)
            if parsed is not None:
                reply, position = parsed
                replies.append(reply)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"got {len(replies)} of {count} replies within {self.timeout} s")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buffer += chunk
        del self.buffer[:position]
        return replies

    def call(self, *args: bytes | str) -> Reply:
        self.send([arg.encode() if isinstance(arg, str) else arg for arg in args])
        return self.read(1)[0]

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
