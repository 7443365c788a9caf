"""Optimisation recommendations drawn from a validation's measurements.

Each rule looks for one problem the validation procedure names (../REPORT.md's list: allocations
per request, small and large allocations, copying, linear lookups, synchronous I/O, memory FLUSHALL
does not give back or that costs more per key than Redis, hot functions) in what was measured, and
says what it saw, the fix, and the most the fix can gain. That bound is always a measured share (of
CPU samples, of a command's allocations); where nothing bounds it, the recommendation says so
instead of inventing a number.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from zprof.analysis.allocations import keeps_blocks
from zprof.analysis.entries import entry_sentence
from zprof.analysis.stacks import Frame, StackProfile
from zprof.analysis.symbols import display_path
from zprof.collect.crash import CrashStack
from zprof.model.allocs import AllocsRun, CallSite
from zprof.model.bench import INDICATIVE, TARGET, UNACCEPTABLE, BenchRun, CommandComparison
from zprof.model.common import Note, TargetInfo
from zprof.model.flame import FlameRun
from zprof.model.memory import EntryLayout, MemoryRun
from zprof.model.syscalls import SyscallRow, SyscallsRun
from zprof.model.validate import Recommendation
from zprof.units import human_bytes

# Layers that already are request-scoped memory: an allocation from them is not a heap allocation.
REQUEST_SCOPED_LAYERS = ("arena", "fixed-buffer", "stack-fallback")
# Allocations per request from one site that make it "an allocation per request".
PER_REQUEST = 0.5
SMALL_BYTES = 64
LARGE_BYTES = 1 << 20
# A function scans when string compares are at least this much of its own work (samples where it is the
# innermost project frame), with hashing under a quarter of the compares (a hash lookup compares too, once),
# and that work is at least SCAN_SHARE of the samples in user space.
SCAN_COMPARE_PART = 0.25
SCAN_SHARE = 0.03
# Shares of all CPU samples above which a pattern is worth a recommendation.
COPY_SHARE = 0.05
HOT_SHARE = 0.10
# A recommendation explains a blocking figure when it is about an unacceptable command and bounds at
# least this share of the CPU (percent): a smaller cost cannot be why the command is that slow.
CRITICAL_PERCENT = 5.0
# A command whose error replies reach this share of its requests under load fails the clients: critical.
ERROR_CRITICAL_SHARE = 0.01
# CPU of one core under which a server that is slower than Redis is waiting, not computing.
IDLE_CPU_PERCENT = 50.0

RULES = {
    "server-crash": "The server crashes",
    "release-build": "Measured in a Debug build",
    "error-replies": "Requests answered with errors",
    "alloc-per-request": "An allocation per request, freed within the request",
    "small-allocs": "Several small allocations per request",
    "large-alloc": "A large allocation per request",
    "copying": "Copying where a slice would do",
    "linear-lookup": "A lookup that scans",
    "synchronous-io": "Requests served one at a time",
    "memory-not-given-back": "Memory FLUSHALL does not give back",
    "memory-per-key": "Memory per key far above Redis'",
    "hot-function": "A function over 10% of the CPU",
    "syscalls-per-request": "System calls a request need not make",
    "program-allocator": "The program's allocator",
}

# Leaf functions of a scan: string equality or ordering, which a loop over a collection repeats per entry, as
# Zig 0.15's std and libc name them (libc's without their leading underscores: __memcmp_avx2_movbe is memcmp's).
_COMPARE_PREFIXES = ("mem.eql", "mem.startsWith", "mem.endsWith", "mem.order", "mem.lessThan",
                     "ascii.eqlIgnoreCase", "ascii.startsWithIgnoreCase", "ascii.endsWithIgnoreCase",
                     "ascii.orderIgnoreCase", "ascii.lessThanIgnoreCase", "ascii.toLower", "ascii.toUpper",
                     "ascii.isUpper", "ascii.isLower", "memcmp", "bcmp", "strcmp", "strncmp", "strcasecmp",
                     "strncasecmp", "compiler_rt.memcmp", "compiler_rt.bcmp")
# A delimiter or substring search compares too (mem.indexOfPos calls mem.eql at every offset), but finds a place
# in one buffer, not an entry in a collection: a sample with one of these between the project and the leaf is none.
_SEARCH_PREFIXES = ("mem.indexOf", "mem.lastIndexOf", "mem.find", "mem.count", "mem.containsAtLeast", "mem.replace",
                    "mem.split", "mem.tokenize", "mem.SplitIterator", "mem.SplitBackwardsIterator",
                    "mem.TokenIterator", "mem.window", "mem.WindowIterator", "ascii.indexOfIgnoreCase",
                    "memchr", "memrchr", "rawmemchr", "strchr", "strrchr", "strstr", "strcasestr", "memmem", "strtok",
                    "strsep", "strpbrk", "strspn", "strcspn")
_HASH_MARKER = "hash"
# A hash table's lookup compares the key it probes for with the slot's: a compare under one of these frames is
# the lookup's, not a scan's (with the hash function inlined into the lookup, no frame of its own says "hash").
_HASH_TABLE_PREFIXES = ("hash_map.", "array_hash_map.", "static_string_map.")
_COPY_MARKERS = ("memcpy", "memmove", "mem.copyForwards", "mem.copyBackwards")
# An allocator's frames: Zig's std.heap (the GPA/DebugAllocator, page, arena, smp and C allocators) and Allocator
# interface, zprof's shim (in std's directory), by their files; the C library's malloc, by its names. A sample
# with one under a function is that function allocating or freeing, mmap and page faults under the allocator
# included.
_ALLOCATOR_FILES = ("std/heap/", "std/heap.zig", "std/mem/Allocator.zig", "std/zprof_hooks.zig")
_MALLOC_PREFIXES = ("malloc", "calloc", "realloc", "free", "cfree", "int_malloc", "int_free", "int_realloc",
                    "libc_malloc", "libc_calloc", "libc_realloc", "libc_free", "posix_memalign", "aligned_alloc",
                    "memalign", "sysmalloc", "malloc_consolidate", "tcache")
# A command's handler, as servers name it: the command (minikv's `commands.zadd`), or the command with one of
# these before it (`cmdHset`, `handleZadd`, `execGet`, `doDel`) or after it (`zaddCommand`, `setCmd`, `getHandler`).
_HANDLER_PREFIXES = ("cmd", "handle", "exec", "do")
_HANDLER_SUFFIXES = ("command", "cmd", "handler")
# A handler named for what it does takes the command from its module, in a file per command (minikv's DEBUG is
# `debug.command`, not COMMAND's handler).
_HANDLER_WORDS = frozenset((*_HANDLER_PREFIXES, *_HANDLER_SUFFIXES, "execute", "run"))
# Zig's suffixes for a generic instance or a duplicated name: `zadd__anon_1234`, `set__5678`.
_ZIG_INSTANCE = re.compile(r"__(?:anon_)?\d+$")

SKETCHES = {
    "alloc-per-request": (
        "// before: a heap buffer for every request\n"
        "const buffer = try gpa.alloc(u8, 256);\n"
        "defer gpa.free(buffer);\n"
        "// after: a buffer on the stack (or the request's arena, reset after each request)\n"
        "var buffer: [256]u8 = undefined;"),
    "small-allocs": (
        "// before: one tiny allocation per item\n"
        "for (items) |item| try list.append(try gpa.dupe(u8, item));\n"
        "// after: one arena for the request, freed at once\n"
        "var arena: std.heap.ArenaAllocator = .init(gpa);\n"
        "defer arena.deinit();\n"
        "for (items) |item| try list.append(try arena.allocator().dupe(u8, item));"),
    "large-alloc": (
        "// before: a large scratch buffer allocated and freed per request\n"
        "const scratch = try gpa.alloc(u8, 2 << 20);\n"
        "defer gpa.free(scratch);\n"
        "// after: one buffer per connection, reused (or work in fixed-size chunks)\n"
        "conn.scratch.clearRetainingCapacity();\n"
        "try conn.scratch.ensureTotalCapacity(gpa, needed);"),
    "copying": (
        "// before: a copy that lives only as long as the request\n"
        "const key = try gpa.dupe(u8, request.args[1]);\n"
        "defer gpa.free(key);\n"
        "// after: borrow the request's slice for the request's lifetime\n"
        "const key = request.args[1];"),
    "linear-lookup": (
        "// before: compare the name with every entry\n"
        "for (table) |*entry| if (std.ascii.eqlIgnoreCase(entry.name, name)) return entry;\n"
        "// after: one hash lookup, built at compile time\n"
        "const by_name: std.StaticStringMap(*const Command) = .initComptime(pairs);\n"
        "return by_name.get(std.ascii.upperString(&buffer, name));"),
    "memory-not-given-back": (
        "// before: a block with no owner once the request ends\n"
        "const record = try gpa.alloc(u8, 64);\n"
        "// after: freed when its last user is done (or kept in a structure FLUSHALL clears)\n"
        "const record = try gpa.alloc(u8, 64);\n"
        "defer gpa.free(record);"),
    "program-allocator": (
        "// before: the Debug allocator in every build\n"
        "var gpa_state: std.heap.DebugAllocator(.{}) = .init;\n"
        "const gpa = gpa_state.allocator();\n"
        "// after: its checks in Debug builds and tests, a fast allocator in release builds\n"
        "var debug_state: std.heap.DebugAllocator(.{}) = .init;\n"
        "const gpa = if (builtin.mode == .Debug) debug_state.allocator() else std.heap.smp_allocator;"),
}


@dataclass(frozen=True)
class FunctionCost:
    """A project function in a CPU profile, as shares of all samples: its own time, its time with what it
    calls, and its own work (samples where it is the innermost project frame, std and libc leaves included)
    split into string compares, hashing and copies; its time allocating and freeing (samples with an allocator's
    frame under it); and the commands whose handlers its samples pass through."""

    function: str
    file: str | None
    line: int | None
    self_share: float
    total_share: float
    own_share: float
    compare_share: float
    hash_share: float
    copy_share: float
    commands: tuple[str, ...]
    alloc_share: float = 0.0

    def scans(self, user_share: float) -> bool:
        """Compares without the hashing of a hash lookup, a sizeable part of the user-space time."""
        return (self.compare_share >= SCAN_COMPARE_PART * self.own_share
                and self.hash_share < self.compare_share / 4
                and user_share > 0 and self.own_share / user_share >= SCAN_SHARE)


@dataclass(frozen=True)
class ProfileCosts:
    """Every project function's costs, and the share of samples in user space (not in the kernel)."""

    functions: dict[str, FunctionCost]
    user_share: float


