"""Two servers under the same load, in alternating trials on fresh servers.

Every trial starts each server anew (no state carried over from the previous
trial), runs a discarded warm-up of each command with zprof's driver (which
also counts error replies exactly and tells how fast the server is, for the
deadline of the measured run), then measures the command with the chosen
tool. When that tool is redis-benchmark, which stops at p99, a short pass of
zprof's driver right after, on the same server, gives p99.9. Trials alternate
the servers, A B A B ..., so a drift in the machine's load falls on both alike
and the ratio within a trial cancels it.

Tier 3 adds two workloads no redis-benchmark test covers: MIX, the tier 1 and
tier 2 commands interleaved inside each pipelined batch (always zprof's driver,
for both servers), and PUBLISH to N subscribers, whose deliveries are counted.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import selectors
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from hdrh.histogram import HdrHistogram

from zprof.collect.machine import CpuMeter, CpuUsage, tree_rss_bytes
from zprof.errors import ZprofError
from zprof.load.calibration import MAX_LENGTHENINGS, MIN_TRIAL_SECONDS, long_enough, requests_for
from zprof.load.driver import PLACEHOLDER, LoadError, LoadResult, LoadSession, Workload
from zprof.load.probe import PROBE_TIMEOUT_S, Capabilities, dbsize
from zprof.load.redis_benchmark import BenchmarkFailed, BenchmarkRow, BenchmarkTimedOut, run_benchmark_csv
from zprof.load.resp import ErrorReply, SyncClient, encode
from zprof.load.workloads import MIXED_COMMANDS, TEMPLATES
from zprof.server import HOST, Server, ServerSpec

TARGET, REDIS = "target", "redis"
BENCHMARK, DRIVER = "redis-benchmark", "zprof"
# A measured redis-benchmark run may take this many times what the warm-up's rate predicts, and at least the floor.
DEADLINE_FACTOR = 10.0
DEADLINE_FLOOR_S = 30.0
SLOWEST_EXPECTED_RPS = 1000.0  # for the deadline when there was no warm-up
# The memory load: 16-byte key names ("key:" and 12 digits) and 3-byte values.
KEY_TEMPLATE = "SET key:__rand_int__ xxx"
MSET_BATCH = 10  # keys per MSET when the memory load can use it
DEFAULT_DATA_SIZE = 3
KEY_BYTES, VALUE_BYTES = 16, 3
# A server that dies before it answers PING is started again, up to this many times in all: a start-up
# crash is the target's bug, to report, not a reason to lose the comparison.
START_ATTEMPTS = 20
# The p99.9 pass of zprof's driver after each redis-benchmark run: at most this many requests.
P999_REQUESTS = 30_000
# Tier 3: the pub/sub channel and the interleaved mix of tier 1 and 2 commands.
MIX, PUBLISH = "MIX", "PUBLISH"
CHANNEL = b"zprof-bench"
PUBLISH_TEMPLATE = "PUBLISH zprof-bench xxx"
DELIVERY_MARK = b"$7\r\nmessage\r\n"  # in every message a subscriber receives
DELIVERY_SETTLE_S = 2.0  # how long the deliveries may stand still before zprof stops waiting for the rest
DELIVERY_WAIT_MAX_S = 30.0


@dataclass(frozen=True)
class Latency:
    """Milliseconds. From redis-benchmark: per request, up to p99. From zprof's
    driver: per batch of `pipeline` requests, up to p99.9."""

    avg: float | None = None
    min: float | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    p999: float | None = None
    max: float | None = None

    @classmethod
    def from_row(cls, row: BenchmarkRow) -> Latency:
        return cls(row.avg_ms, row.min_ms, row.p50_ms, row.p95_ms, row.p99_ms, None, row.max_ms)

    @classmethod
    def from_histogram(cls, histogram: HdrHistogram) -> Latency:
        if histogram.get_total_count() == 0:
            return cls()
        ms = [histogram.get_value_at_percentile(p) / 1000 for p in (50, 95, 99, 99.9)]
        return cls(round(histogram.get_mean_value() / 1000, 4), histogram.get_min_value() / 1000, *ms,
                   histogram.get_max_value() / 1000)


@dataclass(frozen=True)
class RunRecord:
    """One measured run: one command on one server in one trial. `p999_source` says
    where `latency_ms.p999` came from (always zprof's driver: the run itself, or a
    pass of `p999_requests` right after redis-benchmark's). For PUBLISH,
    `deliveries` counts the messages the `subscribers` received over the whole
    trial on that server (warm-up and p99.9 pass included), out of `expected_deliveries`."""

    trial: int
    server: str
    command: str
    tool: str
    clients: int
    pipeline: int
    requests: int
    seconds: float  # the run's wall time, as zprof measured it
    rps: float  # requests / seconds
    latency_ms: Latency
    cpu: CpuUsage
    errors: int = 0
    p999_source: str | None = None
    p999_requests: int | None = None
    subscribers: int | None = None
    deliveries: int | None = None
    expected_deliveries: int | None = None
    # redis-benchmark's own rate, which leaves out its start-up and connections (None for zprof's driver).
    tool_rps: float | None = None


@dataclass(frozen=True)
class CommandFailure:
    """Why a command was dropped. `errors` is None when the count is unknown:
    redis-benchmark stops at the first error reply."""

    server: str
    trial: int
    errors: int | None
    requests: int | None
    first_error: str


@dataclass(frozen=True)
class MemoryRecord:
    keys: int
    rss_empty_bytes: int | None
    rss_loaded_bytes: int | None
    keys_stored: int | None
    seconds: float
    errors: int = 0
    first_error: str | None = None

    @property
    def growth_bytes(self) -> int | None:
        if self.rss_empty_bytes is None or self.rss_loaded_bytes is None or self.errors:
            return None
        return self.rss_loaded_bytes - self.rss_empty_bytes

    @property
    def rss_per_million_keys(self) -> float | None:
        growth = self.growth_bytes
        return None if growth is None or not self.keys else round(growth * 1_000_000 / self.keys)

    @property
    def bytes_per_key(self) -> float | None:
        growth = self.growth_bytes
        return None if growth is None or not self.keys else round(growth / self.keys, 1)


@dataclass
class Side:
    """One of the two servers: `name` is TARGET or REDIS, `label` what the report calls it;
    and how its starts went."""

    name: str
    label: str
    spec: ServerSpec
    run_dir: Path
    starts: int = 0
    start_crashes: int = 0
    last_crash: str | None = None

    def start_limitation(self) -> str | None:
        if not self.start_crashes:
            return None
        return (f"{self.label} crashed during start-up, before it answered PING, in {self.start_crashes} of "
                f"{self.starts} starts ({self.last_crash}; see its log); zprof started it again each time.")


def _how(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"signal {-returncode}, {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"


@contextmanager
def fresh_server(side: Side) -> Iterator[Server]:
    """A newly started server, stopped afterwards; one that died before answering PING is started again."""
    for attempt in range(1, START_ATTEMPTS + 1):
        server = Server(side.spec, side.run_dir)
        side.starts += 1
        try:
            server.start()
        except ZprofError as error:
            code = server.process.returncode if server.process is not None else None
            # Killed by a signal of its own (SIGSEGV, SIGABRT...): not a port in use, a command that cannot
            # run, a deliberate exit status, or a silent server zprof stopped itself.
            if code is None or code >= 0 or code in (-signal.SIGTERM, -signal.SIGKILL):
                raise
            side.start_crashes += 1
            side.last_crash = _how(code)
            if attempt == START_ATTEMPTS:
                raise ZprofError(f"{side.label} crashed during start-up in all {START_ATTEMPTS} attempts "
                                 f"({side.last_crash})", detail=error.detail, exit_code=error.exit_code) from error
            continue
        try:
            yield server
        finally:
            server.stop()
        return


@dataclass(frozen=True)
class LoadPlan:
    tool: str
    clients: int
    pipeline: int
    requests: int
    warmup: int
    deadline: float | None  # seconds per redis-benchmark run; None: from the warm-up's rate
    benchmark: str | None  # the redis-benchmark executable

    @property
    def description(self) -> str:
        tool = "redis-benchmark" if self.tool == BENCHMARK else "zprof's driver"
        return f"{tool}, {self.clients} client(s), pipeline {self.pipeline}"


def plan_load(capabilities: Capabilities, clients: int, pipeline: int, requests: int, warmup: int,
              deadline: float | None, benchmark: str | None) -> tuple[LoadPlan, list[str]]:
    """redis-benchmark when the target can take it, else zprof's driver at what the probes found;
    returns the plan and the limitations it brings."""
    clients, pipeline = capabilities.adapt(clients, pipeline)
    plan = LoadPlan(BENCHMARK, clients, pipeline, requests, warmup, deadline, benchmark)
    limitations: list[str] = []
    faults = [fault for fault, ok in (("serves one connection at a time", capabilities.concurrent_clients),
                                      ("answers only the first of pipelined commands", capabilities.pipelining))
              if not ok]
    if faults:
        limitations.append(
            f"The target {' and '.join(faults)} (zprof's probes found it): redis-benchmark, which opens all its "
            f"connections at once and pipelines its first commands, would hang on it, so zprof's built-in driver "
            f"drove both servers with {clients} client(s) and pipeline {pipeline}.")
        plan = replace(plan, tool=DRIVER)
    elif benchmark is None:
        limitations.append("redis-benchmark is not installed (apt-get install redis-tools): zprof's built-in "
                           "driver drove both servers.")
        plan = replace(plan, tool=DRIVER)
    return plan, limitations


def load_limitations(plan: LoadPlan, commands: list[str]) -> list[str]:
    """What the tool that made the load leaves unmeasured or blurs."""
    notes: list[str] = []
    if plan.tool == BENCHMARK:
        notes.append(
            f"p99.9 is not from redis-benchmark, whose CSV stops at p99: it comes from a short pass of zprof's "
            f"built-in driver (at most {P999_REQUESTS:,} requests, {plan.clients} client(s), pipeline "
            f"{plan.pipeline}) on the same fresh server right after each redis-benchmark run, and includes the "
            "Python client's own tail, so it is an upper bound that weighs on both servers alike.")
    if plan.tool == DRIVER or MIX in commands:
        notes.append("zprof's driver is written in Python and uses one core at most; when it uses most of that core "
                     "it, not the server, sets the pace, which pulls the two servers' figures together.")
    if plan.pipeline > 1:
        timed = "All latencies" if plan.tool == DRIVER else "p99.9" + (" (and every latency of MIX)"
                                                                      if MIX in commands else "")
        notes.append(f"{timed} from zprof's driver {'are' if plan.tool == DRIVER else 'is'} per pipelined batch "
                     f"of {plan.pipeline} requests, not per request.")
    if MIX in commands and plan.tool == BENCHMARK:
        notes.append("MIX interleaves the tier 1 and 2 commands inside each pipelined batch, which redis-benchmark "
                     "cannot do: zprof's driver drove it for both servers.")
    if plan.clients == 1 and plan.pipeline == 1:
        notes.append("With one client and one command at a time every request is a round trip: the figures "
                     "measure latency more than the throughput either server could sustain.")
    return notes


@dataclass(frozen=True)
class MixWorkload(Workload):
    """The `parts` in turn, request after request, so every pipelined batch mixes them."""

    parts: tuple[Workload, ...] = ()
    counter: Iterator[int] = field(default_factory=itertools.count, compare=False, repr=False)

    def expand(self, rng: random.Random) -> bytes:
        return self.parts[next(self.counter) % len(self.parts)].expand(rng)

    def with_key_range(self, index: int) -> MixWorkload:
        return replace(self, parts=tuple(part.with_key_range(index) for part in self.parts))


def bench_workload(command: str, keyspace: int, data_size: int = DEFAULT_DATA_SIZE) -> Workload:
    """The request for one command of the comparison (`MIX` and `PUBLISH` are tier 3's).

    Values are `data_size` bytes, as redis-benchmark's -d makes them (the templates' `xxx` is 3).
    """

    def sized(template: str) -> Workload:
        return Workload.from_template(template.replace(" xxx", " " + "x" * data_size), keyspace)

    if command == MIX:
        return MixWorkload((MIX.encode(),), keyspace, parts=tuple(sized(TEMPLATES[name]) for name in MIXED_COMMANDS))
    if command == PUBLISH:
        return sized(PUBLISH_TEMPLATE)
    return sized(TEMPLATES[command])


def describe(workload: Workload) -> str:
    if isinstance(workload, MixWorkload):
        return "pipelined mix of " + ", ".join(part.command for part in workload.parts)
    return " ".join(arg.decode() for arg in workload.args)


class Subscribers:
    """`count` connections SUBSCRIBEd to CHANNEL, counting in a thread of their own every
    message they receive; `stop` waits for the expected count (or until it stands still)."""

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

    def stop(self, expected: int) -> int:
        """The messages received, once `expected` arrived or none came for DELIVERY_SETTLE_S."""
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


@dataclass(frozen=True)
class NumberedKeys(Workload):
    """`__rand_int__` replaced by 0, 1, 2, ... in turn over all connections, so N requests make N distinct
    keys; with `per_request` above 1, each request is one MSET of that many consecutive keys, up to `limit`
    keys in all (a template `SET KEY VALUE` gives the key and the value)."""

    counter: Iterator[int] = field(default_factory=itertools.count, compare=False, repr=False)
    per_request: int = 1
    limit: int | None = None

    def expand(self, rng: random.Random) -> bytes:
        if self.per_request == 1:
            number = b"%012d" % next(self.counter)
            return encode([arg.replace(PLACEHOLDER, number) for arg in self.args])
        key, value = self.args[1], self.args[2]
        pairs: list[bytes] = []
        for number in itertools.islice(self.counter, self.per_request):
            if self.limit is not None and number >= self.limit:
                break
            pairs += [key.replace(PLACEHOLDER, b"%012d" % number), value]
        return encode([b"MSET", *pairs])


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


def crash_error(server: Server, side: Side, what: str) -> ZprofError:
    crash = server.crashed(what)
    return ZprofError(f"{side.label}: {crash.message}", detail=crash.detail, exit_code=crash.exit_code)


def _accepts_mset(port: int) -> bool:
    """Whether the server stores keys with MSET: two of the keys the load makes first, made again after."""
    request = NumberedKeys.from_template(KEY_TEMPLATE)
    try:
        with SyncClient(HOST, port, PROBE_TIMEOUT_S) as client:
            client.sock.sendall(replace(request, per_request=2).expand(random.Random(0)))
            (reply,) = client.read(1)
    except (OSError, TimeoutError, ConnectionError):
        return False
    return reply == "OK"


def load_keys(server: Server, side: Side, keys: int, plan: LoadPlan, rss_empty: int | None,
              progress: Callable[[int, int], None] = lambda done, total: None) -> MemoryRecord:
    """Stores `keys` distinct keys through zprof's driver, MSET_BATCH to a request where the server takes
    MSET, pipelined as the plan allows, and reads the RSS."""
    started = time.monotonic()
    per_request = MSET_BATCH if _accepts_mset(server.port) else 1
    workload = replace(NumberedKeys.from_template(KEY_TEMPLATE), per_request=per_request, limit=keys)
    requests = -(-keys // per_request)
    done = 0

    def loaded(count: int) -> None:
        nonlocal done
        done += count
        progress(min(done * per_request, keys), keys)

    try:
        result = drive(server.port, workload, plan.clients, plan.pipeline, requests, loaded)
    except LoadError as failure:
        if server.exited_within(1.0):
            raise crash_error(server, side, f"crashed while zprof loaded {keys:,} keys") from failure
        return MemoryRecord(keys, rss_empty, None, None, time.monotonic() - started, failure.result.errors or 1,
                            f"{failure} after {failure.result.requests:,} SETs")
    return MemoryRecord(keys, rss_empty, tree_rss_bytes(server.pid), dbsize(HOST, server.port),
                        round(time.monotonic() - started, 3), result.errors, result.first_error)


@dataclass
class _Pass:
    """What one server's run of one command measured, before it is recorded."""

    requests: int
    seconds: float
    latency: Latency
    cpu: CpuUsage
    tool: str
    p999_source: str | None = None
    p999_requests: int | None = None
    tool_rps: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


class AlternatingTrials:
    """Runs every trial; fills `records`, `failures` (per command, which is then
    skipped) and `limitations`. A crash raises ZprofError with the records kept."""

    def __init__(self, sides: tuple[Side, Side], workloads: list[Workload], plan: LoadPlan, trials: int,
                 run_dir: Path, status: Callable[[str], None], subscribers: int = 10,
                 progress: Callable[[int, int], None] = lambda done, total: None,
                 min_trial_seconds: float = MIN_TRIAL_SECONDS) -> None:
        self.sides, self.workloads, self.plan, self.trials = sides, workloads, plan, trials
        self.run_dir, self.status, self.subscribers = run_dir, status, subscribers
        # (runs done, runs in all): one run is one command on one server in one trial.
        self.progress = progress
        self.min_trial_seconds = min_trial_seconds
        self.records: list[RunRecord] = []
        self.failures: dict[str, CommandFailure] = {}
        self.limitations: list[str] = []
        # Requests per measured run, by (server, command), once calibrated to last min_trial_seconds.
        self.calibrated: dict[tuple[str, str], int] = {}

    def run(self) -> None:
        """A redis-benchmark run past its deadline restarts all trials with zprof's driver, for both
        servers: one tool per comparison."""
        try:
            self._all_trials()
        except BenchmarkTimedOut as timeout:
            self.plan = replace(self.plan, tool=DRIVER)
            self.limitations.append(
                f"{timeout}. zprof's built-in driver ({self.plan.clients} client(s), pipeline {self.plan.pipeline}) "
                "then drove both servers in every trial; the redis-benchmark runs before were discarded.")
            self.records.clear()
            self.failures.clear()
            self.calibrated.clear()
            self._all_trials()
        if note := self.lengthened_note():
            self.limitations.append(note)

    def lengthened_note(self) -> str | None:
        """Which measured runs zprof made longer than --requests, so that each lasts long enough."""
        longer = {key: requests for key, requests in self.calibrated.items() if requests > self.plan.requests}
        if not longer:
            return None
        ordered = sorted(longer.items(), key=lambda item: (item[0][1], item[0][0]))
        runs = "; ".join(f"{command} on {server}: {requests:,}" for (server, command), requests in ordered)
        return (f"{self.plan.requests:,} requests (--requests) would have made runs shorter than "
                f"{self.min_trial_seconds:g} s, too short for a rate to mean anything: zprof lengthened those to "
                f"the requests that last at least that long, in every trial ({runs}).")

    def order(self, trial: int) -> tuple[Side, ...]:
        """A B, B A, A B, ...: each trial is a pair of runs on freshly started servers, and the order
        within the pair alternates, so that whatever favours the first (or second) run of a pair falls
        on both servers alike."""
        return self.sides if trial % 2 == 1 else self.sides[::-1]

    def _all_trials(self) -> None:
        total, done = self.trials * len(self.sides) * len(self.workloads), 0
        self.progress(done, total)
        for trial in range(1, self.trials + 1):
            for side in self.order(trial):
                with fresh_server(side) as server:
                    for workload in self.workloads:
                        if workload.command not in self.failures:
                            self._one_command(server, side, trial, workload)
                        done += 1
                        self.progress(done, total)

    def _one_command(self, server: Server, side: Side, trial: int, workload: Workload) -> None:
        where = f"trial {trial}/{self.trials}, {side.label}, {workload.command}"
        subscribers = None
        if workload.command == PUBLISH:
            self.status(f"{where}: {self.subscribers} subscribers")
            subscribers = Subscribers(server.port, self.subscribers)
            try:
                subscribers.start()
            except SubscribeRefused as refused:
                self._fail(side, trial, workload, 1, 1, f"SUBSCRIBE: {refused}")
                return
            except LoadError as failure:
                self._lost(server, side, trial, workload, failure, self.subscribers)
                return
        measured, published = None, 0
        try:
            measured, published = self._measure(server, side, trial, workload, where)
        finally:
            delivered = subscribers.stop(published if measured else 0) if subscribers else None
        if measured is None:
            return
        if subscribers is not None:
            expected = published * subscribers.count
            assert delivered is not None
            if delivered < expected:
                self._fail(side, trial, workload, None, published,
                           f"{subscribers.count} subscribers received {delivered:,} of the {expected:,} messages "
                           f"{published:,} PUBLISHes should have delivered" +
                           (f" ({subscribers.error})" if subscribers.error else ""))
                return
            measured_deliveries = (subscribers.count, delivered, expected)
        else:
            measured_deliveries = (None, None, None)
        self.records.append(RunRecord(
            trial, side.name, workload.command, measured.tool, self.plan.clients, self.plan.pipeline,
            measured.requests, round(measured.seconds, 4), round(measured.rps, 1), measured.latency, measured.cpu,
            0, measured.p999_source, measured.p999_requests, *measured_deliveries,
            tool_rps=round(measured.tool_rps, 1) if measured.tool_rps is not None else None))

    def _measure(self, server: Server, side: Side, trial: int, workload: Workload,
                 where: str) -> tuple[_Pass | None, int]:
        """Warm-up, measured run long enough to measure (and p99.9 pass); None when the command failed.
        Also the requests sent in all."""
        sent, rate = 0, None
        if self.plan.warmup:
            self.status(f"{where}: warm-up")
            warm = self._driver_run(server, side, trial, workload, self.plan.warmup)
            if warm is None:
                return None, sent
            sent, rate = warm.requests, warm.rps
        tool = DRIVER if isinstance(workload, MixWorkload) else self.plan.tool
        key = (side.name, workload.command)
        requests = self.calibrated.get(key) or requests_for(rate or 0.0, self.min_trial_seconds, self.plan.requests)
        for _ in range(MAX_LENGTHENINGS + 1):
            self.status(f"{where}: {tool}, {requests:,} requests")
            measured = self._timed_run(server, side, trial, workload, tool, requests, rate)
            if measured is None:
                return None, sent
            sent += measured.requests
            if long_enough(measured.seconds, self.min_trial_seconds):
                break
            # Too short to mean anything: discarded, and run again long enough.
            rate = measured.rps
            requests = requests_for(rate, self.min_trial_seconds, 2 * requests)
        else:
            self._fail(side, trial, workload, None, None,
                       f"no run lasted {self.min_trial_seconds:g} s, even with {requests:,} requests")
            return None, sent
        self.calibrated[key] = requests
        if tool != BENCHMARK:
            return measured, sent
        self.status(f"{where}: p99.9 pass of zprof's driver")
        tail = self._driver_run(server, side, trial, workload, min(requests, P999_REQUESTS))
        if tail is None:
            return None, sent
        latency = replace(measured.latency, p999=Latency.from_histogram(tail.latency_us).p999)
        return replace(measured, latency=latency, p999_source=DRIVER, p999_requests=tail.requests), sent + tail.requests

    def _timed_run(self, server: Server, side: Side, trial: int, workload: Workload, tool: str, requests: int,
                   rate: float | None) -> _Pass | None:
        """One measured run with `tool`; None when the command failed (recorded in `failures`)."""
        if tool == BENCHMARK:
            return self._benchmark_run(server, side, trial, workload, requests, rate)
        with CpuMeter(server.pid, "self") as meter:
            result = self._driver_run(server, side, trial, workload, requests)
        if result is None:
            return None
        return _Pass(result.requests, result.seconds, Latency.from_histogram(result.latency_us), meter.usage, DRIVER,
                     DRIVER, result.requests)

    def _driver_run(self, server: Server, side: Side, trial: int, workload: Workload,
                    requests: int) -> LoadResult | None:
        """The run's result, or None when the command failed (recorded in `failures`)."""
        try:
            result = drive(server.port, workload, self.plan.clients, self.plan.pipeline, requests)
        except LoadError as failure:
            self._lost(server, side, trial, workload, failure, requests)
            return None
        if result.errors or not result.requests:
            self._fail(side, trial, workload, result.errors, result.requests,
                       result.first_error or "no request completed")
            return None
        return result

    def _lost(self, server: Server, side: Side, trial: int, workload: Workload, failure: LoadError,
              requests: int) -> None:
        """The server stopped answering: a crash ends the run (ZprofError), anything else fails the command."""
        if server.exited_within(1.0):
            raise crash_error(server, side, f"crashed in trial {trial} during {workload.command}") from failure
        self._fail(side, trial, workload, failure.result.errors, failure.result.requests,
                   f"{failure} after {failure.result.requests:,} of {requests:,} requests")

    def _benchmark_run(self, server: Server, side: Side, trial: int, workload: Workload, requests: int,
                       rate: float | None) -> _Pass | None:
        assert self.plan.benchmark is not None
        deadline = self.plan.deadline or max(DEADLINE_FLOOR_S,
                                             DEADLINE_FACTOR * requests / (rate or SLOWEST_EXPECTED_RPS))
        with CpuMeter(server.pid, "children") as meter:
            started = time.perf_counter()
            try:
                row = run_benchmark_csv(self.plan.benchmark, HOST, server.port, workload, self.plan.clients,
                                        self.plan.pipeline, requests, deadline, cwd=self.run_dir)
            except (BenchmarkFailed, BenchmarkTimedOut) as failure:
                if server.exited_within(1.0):
                    raise crash_error(server, side, f"crashed in trial {trial} during {workload.command}") \
                        from failure
                if isinstance(failure, BenchmarkTimedOut):
                    raise
                self._fail(side, trial, workload, None, None, failure.server_error or str(failure))
                return None
            # The run's wall time, redis-benchmark's start-up and connections included: its own figure
            # leaves them out, and so can exceed what the run really delivered.
            seconds = time.perf_counter() - started
        if row.rps <= 0:
            self._fail(side, trial, workload, None, None, "redis-benchmark measured no completed request")
            return None
        return _Pass(requests, seconds, Latency.from_row(row), meter.usage, BENCHMARK, tool_rps=row.rps)

    def _fail(self, side: Side, trial: int, workload: Workload, errors: int | None, requests: int | None,
              first_error: str) -> None:
        self.failures[workload.command] = CommandFailure(side.name, trial, errors, requests, first_error)
