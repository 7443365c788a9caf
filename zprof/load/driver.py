"""The built-in load driver: N requests over C connections, P per batch.

Every reply is checked; latency is recorded per batch (per request when P is 1)
in an HdrHistogram. Connections stay open between runs, so a warm-up, a
measured run and the counter snapshots between them share one set of clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from hdrh.histogram import HdrHistogram

from zprof.load.resp import ErrorReply, ProtocolError, Reply, encode, parse
from zprof.model.bench import Latency
from zprof.server import HOST

PLACEHOLDER = b"__rand_int__"
CONNECT_TIMEOUT_S = 5.0
# A batch that takes longer than this means the server stopped answering.
BATCH_TIMEOUT_S = 10.0
HISTOGRAM_MAX_US = 60_000_000


@dataclass(frozen=True)
class Workload:
    """A command template; `__rand_int__` becomes a key number, as in redis-benchmark's -r:
    one of `keyspace` numbers from `first_key` on."""

    args: tuple[bytes, ...]
    keyspace: int = 10_000
    seed: int = 1
    first_key: int = 0

    @classmethod
    def from_template(cls, template: str, keyspace: int = 10_000) -> Workload:
        return cls(tuple(part.encode() for part in template.split()), keyspace)

    @property
    def command(self) -> str:
        return self.args[0].decode().upper()

    def expand(self, rng: random.Random) -> bytes:
        number = b"%012d" % (self.first_key + rng.randrange(self.keyspace))
        return encode([arg.replace(PLACEHOLDER, number) for arg in self.args])

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
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = bytearray()

    async def exchange(self, payload: bytes, count: int) -> list[Reply]:
        self.writer.write(payload)
        await self.writer.drain()
        replies: list[Reply] = []
        position = 0
        while len(replies) < count:
            parsed = parse(self.buffer, position)
            if parsed is None:
                chunk = await self.reader.read(1 << 16)
                if not chunk:
                    raise ConnectionError("the server closed the connection")
                self.buffer += chunk
                continue
            reply, position = parsed
            replies.append(reply)
        del self.buffer[:position]
        return replies


class LoadSession:
    def __init__(self, host: str, port: int, clients: int) -> None:
        self.host, self.port, self.clients = host, port, clients
        self._connections: list[_Connection] = []
        # Each run draws its own random keys: a measured run never replays its warm-up's sequence.
        self._runs = 0

    async def connect(self) -> None:
        for _ in range(self.clients):
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), CONNECT_TIMEOUT_S
            )
            self._connections.append(_Connection(reader, writer))

    async def call(self, *args: bytes) -> Reply:
        """One command on the first connection, and its reply: the only way to reach a server
        that serves one connection at a time while this session holds it."""
        replies = await asyncio.wait_for(self._connections[0].exchange(encode(list(args)), 1), BATCH_TIMEOUT_S)
        return replies[0]

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

    async def close(self) -> None:
        for connection in self._connections:
            connection.writer.close()
        for connection in self._connections:
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(connection.writer.wait_closed(), 1.0)
        self._connections.clear()

    async def run(
        self,
        workload: Workload | list[Workload],
        requests: int | None,
        pipeline: int = 1,
        progress: Callable[[int], None] | None = None,
        stop: threading.Event | None = None,
    ) -> LoadResult:
        """`requests` spread over the connections, or, with `requests=None`, until `stop` is set.

        A list of workloads is a mix: each batch takes the next one in turn.
        """
        mix = workload if isinstance(workload, list) else [workload]
        result = LoadResult(batch_size=pipeline)
        self._runs += 1
        share, extra = divmod(requests or 0, len(self._connections))
        started = time.perf_counter()

        async def drive(connection: _Connection, quota: int | None, seed: int) -> None:
            rng = random.Random(seed)
            turn = seed
            while (quota is None or quota > 0) and not (stop is not None and stop.is_set()):
                batch = pipeline if quota is None else min(pipeline, quota)
                chosen = mix[turn % len(mix)]
                turn += 1
                payload = b"".join(chosen.expand(rng) for _ in range(batch))
                sent = time.perf_counter_ns()
                replies = await asyncio.wait_for(connection.exchange(payload, batch), BATCH_TIMEOUT_S)
                result.latency_us.record_value(max(1, (time.perf_counter_ns() - sent) // 1000))
                for reply in replies:
                    if isinstance(reply, ErrorReply):
                        result.errors += 1
                        result.first_error = result.first_error or reply.message
                result.requests += batch
                if quota is not None:
                    quota -= batch
                if progress:
                    progress(batch)

        tasks = [
            drive(connection, None if requests is None else share + (1 if index < extra else 0),
                  mix[0].seed * 7919 + self._runs * 104_729 + index)
            for index, connection in enumerate(self._connections)
        ]
        try:
            await asyncio.gather(*tasks)
        except TimeoutError as error:
            result.seconds = time.perf_counter() - started
            message = f"the server stopped answering (no reply within {BATCH_TIMEOUT_S:.0f} s)"
            raise LoadError(message, result) from error
        except (ConnectionError, OSError, ProtocolError) as error:
            result.seconds = time.perf_counter() - started
            raise LoadError(f"the connection failed: {error}", result) from error
        result.seconds = time.perf_counter() - started
        return result


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
        async def body() -> LoadResult:
            await self._session.connect()
            self._running.set()
            try:
                return await self._session.run(self._workloads, None, self._pipeline, stop=self._stop)
            finally:
                await self._session.close()

        try:
            self.result = asyncio.run(body())
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


async def _drive(port: int, workload: Workload, clients: int, pipeline: int, requests: int,
                 progress: Callable[[int], None] | None) -> LoadResult:
    session = LoadSession(HOST, port, clients)
    try:
        await session.connect()
        return await session.run(workload, requests, pipeline, progress)
    finally:
        await session.close()


def drive(port: int, workload: Workload, clients: int, pipeline: int, requests: int,
          progress: Callable[[int], None] | None = None) -> LoadResult:
    """One run of zprof's driver on fresh connections; LoadError if the server stopped answering."""
    try:
        return asyncio.run(_drive(port, workload, clients, pipeline, requests, progress))
    except (OSError, TimeoutError) as error:
        raise LoadError(f"cannot connect: {error or type(error).__name__}", LoadResult()) from error
