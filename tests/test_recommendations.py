"""Finding rules on real saved runs, changed in the one respect a rule reads, and on synthetic CPU profiles named
as minikv's frames are: each rule fires where it must and stays silent where it must not. (tests/test_validate.py
runs them end to end on minikv's planted defects.)"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from tests.shim_fakes import GPA, FakeSymbolizer, layer, site, snapshot
from zprof import artifact
from zprof.analysis.allocations import Window, analyse
from zprof.analysis.recommendations import Evidence, ProfileCosts, handler_command, profile_costs, recommend
from zprof.analysis.stacks import Frame, ProfileBuilder, StackProfile
from zprof.model.allocs import RETAINED, TEMPORARY
from zprof.model.bench import ACCEPTABLE, INDICATIVE, UNACCEPTABLE, BenchRun
from zprof.model.common import Note
from zprof.model.flame import FlameRun
from zprof.report.allocs import flag_sentence

RUNS = Path(__file__).parent / "data" / "runs"


@pytest.fixture(scope="module")
def bench_run() -> BenchRun:
    """minikv with its hot loop against Redis: ZADD conclusively unacceptable, 50 clients, pipeline 16."""
    run = artifact.read(RUNS / "bench.json")
    assert isinstance(run, BenchRun)
    return run


def with_zadd(run: BenchRun, *, cpu: float | None = None, saturated: bool | None = None, clients: int | None = None,
              notes: list[Note] | None = None) -> BenchRun:
    commands = []
    for command in run.commands:
        if command.command == "ZADD":
            target = replace(command.target, cpu_percent=cpu if cpu is not None else command.target.cpu_percent)
            command = replace(command, target=target, machine_saturated=(
                command.machine_saturated if saturated is None else saturated))
        commands.append(command)
    settings = replace(run.settings, clients=clients or run.settings.clients)
    return replace(run, commands=commands, settings=settings, limitations=[*run.limitations, *(notes or [])])


def synchronous_io(bench: BenchRun):
    evidence = Evidence(allocs=[], flame=None, costs=ProfileCosts({}, 1.0), memory=None, bench=bench)
    return [r for r in recommend(evidence) if r.rule == "synchronous-io"]


ONE_CONNECTION = Note("probe.one-connection", {"clients": 4, "timeout": 10.0, "first_answered": True})


def test_a_slow_command_on_a_busy_core_is_no_io_finding(bench_run):
    assert synchronous_io(bench_run) == []  # ZADD is unacceptable, but minikv spent a whole core on it


def test_a_slow_command_with_its_cpu_idle_is_critical_waiting(bench_run):
    (found,) = synchronous_io(with_zadd(bench_run, cpu=20.0, saturated=False))
    assert found.critical and "ZADD ran at 20% of a core with the machine at" in found.evidence


def test_idle_cpu_on_a_saturated_machine_says_nothing(bench_run):
    assert synchronous_io(with_zadd(bench_run, cpu=20.0, saturated=True)) == []


def test_one_connection_at_a_time_is_critical_only_where_several_clients_failed(bench_run):
    (several,) = synchronous_io(with_zadd(bench_run, notes=[ONE_CONNECTION]))
    assert several.critical and "one connection at a time" in several.evidence
    (one,) = synchronous_io(with_zadd(bench_run, clients=1, notes=[ONE_CONNECTION]))
    assert not one.critical and "1 client" in one.evidence and one.impact == "Medium"


def memory_per_key(bench: BenchRun, percent: float, status: str) -> list:
    memory = replace(bench.memory, percent_of_redis=percent, status=status)
    evidence = Evidence(allocs=[], flame=None, costs=ProfileCosts({}, 1.0), memory=None,
                        bench=replace(bench, memory=memory))
    return [r for r in recommend(evidence) if r.rule == "memory-per-key"]


def test_memory_per_key_far_above_redis_is_critical_as_it_blocks(bench_run):
    """Zoltraak's 17,187 B per key against Redis' 117.8: the figure that blocks the verdict, so critical."""
    (found,) = memory_per_key(bench_run, 14594.0, UNACCEPTABLE)
    assert found.critical and found.impact_reason == "14594% of Redis' RSS per key"
    assert found.bound.startswith("at most 99.3% of the target's RSS per key")


@pytest.mark.parametrize("status", [INDICATIVE, ACCEPTABLE])
def test_memory_per_key_from_few_keys_or_within_the_standard_is_no_finding(bench_run, status):
    assert memory_per_key(bench_run, 14594.0 if status == INDICATIVE else 140.0, status) == []


# --- Costs read from a CPU profile (synthetic profiles, as minikv's frames are named) ----------------------------

MINIKV_SRC = Path(__file__).parents[1] / "examples" / "minikv" / "src"
COMMANDS = ("GET", "SET", "HSET", "HGET", "ZADD")


def project(name: str, line: int = 1, inlined: bool = False) -> Frame:
    return Frame(name, f"/work/minikv/src/{name.split('.')[0]}.zig", line, "project", inlined)


def std(name: str, file: str = "std/mem.zig") -> Frame:
    return Frame(name, file, 1, "std", inlined=True)


SERVE = [std("Thread.callFn__anon_1", "std/Thread.zig"), project("server.Connection.serve"),
         project("server.Connection.executeBuffered"), project("commands.execute")]


def profile_of(*stacks: tuple[list[Frame], int]) -> StackProfile:
    builder = ProfileBuilder()
    for stack, weight in stacks:
        builder.add("minikv 1", stack, weight)
    return builder.build()


def scanning(profile: StackProfile) -> list[str]:
    costs = profile_costs(profile, COMMANDS)
    return sorted(cost.function for cost in costs.functions.values() if cost.scans(costs.user_share))


@pytest.fixture(scope="module")
def flame_run() -> FlameRun:
    run = artifact.read(RUNS / "flame.json")
    assert isinstance(run, FlameRun)
    return run


def test_a_loop_comparing_names_is_a_scan(flame_run):
    """minikv's linear-lookup defect: std.ascii.eqlIgnoreCase against every name of the command table."""
    profile = profile_of(([*SERVE, project("defects.findCommandLinear"), std("ascii.eqlIgnoreCase", "std/ascii.zig")],
                          30),
                         ([*SERVE, project("commands.get"), std("hash_map.HashMapUnmanaged.get", "std/hash_map.zig")],
                          70))
    assert scanning(profile) == ["defects.findCommandLinear"]
    evidence = Evidence(allocs=[], flame=flame_run, costs=profile_costs(profile, COMMANDS), memory=None, bench=None)
    (found,) = [r for r in recommend(evidence) if r.rule == "linear-lookup"]
    assert found.function == "defects.findCommandLinear" and "StaticStringMap" in found.fix


