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

import contextlib
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from zprof.analysis.verdicts import (
    compare_command,
    compare_memory,
    comparison_limitations,
    load_thresholds,
    overall_verdict,
)
from zprof.collect.disk import DiskWrites, disk_writes, written_between
from zprof.collect.machine import CpuMeter, load_average, machine_info, tree_rss_bytes
from zprof.errors import EXIT_TARGET, PartialRun, ServerCrashed, ZprofError
from zprof.load.calibration import MAX_LENGTHENINGS, MIN_TRIAL_SECONDS, long_enough, requests_for
from zprof.load.driver import LoadError, LoadResult, Workload, drive
from zprof.load.probe import Capabilities, dbsize, probe
from zprof.load.pubsub import SubscribeRefused, Subscribers
from zprof.load.redis_benchmark import (
    BenchmarkFailed,
    BenchmarkTimedOut,
    latency_of,
    redis_benchmark_path,
    run_benchmark_csv,
)
from zprof.load.support import UNSUPPORTED_DETAIL, Support, check
from zprof.load.workloads import (
    CONFIG_GET,
    KEY_TEMPLATE,
    MIX,
    MSET_BATCH,
    PUBLISH,
    TEMPLATES,
    MixWorkload,
    NumberedKeys,
    describe,
)
from zprof.model.bench import (
    BENCHMARK,
    DRIVER,
    REDIS,
    TARGET,
    BenchRun,
    BenchSettings,
    CommandFailure,
    Latency,
    MemoryRecord,
    ReferenceServer,
    RunRecord,
)
from zprof.model.common import CpuUsage, Note, TargetInfo
from zprof.procs import run_bounded
from zprof.progress import Reporter
from zprof.server import HOST, Server, ServerSpec, Starts, fresh_server
from zprof.sessions.target import TargetOptions, build_target, run_directory, server_spec, start_notes

# A measured redis-benchmark run may take this many times what the warm-up's rate predicts, and at least the floor.
DEADLINE_FACTOR = 10.0
DEADLINE_FLOOR_S = 30.0
SLOWEST_EXPECTED_RPS = 1000.0  # for the deadline when there was no warm-up
# The p99.9 pass of zprof's driver after each redis-benchmark run: at most this many requests.
P999_REQUESTS = 30_000


@dataclass
class Side:
    """One of the two servers: `name` is TARGET or REDIS, `label` what the report calls it;
    and how its starts went."""

    name: str
    label: str
    spec: ServerSpec
    run_dir: Path
    starts: Starts = field(default_factory=Starts)

    def server(self) -> contextlib.AbstractContextManager[Server]:
        return fresh_server(self.spec, self.run_dir, self.starts, self.label)

    def start_note(self) -> Note | None:
        return self.starts.note(self.label)


@dataclass(frozen=True)
class LoadPlan:
    tool: str
    clients: int
    pipeline: int
    requests: int
    warmup: int
    deadline: float | None  # seconds per redis-benchmark run; None: from the warm-up's rate
    benchmark: str | None  # the redis-benchmark executable
    # After each redis-benchmark run, a pass of zprof's driver for p99.9, which redis-benchmark lacks.
    p999_pass: bool = True

    @property
    def description(self) -> str:
        tool = "redis-benchmark" if self.tool == BENCHMARK else "zprof's driver"
        return f"{tool}, {self.clients} client(s), pipeline {self.pipeline}"


def plan_load(capabilities: Capabilities, clients: int, pipeline: int, requests: int, warmup: int,
              deadline: float | None, benchmark: str | None) -> tuple[LoadPlan, list[Note]]:
    """redis-benchmark when the target can take it, else zprof's driver at what the probes found;
    returns the plan and the limitations it brings."""
    clients, pipeline = capabilities.adapt(clients, pipeline)
    plan = LoadPlan(BENCHMARK, clients, pipeline, requests, warmup, deadline, benchmark)
    faults = [fault for fault, ok in (("one-connection", capabilities.concurrent_clients),
                                      ("no-pipelining", capabilities.pipelining)) if not ok]
    if faults:
        return replace(plan, tool=DRIVER), [Note("bench.driver-for-faults", {"faults": faults, "clients": clients,
                                                                             "pipeline": pipeline})]
    if benchmark is None:
        return replace(plan, tool=DRIVER), [Note("bench.no-redis-benchmark")]
    return plan, []


