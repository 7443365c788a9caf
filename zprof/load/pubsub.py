"""Subscribers that count what a PUBLISH load delivers, for tier 3 of `zprof bench`."""

from __future__ import annotations

import selectors
import socket
import threading
import time

from zprof.load.driver import LoadError, LoadResult
from zprof.load.probe import PROBE_TIMEOUT_S
from zprof.load.resp import ErrorReply, SyncClient
from zprof.server import HOST

CHANNEL = b"zprof-bench"
DELIVERY_MARK = b"$7\r\nmessage\r\n"  # in every message a subscriber receives
DELIVERY_SETTLE_S = 2.0  # how long the deliveries may stand still before zprof stops waiting for the rest
DELIVERY_WAIT_MAX_S = 30.0


class Subscribers:
    """`count` connections SUBSCRIBEd to CHANNEL, counting in a thread of their own every
    message they receive; `stop` waits for every message the PUBLISHes sent (or until the count
    stands still)."""

    def __init__(self, port: int, count: int) -> None:
        self.count = count
        self.received = 0
        self._clients: list[SyncClient] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="zprof-subscribers", daemon=True)
        self.error: str | None = None
        self._port = port

    def start(self) -> None:
        """Raises SubscribeRefused with the server's first error reply, LoadError if it does not answer."""
        try:
            for _ in range(self.count):
                client = SyncClient(HOST, self._port, PROBE_TIMEOUT_S)
                self._clients.append(client)
                client.send([b"SUBSCRIBE", CHANNEL])
                (reply,) = client.read(1)
                if isinstance(reply, ErrorReply):
                    raise SubscribeRefused(reply.message)
                if not (isinstance(reply, list) and reply and reply[0] == b"subscribe"):
                    raise SubscribeRefused(f"SUBSCRIBE answered {reply!r}, not a subscribe confirmation")
        except (OSError, TimeoutError, ConnectionError) as error:
            self.close()
            raise LoadError(f"SUBSCRIBE failed: {error or type(error).__name__}", LoadResult()) from error
        except SubscribeRefused:
            self.close()
            raise
        self.received = sum(bytes(client.buffer).count(DELIVERY_MARK) for client in self._clients)
        self._thread.start()

    def _main(self) -> None:
        selector = selectors.DefaultSelector()
        tails: dict[socket.socket, bytes] = {}
        for client in self._clients:
            client.sock.setblocking(False)
            selector.register(client.sock, selectors.EVENT_READ)
            tails[client.sock] = bytes(client.buffer[-(len(DELIVERY_MARK) - 1):])
        try:
            while not self._stop.is_set() and tails:
                for key, _ in selector.select(0.1):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    try:
                        chunk = sock.recv(1 << 18)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as error:
                        chunk, self.error = b"", self.error or f"a subscriber's connection failed: {error}"
                    if not chunk:
                        self.error = self.error or "the server closed a subscriber's connection"
                        selector.unregister(sock)
                        del tails[sock]
                        continue
                    # A mark split across two reads is counted once, from the tail kept of the first.
                    data = tails[sock] + chunk
                    self.received += data.count(DELIVERY_MARK)
                    tails[sock] = data[-(len(DELIVERY_MARK) - 1):]
        finally:
            selector.close()

    def stop(self, publishes: int) -> int:
        """The messages received, once each of the `publishes` PUBLISHes reached every subscriber, or
        none came for DELIVERY_SETTLE_S."""
        expected = publishes * self.count
        give_up = time.monotonic() + DELIVERY_WAIT_MAX_S
        last, still_since = -1, time.monotonic()
        while self._thread.is_alive() and self.received < expected and time.monotonic() < give_up:
            if self.received != last:
                last, still_since = self.received, time.monotonic()
            elif time.monotonic() - still_since > DELIVERY_SETTLE_S:
                break
            time.sleep(0.05)
        self.close()
        return self.received

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        for client in self._clients:
            client.close()
        self._clients.clear()


class SubscribeRefused(Exception):
    """The server answered SUBSCRIBE with an error."""
