"""Finding rules on real saved runs, changed in the one respect a rule reads: each rule fires where it must
and stays silent where it must not. (tests/test_validate.py runs them end to end on minikv's planted
defects.)"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from zprof import artifact
from zprof.analysis.recommendations import Evidence, ProfileCosts, recommend
from zprof.model.bench import BenchRun
from zprof.model.common import Note

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
