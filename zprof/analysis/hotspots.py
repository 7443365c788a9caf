"""The hottest functions of a StackProfile, and how shares moved between two."""

from __future__ import annotations

from collections import Counter

from zprof.analysis.stacks import StackProfile, StackSample
from zprof.model.common import Note
from zprof.model.flame import FunctionShare, ProfileSummary, ShareChange

UNKNOWN = "[unknown]"
FLAG_SHARE = 0.10
DWARF_SUGGESTION_SHARE = 0.10
# Kernel frames that mean the thread was being switched out, not working.
_IDLE_MARKERS = ("schedule", "do_idle", "cpuidle", "poll_idle")


def function_shares(profile: StackProfile) -> list[FunctionShare]:
    """Self (leaf) and total (anywhere on the stack, once per sample) weight of every
    function outside the kernel; kernel time is summarised, not ranked."""
    total = profile.total_weight or 1
    self_weight: Counter[str] = Counter()
    total_weight: Counter[str] = Counter()
    where: dict[str, tuple[str | None, int | None, str]] = {}
    for sample in profile.samples:
        frames = [profile.frames[i] for i in sample.stack]
        user = [frame for frame in frames if frame.kind != "kernel"]
        if frames and frames[-1].kind != "kernel":
            self_weight[frames[-1].name] += sample.weight
        for name in {frame.name for frame in user}:
            total_weight[name] += sample.weight
        for frame in user:
            where.setdefault(frame.name, (frame.file, frame.line, frame.kind))
    shares = []
    for name, weight in total_weight.items():
        file, line, kind = where[name]
        own = self_weight.get(name, 0)
        shares.append(FunctionShare(name, file, line, kind, own, weight, own / total, weight / total,
                                    kind == "project" and own / total > FLAG_SHARE))
    return shares


def summarise(profile: StackProfile, top: int = 10) -> ProfileSummary:
    total = profile.total_weight
    denominator = total or 1

    def share(predicate) -> float:  # type: ignore[no-untyped-def]
        return profile.weight_of(predicate) / denominator

    def frames_of(sample):  # type: ignore[no-untyped-def]
        return [profile.frames[i] for i in sample.stack]

    kernel = share(lambda s: bool(s.stack) and profile.frames[s.stack[-1]].kind == "kernel")
    idle = share(lambda s: any(f.kind == "kernel" and f.name.startswith(_IDLE_MARKERS) for f in frames_of(s)))
    # An unresolved root alone is only where the frame-pointer chain ends, past `main.main` or a thread's
    # entry: the stack from there on is whole. Unresolved frames inside it are a chain that broke.
    unknown = share(lambda s: any(profile.frames[i].name == UNKNOWN for i in s.stack[1:]))
    notes = [Note("flame.unknown-frames", {"share": unknown})] if unknown > DWARF_SUGGESTION_SHARE else []
    shares = function_shares(profile)
    by_self = sorted((s for s in shares if s.self_weight), key=lambda s: (-s.self_weight, s.function))[:top]
    by_total = sorted(shares, key=lambda s: (-s.total_weight, s.function))[:top]
    return ProfileSummary(profile.unit, total, kernel, idle, unknown, by_self, by_total, notes)


def share_changes(before: StackProfile, after: StackProfile, top: int = 15) -> list[ShareChange]:
    """Functions whose share moved most between two profiles: first by their own code's share (a change of
    total share runs up through every caller to the thread's entry, whose total can move most of all when
    the other threads' or the kernel's samples change), then by total share."""
    old = {s.function: s for s in function_shares(before)}
    new = {s.function: s for s in function_shares(after)}
    nothing = FunctionShare("", None, None, "", 0, 0, 0.0, 0.0, False)
    changes = [
        ShareChange(name, (new.get(name) or old[name]).kind,
                    old.get(name, nothing).total_share, new.get(name, nothing).total_share,
                    old.get(name, nothing).self_share, new.get(name, nothing).self_share)
        for name in old.keys() | new.keys()
    ]
    changes.sort(key=lambda change: (-abs(change.self_delta), -abs(change.delta), change.function))
    return changes[:top]


def debug_capture_share(profile: StackProfile) -> float:
    """The share of samples in the Debug allocator's stack capture: a DebugAllocator frame above a stack walk
    (debug.captureStackTrace, whose MemoryAccessor reads memory with process_vm_readv)."""
    frames = profile.frames

    def capturing(sample: StackSample) -> bool:
        names = [frames[index].name for index in sample.stack]
        return any("DebugAllocator" in name or "GeneralPurposeAllocator" in name for name in names) and any(
            "captureStackTrace" in name or "MemoryAccessor" in name or "StackIterator" in name for name in names)

    total = profile.total_weight
    return round(profile.weight_of(capturing) / total, 4) if total else 0.0
