"""Profiles as gzipped pprof `profile.proto`, for `go tool pprof`, pprof's web UI and the many tools that read it.

Written with a tiny protobuf wire encoder instead of generated code: the format is a handful of
messages of varints, strings and packed integers (https://github.com/google/pprof/blob/main/proto/profile.proto).
The dataclasses mirror those messages and carry their field numbers in `encode`.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

from zprof.analysis.stacks import Frame, StackProfile

_VARINT = 0
_LENGTH_DELIMITED = 2
_UINT64_MASK = (1 << 64) - 1


def _varint(value: int) -> bytes:
    value &= _UINT64_MASK  # a negative int64 is its ten-byte two's complement on the wire
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class _Writer:
    """One message's fields, in the order written."""

    def __init__(self) -> None:
        self._out = bytearray()

    def _tag(self, field: int, wire_type: int) -> None:
        self._out += _varint(field << 3 | wire_type)

    def number(self, field: int, value: int) -> _Writer:
        if value:  # proto3 leaves zero (the default) off the wire
            self._tag(field, _VARINT)
            self._out += _varint(value)
        return self

    def blob(self, field: int, data: bytes) -> _Writer:
        self._tag(field, _LENGTH_DELIMITED)
        self._out += _varint(len(data)) + data
        return self

    def packed(self, field: int, values: tuple[int, ...]) -> _Writer:
        if values:
            self.blob(field, b"".join(_varint(value) for value in values))
        return self

    def done(self) -> bytes:
        return bytes(self._out)


@dataclass(frozen=True)
class ValueType:
    type: int  # string table indices
    unit: int

    def encode(self) -> bytes:
        return _Writer().number(1, self.type).number(2, self.unit).done()


@dataclass(frozen=True)
class Label:
    key: int
    str: int

    def encode(self) -> bytes:
        return _Writer().number(1, self.key).number(2, self.str).done()


@dataclass(frozen=True)
class Sample:
    location_ids: tuple[int, ...]  # leaf first
    values: tuple[int, ...]  # one per Profile.sample_types
    labels: tuple[Label, ...] = ()

    def encode(self) -> bytes:
        writer = _Writer().packed(1, self.location_ids).packed(2, self.values)
        for label in self.labels:
            writer.blob(3, label.encode())
        return writer.done()


@dataclass(frozen=True)
class Line:
    function_id: int
    line: int

    def encode(self) -> bytes:
        return _Writer().number(1, self.function_id).number(2, self.line).done()


@dataclass(frozen=True)
class Location:
    id: int
    lines: tuple[Line, ...]  # innermost inlined function first, the function that holds the code last

    def encode(self) -> bytes:
        writer = _Writer().number(1, self.id)
        for line in self.lines:
            writer.blob(4, line.encode())
        return writer.done()


@dataclass(frozen=True)
class Function:
    id: int
    name: int
    system_name: int
    filename: int
    start_line: int

    def encode(self) -> bytes:
        return (_Writer().number(1, self.id).number(2, self.name).number(3, self.system_name)
                .number(4, self.filename).number(5, self.start_line).done())


@dataclass(frozen=True)
class Profile:
    sample_types: tuple[ValueType, ...]
    samples: tuple[Sample, ...]
    locations: tuple[Location, ...]
    functions: tuple[Function, ...]
    string_table: tuple[str, ...]
    duration_nanos: int = 0
    period_type: ValueType | None = None
    period: int = 0

    def encode(self) -> bytes:
        writer = _Writer()
        for field, messages in ((1, self.sample_types), (2, self.samples), (4, self.locations), (5, self.functions)):
            for message in messages:
                writer.blob(field, message.encode())
        for text in self.string_table:
            writer.blob(6, text.encode("utf-8", "replace"))  # a lone surrogate from a broken symbol becomes "?"
        writer.number(10, self.duration_nanos)
        if self.period_type is not None:
            writer.blob(11, self.period_type.encode())
        return writer.number(12, self.period).done()


class _Strings:
    def __init__(self) -> None:
        self._index: dict[str, int] = {"": 0}  # pprof requires string_table[0] == ""

    def __call__(self, text: str) -> int:
        return self._index.setdefault(text, len(self._index))

    def table(self) -> tuple[str, ...]:
        return tuple(self._index)


def _physical_frames(stack: tuple[int, ...], frames: list[Frame]) -> list[tuple[int, ...]]:
    """A root-first stack cut into one group per machine frame: a function and what was inlined into it."""
    groups: list[list[int]] = []
    for index in stack:
        if frames[index].inlined and groups:
            groups[-1].append(index)
        else:
            groups.append([index])
    return [tuple(group) for group in groups]


def pprof_profile(profile: StackProfile) -> Profile:
    strings = _Strings()
    period_ns = 0
    if profile.unit == "samples":
        types = [("samples", "count")]
        if profile.frequency_hz:
            # Go's CPU profiles carry the same pair: a sample count and the CPU time it stands for.
            types.append(("cpu", "nanoseconds"))
            period_ns = round(1e9 / profile.frequency_hz)
    else:
        types = [(profile.unit, "count")]
    sample_types = tuple(ValueType(strings(kind), strings(unit)) for kind, unit in types)

    functions: dict[tuple[str, str | None, int | None], Function] = {}
    locations: dict[tuple[int, ...], Location] = {}

    def function_id(frame: Frame) -> int:
        key = (frame.name, frame.file, frame.line)
        if key not in functions:
            name = strings(frame.name)
            # zprof's names are already demangled Zig names: the system name is the same.
            functions[key] = Function(len(functions) + 1, name, name, strings(frame.file or ""), frame.line or 0)
        return functions[key].id

    def location_id(group: tuple[int, ...]) -> int:
        if group not in locations:
            # zprof keeps each function's declaration line, not the sampled line.
            lines = tuple(Line(function_id(profile.frames[i]), profile.frames[i].line or 0) for i in reversed(group))
            locations[group] = Location(len(locations) + 1, lines)
        return locations[group].id

    thread_key = strings("thread")
    samples = []
    for sample in profile.samples:
        leaf_first = tuple(location_id(group) for group in reversed(_physical_frames(sample.stack, profile.frames)))
        values = (sample.weight, sample.weight * period_ns) if period_ns else (sample.weight,)
        samples.append(Sample(leaf_first, values, (Label(thread_key, strings(sample.thread)),)))

    return Profile(
        sample_types=sample_types,
        samples=tuple(samples),
        locations=tuple(locations.values()),
        functions=tuple(functions.values()),
        string_table=strings.table(),
        duration_nanos=round(profile.duration_s * 1e9) if profile.duration_s else 0,
        period_type=sample_types[-1] if period_ns else None,
        period=period_ns,
    )


def pprof_bytes(profile: StackProfile) -> bytes:
    """The gzipped profile.proto; mtime 0 keeps the bytes the same for the same profile."""
    return gzip.compress(pprof_profile(profile).encode(), mtime=0)


def write_pprof(profile: StackProfile, path: Path) -> None:
    path.write_bytes(pprof_bytes(profile))