def profile_costs(profile: StackProfile, command_names: Iterable[str]) -> ProfileCosts:
    """The costs of every project function in `profile`, by name: a function inlined at several places has several
    frames, and a sample counts once towards each name on its stack."""
    total = profile.total_weight or 1
    frames = profile.frames
    project = [frame.kind == "project" for frame in frames]
    allocator = [_is_allocator(frame) for frame in frames]
    handles = _handlers(frames, command_names)
    weights: dict[str, dict[str, int]] = {part: defaultdict(int) for part in
                                          ("self", "total", "own", "compare", "hash", "copy", "alloc")}
    commands: dict[str, set[str]] = defaultdict(set)
    user = 0
    for sample in profile.samples:
        stack, weight = sample.stack, sample.weight
        if not stack:
            continue
        leaf = frames[stack[-1]]
        user += weight if leaf.kind != "kernel" else 0
        if project[stack[-1]]:
            weights["self"][leaf.name] += weight
        # The outermost handler is the command's: what it calls may be named like another (HGET's Hash.get).
        served = next((handles[index] for index in stack if index in handles), None)
        for name in {frames[index].name for index in stack if project[index]}:
            weights["total"][name] += weight
            if served is not None:
                commands[name].add(served)
        outermost_allocator = next((depth for depth, index in enumerate(stack) if allocator[index]), None)
        if outermost_allocator is not None:
            for name in {frames[index].name for index in stack[:outermost_allocator] if project[index]}:
                weights["alloc"][name] += weight
        innermost = next((depth for depth in range(len(stack) - 1, -1, -1) if project[stack[depth]]), None)
        if innermost is None:
            continue
        owner = frames[stack[innermost]].name
        weights["own"][owner] += weight
        work = _own_work(leaf, [frames[index] for index in stack[innermost + 1:]])
        if work is not None:
            weights[work][owner] += weight
    places: dict[str, tuple[str | None, int | None]] = {}
    for frame in frames:
        if frame.kind == "project" and frame.name in weights["total"]:
            places.setdefault(frame.name, (frame.file, frame.line))

    def share(part: str, name: str) -> float:
        return weights[part].get(name, 0) / total

    return ProfileCosts(
        {name: FunctionCost(name, *places[name], share("self", name), share("total", name), share("own", name),
                            share("compare", name), share("hash", name), share("copy", name),
                            tuple(sorted(commands[name])), share("alloc", name))
         for name in places},
        user / total)


def _bare(name: str) -> str:
    """A name without the leading underscores of libc's variants (__memcmp_avx2_movbe, _int_malloc)."""
    return name.lstrip("_")


