"""The built-in load driver: N requests over C connections, P per batch.

Every reply is checked; latency is recorded per batch (per request when P is 1)
in an HdrHistogram. Connections stay open between runs, so a warm-up, a
measured run and the counter snapshots between them share one set of clients.

For targets that serve one connection at a time this driver is the only load,
so its own speed caps what zprof can say about them. A run therefore goes
through plain non-blocking sockets, hiredis' C reply parser, requests encoded
from a template made once, latencies counted in a dict and put into the
histogram at the end, and a loop of its own (blocking calls for one connection,
epoll for several) in a worker thread, leaving the caller's event loop free.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import hiredis
from hdrh.histogram import HdrHistogram

from zprof.load.resp import ErrorReply, ProtocolError, Reply, encode
from zprof.model.bench import Latency
from zprof.server import HOST

PLACEHOLDER = b"__rand_int__"
KEY_DIGITS = 12  # a key number as `%012d`: as long as the placeholder, so an encoded template stays valid
CONNECT_TIMEOUT_S = 5.0
# A batch that takes longer than this means the server stopped answering.
BATCH_TIMEOUT_S = 10.0
HISTOGRAM_MAX_US = 60_000_000
RECEIVE_BYTES = 1 << 16
# How often the many-connection loop looks for a batch past its deadline.
DEADLINE_CHECK_S = 0.25


@dataclass(frozen=True)
class Workload:
    """A command template; `__rand_int__` becomes a key number, as in redis-benchmark's -r:
    one of `keyspace` numbers from `first_key` on."""

    args: tuple[bytes, ...]
    keyspace: int = 10_000
    seed: int = 1
    first_key: int = 0
    # For a read's hits: the write that makes the keys it reads. zprof writes every key of the measured range
    # with it first (`zprof.load.workloads.key_writes`), so that each read finds its key.
    fill: tuple[bytes, ...] = ()

    @classmethod
    def from_template(cls, template: str, keyspace: int = 10_000) -> Workload:
        return cls(tuple(part.encode() for part in template.split()), keyspace)

    @property
    def command(self) -> str:
        return self.args[0].decode().upper()

    @property
    def label(self) -> str:
        """The command, and "(hits)" for a read of keys written first: its own row beside the misses."""
        return f"{self.command} (hits)" if self.fill else self.command

    @functools.cached_property
    def _encoded(self) -> bytes | None:
        """The request encoded with the placeholder in it, which a key number of the same length replaces;
        None when a key number could be longer."""
        return encode(list(self.args)) if self.first_key + self.keyspace <= 10**KEY_DIGITS else None

    def expand(self, rng: random.Random) -> bytes:
        number = b"%012d" % (self.first_key + rng.randrange(self.keyspace))
        template = self._encoded
        if template is not None:
            return template.replace(PLACEHOLDER, number)
        return encode([arg.replace(PLACEHOLDER, number) for arg in self.args])

    def expand_batch(self, rng: random.Random, count: int) -> bytes:
        """`count` requests, as `expand` makes them one by one."""
        template = self._encoded
        if template is None or type(self).expand is not Workload.expand:
            return b"".join([self.expand(rng) for _ in range(count)])
        first, keyspace, randrange, replace_key = self.first_key, self.keyspace, rng.randrange, template.replace
        return b"".join([replace_key(PLACEHOLDER, b"%012d" % (first + randrange(keyspace))) for _ in range(count)])

    def with_key_range(self, index: int) -> Workload:
        """The same requests over the `index`-th block of `keyspace` key numbers, none shared with
        another block: a measured run on keys its warm-up never made shows what each new key costs."""
        return replace(self, first_key=index * self.keyspace)


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    first_error: str | None = None
    seconds: float = 0.0
    batch_size: int = 1
    latency_us: HdrHistogram = field(default_factory=lambda: HdrHistogram(1, HISTOGRAM_MAX_US, 3))

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def latency(self) -> Latency:
        """The run's latencies in milliseconds (per batch when pipelined); empty when nothing completed."""
        histogram = self.latency_us
        if histogram.get_total_count() == 0:
            return Latency()
        ms = [histogram.get_value_at_percentile(p) / 1000 for p in (50, 95, 99, 99.9)]
        return Latency(round(histogram.get_mean_value() / 1000, 4), histogram.get_min_value() / 1000, *ms,
                       histogram.get_max_value() / 1000)

    def add(self, other: LoadResult) -> None:
        """Counts `other`, a later run on the same connections, as part of this one."""
        self.requests += other.requests
        self.errors += other.errors
        self.first_error = self.first_error or other.first_error
        self.seconds += other.seconds
        self.latency_us.add(other.latency_us)


