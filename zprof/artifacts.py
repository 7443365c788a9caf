"""A finished run as one saved, versioned artifact that every reporter reads."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

from zprof.analysis.allocations import AllocationAnalysis

SCHEMA = "zprof.allocs/2"


class JsonArtifact:
    """A finished run saved as JSON: `schema` and `header` first, then the
    dataclass's fields, with those of its `analysis` (if any) at the top level,
    as the README's contracts describe."""

    schema: ClassVar[str]
    header: ClassVar[dict[str, str]] = {}

    def to_json(self) -> dict:
        body = asdict(self)  # type: ignore[call-overload]
        analysis = body.pop("analysis", {})
        return {"schema": self.schema, **self.header, **body, **analysis}

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")


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
    # None when the run was too short for a rate to mean anything (zprof.load.calibration).
    requests_per_second: float | None
    errors: int
    error_share: float  # of the measured requests, those answered with an error
    first_error: str | None
    idle_seconds: float


@dataclass
class MemoryGrowth:
    """Over the measured run: the bytes the program came to hold (the retained bytes, counted
    once) and the RSS."""

    live_bytes: int
    rss_bytes: int | None


@dataclass
class AllocsRun(JsonArtifact):
    schema: ClassVar[str] = SCHEMA

    command: str
    args: list[str]
    requests: int
    target: TargetInfo
    load: LoadInfo
    analysis: AllocationAnalysis
    growth: MemoryGrowth
    notes: list[str] = field(default_factory=list)
    complete: bool = True
