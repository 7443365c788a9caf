"""`perf script` text to a StackProfile, without Perl.

Unlike stackcollapse-perf.pl, this keeps Zig's generic names whole (they
contain spaces and parentheses: `array_list.Aligned(u8,null).appendSlice`),
expands inlined frames from the target's DWARF, keeps kernel frames apart, and
classifies every frame as the project's code, a dependency's, Zig std, libc or kernel.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from zprof.analysis.stacks import Frame, ProfileBuilder, StackProfile
from zprof.analysis.symbols import SourceFrame, Symbolizer, source_kind

UNKNOWN = "[unknown]"
_HEADER = re.compile(r"^(?P<comm>.*?)\s+(?P<tid>\d+)\s+(?P<period>\d+)\s*$")
_LIBC_DSO = re.compile(r"/(libc|libm|libpthread|ld-linux[^/]*|libdl|librt)[.-][^/]*$")


# Compared and hashed by identity, which is fast: parse_perf_script makes one object per distinct
# stack line, so equal frames of one recording are the same object.
@dataclass(frozen=True, eq=False)
class RawFrame:
    address: int
    symbol: str | None
    offset: int | None
    dso: str


@dataclass(frozen=True)
class RawSample:
    comm: str
    tid: int
    period: int
    frames: tuple[RawFrame, ...]  # leaf first, as perf prints them


def _parse_frame(line: str) -> RawFrame | None:
    """One stack line."""
    text = line.strip()
    address_text, _, rest = text.partition(" ")
    try:
        address = int(address_text, 16)
    except ValueError:
        return None
    # The DSO is the last parenthesised group; Zig names have parentheses too.
    head, sep, dso = rest.rpartition(" (")
    if not sep:
        head, dso = rest, ")"
    dso = dso[:-1] if dso.endswith(")") else dso
    symbol, offset = head, None
    name, plus, hex_offset = head.rpartition("+0x")
    if plus and re.fullmatch(r"[0-9a-f]+", hex_offset):
        symbol, offset = name, int(hex_offset, 16)
    if symbol in ("", UNKNOWN):
        symbol = None
    return RawFrame(address, symbol, offset, dso)


_UNPARSED = object()


def parse_records(text: str) -> Iterator[tuple[str, tuple[RawFrame, ...]]]:
    """Each record of `perf script` text: its header line and its stack, leaf first."""
    header: str | None = None
    frames: list[RawFrame] = []
    # A profile repeats the same few thousand lines: each is parsed once, into one object.
    parsed: dict[str, RawFrame | None] = {}
    for line in text.splitlines():
        if not line.strip():
            if header is not None:
                yield header, tuple(frames)
            header, frames = None, []
        elif line[0] in " \t":
            frame = parsed.get(line, _UNPARSED)
            if frame is _UNPARSED:
                frame = parsed[line] = _parse_frame(line)
            if frame is not None:
                frames.append(frame)
        else:
            if header is not None:  # a record without its blank separator
                yield header, tuple(frames)
            header, frames = line, []
    if header is not None:
        yield header, tuple(frames)


def parse_perf_script(text: str) -> Iterator[RawSample]:
    """Samples from `perf script -F comm,tid,period,ip,sym,symoff,dso` output."""
    for header, frames in parse_records(text):
        match = _HEADER.match(header)
        if match is not None:
            yield RawSample(match["comm"], int(match["tid"]), int(match["period"]), frames)


def classify(dso: str, file: str | None, in_target: bool) -> str:
    if dso.startswith("[kernel") or dso.startswith("[vdso") or dso == "[vsyscall]":
        return "kernel"
    if _LIBC_DSO.search(dso):
        return "libc"
    if in_target:
        return source_kind(file)
    return "other"


class PerfSymbolizer:
    """Turns raw frames into profile frames, expanding inlined calls from DWARF."""

    def __init__(self, binary: Path, symbolizer: Symbolizer) -> None:
        self.target = os.path.realpath(binary)
        self.symbolizer = symbolizer
        self._symbol_start = symbolizer.function_starts()
        self._cache: dict[tuple[RawFrame, bool], list[Frame]] = {}
        self._is_target: dict[str, bool] = {}

    def in_target(self, dso: str) -> bool:
        known = self._is_target.get(dso)
        if known is None:
            known = self._is_target[dso] = os.path.realpath(dso) == self.target
        return known

    def _link_address(self, frame: RawFrame) -> int | None:
        """perf prints DSO-relative addresses; symbol + offset is the link-time address."""
        if frame.symbol is None or frame.offset is None:
            return None
        start = self._symbol_start.get(frame.symbol)
        return None if start is None else start + frame.offset

    def source_chain(self, frame: RawFrame, is_leaf: bool) -> tuple[SourceFrame, ...] | None:
        """Where a frame of the target is in its source, innermost inlined call first; None for a frame
        outside the target, or without a symbol."""
        address = self._link_address(frame) if self.in_target(frame.dso) else None
        if address is None:
            return None
        # A return address points after the call: look up the call itself.
        lookup = address if is_leaf else address - 1
        return self.symbolizer.locate([lookup])[lookup]

    def frames_root_first(self, frame: RawFrame, is_leaf: bool) -> list[Frame]:
        key = (frame, is_leaf)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        resolved: list[Frame]
        chain = self.source_chain(frame, is_leaf)
        if chain is not None:
            # One frame per function, at its declaration: the line a sample hit
            # would split a function's samples into many frames.
            resolved = [
                Frame(source.function, source.file, source.decl_line,
                      classify(frame.dso, source.file, True), inlined=depth < len(chain) - 1)
                for depth, source in enumerate(chain)
            ][::-1]
        else:
            name = frame.symbol or UNKNOWN
            kind = classify(frame.dso, None, self.in_target(frame.dso)) if frame.symbol else "other"
            resolved = [Frame(name, None, None, kind)]
        self._cache[key] = resolved
        return resolved

    def wanted_addresses(self, samples: list[RawSample]) -> set[int]:
        """The target's distinct addresses in `samples`, as they are looked up (return addresses less one)."""
        # A recording repeats its stacks and its frames: each distinct one is looked at once.
        return self._wanted({sample.frames for sample in samples})

    def _wanted(self, stacks: set[tuple[RawFrame, ...]]) -> set[int]:
        frames = {(frame, depth == 0) for stack in stacks for depth, frame in enumerate(stack)}
        wanted = set()
        for frame, is_leaf in frames:
            if self.in_target(frame.dso):
                address = self._link_address(frame)
                if address is not None:
                    wanted.add(address if is_leaf else address - 1)
        return wanted

    def prefetch(self, samples: list[RawSample]) -> None:
        """Resolve every distinct target address in one DWARF pass."""
        self.symbolizer.locate(self.wanted_addresses(samples))

    def prefetch_stacks(self, stacks: set[tuple[RawFrame, ...]]) -> None:
        """`prefetch`, for stacks (leaf first) of records that are not samples."""
        self.symbolizer.locate(self._wanted(stacks))