def check_config_get(port: int, plan: LoadPlan) -> tuple[LoadPlan, list[Note]]:
    """redis-benchmark asks CONFIG GET first: an error reply (or a reply that is not its settings) it shrugs
    off, but it waits for an answer forever, so a server that never answers gets zprof's driver."""
    try:
        found = check(HOST, port, CONFIG_GET)
    except ZprofError:
        return replace(plan, tool=DRIVER), [Note("bench.config-unanswered", {"clients": plan.clients,
                                                                            "pipeline": plan.pipeline})]
    return plan, [Note("bench.no-config")] if not found.supported else []


def load_limitations(plan: LoadPlan, commands: list[str]) -> list[Note]:
    """What the tool that made the load leaves unmeasured or blurs."""
    notes: list[Note] = []
    if plan.tool == BENCHMARK and plan.p999_pass:
        notes.append(Note("bench.p999-from-driver", {"requests": P999_REQUESTS, "clients": plan.clients,
                                                     "pipeline": plan.pipeline}))
    elif plan.tool == BENCHMARK:
        notes.append(Note("bench.no-p999"))
    if plan.tool == DRIVER or MIX in commands:
        notes.append(Note("bench.python-driver"))
    if plan.pipeline > 1:
        notes.append(Note("bench.latency-per-batch", {"all": plan.tool == DRIVER, "mix": MIX in commands,
                                                      "pipeline": plan.pipeline}))
    if MIX in commands and plan.tool == BENCHMARK:
        notes.append(Note("bench.mix-by-driver"))
    if plan.clients == 1 and plan.pipeline == 1:
        notes.append(Note("bench.round-trips"))
    return notes


def crash_error(server: Server, side: Side, what: str) -> ZprofError:
    crash = server.crashed(what)
    if isinstance(crash, ServerCrashed) and side.name == TARGET:
        return ServerCrashed(f"{side.label}: {crash.message}", detail=crash.detail, stack=crash.stack)
    return ZprofError(f"{side.label}: {crash.message}", detail=crash.detail, exit_code=crash.exit_code)


@dataclass(frozen=True)
class TargetSupport:
    """What the target does of the commands to compare, and of those memory per key rests on
    (`zprof.load.support`). A command it fakes is neither measured nor judged."""

    support: dict[str, Support]
    workloads: list[Workload]  # those it does not fake, in the order asked
    unsupported: dict[str, str]  # command: "unsupported (answers +OK without doing it)"
    keys_per_request: int  # of the memory load: MSET_BATCH where the target does MSET, else 1 (SET)
    no_memory_per_key: str | None  # why memory per key is not computed, or None


# What the memory load writes (SET or MSET) and reads back (DBSIZE): memory per key rests on them.
MEMORY_LOAD_COMMANDS = ("SET", "MSET", "DBSIZE")


def target_support(port: int, workloads: list[Workload], keys: int) -> TargetSupport:
    """Checks every command once: those of the workloads (MIX's parts for MIX), and with `keys`, those
    of the memory load. MIX is unsupported when a command it mixes in is."""
    requests = {part.command: part for workload in workloads
                for part in (workload.parts if isinstance(workload, MixWorkload) else (workload,))}
    if keys:
        requests.update({name: Workload.from_template(TEMPLATES[name]) for name in MEMORY_LOAD_COMMANDS
                         if name not in requests})
    support = {name: check(HOST, port, request) for name, request in requests.items()}
    unsupported: dict[str, str] = {}
    for workload in workloads:
        parts = workload.parts if isinstance(workload, MixWorkload) else (workload,)
        faked = [part.command for part in parts if support[part.command].faked is not None]
        if faked == [workload.command]:
            unsupported[workload.command] = support[workload.command].unsupported  # type: ignore[assignment]
        elif faked:
            unsupported[workload.command] = f"unsupported (it mixes in {', '.join(faked)}, which the server fakes)"
    kept = [workload for workload in workloads if workload.command not in unsupported]
    no_memory_per_key = next((f"{name} is {support[name].unsupported}" for name in ("SET", "DBSIZE")
                              if keys and support[name].faked is not None), None)
    per_request = MSET_BATCH if keys and support["MSET"].supported else 1
    return TargetSupport(support, kept, unsupported, per_request, no_memory_per_key)


