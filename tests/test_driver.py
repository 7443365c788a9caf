"""zprof's load driver against a real redis-server and against servers with one fault each:
counts, error replies, latencies per batch, sends that do not fit in the socket's buffer,
and a clear LoadError (with what was done) when the server stops answering, hangs up or
breaks the protocol."""

from __future__ import annotations

import asyncio
import math
import random
import shutil
import threading
import time
from pathlib import Path

import pytest

from tests.fake_servers import FakeServer
from zprof.load import driver
from zprof.load.driver import BackgroundLoad, LoadError, LoadSession, Workload, drive
from zprof.load.pubsub import CHANNEL, Subscribers
from zprof.load.workloads import NumberedKeys, bench_workload
from zprof.server import HOST, Server, ServerSpec

REDIS = shutil.which("redis-server")
needs_redis = pytest.mark.skipif(REDIS is None, reason="redis-server is not installed")


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    spec = ServerSpec(binary=Path(REDIS), start_command="{binary} --port {port} --save '' --appendonly no")
    with Server(spec, tmp_path_factory.mktemp("redis")) as server:
        yield server


@needs_redis
@pytest.mark.parametrize(("clients", "pipeline"), [(1, 1), (1, 7), (3, 1), (3, 7)])
def test_every_request_is_counted_and_every_batch_timed(redis, clients, pipeline):
    requests = 1000
    result = drive(redis.port, Workload.from_template("SET key:__rand_int__ v", 100), clients, pipeline, requests)
    assert (result.requests, result.errors, result.first_error) == (requests, 0, None)
    share, extra = divmod(requests, clients)
    batches = sum(math.ceil((share + (index < extra)) / pipeline) for index in range(clients))
    assert result.latency_us.get_total_count() == batches
    assert result.batch_size == pipeline and result.seconds > 0 and result.latency().p50 > 0


@needs_redis
def test_subscribers_wait_until_every_publish_reached_every_one_of_them(redis):
    # stop() once compared the messages received with the PUBLISHes sent, so it returned as soon as a
    # third of the messages three subscribers were owed had arrived, and a loaded machine saw "lost" ones.
    # Here stop() is called while the PUBLISHes are still going out, so the old rule stopped for certain.
    subscribers = Subscribers(redis.port, 3)
    subscribers.start()
    publishes = 60_000
    results = []
    publisher = threading.Thread(target=lambda: results.append(drive(
        redis.port, Workload.from_template(f"PUBLISH {CHANNEL.decode()} xxx"), 1, 100, publishes)))
    publisher.start()
    try:
        delivered = subscribers.stop(publishes)
    finally:
        publisher.join(60)
    assert results[0].requests == publishes
    assert (delivered, subscribers.error) == (3 * publishes, None)


@needs_redis
@pytest.mark.parametrize("clients", [1, 4])
def test_error_replies_are_counted_with_the_first_one(redis, clients):
    result = drive(redis.port, Workload.from_template("NOSUCHCOMMAND x"), clients, 5, 100)
    assert result.requests == 100 and result.errors == 100
    assert result.first_error.startswith("ERR unknown command")


@needs_redis
@pytest.mark.parametrize("clients", [1, 2])
def test_batches_larger_than_the_socket_buffers_go_through(redis, clients):
    """4 MB a batch: sent in pieces while the server's replies are read."""
    value = "x" * 65536
    result = drive(redis.port, Workload.from_template(f"SET big:__rand_int__ {value}", 50), clients, 64, 256)
    assert (result.requests, result.errors) == (256, 0)


@needs_redis
def test_the_keys_are_those_of_the_documented_sequence(redis):
    """One connection, one run: request i uses Random(seed * 7919 + 104729 + 0)'s i-th draw, so a run on
    keys 0..49 of a 50-key space writes exactly the distinct numbers that sequence draws."""
    workload = Workload.from_template("SET numbered:__rand_int__ v", 50)
    session = LoadSession(HOST, redis.port, 1)
    session.connect_now()
    try:
        assert session.call_now(b"FLUSHALL") == b"OK"
        session.run_now(workload, 30, 4)
        written = {int(key.split(b":")[1]) for key in _keys(session, b"numbered:*")}
    finally:
        session.close_now()
    rng = random.Random(workload.seed * 7919 + 1 * 104_729)
    assert written == {rng.randrange(50) for _ in range(30)}


