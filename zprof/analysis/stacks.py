"""Sampled call stacks: the one model every CPU-profile reporter reads.

A profile is a table of frames and a list of samples; each sample is a stack
of frame indices, root first, with a weight (perf samples, or instructions for
callgrind) and the thread it was taken on. Samples with the same thread and
stack are merged.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

# What a frame belongs to, for colouring and for the "project function over
# 10%" flag: the target's own code, the packages it depends on (Zig's package
# cache), Zig's std, the C library, the kernel.
FRAME_KINDS = ("project", "dependency", "std", "libc", "kernel", "other")


@dataclass(frozen=True)
class Frame:
    name: str
    file: str | None = None
    line: int | None = None
    kind: str = "project"
    inlined: bool = False


@dataclass(frozen=True)
class StackSample:
    thread: str
    stack: tuple[int, ...]  # indices into StackProfile.frames, root first
    weight: int


@dataclass
class StackProfile:
    frames: list[Frame] = field(default_factory=list)
    samples: list[StackSample] = field(default_factory=list)
    unit: str = "samples"  # or "instructions"
    frequency_hz: int | None = None
    duration_s: float | None = None
    # How many samples perf recorded in all, including any zprof could not parse.
    recorded_samples: int = 0

    @property
    def total_weight(self) -> int:
        return sum(sample.weight for sample in self.samples)

    def weight_of(self, predicate) -> int:  # type: ignore[no-untyped-def]
        return sum(sample.weight for sample in self.samples if predicate(sample))


class ProfileBuilder:
    """Interns frames and merges identical samples while a profile is read."""

    def __init__(self, unit: str = "samples") -> None:
        self._frame_index: dict[Frame, int] = {}
        self._frames: list[Frame] = []
        self._weights: Counter[tuple[str, tuple[int, ...]]] = Counter()
        self.unit = unit

    def frame(self, frame: Frame) -> int:
        index = self._frame_index.get(frame)
        if index is None:
            index = self._frame_index[frame] = len(self._frames)
            self._frames.append(frame)
        return index

    def add(self, thread: str, stack_root_first: list[Frame], weight: int = 1) -> None:
        self.add_interned(thread, tuple(self.frame(frame) for frame in stack_root_first), weight)

    def add_interned(self, thread: str, stack: tuple[int, ...], weight: int = 1) -> None:
        """A stack of indices `frame` returned, root first."""
        self._weights[(thread, stack)] += weight

    def build(self, **details: object) -> StackProfile:
        samples = [StackSample(thread, stack, weight) for (thread, stack), weight in self._weights.items()]
        return StackProfile(frames=self._frames, samples=samples, unit=self.unit, **details)  # type: ignore[arg-type]


def folded_name(frame: Frame) -> str:
    # flamegraph.pl's convention (stackcollapse-perf --kernel) marks kernel frames.
    return frame.name + "_[k]" if frame.kind == "kernel" else frame.name


def folded_lines(profile: StackProfile) -> list[str]:
    """Brendan Gregg's folded format: `root;...;leaf count`, threads merged."""
    merged: Counter[str] = Counter()
    for sample in profile.samples:
        merged[";".join(folded_name(profile.frames[i]) for i in sample.stack)] += sample.weight
    return [f"{stack} {count}" for stack, count in sorted(merged.items())]


def parse_folded(lines: list[str]) -> dict[str, int]:
    """Folded lines back to stacks and counts; the count is after the last space."""
    stacks: Counter[str] = Counter()
    for line in lines:
        line = line.rstrip("\n")
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        stacks[stack] += int(count)
    return dict(stacks)


PROFILE_SCHEMA = "zprof.profile/1"


def profile_to_json(profile: StackProfile) -> dict:
    """zprof's own saved form of a profile: what `flame --diff` reads back."""
    return {
        "schema": PROFILE_SCHEMA,
        "unit": profile.unit,
        "frequency_hz": profile.frequency_hz,
        "duration_s": profile.duration_s,
        "recorded_samples": profile.recorded_samples,
        "frames": [asdict(frame) for frame in profile.frames],
        "samples": [[sample.thread, list(sample.stack), sample.weight] for sample in profile.samples],
    }


def profile_from_json(data: dict) -> StackProfile:
    if data.get("schema") != PROFILE_SCHEMA:
        raise ValueError(f"not a {PROFILE_SCHEMA} file")
    return StackProfile(
        frames=[Frame(**frame) for frame in data["frames"]],
        samples=[StackSample(thread, tuple(stack), weight) for thread, stack, weight in data["samples"]],
        unit=data["unit"],
        frequency_hz=data["frequency_hz"],
        duration_s=data["duration_s"],
        recorded_samples=data["recorded_samples"],
    )