@pytest.mark.parametrize("search", [
    # std.mem.indexOfPos(u8, buf, start, "\r\n"), as minikv's resp.readLine finds a line: its linear search
    # calls mem.eql at every offset, so the leaf is a compare.
    [std("mem.indexOfPos__anon_7"), std("mem.indexOfPosLinear__anon_8"), std("mem.eqlBytes")],
    [std("mem.indexOf__anon_9")],
    [std("mem.indexOfScalarPos__anon_10")],
    [std("mem.SplitIterator(u8,.scalar).next"), std("mem.indexOfScalarPos__anon_11")],
    [Frame("__memchr_avx2", kind="libc")],
])
def test_a_delimiter_search_is_no_scan(search):
    profile = profile_of(([*SERVE, project("resp.parseMultibulk"), project("resp.readLine", inlined=True), *search],
                          30),
                         ([*SERVE, project("commands.get")], 70))
    assert scanning(profile) == []


def test_a_hash_table_lookup_that_compares_keys_is_no_scan():
    """minikv's Keyspace.getString: a StringHashMap lookup whose hashing is inlined into getPtr, so that the
    key compares of its probe are the only leaf a profile names (the mixed load's 47% compares, no hashing)."""
    get_ptr = std("hash_map.HashMapUnmanaged([]const u8,keyspace.Value,hash_map.StringContext,80).getPtr",
                  "std/hash_map.zig")
    profile = profile_of(([*SERVE, project("commands.get"), project("keyspace.Keyspace.getString"), get_ptr,
                           std("hash_map.StringContext.eql", "std/hash_map.zig"), std("mem.eql__anon_3")], 30),
                         ([*SERVE, project("commands.get"), project("keyspace.Keyspace.getString"), get_ptr], 30),
                         ([*SERVE, project("commands.set")], 40))
    assert scanning(profile) == []


