"""The hottest functions of a StackProfile, and how shares moved between two."""

from __future__ import annotations

import re
from collections import Counter

from zprof.analysis.stacks import Frame, StackProfile, StackSample
from zprof.model.common import Note
from zprof.model.flame import FunctionShare, KernelPart, ProfileSummary, ShareChange

UNKNOWN = "[unknown]"
FLAG_SHARE = 0.10
DWARF_SUGGESTION_SHARE = 0.10
# Kernel frames that mean the thread was being switched out, not working.
_IDLE_MARKERS = ("schedule", "do_idle", "cpuidle", "poll_idle")
# A system call's entry in the kernel: `__x64_sys_write`, `__arm64_sys_write`, `__do_sys_write`.
_SYSCALL_ENTRY = re.compile(r"^__(?:x64|ia32|arm64|do|se)_sys_(\w+?)$")
# Zig's std wrapper of one system call, `os.linux.sendmsg`, `os.linux.futex_4arg` (not the arch's `syscall3`).
_ZIG_WRAPPER = re.compile(r"^os\.linux\.(\w+?)(?:_\d+arg)?$")


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
    return ProfileSummary(profile.unit, total, kernel, idle, unknown, by_self, by_total, notes,
                          kernel_parts(profile))


def kernel_parts(profile: StackProfile) -> list[KernelPart]:
    """The kernel's samples by cause: the system call the thread is in (the kernel's `__x64_sys_NAME` entry on
    the stack, else the std or libc wrapper that entered it: a thread switched out on its way back from a call
    has no entry frame left), a page fault, an interrupt, or other; largest first."""
    causes: Counter[str] = Counter()
    for sample in profile.samples:
        if sample.stack and profile.frames[sample.stack[-1]].kind == "kernel":
            causes[_kernel_cause([profile.frames[index] for index in sample.stack])] += sample.weight
    total = profile.total_weight or 1
    return [KernelPart(cause, round(weight / total, 4)) for cause, weight in causes.most_common()]


def _kernel_cause(stack: list[Frame]) -> str:
    first_kernel = next(depth for depth, frame in enumerate(stack) if frame.kind == "kernel")
    for frame in stack[first_kernel:]:
        if (match := _SYSCALL_ENTRY.match(frame.name)) is not None:
            return match[1]
    entry = stack[first_kernel].name
    if "page_fault" in entry:
        return "page faults"
    if entry.startswith("entry_SYSCALL"):
        for frame in reversed(stack[:first_kernel]):  # the innermost wrapper with a system call's name
            if (name := _wrapper_call(frame)) is not None:
                return name
    if entry.startswith(("asm_sysvec_", "asm_common_interrupt")):
        return "interrupts"
    return "other"


def _wrapper_call(frame: Frame) -> str | None:
    """The system call a user-space wrapper makes: Zig's `os.linux.NAME` (`futex_4arg` is futex), libc's
    `__GI___libc_write` (write)."""
    if frame.kind == "libc":
        return re.sub(r"^(?:__GI_)?_*(?:libc_)?", "", frame.name) or None
    if (match := _ZIG_WRAPPER.match(frame.name)) is not None and not match[1].startswith("syscall"):
        return match[1]
    return None


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


# Frames of each allocator zprof weighs as a choice (the shim's layer names, zprof.analysis.allocations).
ALLOCATOR_FRAMES = {"debug/GPA": ("DebugAllocator", "GeneralPurposeAllocator"), "page": ("PageAllocator",)}


def allocator_shares(profile: StackProfile) -> dict[str, float]:
    """The share of samples with a frame of each allocator anywhere on the stack: its own code, the system
    calls it makes for pages, and its stack capture."""
    frames = profile.frames
    total = profile.total_weight
    shares = {}
    for layer, needles in ALLOCATOR_FRAMES.items():
        inside = {index for index, frame in enumerate(frames) if any(needle in frame.name for needle in needles)}
        weight = profile.weight_of(lambda sample, inside=inside: any(index in inside for index in sample.stack))
        shares[layer] = round(weight / total, 4) if total else 0.0
    return shares
