"""Short probes before any load: can the server take what the driver will send?

A server that serves one connection at a time, or drops pipelined commands,
would make a load run hang; these probes find out within seconds so zprof can
adapt instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zprof.errors import ZprofError
from zprof.load.driver import Workload
from zprof.load.resp import SyncClient
from zprof.load.support import Support, Unsupported, check
from zprof.model.common import Note

PROBE_TIMEOUT_S = 2.0
# A probe that could not tell (not even the first connection answered) is asked again with a deadline this
# many times longer before zprof concludes: on a saturated machine a concurrent server can take seconds.
PROBE_RETRY_FACTOR = 5
# How long the connection that waited gets to answer once the first one did.
ANSWERED_TOO_S = 0.5
PROBE_CLIENTS = 4
PROBE_PIPELINE = 16


@dataclass
class Capabilities:
    concurrent_clients: bool
    pipelining: bool
    notes: list[Note] = field(default_factory=list)

    def adapt(self, clients: int, pipeline: int) -> tuple[int, int]:
        """The largest settings up to those asked for that the server supports."""
        return (clients if self.concurrent_clients else 1, pipeline if self.pipelining else 1)


def _answered(client: SyncClient, timeout: float) -> bool:
    client.timeout = timeout
    try:
        client.read(1)
        return True
    except (OSError, TimeoutError, ConnectionError):
        return False


def _answers_concurrently(host: str, port: int, timeout: float) -> bool | None:
    """True when every connection answered. False when the last did not, and the first then did while the
    last still waited: the server is busy with the first and serves the others only after it (one at a
    time). None when not even the first answered in time: a server or machine too busy to say yet."""
    clients: list[SyncClient] = []
    try:
        for _ in range(PROBE_CLIENTS):
            clients.append(SyncClient(host, port, timeout))
        # Ask the last connection first: a one-at-a-time server is busy with the first.
        for client in reversed(clients):
            client.send([b"PING"])
            if not _answered(client, timeout):
                break
        else:
            return True
        waiting = client
        clients[0].send([b"PING"])
        if not _answered(clients[0], timeout):
            return None
        # A concurrent server that was only slow has answered the waiting connection by now too.
        return _answered(waiting, ANSWERED_TOO_S)
    except (OSError, TimeoutError, ConnectionError):
        return None
    finally:
        for client in clients:
            client.close()


def _answers_pipeline(host: str, port: int, timeout: float) -> bool:
    # PING with an argument answers it back: every server has PING, not every one has ECHO.
    try:
        with SyncClient(host, port, timeout) as client:
            client.send(*([[b"PING", b"zprof-%d" % i] for i in range(PROBE_PIPELINE)]))
            replies = client.read(PROBE_PIPELINE)
        # Redis answers the argument back; some servers answer PONG whatever it is, which is as good here.
        return len(replies) == PROBE_PIPELINE and all(
            reply in (b"zprof-%d" % i, b"PONG", "PONG") for i, reply in enumerate(replies))
    except (OSError, TimeoutError, ConnectionError):
        return False


def probe(host: str, port: int, clients: int, pipeline: int, timeout: float = PROBE_TIMEOUT_S) -> Capabilities:
    capabilities = Capabilities(concurrent_clients=True, pipelining=True)
    if clients > 1:
        waited, concurrent = timeout, _answers_concurrently(host, port, timeout)
        if concurrent is None:
            waited = timeout * PROBE_RETRY_FACTOR
            concurrent = _answers_concurrently(host, port, waited)
        if not concurrent:
            capabilities.concurrent_clients = False
            # "first": the first connection answered while the last waited; "none": not even the first did.
            capabilities.notes.append(Note("probe.one-connection", {
                "clients": PROBE_CLIENTS, "timeout": waited, "first_answered": concurrent is False}))
    if pipeline > 1 and not _answers_pipeline(host, port, timeout):
        capabilities.pipelining = False
        capabilities.notes.append(Note("probe.no-pipelining", {"burst": PROBE_PIPELINE}))
    return capabilities


def check_command(host: str, port: int, workload: Workload, timeout: float = PROBE_TIMEOUT_S) -> Support:
    """Sends the command once and checks that the server does it (`zprof.load.support`); an error reply, or a
    command the server only pretends to do, is bad input, not a measurement."""
    support = check(host, port, workload, timeout)
    if support.error is not None:
        raise ZprofError(
            f"the server answers {' '.join(a.decode() for a in workload.args)!r} with an error: {support.error}",
            detail="Check the command name and its arguments (--args TEMPLATE).",
        )
    if support.faked is not None:
        raise Unsupported(support)
    return support


def dbsize(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> int | None:
    """The server's key count, or None when it does not answer DBSIZE with a number."""
    try:
        with SyncClient(host, port, timeout) as client:
            reply = client.call("DBSIZE")
    except (OSError, TimeoutError, ConnectionError):
        return None
    return reply if isinstance(reply, int) and not isinstance(reply, bool) else None