def _own_work(leaf: Frame, library: list[Frame]) -> str | None:
    """What a sample of a function's own work does: compare strings, hash or copy, from its leaf; `library` are
    the std and libc frames between the function and the leaf."""
    if any(_bare(frame.name).startswith(_SEARCH_PREFIXES) for frame in library):
        return None
    if any(frame.name.startswith(_HASH_TABLE_PREFIXES) for frame in library):
        return "hash"
    name = _bare(leaf.name)
    if name.startswith(_COMPARE_PREFIXES):
        return "compare"
    if _HASH_MARKER in name:
        return "hash"
    if any(marker in name for marker in _COPY_MARKERS):
        return "copy"
    return None


def _is_allocator(frame: Frame) -> bool:
    if frame.kind == "std":
        return bool(frame.file) and frame.file.startswith(_ALLOCATOR_FILES)  # type: ignore[union-attr]
    return frame.kind in ("libc", "other") and _bare(frame.name).startswith(_MALLOC_PREFIXES)


def handler_command(function: str, command_names: Iterable[str]) -> str | None:
    """The command `function` handles, by its last name component (see _HANDLER_PREFIXES), or None."""
    handlers = {name.lower(): name for name in command_names}
    module, _, last = function.rpartition(".")
    module, last = (_ZIG_INSTANCE.sub("", part).lower().replace("_", "") for part in (module.rsplit(".", 1)[-1], last))
    if last in _HANDLER_WORDS and module in handlers:
        return handlers[module]
    candidates = {last, *(last[len(prefix):] for prefix in _HANDLER_PREFIXES if last.startswith(prefix)),
                  *(last[:-len(suffix)] for suffix in _HANDLER_SUFFIXES if last.endswith(suffix))}
    found = sorted(handlers[candidate] for candidate in candidates if candidate in handlers)
    return found[0] if found else None


def _handlers(frames: list[Frame], command_names: Iterable[str]) -> dict[int, str]:
    """The project's frames that handle a command (never std's or a dependency's: HashMap.get is no GET)."""
    names = list(command_names)
    return {index: command for index, frame in enumerate(frames)
            if frame.kind == "project" and (command := handler_command(frame.name, names)) is not None}


@dataclass(frozen=True)
class ErrorReplies:
    """A command answered with errors under load, as one measurement counted them."""

    command: str
    source: str  # the measurement: "zprof allocs SET", "zprof memory", "zprof bench"
    errors: int | None  # None: not counted (redis-benchmark stops at the first)
    requests: int | None
    first_error: str

    @property
    def share(self) -> float | None:
        return self.errors / self.requests if self.errors is not None and self.requests else None

    def text(self) -> str:
        counted = (f"{self.errors:,} of {self.requests:,} requests ({self.share:.1%})" if self.share is not None
                   else "stopped at the first error")
        return f"{counted} in {self.source}"


@dataclass(frozen=True)
class ServerCrash:
    """The target died of a signal of its own during one measurement: at start-up (and was started again) or
    under load (which ended the measurement)."""

    source: str  # "zprof allocs SET"
    what: str  # "in 3 of 7 starts, during start-up" or the failure's message
    how: str | None  # "signal 11, SIGSEGV"
    stack: CrashStack | None


@dataclass(frozen=True)
class Evidence:
    """What the rules read: the validation's runs, the profile's costs by function, and the measurements
    that ended because every request got an error reply (their runs are not kept)."""

    allocs: list[AllocsRun]
    flame: FlameRun | None
    costs: ProfileCosts
    memory: MemoryRun | None
    bench: BenchRun | None
    failed_measurements: list[ErrorReplies] = field(default_factory=list)
    # The share of CPU samples in the Debug allocator's stack capture (a Debug build's cost), when profiled.
    debug_capture_share: float | None = None
    # Measurements the target's crash under load ended (crashes at start-up are in the runs' notes).
    crashed_measurements: list[ServerCrash] = field(default_factory=list)
    syscalls: list[SyscallsRun] = field(default_factory=list)
    # Each allocator's share of the CPU samples (zprof.analysis.hotspots.allocator_shares), when profiled.
    allocator_shares: dict[str, float] = field(default_factory=dict)

    @property
    def target(self) -> TargetInfo | None:
        return next((run.target for run in (*self.allocs, self.flame, self.memory, self.bench) if run is not None),
                    None)

    def error_replies(self) -> list[ErrorReplies]:
        """Every count of error replies the target gave under load (Redis' own errors are not the target's)."""
        found = list(self.failed_measurements)
        found += [ErrorReplies(run.command, f"zprof allocs {run.command}", run.load.errors, run.requests,
                               run.load.first_error or "") for run in self.allocs if run.load.errors]
        if self.memory is not None and self.memory.load.errors:
            load = self.memory.load
            found.append(ErrorReplies(self.memory.command, "zprof memory", load.errors, load.requests,
                                      load.first_error or ""))
        if self.bench is not None:
            found += [ErrorReplies(command.command, "zprof bench", failure.errors, failure.requests,
                                   failure.first_error)
                      for command in self.bench.commands
                      if (failure := command.failure) is not None and failure.server == TARGET]
        return found

    def crashes(self) -> list[ServerCrash]:
        """Every crash of the target the measurements saw: start-up crashes from the runs' notes (the target's,
        not Redis'), then the crashes that ended a measurement."""
        found = []
        runs: list[tuple[str, list[Note]]] = [(f"zprof allocs {run.command}", run.notes) for run in self.allocs]
        runs += [(label, run.notes) for label, run in (("zprof flame", self.flame), ("zprof memory", self.memory))
                 if run is not None]
        if self.bench is not None:
            runs.append(("zprof bench", self.bench.limitations))
        for source, notes in runs:
            for note in notes:
                values = note.values
                if note.code != "server.start-crashes" or values["server"] == "redis":
                    continue
                stack = CrashStack.from_json(values["stack"]) if values.get("stack") else None
                found.append(ServerCrash(source, f"in {values['crashes']} of {values['starts']} starts, during "
                                                 "start-up (zprof started it again)", values["how"], stack))
        return found + list(self.crashed_measurements)

    def command(self, name: str | None) -> CommandComparison | None:
        if self.bench is None or name is None:
            return None
        return next((command for command in self.bench.commands if command.command == name), None)

    def unacceptable(self, name: str | None) -> bool:
        """The command's throughput or p99 is conclusively unacceptable against Redis."""
        command = self.command(name)
        return command is not None and any(
            verdict is not None and verdict.level == UNACCEPTABLE and status == UNACCEPTABLE and verdict.conclusive
            for verdict, status in ((command.throughput_verdict, command.throughput_status),
                                    (command.latency_verdict, command.latency_status)))

    def cpu_bound(self, function: str) -> tuple[str, float | None]:
        """The most removing `function`'s work can gain, from its share of the profile."""
        return self._bound(function, lambda cost: cost.total_share, "was in", "its share of {samples} samples")

    def alloc_bound(self, function: str) -> tuple[str, float | None]:
        """The most removing `function`'s allocations can gain: the samples where it is allocating or freeing,
        not all of its time (a 96 B block in a handler costs the allocator's share, not the handler's)."""
        return self._bound(function, lambda cost: cost.alloc_share, "was allocating or freeing in",
                           "the share of {samples} samples where it allocates or frees")

    def _bound(self, function: str, share_of: Callable[[FunctionCost], float], absent: str,
               measured: str) -> tuple[str, float | None]:
        if self.flame is None:
            return "not bounded: the CPU profile was not measured", None
        cost = self.costs.functions.get(function)
        share = share_of(cost) if cost is not None else 0.0
        samples = f"{self.flame.summary.total:,}"
        if share == 0:
            return (f"under the CPU profile's resolution: {function} {absent} none of its {samples} samples "
                    "under the mixed load"), 0.0
        return (f"at most {share:.1%} of the server's CPU under the mixed load "
                f"({measured.format(samples=samples)})"), round(share * 100, 2)


