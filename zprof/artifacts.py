"""A finished run as one saved, versioned artifact that every reporter reads."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from zprof.analysis.allocations import AllocationAnalysis

SCHEMA = "zprof.allocs/1"


@dataclass
class TargetInfo:
    project: str
    binary: str
    zig_version: str
    build_cached: bool
    build_seconds: float
    build_warnings: list[str] = field(default_factory=list)


@dataclass
class LoadInfo:
    clients: int
    pipeline: int
    warmup_requests: int
    seconds: float
    requests_per_second: float
    errors: int
    first_error: str | None
    idle_seconds: float


@dataclass
class MemoryGrowth:
    """Over the measured run: the shim's live bytes (program-held) and the RSS."""

    live_bytes: int
    rss_bytes: int | None


@dataclass
class AllocsRun:
    command: str
    args: list[str]
    requests: int
    target: TargetInfo
    load: LoadInfo
    analysis: AllocationAnalysis
    growth: MemoryGrowth
    notes: list[str] = field(default_factory=list)
    complete: bool = True

    def to_json(self) -> dict:
        body = asdict(self)
        analysis = body.pop("analysis")
        # The contract in the README: analysis fields at the top level.
        return {"schema": SCHEMA, **body, **analysis}

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
