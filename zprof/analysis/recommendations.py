"""Optimisation recommendations drawn from a validation's measurements.

Each rule looks for one problem the validation procedure names (../REPORT.md's list: allocations
per request, small and large allocations, copying, linear lookups, synchronous I/O, memory FLUSHALL
does not give back or that costs more per key than Redis, hot functions) in what was measured, and
says what it saw, the fix, and the most the fix can gain. That bound is always a measured share (of
CPU samples, of a command's allocations); where nothing bounds it, the recommendation says so
instead of inventing a number.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from zprof.analysis.stacks import StackProfile
from zprof.model.allocs import AllocsRun, CallSite
from zprof.model.bench import UNACCEPTABLE, BenchRun, CommandComparison
from zprof.model.flame import FlameRun
from zprof.model.memory import MemoryRun
from zprof.model.validate import Recommendation
from zprof.units import human_bytes

# Layers that already are request-scoped memory: an allocation from them is not a heap allocation.
REQUEST_SCOPED_LAYERS = ("arena", "fixed-buffer", "stack-fallback")
# Allocations per request from one site that make it "an allocation per request".
PER_REQUEST = 0.5
SMALL_BYTES = 64
LARGE_BYTES = 1 << 20
# A site keeps less than this share of what it allocates: temporary, freed within the request.
TEMPORARY_SHARE = 0.01
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
# CPU of one core under which a server that is slower than Redis is waiting, not computing.
IDLE_CPU_PERCENT = 50.0

RULES = {
    "alloc-per-request": "An allocation per request, freed within the request",
    "small-allocs": "Several small allocations per request",
    "large-alloc": "A large allocation per request",
    "copying": "Copying where a slice would do",
    "linear-lookup": "A lookup that scans",
    "synchronous-io": "Requests served one at a time",
    "memory-not-given-back": "Memory FLUSHALL does not give back",
    "memory-per-key": "Memory per key far above Redis'",
    "hot-function": "A function over 10% of the CPU",
}

# Leaf functions of a scan (string compares) and of a copy, as Zig 0.15's std and libc name them.
_COMPARE_PREFIXES = ("mem.eql", "mem.indexOf", "mem.startsWith", "mem.endsWith", "mem.order", "mem.lessThan",
                     "ascii.eqlIgnoreCase", "ascii.indexOfIgnoreCase", "ascii.startsWithIgnoreCase",
                     "ascii.orderIgnoreCase", "ascii.toLower", "ascii.toUpper", "ascii.isUpper", "ascii.isLower",
                     "memcmp", "bcmp", "__memcmp", "strcmp", "compiler_rt.memcmp")
_HASH_MARKER = "hash"
_COPY_MARKERS = ("memcpy", "memmove", "mem.copyForwards", "mem.copyBackwards")

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
}


@dataclass(frozen=True)
class FunctionCost:
    """A project function in a CPU profile, as shares of all samples: its own time, its time with what it
    calls, and its own work (samples where it is the innermost project frame, std and libc leaves included)
    split into string compares, hashing and copies; and the commands whose handlers its samples pass through."""

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
    """The costs of every project function in `profile`."""
    total = profile.total_weight or 1
    handlers = {name.lower(): name for name in command_names}
    weights: dict[str, dict[int, int]] = {kind: defaultdict(int) for kind in
                                          ("self", "total", "own", "compare", "hash", "copy")}
    commands: dict[int, set[str]] = defaultdict(set)
    frames = profile.frames
    user = 0
    for sample in profile.samples:
        if not sample.stack:
            continue
        served = {handlers[name] for index in sample.stack
                  if (name := frames[index].name.rsplit(".", 1)[-1].lower()) in handlers}
        for index in set(sample.stack):
            weights["total"][index] += sample.weight
            commands[index] |= served
        leaf = frames[sample.stack[-1]]
        weights["self"][sample.stack[-1]] += sample.weight
        user += sample.weight if leaf.kind != "kernel" else 0
        innermost = next((index for index in reversed(sample.stack) if frames[index].kind == "project"), None)
        if innermost is None:
            continue
        weights["own"][innermost] += sample.weight
        if leaf.name.startswith(_COMPARE_PREFIXES):
            weights["compare"][innermost] += sample.weight
        elif _HASH_MARKER in leaf.name:
            weights["hash"][innermost] += sample.weight
        elif any(marker in leaf.name for marker in _COPY_MARKERS):
            weights["copy"][innermost] += sample.weight
    # A function inlined at several lines has several frames: its costs are added up by name.
    by_name: dict[str, dict[str, float]] = {}
    places: dict[str, tuple[str | None, int | None]] = {}
    for index, frame in enumerate(frames):
        if frame.kind != "project" or index not in weights["total"]:
            continue
        shares = by_name.setdefault(frame.name, defaultdict(float))
        places.setdefault(frame.name, (frame.file, frame.line))
        for kind, weight in weights.items():
            if kind == "total":
                shares[kind] = max(shares[kind], weight[index] / total)
            else:
                shares[kind] += weight[index] / total
    names_commands: dict[str, set[str]] = defaultdict(set)
    for index, frame in enumerate(frames):
        if frame.kind == "project":
            names_commands[frame.name] |= commands.get(index, set())
    return ProfileCosts(
        {name: FunctionCost(name, *places[name], shares["self"], shares["total"], shares["own"], shares["compare"],
                            shares["hash"], shares["copy"], tuple(sorted(names_commands[name])))
         for name, shares in by_name.items()},
        user / total)


@dataclass(frozen=True)
class Evidence:
    """What the rules read: the validation's runs, and the profile's costs by function."""

    allocs: list[AllocsRun]
    flame: FlameRun | None
    costs: ProfileCosts
    memory: MemoryRun | None
    bench: BenchRun | None

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
        if self.flame is None:
            return "not bounded: the CPU profile was not measured", None
        cost = self.costs.functions.get(function)
        samples = self.flame.summary.total
        if cost is None or cost.total_share == 0:
            return (f"under the CPU profile's resolution: {function} was in none of its {samples:,} samples "
                    "under the mixed load"), 0.0
        return (f"at most {cost.total_share:.1%} of the server's CPU under the mixed load (its share of "
                f"{samples:,} samples)"), round(cost.total_share * 100, 2)


def recommend(evidence: Evidence) -> list[Recommendation]:
    """Every rule over the evidence, most important first: critical ones, then by the size of their bound."""
    found = [*_allocation_rules(evidence), *_profile_rules(evidence), *_io_rule(evidence), *_memory_rules(evidence)]
    unique: dict[tuple[str, str | None], Recommendation] = {}
    for recommendation in found:  # the first of a rule and function stands (the memory run's leak check first)
        unique.setdefault((recommendation.rule, recommendation.function), recommendation)
    impact_order = {"High": 0, "Medium": 1, "Low": 2}
    return sorted(unique.values(), key=lambda r: (not r.critical, impact_order[r.impact], -(r.bound_percent or 0),
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
            temporary = site.bytes_per_request > 0 and site.retained_bytes_per_request <= (
                TEMPORARY_SHARE * site.bytes_per_request)
            if site.allocs_per_request >= PER_REQUEST and temporary:
                groups[site.function].append((run, site))
    found: list[Recommendation] = []
    for function, places in groups.items():
        # The command where the function allocates most says which rule fits.
        run, site = max(places, key=lambda place: (place[1].allocs_per_request, place[1].max_bytes))
        rule = _allocation_rule(site)
        commands = [place[0].command for place in places]
        bound, percent = evidence.cpu_bound(function)
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
    if bench is not None and bench.memory is not None and bench.memory.status == UNACCEPTABLE:
        holder = _largest_holder(evidence.allocs)
        per_key = bench.memory.target.bytes_per_key if bench.memory.target else None
        redis_per_key = bench.memory.redis.bytes_per_key if bench.memory.redis else None
        found.append(Recommendation(
            rule="memory-per-key", title=RULES["memory-per-key"], critical=False, impact="High",
            impact_reason=f"{bench.memory.percent_of_redis:.0f}% of Redis' RSS per key", difficulty="High",
            evidence=(f"{per_key} bytes per key against Redis' {redis_per_key} with {bench.memory.keys:,} keys"
                      + (f"; the most retained per new key is at {holder[0]} ({human_bytes(holder[1])} per key)"
                         if holder else "")),
            bound=(f"at most {100 - 10_000 / bench.memory.percent_of_redis:.1f}% of the target's RSS per key, "
                   "if it came down to Redis'"),
            fix="store keys and values in fewer, tighter blocks (one allocation per entry, no per-entry padding)",
            function=holder[0] if holder else None))
    return found


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