def recommend(evidence: Evidence) -> list[Recommendation]:
    """Every rule over the evidence, most important first: critical ones, then by the size of their bound."""
    found = [*_crash_rule(evidence), *_build_rule(evidence), *_error_rule(evidence), *_allocation_rules(evidence),
             *_profile_rules(evidence), *_io_rule(evidence), *_memory_rules(evidence), *_syscall_rules(evidence),
             *_allocator_rules(evidence)]
    unique: dict[tuple[str, str | None], Recommendation] = {}
    for recommendation in found:  # the first of a rule and function stands (the memory run's leak check first)
        unique.setdefault((recommendation.rule, recommendation.function), recommendation)
    impact_order = {"High": 0, "Medium": 1, "Low": 2}
    # A crash comes first, then a Debug build: every other figure is that build's.
    first = ("server-crash", "release-build")
    return sorted(unique.values(), key=lambda r: (first.index(r.rule) if r.rule in first else len(first),
                                                  not r.critical, impact_order[r.impact], -(r.bound_percent or 0),
                                                  r.rule, r.function or ""))


def _impact(share_percent: float | None, critical: bool, reason: str) -> tuple[str, str]:
    if critical:
        return "High", reason
    if share_percent is None:
        return "Medium", reason
    return ("High" if share_percent >= 10 else "Medium" if share_percent >= 3 else "Low"), reason


def _program_sites(run: AllocsRun) -> list[CallSite]:
    return [site for site in run.analysis.sites
            if site.nested_in is None and site.layer not in REQUEST_SCOPED_LAYERS]


def _allocation_rules(evidence: Evidence) -> list[Recommendation]:
    """One recommendation per rule and function, over every command whose requests make the allocation."""
    groups: dict[str, list[tuple[AllocsRun, CallSite]]] = defaultdict(list)
    for run in evidence.allocs:
        for site in _program_sites(run):
            # A stored value that replaces another frees the old one, so its retained bytes can be nil: the blocks
            # the site still held at the end of the run tell it from a temporary.
            temporary = site.bytes_per_request > 0 and not keeps_blocks(site)
            if site.allocs_per_request >= PER_REQUEST and temporary:
                groups[site.function].append((run, site))
    found: list[Recommendation] = []
    for function, places in groups.items():
        # The command where the function allocates most says which rule fits.
        run, site = max(places, key=lambda place: (place[1].allocs_per_request, place[1].max_bytes))
        rule = _allocation_rule(site)
        commands = [place[0].command for place in places]
        bound, percent = evidence.alloc_bound(function)
        blocking = next((name for name in commands if evidence.unacceptable(name)), None)
        critical = blocking is not None and (percent or 0) >= CRITICAL_PERCENT
        where = f"{function} ({site.layer})"
        if rule == "large-alloc":
            text = (f"{where} allocates {human_bytes(site.max_bytes)} {site.allocs_per_request:.2f} times per "
                    f"{run.command} request and frees it within the request")
        else:
            text = (f"{site.allocs_per_request:.2f} of the {run.analysis.per_request.allocs:.2f} allocations per "
                    f"{run.command} request come from {where}, {human_bytes(site.average_bytes)} each on average, "
                    "all freed within the request" + _backing(run, site))
        if len(commands) > 1:
            text += f"; the same in {', '.join(name for name in commands if name != run.command)}"
        impact, reason = _impact(percent, critical, _impact_reason(percent, critical, blocking))
        found.append(Recommendation(
            rule=rule, title=f"{RULES[rule]}: {function} in {', '.join(commands)}", critical=critical,
            impact=impact, impact_reason=reason, difficulty="Medium" if rule == "large-alloc" else "Low",
            evidence=text, bound=bound, fix=_FIXES[rule], function=function, file=site.file, line=site.line,
            command=", ".join(commands), bound_percent=percent, sketch=SKETCHES.get(rule)))
    return found


def _allocation_rule(site: CallSite) -> str:
    if site.max_bytes > LARGE_BYTES:
        return "large-alloc"
    if site.average_bytes < SMALL_BYTES and site.allocs_per_request >= 1.5:
        return "small-allocs"
    if any(".dupe" in frame for frame in site.inlined):
        return "copying"
    return "alloc-per-request"


_FIXES = {
    "large-alloc": "allocate it once per connection and reuse it, or work in chunks that fit a stack buffer",
    "small-allocs": ("take these small blocks from the request's arena (or a stack buffer with "
                     "std.heap.stackFallback), released at once after the request"),
    "copying": "borrow the slice for the request's lifetime instead of copying it",
    "alloc-per-request": "use a stack buffer, a buffer the caller provides, or the request's arena",
}


def _backing(run: AllocsRun, site: CallSite) -> str:
    """What the allocator behind the site's allocator did for it: a GPA that maps a page per request."""
    behind = [other for other in run.analysis.sites if other.function == site.function and other.nested_in
              and other.allocs_per_request >= PER_REQUEST / 2]
    return "".join(f"; for them, {other.nested_in} takes {human_bytes(other.bytes_per_request)} per request from "
                   f"{other.layer} ({other.allocs_per_request:.2f} calls)" for other in behind)


def _impact_reason(percent: float | None, critical: bool, command: str | None) -> str:
    if critical:
        return f"{command} is unacceptable against Redis"
    if percent is None:
        return "no CPU profile to weigh it"
    return f"{percent:.1f}% of the CPU at most"