def test_a_sample_counts_once_towards_a_functions_total():
    """keyspace.Hash.get inlined into HGET's handler and called from HSET's: two frames of one name, whose
    samples add up (the larger of the two frames' totals was below the function's own time)."""
    inlined, called = project("keyspace.Hash.get", 288, inlined=True), project("keyspace.Hash.get", 288)
    profile = profile_of(([*SERVE, project("commands.hget"), inlined], 30),
                         ([*SERVE, project("commands.hset"), called], 30),
                         ([*SERVE, project("commands.hset"), called, inlined], 10),  # both on one stack: once
                         ([*SERVE, project("commands.get")], 30))
    cost = profile_costs(profile, COMMANDS).functions["keyspace.Hash.get"]
    assert cost.self_share == pytest.approx(0.7) and cost.total_share == pytest.approx(0.7)
    assert profile_costs(profile, COMMANDS).functions["commands.hset"].total_share == pytest.approx(0.4)


def test_commands_are_their_handlers_in_the_project_code():
    zadd, hget = project("commands.zadd"), project("commands.hget")
    profile = profile_of(
        # ZADD's hot loop and its std hash map lookup: no GET in either.
        ([*SERVE, zadd, project("defects.spinScore")], 50),
        ([*SERVE, zadd, std("hash_map.HashMapUnmanaged([]const u8,f64).get", "std/hash_map.zig")], 10),
        # HGET calls keyspace.Hash.get, a project function named like GET's handler: the outer handler is HGET.
        ([*SERVE, hget, project("keyspace.Hash.get")], 10),
        # Zoltraak's naming, and a handler in a dependency (a package of build.zig.zon), which is not the project's.
        ([*SERVE, project("commands.hashes.cmdHset"), project("storage.Store.hset")], 20),
        ([*SERVE, Frame("xev.Loop.get", "/root/.cache/zig/p/xev-0.1.0-" + "a" * 44 + "/src/loop.zig", 1,
                        "dependency"), project("server.onRead")], 10))
    functions = profile_costs(profile, COMMANDS).functions
    assert functions["defects.spinScore"].commands == ("ZADD",)
    assert functions["keyspace.Hash.get"].commands == ("HGET",)
    assert functions["storage.Store.hset"].commands == ("HSET",)
    assert functions["server.onRead"].commands == ()
    assert functions["commands.execute"].commands == ("HGET", "HSET", "ZADD")


@pytest.mark.parametrize("function, command", [
    ("commands.set", "SET"), ("commands.zadd__anon_4211", "ZADD"), ("commands.hashes.cmdHset", "HSET"),
    ("handleZadd", "ZADD"), ("execGet", "GET"), ("doSet", "SET"), ("zaddCommand", "ZADD"), ("setCmd", "SET"),
    ("getHandler", "GET"), ("handle_zadd", "ZADD"), ("set.handle", "SET"),
    ("commands.execute", None), ("server.Connection.executeBuffered", None), ("keyspace.Keyspace.getString", None),
    ("commands.lookup", None), ("defects.spinScore", None)])
def test_handlers_are_recognised_by_their_names(function, command):
    assert handler_command(function, COMMANDS) == command