def build_profile(samples: list[RawSample], binary: Path, symbolizer: Symbolizer, *,
                  frequency_hz: int | None, duration_s: float | None) -> StackProfile:
    perf_symbols = PerfSymbolizer(binary, symbolizer)
    perf_symbols.prefetch(samples)
    builder = ProfileBuilder("samples")
    # Frames are interned once per raw frame and stacks once per raw stack: a recording repeats both.
    interned: dict[tuple[RawFrame, bool], tuple[int, ...]] = {}
    stacks: dict[tuple[RawFrame, ...], tuple[int, ...]] = {}
    for sample in samples:
        stack = stacks.get(sample.frames)
        if stack is None:
            indices: list[int] = []
            leaf = len(sample.frames) - 1
            for depth, raw in enumerate(reversed(sample.frames)):
                key = (raw, depth == leaf)
                part = interned.get(key)
                if part is None:
                    part = interned[key] = tuple(builder.frame(frame) for frame in
                                                 perf_symbols.frames_root_first(raw, is_leaf=depth == leaf))
                indices.extend(part)
            stack = stacks[sample.frames] = tuple(indices)
        builder.add_interned(f"{sample.comm} {sample.tid}", stack)
    return builder.build(frequency_hz=frequency_hz, duration_s=duration_s, recorded_samples=len(samples))