def _profile_rules(evidence: Evidence) -> list[Recommendation]:
    if evidence.flame is None:
        return []
    found: list[Recommendation] = []
    samples = evidence.flame.summary.total
    for cost in evidence.costs.functions.values():
        command = next((name for name in cost.commands if evidence.unacceptable(name)), None)
        percent = round(cost.total_share * 100, 2)
        critical = command is not None and percent >= CRITICAL_PERCENT
        if cost.scans(evidence.costs.user_share):
            impact, reason = _impact(percent, critical, _impact_reason(percent, critical, command))
            found.append(Recommendation(
                rule="linear-lookup", title=f"{RULES['linear-lookup']}: {cost.function}", critical=critical,
                impact=impact, impact_reason=reason, difficulty="Low",
                evidence=(f"{cost.function}'s own work is {cost.own_share:.1%} of {samples:,} CPU samples "
                          f"({cost.own_share / evidence.costs.user_share:.1%} of those in user space), "
                          f"{cost.compare_share / cost.own_share:.0%} of it string compares and no hashing: "
                          "it compares entry after entry"),
                bound=f"at most {cost.total_share:.1%} of the server's CPU under the mixed load",
                fix="look it up in a hash map (std.StaticStringMap for a fixed table) instead of comparing in a loop",
                function=cost.function, file=cost.file, line=cost.line, command=command, bound_percent=percent,
                sketch=SKETCHES["linear-lookup"]))
        if cost.copy_share >= COPY_SHARE:
            impact, reason = _impact(percent, critical, _impact_reason(percent, critical, command))
            found.append(Recommendation(
                rule="copying", title=f"{RULES['copying']}: {cost.function}", critical=critical, impact=impact,
                impact_reason=reason, difficulty="Medium",
                evidence=f"{cost.copy_share:.1%} of {samples:,} CPU samples copy memory (memcpy/memmove) for "
                         f"{cost.function}",
                bound=f"at most {cost.copy_share:.1%} of the server's CPU under the mixed load (the copies' share)",
                fix="pass slices (or pointers) rather than copying values; copy only what must outlive the request",
                function=cost.function, file=cost.file, line=cost.line, command=command,
                bound_percent=round(cost.copy_share * 100, 2), sketch=SKETCHES["copying"]))
        if cost.self_share > HOT_SHARE:
            own_time = round(cost.self_share * 100, 2)
            impact, reason = _impact(own_time, critical, _impact_reason(own_time, critical, command))
            found.append(Recommendation(
                rule="hot-function", title=f"{RULES['hot-function']}: {cost.function}", critical=critical,
                impact=impact, impact_reason=reason, difficulty="Medium",
                evidence=(f"{cost.function} takes {cost.self_share:.1%} of {samples:,} CPU samples by itself "
                          f"({cost.total_share:.1%} with what it calls)"
                          + (f"; it runs under {', '.join(cost.commands)}" if cost.commands else "")),
                bound=f"at most {cost.self_share:.1%} of the server's CPU under the mixed load (its own time)",
                fix="find what the function repeats per request and remove it, or move it off the request path",
                function=cost.function, file=cost.file, line=cost.line, command=command,
                bound_percent=round(cost.self_share * 100, 2)))
    return found


# The one line that gives a build.zig without an optimize option one (zig build -Doptimize=... then works).
OPTIMIZE_LINE = ".optimize = b.standardOptimizeOption(.{}),"


def _build_rule(evidence: Evidence) -> list[Recommendation]:
    """A Debug build's CPU time and throughput are not a release build's: every figure but the allocation
    counts judges the wrong build, so building in a release mode comes before any other change."""
    target = evidence.target
    if target is None or target.optimize != "Debug":
        return []
    chosen = target.optimize_source in (None, "requested")
    fix = ("measure a release build: zprof validate --optimize ReleaseFast" if chosen else
           f"give build.zig an optimize option, one line in the executable's module options: `{OPTIMIZE_LINE}` "
           "(in place of a hard-coded `.optimize = .Debug`); zprof then builds it in ReleaseFast")
    why = "as requested" if chosen else "its build.zig declares no optimize option"
    seen = [f"the server was built in Debug ({why})"]
    if evidence.debug_capture_share:
        seen.append(f"{evidence.debug_capture_share:.1%} of the CPU samples are the Debug allocator capturing a stack "
                    "trace for every allocation (debug.captureStackTrace, reading memory with process_vm_readv), "
                    "which a release build's allocator does not do")
    return [Recommendation(
        rule="release-build", title=RULES["release-build"], critical=False, impact="High",
        impact_reason="the CPU time and throughput measured are a Debug build's, not what would be committed",
        difficulty="Low", evidence="; ".join(seen),
        bound=("not bounded here: the release build was not measured (its CPU figures replace these)"
               + (f"; the Debug allocator's stack capture alone is {evidence.debug_capture_share:.1%} of the CPU"
                  if evidence.debug_capture_share else "")),
        fix=fix, sketch=None if chosen else f"// build.zig: the executable's root module\n{OPTIMIZE_LINE}",
        bound_percent=round(evidence.debug_capture_share * 100, 2) if evidence.debug_capture_share else None)]


def _crash_rule(evidence: Evidence) -> list[Recommendation]:
    """A server that dies of a signal of its own fails its clients whatever its speed: critical, with where
    the first crash with a stack was (the innermost frame of the project's own code)."""
    crashes = evidence.crashes()
    if not crashes:
        return []
    stack = next((crash.stack for crash in crashes if crash.stack is not None and crash.stack.frames), None)
    if stack is None:
        stack = next((crash.stack for crash in crashes if crash.stack is not None), None)
    own = stack.first_own if stack is not None else None
    seen = "; ".join(f"{crash.source}: {crash.what}" + (f" ({crash.how})" if crash.how and crash.how not in crash.what
                                                        else "") for crash in crashes)
    where = (f"where: {stack.summary()}" if stack is not None and stack.frames else
             f"no stack: {stack.missing}" if stack is not None else "no stack was captured")
    return [Recommendation(
        rule="server-crash", title=RULES["server-crash"] + (f": {own.function}" if own else ""), critical=True,
        impact="High", impact_reason="a crash drops every client's connection and every key not yet persisted",
        difficulty="Medium", evidence=f"{seen}; {where}",
        bound="not a speed-up: a server that crashes is not ready to commit, whatever its figures",
        fix=(f"fix the crash at {display_path(own.file)}:{own.line} (the stack above; "  # type: ignore[arg-type]
             "a start-up crash that happens only in some starts is often a race between threads)" if own else
             "find where it crashes: run it under gdb, or let it dump core (ulimit -c unlimited)"),
        function=own.function if own else None, file=own.file if own else None, line=own.line if own else None)]


