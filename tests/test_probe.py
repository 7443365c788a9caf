"""Probes against a server that serves one connection at a time and drops
pipelined commands, as Zoltraak does today. minikv cannot be made to behave
like that, so this fault is played by a small fake server."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.fake_servers import FakeServer
from zprof.errors import ZprofError
from zprof.load.driver import LoadSession, Workload
from zprof.load.probe import PROBE_RETRY_FACTOR, PROBE_TIMEOUT_S, check_command, probe

pytestmark = pytest.mark.slow  # each probe waits out a deadline or two


@pytest.fixture
def fake_server():
    server = FakeServer("one-at-a-time").start()
    yield server
    server.close()


def test_probe_finds_one_connection_at_a_time_and_no_pipelining(fake_server):
    started = time.monotonic()
    capabilities = probe("127.0.0.1", fake_server.port, clients=50, pipeline=16)
    # The first connection answered while the last waited: conclusive at the first deadline, no retry.
    assert time.monotonic() - started < PROBE_TIMEOUT_S * PROBE_RETRY_FACTOR
    assert not capabilities.concurrent_clients
    assert not capabilities.pipelining
    assert capabilities.adapt(50, 16) == (1, 1)
    assert len(capabilities.notes) == 2 and capabilities.notes[0].values["first_answered"] is True


def test_a_concurrent_server_too_busy_for_the_first_deadline_is_asked_again():
    """Not even the first connection answers within 2 s (a saturated machine): zprof concludes nothing from
    that, and the longer deadline finds the server concurrent."""
    server = FakeServer("slow-start").start()
    try:
        capabilities = probe("127.0.0.1", server.port, clients=4, pipeline=1)
    finally:
        server.close()
    assert capabilities.concurrent_clients and capabilities.notes == []


def test_the_adapted_load_completes(fake_server):
    capabilities = probe("127.0.0.1", fake_server.port, clients=4, pipeline=8)
    clients, pipeline = capabilities.adapt(4, 8)

    async def drive():
        session = LoadSession("127.0.0.1", fake_server.port, clients)
        await session.connect()
        try:
            return await session.run(Workload.from_template("SET k:__rand_int__ v"), 200, pipeline)
        finally:
            await session.close()

    result = asyncio.run(asyncio.wait_for(drive(), 30))
    assert result.requests == 200 and result.errors == 0


def test_a_command_answered_with_an_error_is_bad_input(fake_server):
    with pytest.raises(ZprofError, match="unknown command"):
        check_command("127.0.0.1", fake_server.port, Workload.from_template("NOPE x"))
