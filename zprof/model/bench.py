"""A `zprof bench` run: the target against redis-server, command by command, with verdicts."""

from __future__ import annotations

from dataclasses import dataclass, field

from zprof.model.common import CpuUsage, MachineInfo, Note, RatioEstimate, Summary, TargetInfo

TARGET, REDIS = "target", "redis"
BENCHMARK, DRIVER = "redis-benchmark", "zprof"
EXCELLENT, ACCEPTABLE, UNACCEPTABLE = "excellent", "acceptable", "unacceptable"
UNSTABLE, FAILED, LOAD_BOUND, INDICATIVE = "unstable", "failed", "load-bound", "indicative"
LEVELS = (EXCELLENT, ACCEPTABLE, UNACCEPTABLE)
STATUSES = (EXCELLENT, ACCEPTABLE, UNACCEPTABLE, UNSTABLE, LOAD_BOUND, FAILED)
MEMORY_STATUSES = (EXCELLENT, ACCEPTABLE, UNACCEPTABLE, INDICATIVE, FAILED)


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
    """One server's RSS empty and with `keys` keys stored."""

    keys: int
    rss_empty_bytes: int | None
    rss_loaded_bytes: int | None
    keys_stored: int | None  # DBSIZE afterwards, when it answers
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


@dataclass(frozen=True)
class Thresholds:
    """Percentages of Redis' figure; throughput must reach, latency and memory must not exceed."""

    throughput_excellent: float = 90.0
    throughput_acceptable: float = 70.0
    latency_excellent: float = 110.0
    latency_acceptable: float = 125.0
    memory_excellent: float = 120.0
    memory_acceptable: float = 150.0
    # Coefficient of variation of a server's figure over the trials above which a command is unstable.
    unstable_cv: float = 10.0
    source: str = "zprof's defaults (Zoltraak's performance standards)"


@dataclass(frozen=True)
class Verdict:
    """`conclusive`: the 95% interval lies wholly in the level's band (None: no interval)."""

    level: str
    conclusive: bool | None


@dataclass(frozen=True)
class ServerFigures:
    """One server's figures for one command: medians over its successful trials."""

    trials: int
    rps: Summary
    latency_ms: dict[str, float | None]
    p99_cv_percent: float | None
    cpu_percent: float | None
    load_generator_cpu_percent: float
    machine_cpu_percent: float


@dataclass(frozen=True)
class CommandComparison:
    """`target` and `redis` cover every successful trial of each server; the ratios, only the
    trials where both ran (pairs). Each status is one of STATUSES (None: not measured, which
    only a run cut short leaves)."""

    command: str
    args: str
    tool: str | None
    target: ServerFigures | None
    redis: ServerFigures | None
    throughput: RatioEstimate | None
    p99: RatioEstimate | None
    throughput_verdict: Verdict | None
    latency_verdict: Verdict | None
    throughput_status: str | None
    latency_status: str | None
    # A server's throughput, or p99 latency, varied by more than the unstable CV over the trials.
    unstable: bool
    latency_unstable: bool
    load_generator_bound: bool
    machine_saturated: bool
    failure: CommandFailure | None
    # How much faster each side could have run without the other processes on the machine (1.0: nothing else
    # ran); the verdicts hold across it (analysis.verdicts.interference).
    target_interference: float = 1.0
    redis_interference: float = 1.0

    @property
    def failed(self) -> bool:
        return self.failure is not None

    def findings(self) -> list[tuple[str, Verdict]]:
        """The verdicts whose status is their level ("SET throughput", "SET p99"): the others are not findings."""
        return [(f"{self.command} {what}", verdict)
                for what, verdict, status in (("throughput", self.throughput_verdict, self.throughput_status),
                                              ("p99", self.latency_verdict, self.latency_status))
                if verdict is not None and status == verdict.level]

    def errors(self, server: str) -> int:
        """Error replies counted on `server`: only a failed command has any (redis-benchmark stops at the
        first, so an unknown count is 1)."""
        if self.failure is None or self.failure.server != server:
            return 0
        return self.failure.errors if self.failure.errors is not None else 1


@dataclass(frozen=True)
class MemoryComparison:
    keys: int
    target: MemoryRecord | None
    redis: MemoryRecord | None
    percent_of_redis: float | None
    verdict: Verdict | None
    status: str  # one of MEMORY_STATUSES


@dataclass(frozen=True)
class ReferenceServer:
    binary: str
    version: str
    start_command: str


@dataclass(frozen=True)
class BenchSettings:
    commands: list[str]
    trials: int
    requests: int
    warmup_requests: int
    clients: int
    pipeline: int
    keyspace: int
    keys: int
    tool: str
    load: str
    deadline_s: float | None
    min_trial_seconds: float
    subscribers: int | None = None  # PUBLISH's, when it was compared


@dataclass
class BenchRun:
    target: TargetInfo
    reference: ReferenceServer
    settings: BenchSettings
    thresholds: Thresholds
    commands: list[CommandComparison]
    memory: MemoryComparison | None
    limitations: list[Note]
    machine: MachineInfo
    load_average_after: tuple[float, float, float] | None
    # Every measured run, in the order it ran.
    trials: list[RunRecord]
    # The worst level among the findings, and whether its intervals were conclusive.
    verdict: str | None
    verdict_conclusive: bool | None
    # Per server ("target", "redis"): {"starts": n, "start_crashes": n}.
    starts: dict[str, dict[str, int]] = field(default_factory=dict)
    complete: bool = True
    error: str | None = None  # what cut the run short

    def findings(self) -> list[tuple[str, Verdict]]:
        """Every verdict that is a finding, named: "SET throughput", "SET p99", "memory"."""
        named = [finding for command in self.commands for finding in command.findings()]
        if self.memory and self.memory.verdict and self.memory.status == self.memory.verdict.level:
            named.append(("memory", self.memory.verdict))
        return named

    @property
    def failed(self) -> list[CommandComparison]:
        return [command for command in self.commands if command.failed]