def _error_rule(evidence: Evidence) -> list[Recommendation]:
    """A command the target answered with errors under load: zprof's requests are valid (each was sent once and
    answered before the load), so errors under load are the server failing. Its severity follows the error share:
    critical from ERROR_CRITICAL_SHARE on, or when a measurement ended on errors without counting them."""
    by_command: dict[str, list[ErrorReplies]] = defaultdict(list)
    for replies in evidence.error_replies():
        by_command[replies.command].append(replies)
    found: list[Recommendation] = []
    for command, counts in by_command.items():
        worst = max(counts, key=lambda replies: 1.0 if replies.share is None else replies.share)
        critical = worst.share is None or worst.share >= ERROR_CRITICAL_SHARE
        found.append(Recommendation(
            rule="error-replies", title=f"{RULES['error-replies']}: {command}", critical=critical,
            impact="High" if critical or worst.share >= ERROR_CRITICAL_SHARE / 10 else "Medium",
            impact_reason=(f"{command} fails for the clients: " + (f"{worst.share:.1%} of its requests"
                                                                   if worst.share is not None else "under load")),
            difficulty="Medium",
            evidence=f"{command} answered {worst.first_error!r} under load: " + "; ".join(c.text() for c in counts),
            bound="not a speed-up: every request answered with an error is a request the server did not serve",
            fix=("find why the server refuses valid requests under load (the first error names it); a store that "
                 "fills up must make room or say so before it is offered as a Redis"),
            command=command))
    return found


def _io_rule(evidence: Evidence) -> list[Recommendation]:
    """Synchronous I/O: the probes found one connection at a time or no pipelining (the probes ask again with
    a longer deadline before they conclude), or the server is slower than Redis while its CPU stayed low on
    a machine that had CPU to spare (on a saturated machine every process waits for a core, so a low share
    says nothing). Critical only where it is what fails the standard: a server slower than Redis while
    idle, or a conclusively unacceptable comparison that ran several clients; a comparison at one client
    cannot show the cost of serving one connection at a time, so there it is an architecture note."""
    faults: set[str] = set()
    for run in [evidence.flame, evidence.bench, *evidence.allocs]:
        if run is None:
            continue
        for note in getattr(run, "notes", None) or getattr(run, "limitations", []):
            if note.code == "probe.one-connection":
                faults.add("one connection at a time")
            elif note.code == "probe.no-pipelining":
                faults.add("only the first of pipelined commands")
            elif note.code == "bench.driver-for-faults":
                faults |= {{"one-connection": "one connection at a time",
                             "no-pipelining": "only the first of pipelined commands"}[fault]
                           for fault in note.values["faults"]}
    bench = evidence.bench
    several_clients = bench is not None and bench.settings.clients > 1
    idle: list[str] = []
    failing: list[str] = []
    if bench is not None:
        for command in bench.commands:
            if not evidence.unacceptable(command.command):
                continue
            failing.append(command.command)
            cpu = command.target.cpu_percent if command.target else None
            if cpu is not None and cpu < IDLE_CPU_PERCENT and several_clients and not command.machine_saturated:
                idle.append(f"{command.command} ran at {cpu:.0f}% of a core with the machine at "
                            f"{command.target.machine_cpu_percent:.0f}%")  # type: ignore[union-attr]
    if not faults and not idle:
        return []
    critical = bool(idle) or (bool(failing) and several_clients)
    seen = []
    if faults:
        seen.append("the probes found the server serves " + " and ".join(sorted(faults)))
    if idle:
        seen.append("while slower than Redis, " + ", ".join(idle))
    if not critical and failing:
        seen.append(f"not what fails the comparison ({', '.join(failing)}): it ran both servers at 1 client, "
                    "where serving one connection at a time costs nothing")
    return [Recommendation(
        rule="synchronous-io", title=RULES["synchronous-io"], critical=critical,
        impact="High" if critical else "Medium",
        impact_reason=("every request waits for the one before it" if critical else
                       "an architecture note: several clients at once would wait for each other"),
        difficulty="High",
        evidence="; ".join(seen),
        bound=("not bounded by a CPU share: the cost is waiting, which a CPU profile does not sample; the "
               "comparison with Redis above is the measure"),
        fix=("serve connections concurrently (a thread per connection, or an event loop over std.posix.poll or "
             "epoll) and execute every complete request in the read buffer before writing all their replies"))]


def _memory_rules(evidence: Evidence) -> list[Recommendation]:
    found: list[Recommendation] = []
    leak = evidence.memory.analysis.leak if evidence.memory is not None else None
    if leak is not None and leak.detected:
        for site in leak.sites:
            found.append(_not_given_back(site.function, site.file, site.line, evidence.memory.command,
                                         site.bytes_per_request, "the memory run's leak check"))
    for run in evidence.allocs:
        if run.analysis.kept_bytes_per_request is None:
            continue  # without FLUSHALL, what a site keeps may be the stored data itself
        for flag in run.analysis.flags:
            if flag.kind == "growth":  # kept with every request, in both halves of the run, past FLUSHALL
                found.append(_not_given_back(flag.function, flag.file, flag.line, run.command, flag.value,
                                             f"zprof allocs {run.command}"))
    bench = evidence.bench
    memory = bench.memory if bench is not None else None
    # Critical when judged unacceptable, which blocks the verdict (zprof.analysis.judgement); from too few keys
    # to judge (--quick), a finding that does not block.
    judged = memory is not None and memory.status == UNACCEPTABLE
    if judged or (memory is not None and memory.status == INDICATIVE and memory.verdict is not None
                  and memory.verdict.level == UNACCEPTABLE):
        assert bench is not None and bench.memory is not None
        holder = _largest_holder(evidence.allocs)
        per_key = bench.memory.target.bytes_per_key if bench.memory.target else None
        redis_per_key = bench.memory.redis.bytes_per_key if bench.memory.redis else None
        seen = (f"{per_key} bytes per key against Redis' {redis_per_key} with {bench.memory.keys:,} keys"
                + ("" if judged else " (indicative: too few keys to judge, see section 2)"))
        bound = (f"at most {100 - 10_000 / bench.memory.percent_of_redis:.1f}% of the target's RSS per key, if it "
                 "came down to Redis'")
        entry = _boxable_entry(evidence.memory)
        if entry is not None:
            member = entry.cause[0].split(":", 1)[0]
            found.append(Recommendation(
                rule="memory-per-key", title=f"{RULES['memory-per-key']}: {entry.element}.{member}", critical=judged,
                impact="High", impact_reason=f"{bench.memory.percent_of_redis:.0f}% of Redis' RSS per key",
                difficulty="Medium", evidence=f"{seen}; {entry_sentence(entry)}",
                bound=(f"{human_bytes(entry.saving_per_key)} per key of the {human_bytes(entry.bytes_per_new_key)} the "  # type: ignore[arg-type]
                       f"site keeps per new key ({entry.saving_per_key / entry.bytes_per_new_key:.0%}, from the "  # type: ignore[operator]
                       f"DWARF's sizes and the container's capacity per key); {bound}"),
                fix=(f"hold `{member}` through a pointer (allocated when a key first needs it), so that every "
                     f"{entry.element} does not carry {entry.cause[-1]} inline"),
                function=entry.function, file=entry.file, line=entry.line, sketch=_boxing_sketch(entry, member)))
            return found
        found.append(Recommendation(
            rule="memory-per-key", title=RULES["memory-per-key"], critical=judged, impact="High",
            impact_reason=f"{bench.memory.percent_of_redis:.0f}% of Redis' RSS per key", difficulty="High",
            evidence=(seen + (f"; the most retained per new key is at {holder[0]} ({human_bytes(holder[1])} per key)"
                              if holder else "")),
            bound=bound,
            fix="store keys and values in fewer, tighter blocks (one allocation per entry, no per-entry padding)",
            function=holder[0] if holder else None))
    return found