class LoadError(Exception):
    """The server stopped answering or broke the protocol; `result` holds what was done."""

    def __init__(self, message: str, result: LoadResult) -> None:
        super().__init__(message)
        self.result = result


class _Connection:
    """One socket, its reply parser, and where its current run stands."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = hiredis.Reader()
        # The run's state on this connection.
        self.quota: int | None = None
        self.rng = random.Random()
        self.turn = 0
        self.batch = 0  # requests of the batch on the wire
        self.waiting = 0  # of its replies, not yet read
        self.sent_ns = 0
        self.unsent = memoryview(b"")
        self.writing = False  # waiting for room to send the rest of `unsent`

    def replies(self, result: LoadResult) -> None:
        """Reads the batch's replies the parser holds, counting error replies."""
        reader = self.reader
        while self.waiting:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as error:
                raise ProtocolError(str(error)) from error
            if reply is False:
                return
            self.waiting -= 1
            if type(reply) is hiredis.ReplyError:
                result.errors += 1
                result.first_error = result.first_error or str(reply)

    def receive(self) -> None:
        chunk = self.sock.recv(RECEIVE_BYTES)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.reader.feed(chunk)


class _Run:
    """One run over all of a session's connections, in the calling (worker) thread."""

    def __init__(self, connections: list[_Connection], mix: list[Workload], requests: int | None, pipeline: int,
                 run_number: int, progress: Callable[[int], None] | None, stop: threading.Event | None,
                 cancelled: threading.Event) -> None:
        self.connections, self.mix, self.pipeline = connections, mix, pipeline
        self.progress, self.stop, self.cancelled = progress, stop, cancelled
        self.result = LoadResult(batch_size=pipeline)
        self.latencies: Counter[int] = Counter()  # microseconds: count, put into the histogram at the end
        share, extra = divmod(requests or 0, len(connections))
        for index, connection in enumerate(connections):
            connection.quota = None if requests is None else share + (1 if index < extra else 0)
            seed = mix[0].seed * 7919 + run_number * 104_729 + index
            connection.rng, connection.turn = random.Random(seed), seed
            connection.batch = connection.waiting = 0
            connection.unsent, connection.writing = memoryview(b""), False

    def _next_payload(self, connection: _Connection) -> bytes | None:
        """The next batch of `connection`, or None when its share is done or the run was stopped."""
        quota = connection.quota
        if quota == 0 or self.cancelled.is_set() or (self.stop is not None and self.stop.is_set()):
            return None
        batch = self.pipeline if quota is None else min(self.pipeline, quota)
        chosen = self.mix[connection.turn % len(self.mix)]
        connection.turn += 1
        rng = connection.rng
        connection.batch = connection.waiting = batch
        return chosen.expand(rng) if batch == 1 else chosen.expand_batch(rng, batch)

    def _batch_done(self, connection: _Connection) -> None:
        self.latencies[max(1, (time.perf_counter_ns() - connection.sent_ns) // 1000)] += 1
        batch = connection.batch
        self.result.requests += batch
        if connection.quota is not None:
            connection.quota -= batch
        if self.progress:
            self.progress(batch)

    def finish(self, seconds: float) -> LoadResult:
        self.result.seconds = seconds
        histogram = self.result.latency_us
        for value, count in self.latencies.items():
            histogram.record_value(value, count)
        return self.result

    def one_connection(self) -> None:
        """Blocking calls on the one socket: a request, a wait for readability, its reply."""
        connection = self.connections[0]
        sock, result = connection.sock, self.result
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        while True:
            payload = self._next_payload(connection)
            if payload is None:
                return
            deadline = time.monotonic() + BATCH_TIMEOUT_S
            connection.sent_ns = time.perf_counter_ns()
            _send_all(connection, payload, deadline)
            connection.replies(result)
            while connection.waiting:
                _wait(poller, deadline)
                connection.receive()
                connection.replies(result)
            self._batch_done(connection)

    def many_connections(self) -> None:
        """An epoll loop over all sockets, each with one batch on the wire at a time."""
        poller = select.epoll()
        by_fd: dict[int, _Connection] = {}
        busy = 0
        try:
            for connection in self.connections:
                by_fd[connection.sock.fileno()] = connection
                poller.register(connection.sock.fileno(), select.EPOLLIN)
                busy += self._start_batch(connection, poller)
            next_check = time.monotonic() + DEADLINE_CHECK_S
            while busy:
                for fd, events in poller.poll(DEADLINE_CHECK_S):
                    connection = by_fd[fd]
                    if events & select.EPOLLOUT:
                        self._send_more(connection, poller)
                    if events & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP):
                        try:
                            connection.receive()
                        except BlockingIOError:
                            continue
                        connection.replies(self.result)
                        if not connection.waiting and not connection.unsent:
                            self._batch_done(connection)
                            busy += self._start_batch(connection, poller) - 1
                if time.monotonic() >= next_check:
                    self._check_deadlines()
                    next_check = time.monotonic() + DEADLINE_CHECK_S
        finally:
            poller.close()

    def _start_batch(self, connection: _Connection, poller: select.epoll) -> int:
        """1 when a batch went out on `connection`, 0 when it has none left."""
        payload = self._next_payload(connection)
        if payload is None:
            return 0
        connection.sent_ns = time.perf_counter_ns()
        connection.unsent = memoryview(payload)
        self._send_more(connection, poller)
        return 1

    def _send_more(self, connection: _Connection, poller: select.epoll) -> None:
        try:
            while connection.unsent:
                connection.unsent = connection.unsent[connection.sock.send(connection.unsent):]
        except BlockingIOError:
            if not connection.writing:
                poller.modify(connection.sock.fileno(), select.EPOLLIN | select.EPOLLOUT)
                connection.writing = True
            return
        if connection.writing:
            poller.modify(connection.sock.fileno(), select.EPOLLIN)
            connection.writing = False

    def _check_deadlines(self) -> None:
        oldest = min((c.sent_ns for c in self.connections if c.waiting or c.unsent), default=None)
        if oldest is not None and time.perf_counter_ns() - oldest > BATCH_TIMEOUT_S * 1e9:
            raise TimeoutError


def _send_all(connection: _Connection, payload: bytes, deadline: float) -> None:
    """Sends a batch on a connection of its own; replies that arrive meanwhile go to its parser, so a
    server that answers before it has read everything never waits on a driver that only writes."""
    view = memoryview(payload)
    both: select.poll | None = None
    while view:
        try:
            view = view[connection.sock.send(view):]
        except BlockingIOError:
            if both is None:
                both = select.poll()
                both.register(connection.sock, select.POLLIN | select.POLLOUT)
            for _, events in _wait(both, deadline):
                if events & select.POLLIN:
                    connection.receive()


def _wait(poller: select.poll, deadline: float) -> list[tuple[int, int]]:
    """The poller's events, or TimeoutError once `deadline` (time.monotonic) has passed."""
    remaining = deadline - time.monotonic()
    events = poller.poll(max(remaining, 0) * 1000) if remaining > 0 else []
    if not events:
        raise TimeoutError
    return events


class LoadSession:
    def __init__(self, host: str, port: int, clients: int) -> None:
        self.host, self.port, self.clients = host, port, clients
        self._connections: list[_Connection] = []
        # Each run draws its own random keys: a measured run never replays its warm-up's sequence.
        self._runs = 0
        self._busy = threading.Lock()  # held by a run's worker thread while it uses the sockets

    def connect_now(self) -> None:
        """Opens the connections, blocking (for callers without an event loop)."""
        for _ in range(self.clients):
            sock = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT_S)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            self._connections.append(_Connection(sock))

    async def connect(self) -> None:
        await asyncio.to_thread(self.connect_now)

    def call_now(self, *args: bytes) -> Reply:
        """One command on the first connection, and its reply (a simple string as bytes)."""
        connection = self._connections[0]
        with self._busy:
            deadline = time.monotonic() + BATCH_TIMEOUT_S
            _send_all(connection, encode(list(args)), deadline)
            poller = select.poll()
            poller.register(connection.sock, select.POLLIN)
            while True:
                try:
                    reply = connection.reader.gets()
                except hiredis.ProtocolError as error:
                    raise ProtocolError(str(error)) from error
                if reply is not False:
                    break
                _wait(poller, deadline)
                connection.receive()
        return ErrorReply(str(reply)) if type(reply) is hiredis.ReplyError else reply

    async def call(self, *args: bytes) -> Reply:
        """One command on the first connection, and its reply: the only way to reach a server
        that serves one connection at a time while this session holds it."""
        return await asyncio.to_thread(self.call_now, *args)

    async def key_count(self) -> int | None:
        """DBSIZE, or None when the server does not answer it with a number."""
        try:
            reply = await self.call(b"DBSIZE")
        except (OSError, TimeoutError, ConnectionError, ProtocolError):
            return None
        return reply if isinstance(reply, int) and not isinstance(reply, bool) else None

    async def flushall(self) -> str | None:
        """FLUSHALL: None when it succeeded, else the server's error reply.

        Raises LoadError when the server did not answer at all."""
        try:
            reply = await self.call(b"FLUSHALL")
        except (OSError, TimeoutError, ConnectionError, ProtocolError) as error:
            raise LoadError(f"FLUSHALL got no answer ({error or type(error).__name__})", LoadResult()) from error
        return reply.message if isinstance(reply, ErrorReply) else None

    def close_now(self) -> None:
        with self._busy:
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.sock.close()
            self._connections.clear()

    async def close(self) -> None:
        # Waits for a run cancelled by its caller to see its flag (within a batch's deadline) first.
        await asyncio.to_thread(self.close_now)

    async def run(
        self,
        workload: Workload | list[Workload],
        requests: int | None,
        pipeline: int = 1,
        progress: Callable[[int], None] | None = None,
        stop: threading.Event | None = None,
    ) -> LoadResult:
        """`requests` spread over the connections, or, with `requests=None`, until `stop` is set.

        A list of workloads is a mix: each batch takes the next one in turn. Runs in a worker thread;
        cancelling the awaiting task ends the run at its next batch.
        """
        cancelled = threading.Event()
        try:
            return await asyncio.to_thread(self.run_now, workload, requests, pipeline, progress, stop, cancelled)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def run_now(
        self,
        workload: Workload | list[Workload],
        requests: int | None,
        pipeline: int = 1,
        progress: Callable[[int], None] | None = None,
        stop: threading.Event | None = None,
        cancelled: threading.Event | None = None,
    ) -> LoadResult:
        """`run`, blocking the calling thread."""
        mix = workload if isinstance(workload, list) else [workload]
        with self._busy:
            self._runs += 1
            run = _Run(self._connections, mix, requests, pipeline, self._runs, progress, stop,
                       cancelled or threading.Event())
            started = time.perf_counter()
            try:
                if len(self._connections) == 1:
                    run.one_connection()
                else:
                    run.many_connections()
            except TimeoutError as error:
                message = f"the server stopped answering (no reply within {BATCH_TIMEOUT_S:.0f} s)"
                raise LoadError(message, run.finish(time.perf_counter() - started)) from error
            except (ConnectionError, OSError, ProtocolError) as error:
                result = run.finish(time.perf_counter() - started)
                raise LoadError(f"the connection failed: {error}", result) from error
            return run.finish(time.perf_counter() - started)


