"""Profiles in speedscope's own JSON format, for https://www.speedscope.app or the `speedscope` CLI.

The dataclasses mirror the file format (schema: https://www.speedscope.app/file-format-schema.json,
spec: speedscope's src/lib/file-format-spec.ts), as pyinstrument's speedscope renderer does: one
`sampled` profile per thread, every stack a list of indices into `shared.frames`, root first.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from zprof import __version__
from zprof.analysis.stacks import Frame, StackProfile

SCHEMA_URL = "https://www.speedscope.app/file-format-schema.json"
# Weights are exact sample (or instruction) counts. perf's -F is a target rate the kernel may
# throttle, so count / frequency would be an estimate shown as if it were a measured time; and
# callgrind's instructions have no time at all. speedscope prints "none" values as plain numbers.
UNIT = "none"
# speedscope names the file after `name`, falling back to profiles[0].name, which an empty file lacks.
FALLBACK_NAME = "zprof profile"


@dataclass(frozen=True)
class SpeedscopeFrame:
    name: str
    file: str | None = None
    line: int | None = None

    def to_json(self) -> dict:
        # The schema types file and line as string and number, not null: unknown ones are left out.
        data: dict = {"name": self.name}
        if self.file is not None:
            data["file"] = self.file
        if self.line is not None:
            data["line"] = self.line
        return data


@dataclass(frozen=True)
class SampledProfile:
    name: str
    unit: str
    start_value: int
    end_value: int
    samples: tuple[tuple[int, ...], ...]  # indices into SpeedscopeFile.frames, root first
    weights: tuple[int, ...]
    type: str = "sampled"

    def to_json(self) -> dict:
        return {
            "type": self.type,
            "name": self.name,
            "unit": self.unit,
            "startValue": self.start_value,
            "endValue": self.end_value,
            "samples": [list(stack) for stack in self.samples],
            "weights": list(self.weights),
        }


@dataclass(frozen=True)
class SpeedscopeFile:
    name: str
    frames: tuple[SpeedscopeFrame, ...]
    profiles: tuple[SampledProfile, ...]
    exporter: str
    active_profile_index: int = 0
    schema: str = SCHEMA_URL

    def to_json(self) -> dict:
        return {
            "$schema": self.schema,
            "name": self.name,
            "exporter": self.exporter,
            "activeProfileIndex": self.active_profile_index,
            "shared": {"frames": [frame.to_json() for frame in self.frames]},
            "profiles": [profile.to_json() for profile in self.profiles],
        }


def _speedscope_frames(frames: list[Frame]) -> tuple[tuple[SpeedscopeFrame, ...], list[int]]:
    """Frames speedscope can tell apart, and where each zprof frame went.

    speedscope merges frames by index (sandwich view, left heavy), so zprof frames that differ
    only in what it cannot show (kind, inlined) become one.
    """
    index: dict[SpeedscopeFrame, int] = {}
    mapping = []
    for frame in frames:
        mapping.append(index.setdefault(SpeedscopeFrame(frame.name, frame.file, frame.line), len(index)))
    return tuple(index), mapping


def speedscope_file(profile: StackProfile, name: str) -> SpeedscopeFile:
    frames, mapping = _speedscope_frames(profile.frames)
    by_thread: dict[str, list[tuple[tuple[int, ...], int]]] = defaultdict(list)
    for sample in profile.samples:
        by_thread[sample.thread].append((tuple(mapping[i] for i in sample.stack), sample.weight))

    def path_names(stack: tuple[int, ...]) -> tuple[str, ...]:
        return tuple(frames[i].name for i in stack)

    profiles = []
    for thread, stacks in by_thread.items():
        # Samples were merged, so there is no time order to keep: sorted by call path, speedscope's
        # "Time Order" view merges neighbours into a classic flame graph.
        stacks.sort(key=lambda item: (path_names(item[0]), item[0]))
        total = sum(weight for _, weight in stacks)
        profiles.append(SampledProfile(
            name=thread, unit=UNIT, start_value=0, end_value=total,
            samples=tuple(stack for stack, _ in stacks), weights=tuple(weight for _, weight in stacks),
        ))
    # activeProfileIndex 0 opens the busiest thread first.
    profiles.sort(key=lambda p: (-p.end_value, p.name))
    return SpeedscopeFile(name=name or FALLBACK_NAME, frames=frames, profiles=tuple(profiles),
                          exporter=f"zprof {__version__}")


def speedscope_document(profile: StackProfile, name: str) -> dict:
    """The speedscope JSON document; an empty profile gives one with no profiles (speedscope says so)."""
    return speedscope_file(profile, name).to_json()


def write_speedscope(profile: StackProfile, name: str, path: Path) -> None:
    path.write_text(json.dumps(speedscope_document(profile, name), separators=(",", ":")) + "\n")
