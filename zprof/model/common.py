"""Records several kinds of run share: the target, the machine, notes, statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Note:
    """Something the run adapted to, or a limit on what it measured, as a code and its figures.

    The reporters write the sentence (`zprof.report.notes`); the code stays stable for tools
    that read the artifact."""

    code: str
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class TargetInfo:
    """The server a run measured: built from a project, or a binary given as it is."""

    name: str
    binary: str
    project: str | None = None
    zig_version: str | None = None
    optimize: str | None = None  # the build mode, when zprof built it
    # Where the mode came from: "requested" (-Doptimize), "build.zig" (the project sets it and has no
    # optimize option), "zig default" (neither: zig build's default, Debug).
    optimize_source: str | None = None
    build_cached: bool | None = None
    build_seconds: float | None = None
    start_command: str | None = None
    build_args: list[str] = field(default_factory=list)
    # What `zig build` reported although it produced the binary.
    build_warnings: list[str] = field(default_factory=list)
    # The checkout the binary was compiled in, when it was another with the same sources (a copy, a worktree):
    # the run names its files under `project`.
    compiled_in: str | None = None


@dataclass(frozen=True)
class MachineInfo:
    cores: int
    physical_cores: int | None
    model: str
    kernel: str
    memory_bytes: int
    load_average: tuple[float, float, float]


@dataclass(frozen=True)
class CpuUsage:
    """Over one run: the server's and the load generator's CPU in percent of one
    core, and the whole machine's in percent of all its cores."""

    server_percent: float | None
    load_generator_percent: float
    machine_percent: float

    def others_percent(self, cores: int) -> float | None:
        """What every other process (neither the server nor the load generator) used, in percent of one core."""
        if self.server_percent is None:
            return None
        return round(max(0.0, self.machine_percent * cores - self.server_percent - self.load_generator_percent), 1)


@dataclass(frozen=True)
class Summary:
    """Of one figure over the trials; `cv` (stdev / mean, in percent) needs two trials."""

    median: float
    min: float
    max: float
    cv_percent: float | None
    n: int


# An interval whose high end is more than this many times its low end is not printed.
MEANINGFUL_SPAN = 4.0


@dataclass(frozen=True)
class RatioEstimate:
    """A ratio in percent (100 = equal), with its 95% confidence interval (None
    with a single pair)."""

    percent: float
    ci95: tuple[float, float] | None
    pairs: int

    @property
    def interval_says_something(self) -> bool:
        """Whether the interval is narrow enough to print: from two pairs Student's t is 12.7, and a
        pair-to-pair scatter of a few percent makes an interval like 0-32556754819% that tells nothing."""
        return self.ci95 is not None and self.ci95[0] > 0 and self.ci95[1] / self.ci95[0] <= MEANINGFUL_SPAN


@dataclass
class Loss:
    """What one of the shim's fixed tables could not hold over the run.

    `table` is `layers` (calls not counted at all: every figure is a lower
    bound), `sites` (allocations in the totals but in no call site: the sites
    and retained bytes miss up to `bytes`), `live` (blocks whose frees cannot
    be credited to their site: retained bytes may be overstated by up to
    `bytes`) or `untracked-frees` (frees of blocks the live table did not hold).
    """

    table: str
    count: int
    bytes: int
    capacity: int | None