def test_every_minikv_handler_names_its_command():
    """minikv's command table (examples/minikv/src/commands.zig): `.{ .name = "ZADD", ..., .handler = zadd }`."""
    table = re.findall(r'\.name = "(\w+)", \.arity = -?\d+, \.handler = ([\w.]+)',
                       (MINIKV_SRC / "commands.zig").read_text())
    assert len(table) > 20
    names = [name for name, _ in table]
    for name, handler in table:
        function = handler if "." in handler else f"commands.{handler}"  # DEBUG's is debug.command
        assert handler_command(function, names) == name, function


def allocating_profile(allocating: int) -> StackProfile:
    """ZADD's handler formats its reply with defects.formatReplyAlloc: 35% of the samples, `allocating` of them
    in the allocator (the DebugAllocator, mmap under it), the rest writing the reply."""
    allocator = [std("mem.Allocator.alloc__anon_5", "std/mem/Allocator.zig"),
                 Frame("heap.debug_allocator.DebugAllocator(.{}).alloc", "std/heap/debug_allocator.zig", 1, "std"),
                 Frame("__x64_sys_mmap", kind="kernel")]
    handler = [*SERVE, project("commands.zadd"), project("defects.formatReplyAlloc")]
    return profile_of(([*handler, *allocator], allocating),
                      ([*handler, std("Io.Writer.print__anon_6", "std/Io/Writer.zig")], 35 - allocating),
                      ([*SERVE, project("commands.zadd"), *allocator[1:]], 5),  # the handler's own, not the site's
                      ([*SERVE, project("commands.get")], 60))


def test_an_allocation_is_bounded_by_the_cpu_spent_allocating(bench_run, flame_run):
    """A 256 B block per ZADD: ZADD is unacceptable, and formatReplyAlloc has 35% of the CPU, but allocating and
    freeing it takes 1%: not what makes ZADD slow. At 10% it is."""
    allocs = replace(artifact.read(RUNS / "allocs.json"), command="ZADD")

    def allocation(allocating: int):
        costs = profile_costs(allocating_profile(allocating), COMMANDS)
        assert costs.functions["defects.formatReplyAlloc"].total_share == pytest.approx(0.35)
        assert costs.functions["defects.formatReplyAlloc"].alloc_share == pytest.approx(allocating / 100)
        assert costs.functions["commands.zadd"].alloc_share == pytest.approx((allocating + 5) / 100)
        evidence = Evidence(allocs=[allocs], flame=flame_run, costs=costs, memory=None, bench=bench_run)
        return next(r for r in recommend(evidence) if r.function == "defects.formatReplyAlloc"
                    and r.rule == "alloc-per-request")

    small = allocation(1)
    assert small.bound_percent == 1.0 and not small.critical
    assert small.bound.startswith("at most 1.0% of the server's CPU") and "allocates or frees" in small.bound
    large = allocation(10)
    assert large.bound_percent == 10.0 and large.critical


# --- The small-allocations flag's advice follows the blocks' lifetime ------------------------------------------

@pytest.mark.parametrize("stored, lifetime, advice", [
    (0, TEMPORARY, "a stack buffer or the request's arena"),
    # A SET over a full keyspace: each new value frees the one it replaces, so the run retains nothing, but the
    # server still holds the 1,000 values the warm-up stored: the arena of a request cannot hold them.
    (1000, RETAINED, "fewer, tighter blocks per entry"),
])
def test_small_blocks_are_advised_by_their_lifetime(stored, lifetime, advice):
    before = snapshot([layer(GPA)], {1: site(0, 0x501, stored, 16)}, time=1.0)
    after = snapshot([layer(GPA)], {1: site(0, 0x501, stored + 200, 16, frees=200)}, time=2.0)
    result = analyse(Window(before, after), requests=100, symbolizer=FakeSymbolizer())  # type: ignore[arg-type]
    (flag,) = result.flags
    assert (flag.kind, flag.lifetime, result.sites[0].held_blocks) == ("small", lifetime, stored)
    assert result.per_request.bytes_retained == 0
    assert advice in flag_sentence(flag)
    assert ("arena" in flag_sentence(flag)) == (lifetime == TEMPORARY)