def load_keys(server: Server, side: Side, keys: int, plan: LoadPlan, rss_empty: int | None, progress: Reporter,
              per_request: int = MSET_BATCH, count: bool = True) -> MemoryRecord:
    """Stores `keys` distinct keys through zprof's driver, `per_request` to a request (MSET when above 1),
    pipelined as the plan allows, and reads the RSS; and the keys the server holds, by DBSIZE, with `count`."""
    started = time.monotonic()
    workload = replace(NumberedKeys.from_template(KEY_TEMPLATE), per_request=per_request, limit=keys)
    requests = -(-keys // per_request)
    done = 0

    def loaded(count: int) -> None:
        nonlocal done
        done += count
        progress.count(min(done * per_request, keys), keys)

    try:
        result = drive(server.port, workload, plan.clients, plan.pipeline, requests, loaded)
    except LoadError as failure:
        if server.exited_within(1.0):
            raise crash_error(server, side, f"crashed while zprof loaded {keys:,} keys") from failure
        return MemoryRecord(keys, rss_empty, None, None, time.monotonic() - started, failure.result.errors or 1,
                            f"{failure} after {failure.result.requests:,} SETs")
    return MemoryRecord(keys, rss_empty, tree_rss_bytes(server.pid), dbsize(HOST, server.port) if count else None,
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
                 run_dir: Path, progress: Reporter, subscribers: int = 10,
                 min_trial_seconds: float = MIN_TRIAL_SECONDS) -> None:
        self.sides, self.workloads, self.plan, self.trials = sides, workloads, plan, trials
        self.run_dir, self.progress, self.subscribers = run_dir, progress, subscribers
        self.min_trial_seconds = min_trial_seconds
        self.records: list[RunRecord] = []
        self.failures: dict[str, CommandFailure] = {}
        self.limitations: list[Note] = []
        # Requests per measured run, by (server, command), once calibrated to last min_trial_seconds.
        self.calibrated: dict[tuple[str, str], int] = {}
        # What the target wrote to disk over its trials (warm-ups included): a target that persists does work a
        # Redis run without persistence does not.
        self.target_writes = DiskWrites(0, ())

    def run(self) -> None:
        """A redis-benchmark run past its deadline restarts all trials with zprof's driver, for both
        servers: one tool per comparison."""
        try:
            self._all_trials()
        except BenchmarkTimedOut as timeout:
            self.plan = replace(self.plan, tool=DRIVER)
            self.limitations.append(Note("bench.benchmark-timed-out", {
                "reason": str(timeout), "clients": self.plan.clients, "pipeline": self.plan.pipeline}))
            self.records.clear()
            self.failures.clear()
            self.calibrated.clear()
            self.target_writes = DiskWrites(0, ())
            self._all_trials()
        if note := self.lengthened_note():
            self.limitations.append(note)

    def lengthened_note(self) -> Note | None:
        """Which measured runs zprof made longer than --requests, so that each lasts long enough."""
        longer = {key: requests for key, requests in self.calibrated.items() if requests > self.plan.requests}
        if not longer:
            return None
        ordered = sorted(longer.items(), key=lambda item: (item[0][1], item[0][0]))
        return Note("bench.lengthened", {"requests": self.plan.requests, "seconds": self.min_trial_seconds,
                                         "runs": [[command, server, requests]
                                                  for (server, command), requests in ordered]})

    def order(self, trial: int) -> tuple[Side, ...]:
        """A B, B A, A B, ...: each trial is a pair of runs on freshly started servers, and the order
        within the pair alternates, so that whatever favours the first (or second) run of a pair falls
        on both servers alike."""
        return self.sides if trial % 2 == 1 else self.sides[::-1]

    def _all_trials(self) -> None:
        # One run is one command on one server in one trial.
        total, done = self.trials * len(self.sides) * len(self.workloads), 0
        for trial in range(1, self.trials + 1):
            for side in self.order(trial):
                with side.server() as server:
                    before = disk_writes(server.pid) if side.name == TARGET else None
                    for workload in self.workloads:
                        if workload.command not in self.failures:
                            self._one_command(server, side, trial, workload)
                        done += 1
                        self.progress.count(done, total)
                    if before is not None:
                        written = written_between(before, disk_writes(server.pid))
                        self.target_writes = DiskWrites(self.target_writes.bytes + written.bytes,
                                                        tuple(sorted({*self.target_writes.files, *written.files})))

    def _one_command(self, server: Server, side: Side, trial: int, workload: Workload) -> None:
        where = f"trial {trial}/{self.trials}, {side.label}, {workload.command}"
        subscribers = None
        if workload.command == PUBLISH:
            self.progress.status(f"{where}: {self.subscribers} subscribers")
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
            self.progress.status(f"{where}: warm-up")
            warm = self._driver_run(server, side, trial, workload, self.plan.warmup)
            if warm is None:
                return None, sent
            sent, rate = warm.requests, warm.rps
        tool = DRIVER if isinstance(workload, MixWorkload) else self.plan.tool
        key = (side.name, workload.command)
        requests = self.calibrated.get(key) or requests_for(rate or 0.0, self.min_trial_seconds, self.plan.requests)
        for _ in range(MAX_LENGTHENINGS + 1):
            self.progress.status(f"{where}: {tool}, {requests:,} requests")
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
        if tool != BENCHMARK or not self.plan.p999_pass:
            return measured, sent
        self.progress.status(f"{where}: p99.9 pass of zprof's driver")
        tail = self._driver_run(server, side, trial, workload, min(requests, P999_REQUESTS))
        if tail is None:
            return None, sent
        latency = replace(measured.latency, p999=tail.latency().p999)
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
        return _Pass(result.requests, result.seconds, result.latency(), meter.usage, DRIVER, DRIVER, result.requests)

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
        return _Pass(requests, seconds, latency_of(row), meter.usage, BENCHMARK, tool_rps=row.rps)

    def _fail(self, side: Side, trial: int, workload: Workload, errors: int | None, requests: int | None,
              first_error: str) -> None:
        self.failures[workload.command] = CommandFailure(side.name, trial, errors, requests, first_error)


# The whole comparison -----------------------------------------------------------
# No persistence, loopback only; its `dir` stays the default, the working
# directory, which Server makes private and removes afterwards.
REDIS_START_COMMAND = '{binary} --port {port} --bind 127.0.0.1 --save "" --appendonly no'
# How Redis persists (--redis-persistence): off by default; like for like with a target that persists. AOF with
# Redis' default fsync policy (once a second), RDB with a snapshot after 1,000 writes in a minute.
REDIS_PERSISTENCE = {
    "off": REDIS_START_COMMAND,
    "aof": '{binary} --port {port} --bind 127.0.0.1 --save "" --appendonly yes --appendfsync everysec',
    "rdb": '{binary} --port {port} --bind 127.0.0.1 --save "60 1000" --appendonly no',
}
VERSION_TIMEOUT_S = 10


@dataclass(frozen=True)
class BenchOptions:
    target: TargetOptions
    workloads: list[Workload]
    trials: int
    requests: int
    warmup: int
    clients: int
    pipeline: int
    keyspace: int
    keys: int
    subscribers: int
    deadline: float | None
    min_trial_seconds: float
    redis_server: str | None  # the reference, or None for redis-server on PATH
    target_binary: Path | None  # a server run as it is, instead of one built from the project
    # Whether --start-command was given: a redis-server as the target otherwise starts like the reference.
    start_command_given: bool = False
    p999_pass: bool = True  # see LoadPlan
    redis_persistence: str = "off"  # a key of REDIS_PERSISTENCE


def reference_server(explicit: str | None) -> tuple[Path, str]:
    """The redis-server to compare with, and its version; missing is bad input (exit 2)."""
    install = "Install the Debian package redis-server (apt-get install redis-server), or pass --redis-server PATH."
    found = explicit or shutil.which("redis-server")
    if found is None:
        raise ZprofError("redis-server is not installed; zprof bench compares the target with it", detail=install)
    path = Path(found)
    if not path.is_file():
        raise ZprofError(f"--redis-server {found}: no such file", detail=install)
    try:
        done = run_bounded([str(path), "--version"], VERSION_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as failure:
        raise ZprofError(f"cannot run {path} --version: {failure}", detail=install) from failure
    version = re.search(r"\bv=(\S+)", done.stdout)
    if done.returncode != 0 or version is None:
        raise ZprofError(f"{path} does not look like redis-server (its --version printed {done.stdout.strip()!r})",
                         detail=install)
    return path, version.group(1)


def _target(options: BenchOptions, progress: Reporter) -> tuple[TargetInfo, TargetOptions]:
    """The server to compare: built from --project, or --target-binary as it is."""
    target = options.target
    if options.target_binary is None:
        built = build_target(target, progress, with_shim=False)
        return built.info(_start_command(target)), target
    binary = options.target_binary
    if not binary.is_file():
        raise ZprofError(f"--target-binary {binary}: no such file")
    binary = binary.absolute()  # not resolve(): a virtualenv's python is a symlink that must stay one
    # A redis-server as the target (Redis against itself) starts like the reference, unless told otherwise.
    if binary.name.startswith("redis-server") and not options.start_command_given:
        target = replace(target, start_command=REDIS_START_COMMAND)
    return TargetInfo(name=binary.name, binary=str(binary), start_command=_start_command(target)), target


def _start_command(options: TargetOptions) -> str:
    return options.start_command + (f" {options.server_args}" if options.server_args else "")


@dataclass
class _Measured:
    plan: LoadPlan
    notes: list[Note]
    memory: dict[str, MemoryRecord | None]
    runner: AlternatingTrials | None
    workloads: list[Workload]  # those compared: the target fakes none of them
    error: ZprofError | None = None  # a crash after the plan was made: the report shows what came before


def _check_target(target: Side, options: BenchOptions, progress: Reporter) -> TargetSupport:
    """Which commands the target does, on a start of its own: the checks write keys, which must not be in the
    server whose memory is measured. Exit 2 when it fakes every command asked for."""
    with target.server() as server:
        progress.status("Checking which commands the target does...")
        try:
            found = target_support(server.port, options.workloads, options.keys)
        except ZprofError as error:
            if server.exited_within(0.5):
                raise crash_error(server, target, f"crashed while zprof checked its commands ({error.message})") \
                    from error
            raise
    if not found.workloads:
        raise ZprofError("nothing to compare: the target fakes every command asked for ("
                         + "; ".join(f"{command} is {why}" for command, why in found.unsupported.items()) + ")",
                         detail=UNSUPPORTED_DETAIL)
    return found


def _support_notes(found: TargetSupport, keys: int) -> list[Note]:
    notes = [Note("bench.unsupported", {"commands": found.unsupported})] if found.unsupported else []
    if found.no_memory_per_key is not None:
        notes.append(Note("bench.no-memory-per-key", {"keys": keys, "reason": found.no_memory_per_key}))
    return notes


def _measure(sides: tuple[Side, Side], options: BenchOptions, run_dir: Path, progress: Reporter) -> _Measured:
    """Check which commands the target does, probe it and plan the load, compare memory on fresh servers,
    then run the trials."""
    for side in sides:
        side.run_dir.mkdir()
    target, redis = sides
    measured: _Measured | None = None
    found = _check_target(target, options, progress)
    keys = options.keys if found.no_memory_per_key is None else 0
    try:
        with target.server() as server:
            rss_empty = tree_rss_bytes(server.pid)
            progress.status("Probing the target...")
            # Always probe pipelining: redis-benchmark pipelines its first commands whatever -P says.
            capabilities = probe(HOST, server.port, options.clients, max(options.pipeline, 2))
            plan, notes = plan_load(capabilities, options.clients, options.pipeline, options.requests,
                                    options.warmup, options.deadline, redis_benchmark_path())
            plan = replace(plan, p999_pass=options.p999_pass)
            notes = start_notes(target.spec, server, Starts(), target.label) + notes
            if plan.tool == BENCHMARK:
                plan, config_notes = check_config_get(server.port, plan)
                notes.extend(config_notes)
            notes += _support_notes(found, options.keys)
            measured = _Measured(plan, notes, {TARGET: None, REDIS: None}, None, found.workloads)
            if keys:
                progress.status(f"Loading {keys:,} keys into {target.label}...")
                measured.memory[TARGET] = load_keys(server, target, keys, plan, rss_empty, progress,
                                                    found.keys_per_request, found.support["DBSIZE"].supported)
                if measured.memory[TARGET].keys_stored is None:
                    measured.notes.append(Note("bench.no-dbsize", {"keys": keys}))
        if keys:
            with redis.server() as server:
                progress.status(f"Loading {keys:,} keys into {redis.label}...")
                measured.memory[REDIS] = load_keys(server, redis, keys, plan, tree_rss_bytes(server.pid), progress)
        measured.runner = AlternatingTrials(sides, found.workloads, plan, options.trials, run_dir, progress,
                                            options.subscribers, options.min_trial_seconds)
        measured.runner.run()
    except ZprofError as failure:
        if measured is None:  # nothing measured yet (a port in use, a server that never answered)
            raise
        measured.error = failure
    return measured


def run_bench(options: BenchOptions, progress: Reporter) -> BenchRun:
    """The comparison; PartialRun with what came before when a server crashed mid-run."""
    redis_binary, redis_version = reference_server(options.redis_server)
    thresholds = load_thresholds(Path(options.target.project))
    target_info, target_options = _target(options, progress)
    target_spec = server_spec(target_options, Path(target_info.binary), {})
    redis_spec = ServerSpec(binary=redis_binary, start_command=REDIS_PERSISTENCE[options.redis_persistence],
                            ready_timeout=target_options.ready_timeout)
    machine = machine_info()
    with run_directory("bench") as run_dir:
        sides = (Side(TARGET, target_info.name, target_spec, run_dir / TARGET),
                 Side(REDIS, "redis", redis_spec, run_dir / REDIS))
        measured = _measure(sides, options, run_dir, progress)

    runner, memory = measured.runner, measured.memory
    records = runner.records if runner else []
    failures = runner.failures if runner else {}
    # A command the target fakes is neither measured nor judged: the run's `bench.unsupported` note says why.
    workloads = measured.workloads
    comparisons = [
        compare_command(workload.command, describe(workload),
                        [record for record in records if record.command == workload.command],
                        failures.get(workload.command), thresholds, machine.cores)
        for workload in workloads
    ]
    names = [workload.command for workload in workloads]
    memory_comparison = (compare_memory(options.keys, memory[TARGET], memory[REDIS], thresholds)
                         if options.keys else None)
    plan = runner.plan if runner else measured.plan
    error = measured.error
    verdict, conclusive = overall_verdict(comparisons, memory_comparison)
    persisted = persistence_note(runner.target_writes, options.redis_persistence) if runner else None
    run = BenchRun(
        target=target_info,
        reference=ReferenceServer(str(redis_binary), redis_version, redis_spec.start_command),
        settings=BenchSettings(commands=names, trials=options.trials, requests=options.requests,
                               warmup_requests=options.warmup, clients=plan.clients, pipeline=plan.pipeline,
                               keyspace=options.keyspace, keys=options.keys, tool=plan.tool, load=plan.description,
                               deadline_s=options.deadline, min_trial_seconds=options.min_trial_seconds,
                               subscribers=options.subscribers if PUBLISH in names else None),
        thresholds=thresholds,
        commands=comparisons,
        memory=memory_comparison,
        limitations=([note for side in sides if (note := side.start_note())] + measured.notes
                     + (runner.limitations if runner else [])
                     + ([persisted] if persisted else [])
                     + load_limitations(plan, names)
                     + comparison_limitations(comparisons, memory_comparison, thresholds, options.trials)),
        machine=machine,
        load_average_after=load_average(),
        trials=records,
        verdict=verdict,
        verdict_conclusive=conclusive,
        starts={side.name: {"starts": side.starts.starts, "start_crashes": side.starts.crashes} for side in sides},
        complete=error is None,
        error=error.message if error else None,
    )
    if error is not None:
        raise PartialRun(error, run)
    return run


def persistence_note(written: DiskWrites, redis_persistence: str) -> Note | None:
    """What the target wrote to disk during its trials, said beside how Redis ran: a target that appends every
    write to a file does work a Redis without persistence does not."""
    if not written.bytes and not written.files:
        return None
    # Each start has a working directory of its own: the same file, by name, in each.
    files = sorted({Path(name).name for name in written.files})
    return Note("bench.target-persists", {"bytes": written.bytes, "files": files, "redis": redis_persistence})


def bench_failure(run: BenchRun) -> ZprofError | None:
    """The exit a finished comparison ends with when commands failed (after its report)."""
    failed = run.failed
    if failed and len(failed) == len(run.commands):
        return ZprofError("no successful requests: every command failed, so nothing could be compared",
                          exit_code=EXIT_TARGET)
    if failed:
        return ZprofError(f"{len(failed)} command(s) failed: " + ", ".join(command.command for command in failed),
                          exit_code=EXIT_TARGET)
    return None