def _boxable_entry(memory: MemoryRun | None) -> EntryLayout | None:
    """The memory run's container entry whose largest member, boxed, would save the most per key."""
    entries = [entry for entry in memory.entries if entry.saving_per_key] if memory is not None else []
    return max(entries, key=lambda entry: entry.saving_per_key or 0.0, default=None)


def _boxing_sketch(entry: EntryLayout, member: str) -> str:
    short = entry.element.rsplit(".", 1)[-1]
    payload = entry.cause[0].split(": ", 1)[1].rsplit(" (", 1)[0]
    return (f"// before: every {short} carries the largest variant inline ({entry.element_bytes:,} B a slot)\n"
            f"{member}: {payload},\n"
            f"// after: a pointer in the slot ({entry.boxed_bytes} B a slot); allocate it when a key needs it\n"
            f"{member}: *{payload},")


def _not_given_back(function: str, file: str | None, line: int | None, command: str, bytes_per_request: float,
                    source: str) -> Recommendation:
    return Recommendation(
        rule="memory-not-given-back", title=f"{RULES['memory-not-given-back']}: {function}", critical=True,
        impact="High", impact_reason="the server's memory grows with every request, for good",
        difficulty="Medium",
        evidence=(f"{function} keeps {human_bytes(bytes_per_request)} per {command} request that FLUSHALL does not "
                  f"give back ({source})"),
        bound=f"{human_bytes(bytes_per_request)} per request of memory that is never given back",
        fix="free the block when its last user is done, or keep it in a structure FLUSHALL clears",
        function=function, file=file, line=line, command=command, sketch=SKETCHES["memory-not-given-back"])


def _largest_holder(runs: list[AllocsRun]) -> tuple[str, float] | None:
    """The call site that retains most per new key, over the runs that added keys."""
    best: tuple[str, float] | None = None
    for run in runs:
        keys = run.analysis.keys
        if keys is None or keys.new <= 0:
            continue
        for site in _program_sites(run):
            per_key = site.retained_bytes_per_request * run.requests / keys.new
            if best is None or per_key > best[1]:
                best = (site.function, per_key)
    return best


# System calls a request needs, one client and no pipelining: one receive and one send. Calls a server
# makes while it waits for work (an event loop's epoll_wait) are not a request's cost either.
_RECEIVES = frozenset({"read", "readv", "recvfrom", "recvmsg", "recvmmsg"})
_SENDS = frozenset({"write", "writev", "sendto", "sendmsg", "sendmmsg"})
_WAITS = frozenset({"epoll_wait", "epoll_pwait", "epoll_pwait2", "poll", "ppoll", "select", "pselect6",
                    "io_uring_enter", "accept", "accept4", "nanosleep", "clock_nanosleep"})
_MAPPING = frozenset({"mmap", "munmap", "mremap", "brk", "madvise"})
_SYNCS = frozenset({"fsync", "fdatasync", "sync_file_range", "msync"})
# Extra calls per request worth a finding: a half is one every other request.
EXTRA_CALLS = 0.5
# What each kind of extra call is, and what to do instead.
_SYSCALL_KINDS = {
    "socket": ("{n:.1f} socket {names} per request where one reply needs one",
               "gather each reply (or each batch of replies) in the connection's buffered writer and send it with "
               "one call: write the parts into the buffer, flush once per batch of requests"),
    "file": ("{n:.1f} {names} per request to {target}",
             "batch the file's writes: append to a buffer and write it once per event-loop iteration or once a "
             "second (as Redis' appendfsync everysec does), not once per command"),
    "sync": ("{n:.1f} {names} per request", "flush to disk once a second rather than per command, or say that "
             "durability per command is the design"),
    "mapping": ("{n:.1f} {names} per request: the allocator maps and unmaps pages for the request",
                "keep the memory instead of returning it per request: an arena per request reset with "
                ".retain_capacity, or std.heap.smp_allocator, which keeps freed pages"),
    "other": ("{n:.1f} {names} per request", "find why each request makes these calls and move them off the "
              "request path"),
}


def _syscall_kind(row: SyscallRow) -> str | None:
    if row.name in _WAITS or (row.name in _RECEIVES and row.target == "socket"):
        return None
    if row.name in _SENDS:
        return "socket" if row.target == "socket" else "file"
    if row.name in _SYNCS:
        return "sync"
    if row.name in _MAPPING:
        return "mapping"
    return "other"


@dataclass
class _ExtraCalls:
    """Calls of one kind beyond what a request needs, over the commands that make them."""

    names: set[str] = field(default_factory=set)
    seen: list[str] = field(default_factory=list)  # per command
    sites: list[tuple[float, str, str | None, int | None]] = field(default_factory=list)  # per request, where
    commands: list[str] = field(default_factory=list)


