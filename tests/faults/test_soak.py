"""Load that stays correct: `zprof allocs` and `zprof bench` back to back, 8 times, in one process (so that
zprof's own file descriptors, children and threads can be counted). Every run gives a result, nothing
leaks, and the allocation counts per request are the same in every run.

Bounded: 2,000 requests per run (allocs after a 500-request warm-up; bench on one command, one trial,
runs of at least 0.1 s), about 8 s a pair on a 2-core machine.
"""

from __future__ import annotations

import json
import os
import threading

import psutil
import pytest

from tests.conftest import MINIKV
from tests.faults.conftest import tree_digest
from zprof import cli

ROUNDS = 8
ALLOCS = ("allocs", "SET", "--project", str(MINIKV), "--requests", "2000", "--warmup", "500")
BENCH = ("bench", "--project", str(MINIKV), "--commands", "SET", "--trials", "1", "--requests", "2000",
         "--warmup", "200", "--keys", "0", "--min-trial-seconds", "0.1")


def printed(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    return captured.out + captured.err


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def counts(run: dict) -> dict:
    """The exact allocation figures of an allocs run: the same in every run of a deterministic command."""
    analysis = run["analysis"]
    return {"per_request": analysis["per_request"],
            "layers": {layer["layer"]: (layer["allocs_per_request"], layer["frees_per_request"],
                                        layer["bytes_per_request"]) for layer in analysis["by_layer"]},
            "sites": sorted((site["function"], site["line"], site["allocs_per_request"])
                            for site in analysis["sites"])}


@pytest.mark.slow
def test_allocs_and_bench_back_to_back(zprof_env, monkeypatch, tmp_path, capsys):
    for name in ("ZPROF_CACHE", "ZIG", "COLUMNS"):
        monkeypatch.setenv(name, zprof_env[name])
    monkeypatch.delenv("ZPROF_SHM", raising=False)
    digest = tree_digest(MINIKV)
    me = psutil.Process()
    figures, baseline = [], None
    for round_ in range(ROUNDS):
        allocs_out, bench_out = tmp_path / f"allocs-{round_}", tmp_path / f"bench-{round_}"
        assert cli.main([*ALLOCS, "--output", str(allocs_out)]) == 0, printed(capsys)
        capsys.readouterr()
        # What the report said (the failed command and its first error) is what tells a failure's cause.
        assert cli.main([*BENCH, "--output", str(bench_out)]) == 0, printed(capsys)
        capsys.readouterr()
        allocs = json.loads((allocs_out / "run.json").read_text())
        bench = json.loads((bench_out / "run.json").read_text())
        assert allocs["complete"] and allocs["requests"] == 2000
        assert bench["complete"] and bench["commands"][0]["throughput_status"] != "failed"
        figures.append(counts(allocs))
        assert me.children(recursive=True) == [], f"round {round_}: zprof left children"
        state = (open_descriptors(), threading.active_count())
        # The first round opens what zprof keeps open for good (imports, caches): the baseline.
        baseline = baseline or state
        assert state == baseline, f"round {round_}: descriptors and threads {state}, first round {baseline}"
    assert all(figure == figures[0] for figure in figures), "allocation counts changed between runs"
    assert tree_digest(MINIKV) == digest