class BackgroundLoad:
    """Load from a thread of its own, for as long as another tool records.

    `start` returns once the connections are open and the load is running;
    `stop` ends it and returns what was done. A load cut short by the server
    (it crashed, or stopped answering) leaves its reason in `error`.
    """

    def __init__(self, host: str, port: int, clients: int, workloads: list[Workload], pipeline: int) -> None:
        self._session = LoadSession(host, port, clients)
        self._workloads = workloads
        self._pipeline = pipeline
        self._stop = threading.Event()
        self._running = threading.Event()
        self._thread = threading.Thread(target=self._main, name="zprof-load", daemon=True)
        self._failure: BaseException | None = None
        self.result = LoadResult(batch_size=pipeline)
        self.error: str | None = None
        self.description = f"zprof's driver, {clients} client(s), pipeline {pipeline}, {len(workloads)} command(s)"

    def _main(self) -> None:
        try:
            self._session.connect_now()
            self._running.set()
            try:
                self.result = self._session.run_now(self._workloads, None, self._pipeline, stop=self._stop)
            finally:
                self._session.close_now()
        except LoadError as failure:
            self.result, self.error = failure.result, str(failure)
        except BaseException as failure:  # handed to the caller's thread in start() or stop()
            self._failure = failure
        finally:
            self._running.set()

    def start(self, timeout: float = CONNECT_TIMEOUT_S * 2) -> None:
        self._thread.start()
        self._running.wait(timeout)
        if self._failure is not None:
            raise self._failure

    def ended(self) -> str | None:
        """Why the load ended by itself (the server broke a connection, stopped answering), or None."""
        if self._thread.is_alive():
            return None
        return self.error or (repr(self._failure) if self._failure else "the load ended")

    def stop(self, timeout: float = BATCH_TIMEOUT_S + 5) -> LoadResult:
        self._stop.set()
        self._thread.join(timeout)
        if self._failure is not None:
            raise self._failure
        return self.result


async def run_requests(host: str, port: int, clients: int, workloads: list[Workload], requests: int,
                       pipeline: int) -> LoadResult:
    """A fixed number of requests on fresh connections, closed afterwards."""
    session = LoadSession(host, port, clients)
    await session.connect()
    try:
        return await session.run(workloads, requests, pipeline)
    finally:
        await session.close()


def drive(port: int, workload: Workload, clients: int, pipeline: int, requests: int,
          progress: Callable[[int], None] | None = None) -> LoadResult:
    """One run of zprof's driver on fresh connections; LoadError if the server stopped answering."""
    session = LoadSession(HOST, port, clients)
    try:
        try:
            session.connect_now()
        except (OSError, TimeoutError) as error:
            raise LoadError(f"cannot connect: {error or type(error).__name__}", LoadResult()) from error
        return session.run_now(workload, requests, pipeline, progress)
    finally:
        session.close_now()
