"""The shim never harms the target: its stack walk stops at a frame C code left without a frame pointer,
and a child the server forks or execs (which inherits ZPROF_SHM) writes nothing into the server's counters.
minikv's DEBUG subcommands do each (examples/minikv/src/debug.zig)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import MINIKV
from tests.faults.conftest import assert_clean

ONE_CLIENT = ("--requests", "300", "--warmup", "50", "--clients", "1")


def allocs(faults, tmp_path: Path, request: str, *options: str) -> dict:
    """`zprof allocs` of one DEBUG request: the saved run, once zprof's guarantees were checked."""
    output = tmp_path / request.replace(" ", "-").replace(":", "")
    zprof, done = faults.run("allocs", "DEBUG", "--args", request, "--project", str(MINIKV), *options,
                             "--output", str(output))
    assert_clean(zprof, done, 0)
    return json.loads((output / "run.json").read_text())


def functions(run: dict) -> set[str]:
    return {site["function"] for site in run["analysis"]["sites"]}


def test_a_stack_walk_through_c_without_frame_pointers_ends_inside_the_stack(faults, minikv_digest, tmp_path):
    """Each request allocates from a callback that C code built with -fomit-frame-pointer calls with a frame
    pointer leading off the stack, to a readable frame record whose caller frame may not be read: a walk
    bounded by a fixed window instead of the thread's stack faults there, and the server dies."""
    run = allocs(faults, tmp_path, "DEBUG FOREIGN-FRAME key:__rand_int__ value", "--requests", "5000",
                 "--warmup", "1000")
    assert run["complete"] and run["requests"] == 5000
    assert "keyspace.Keyspace.putString" in functions(run)
    # One key's copy per request, as a plain SET: the walk's end changed no count.
    put = [site for site in run["analysis"]["sites"] if site["function"] == "keyspace.Keyspace.putString"]
    assert sum(site["allocs_per_request"] for site in put) == 1.0


def test_a_forked_child_is_not_counted(faults, minikv_digest, tmp_path):
    idle = allocs(faults, tmp_path, "DEBUG FORK-ALLOC 0", *ONE_CLIENT)
    forked = allocs(faults, tmp_path, "DEBUG FORK-ALLOC 100", *ONE_CLIENT)
    # The child's 100 allocations per request are its own; the server's are the same as with none.
    assert forked["analysis"]["per_request"]["allocs"] == idle["analysis"]["per_request"]["allocs"] < 100
    assert "debug.allocateInChild" not in functions(forked)


def test_an_execd_child_writes_nothing_into_the_servers_counters(faults, minikv_digest, tmp_path):
    """The child runs `minikv --help`, built with the shim: it allocates its command line, as any program
    built with the shim allocates at start-up, and finds the counter file the server's."""
    idle = allocs(faults, tmp_path, "DEBUG FORK-ALLOC 0", *ONE_CLIENT)
    execd = allocs(faults, tmp_path, "DEBUG EXEC-SELF", *ONE_CLIENT)
    assert execd["analysis"]["per_request"]["allocs"] == idle["analysis"]["per_request"]["allocs"]
    assert "main.main" not in functions(execd)
    assert [flag for flag in execd["analysis"]["flags"] if flag["kind"] == "growth"] == []