def _keys(session: LoadSession, pattern: bytes) -> list[bytes]:
    reply = session.call_now(b"KEYS", pattern)
    assert isinstance(reply, list)
    return reply


def test_a_batch_expands_as_its_requests_one_by_one():
    makers = (lambda: Workload.from_template("SET key:__rand_int__ v__rand_int__", 1000).with_key_range(3),
              lambda: Workload.from_template("GET key:__rand_int__", 10**13),  # keys longer than the placeholder
              lambda: bench_workload("MIX", 100),  # these two count requests themselves: a fresh one each
              lambda: NumberedKeys.from_template("SET key:__rand_int__ xxx"))
    for make in makers:
        one_by_one, workload = random.Random(5), make()
        expected = b"".join(workload.expand(one_by_one) for _ in range(16))
        assert make().expand_batch(random.Random(5), 16) == expected


@pytest.mark.parametrize("clients", [1, 3])
def test_a_server_that_stops_answering_is_a_load_error_within_the_deadline(monkeypatch, clients):
    monkeypatch.setattr(driver, "BATCH_TIMEOUT_S", 1.0)
    server = FakeServer("silent").start()
    try:
        started = time.monotonic()
        with pytest.raises(LoadError, match="stopped answering") as failure:
            drive(server.port, Workload.from_template("PING"), clients, 1, 100)
        assert time.monotonic() - started < 5
        assert failure.value.result.requests == 0
    finally:
        server.close()


@pytest.mark.parametrize("clients", [1, 3])
def test_replies_that_are_not_resp_are_a_load_error(clients):
    server = FakeServer("garbage").start()
    try:
        with pytest.raises(LoadError, match="the connection failed"):
            drive(server.port, Workload.from_template("PING"), clients, 1, 100)
    finally:
        server.close()


def test_a_server_that_hangs_up_is_a_load_error_with_what_was_done():
    """A server that answers two requests and closes the connection."""
    import contextlib
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        connection, _ = listener.accept()
        for _ in range(2):
            connection.recv(1024)
            connection.sendall(b"+PONG\r\n")
        # Hangs up as a server that closes does: its end first (the client reads the end of the stream), then,
        # once the client has closed too, the socket. Closed with the client's next request unread, it would
        # reset the connection instead, a different fault.
        connection.shutdown(socket.SHUT_WR)
        connection.settimeout(5)
        with contextlib.suppress(OSError):
            while connection.recv(1024):
                pass
        connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with pytest.raises(LoadError, match="the server closed the connection") as failure:
            drive(port, Workload.from_template("PING"), 1, 1, 100)
        assert failure.value.result.requests == 2
    finally:
        thread.join(5)
        listener.close()


@needs_redis
def test_a_background_load_runs_until_stopped_and_a_cancelled_run_ends(redis):
    load = BackgroundLoad(HOST, redis.port, 2, [Workload.from_template("GET key:__rand_int__")], 4)
    load.start()
    time.sleep(0.3)
    assert load.ended() is None
    result = load.stop()
    assert result.requests > 0 and result.requests % 4 == 0 and load.error is None

    async def cancelled() -> int:
        session = LoadSession(HOST, redis.port, 1)
        await session.connect()
        counted = []
        task = asyncio.create_task(session.run(Workload.from_template("PING"), 10**9, 1, counted.append))
        await asyncio.sleep(0.3)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await session.close()  # waits for the run to see its flag
        done = len(counted)
        await asyncio.sleep(0.2)
        assert len(counted) == done  # nothing more ran after the close
        return done

    assert asyncio.run(asyncio.wait_for(cancelled(), 30)) > 0