def _syscall_rules(evidence: Evidence) -> list[Recommendation]:
    """System calls beyond one receive and one send per request, by kind (several sends per reply, a file
    write per command, page mapping per request), measured with one client and no pipelining; one finding
    per kind and target over the commands. Bounded by the kernel's share of the CPU profile in those calls,
    where the profile measured it."""
    kernel = {part.cause: part.share for part in evidence.flame.summary.kernel_parts} if evidence.flame else {}
    extra: dict[tuple[str, str], _ExtraCalls] = defaultdict(_ExtraCalls)
    for run in evidence.syscalls:
        if run.load.clients != 1 or run.load.pipeline != 1:
            continue  # the expected calls per request are known for one request at a time only
        by_kind: dict[tuple[str, str], list[SyscallRow]] = defaultdict(list)
        for row in run.rows:
            if (kind := _syscall_kind(row)) is not None:
                by_kind[(kind, row.target if kind == "file" else "")].append(row)
        for (kind, target), rows in by_kind.items():
            calls = sum(row.per_request for row in rows)
            if calls - (1 if kind == "socket" else 0) < EXTRA_CALLS:
                continue
            found = extra[(kind, target)]
            names = sorted({row.name for row in rows})
            micros = sum(row.microseconds_per_request or 0 for row in rows)
            text = _SYSCALL_KINDS[kind][0].format(n=calls, names="/".join(f"{name}(2)" for name in names),
                                                  target=target)
            found.names.update(names)
            found.commands.append(run.command)
            found.seen.append(f"{run.command}: {text} ({micros:.1f} µs per request inside them)")
            found.sites += [(site.per_request, site.function, site.file, site.line) for row in rows
                            for site in row.sites if site.file]
    found_rules = []
    for (kind, _target), found in extra.items():
        share = sum(kernel.get(name, 0.0) for name in found.names)
        percent = round(share * 100, 2) if evidence.flame is not None else None
        _, function, file, line = max(found.sites, default=(0.0, None, None, None))
        impact, reason = _impact(percent, False, f"{share:.1%} of the CPU samples are in the kernel for "
                                 f"{'/'.join(sorted(found.names))}" if percent is not None else
                                 "each is a round trip into the kernel")
        found_rules.append(Recommendation(
            rule="syscalls-per-request",
            title=f"{RULES['syscalls-per-request']}: {_SYSCALL_TITLES[kind]} in {', '.join(found.commands)}",
            critical=False, impact=impact, impact_reason=reason, difficulty="Medium",
            evidence="zprof syscalls, " + "; ".join(found.seen)
                     + (f"; most from {function} ({display_path(file)}:{line})" if function and file else ""),
            bound=(f"at most {share:.1%} of the server's CPU under the mixed load (the kernel's samples in "
                   f"{'/'.join(sorted(found.names))})" if percent is not None else
                   "not bounded: the CPU profile was not measured"),
            fix=_SYSCALL_KINDS[kind][1], function=function, file=file, line=line,
            command=found.commands[0] if len(found.commands) == 1 else None, bound_percent=percent))
    return found_rules


_SYSCALL_TITLES = {"socket": "several sends per reply", "file": "a file write per command",
                   "sync": "a sync per command", "mapping": "pages mapped per request", "other": "extra calls"}


# A page allocator serves a block smaller than this a whole page: a small block per request from it is waste.
PAGE_BYTES = 4096
_ALLOCATOR_TITLES = {"debug/GPA": "the Debug allocator in a release build",
                     "page": "small blocks from the page allocator"}
_ALLOCATOR_INSTEAD = ("allocate through std.heap.smp_allocator in release builds (or std.heap.c_allocator when "
                      "libc is linked), keeping the DebugAllocator for Debug builds and tests, where its leak and "
                      "double-free checks pay; take what a request allocates and frees from an arena per request")


def _allocator_rules(evidence: Evidence) -> list[Recommendation]:
    """The program's allocator as a choice with a measured cost: the Debug allocator (GeneralPurposeAllocator)
    in a release build, or the page allocator serving small blocks per request (a page each). Bounded by the
    samples with the allocator on the stack; the replacement's own cost is not measured."""
    target = evidence.target
    if target is None or target.optimize in (None, "Debug"):
        return []  # a Debug build is the release-build finding; every allocator is slow there
    used: dict[str, list[tuple[str, float, float]]] = defaultdict(list)  # layer: (command, allocs, bytes)
    for run in evidence.allocs:
        for usage in run.analysis.by_layer:
            if usage.allocs_per_request > 0:
                used[usage.layer].append((run.command, usage.allocs_per_request, usage.bytes_per_request))
    found = []
    if used.get("debug/GPA"):
        found.append(_allocator_finding(
            evidence, "debug/GPA", used["debug/GPA"],
            f"the program allocates through std.heap.DebugAllocator (GeneralPurposeAllocator) in a {target.optimize} "
            "build: a slab per size class, and a lock, a bucket lookup and page mapping on its slow path",
            _ALLOCATOR_INSTEAD))
    small = [(command, allocs, size) for command, allocs, size in used.get("page", [])
             if allocs >= 0.5 and size / allocs < PAGE_BYTES]
    if small:
        found.append(_allocator_finding(
            evidence, "page", small,
            "the program allocates small blocks straight from std.heap.page_allocator: a system call and a whole "
            "page for each", "allocate small blocks from a general-purpose allocator (std.heap.smp_allocator) or "
            "the request's arena; keep the page allocator as the backing of those"))
    return found


def _allocator_finding(evidence: Evidence, layer: str, uses: list[tuple[str, float, float]], what: str,
                       fix: str) -> Recommendation:
    share = evidence.allocator_shares.get(layer)
    per_command = ", ".join(f"{command} {allocs:.2f} allocations per request" for command, allocs, _ in uses)
    seen = [what, f"the shim counted {per_command}"]
    if share is not None:
        seen.append(f"{share:.1%} of the CPU samples under the mixed load have it on the stack (its page mapping "
                    "included)")
    rss = evidence.memory.analysis.rss if evidence.memory is not None else None
    live = evidence.memory.analysis.growth.load_end_bytes if evidence.memory is not None else None
    if rss is not None and rss.load_end_bytes and live:
        beyond = max(0, rss.load_end_bytes - live)
        seen.append(f"at the end of the memory run's load the program held {human_bytes(live)} in live blocks and "
                    f"the process {human_bytes(rss.load_end_bytes)} of private memory: {human_bytes(beyond)} "
                    f"({beyond / rss.load_end_bytes:.0%}) is not the program's blocks, the allocator's slabs and "
                    "free pages among it")
    return Recommendation(
        rule="program-allocator", title=f"{RULES['program-allocator']}: {_ALLOCATOR_TITLES[layer]}", critical=False,
        impact=_impact(share * 100 if share is not None else None, False, "")[0],
        impact_reason=(f"{share:.1%} of the CPU is spent with it on the stack" if share is not None
                       else "no CPU profile to weigh it"),
        difficulty="Low", evidence="; ".join(seen),
        bound=(f"at most {share:.1%} of the server's CPU (the samples with it on the stack; what replaces it costs "
               "some of that, unmeasured)" if share is not None else "not bounded: the CPU profile was not measured"),
        fix=fix, function=layer, bound_percent=round(share * 100, 2) if share is not None else None,
        sketch=SKETCHES["program-allocator"] if layer == "debug/GPA" else None)
