"""The verdict table (zprof.analysis.judgement) over every combination of its inputs, on synthetic
comparisons: each figure's ratio, interval, load-bound, unstable and failed flags go through the bench's own
`judge` and `status_of`, so what the table reads is what a bench run would produce. And the rules that feed it
the target's error replies and a Debug build, each where it must fire and where it must not."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from zprof import artifact
from zprof.analysis import judgement
from zprof.analysis.judgement import BLOCKS, PASSES, UNDECIDED, figure_outcome, judge_validation
from zprof.analysis.recommendations import ErrorReplies, Evidence, ProfileCosts, recommend
from zprof.analysis.verdicts import judge, status_of
from zprof.model.baseline import MINOR, REGRESSION, Check
from zprof.model.bench import (
    ACCEPTABLE,
    EXCELLENT,
    REDIS,
    TARGET,
    UNACCEPTABLE,
    BenchRun,
    CommandComparison,
    CommandFailure,
    Thresholds,
)
from zprof.model.common import RatioEstimate
from zprof.model.validate import (
    APPROVED,
    APPROVED_MINOR,
    NEEDS_WORK,
    NOT_JUDGED,
    NOT_MEASURED,
    OVERALL_ACCEPTABLE,
    OVERALL_EXCELLENT,
    OVERALL_NEEDS_WORK,
    OVERALL_NOT_JUDGED,
    Recommendation,
)
from zprof.report.bench import _interval
from zprof.sessions.validate import vs_redis

RUNS = Path(__file__).parent / "data" / "runs"
THRESHOLDS = Thresholds()
BENCH: BenchRun = artifact.read(RUNS / "bench.json")  # type: ignore[assignment]


@st.composite
def figures(draw, higher_is_better: bool):  # type: ignore[no-untyped-def]
    """A ratio to Redis with an interval around it (or none), and the flags that make a status."""
    percent = draw(st.floats(1, 400))
    spread = draw(st.one_of(st.none(), st.floats(1.0, 3.0)))
    estimate = RatioEstimate(round(percent, 2), None if spread is None else (percent / spread, percent * spread),
                             1 if spread is None else draw(st.integers(2, 10)))
    excellent, acceptable = ((THRESHOLDS.throughput_excellent, THRESHOLDS.throughput_acceptable) if higher_is_better
                             else (THRESHOLDS.latency_excellent, THRESHOLDS.latency_acceptable))
    verdict = judge(estimate, excellent, acceptable, higher_is_better=higher_is_better)
    unstable, load_bound = draw(st.booleans()), draw(st.booleans())
    return estimate, verdict, status_of(verdict, False, unstable, load_bound)


@st.composite
def commands(draw):  # type: ignore[no-untyped-def]
    name = draw(st.sampled_from(["SET", "GET", "ZADD", "HSET", "LPUSH"]))
    throughput, throughput_verdict, throughput_status = draw(figures(True))
    p99, latency_verdict, latency_status = draw(figures(False))
    failure = draw(st.one_of(st.none(), st.builds(CommandFailure, st.sampled_from([TARGET, REDIS]), st.just(1),
                                                  st.none(), st.none(), st.just("-ERR out of memory"))))
    if failure is not None:
        throughput_status = latency_status = "failed"
    return CommandComparison(name, name, "redis-benchmark", None, None, throughput, p99, throughput_verdict,
                             latency_verdict, throughput_status, latency_status, False, False, False, False, failure)


def critical(title: str) -> Recommendation:
    return Recommendation("hot-function", title, True, "High", "", "Low", "", "", "")


@settings(max_examples=200, deadline=None)
@given(st.lists(commands(), min_size=1, max_size=4, unique_by=lambda c: c.command), st.booleans(),
       st.sampled_from([None, REGRESSION, MINOR]))
def test_the_table_over_every_combination(comparisons, with_critical, regression):
    bench = replace(BENCH, commands=comparisons, memory=None)
    regress = None
    if regression is not None:
        # judge_validation reads a regress run's checks, outcome and baseline's name only.
        check = Check("SET", "throughput", "req/s", 100.0, 90.0, -10.0, regression, "Welch p=0.001")
        regress = SimpleNamespace(baseline=SimpleNamespace(name="before"), checks=[check], cpu_checked=True,
                                  outcome="regression" if regression == REGRESSION else "pass")
    recommendations = [critical("A function over 10% of the CPU: x")] if with_critical else []
    throughput, p99 = vs_redis(bench, "throughput"), vs_redis(bench, "p99")
    judgement = judge_validation(bench, recommendations, regress, throughput, p99)

    # Overall and verdict never disagree.
    assert judgement.overall == {NEEDS_WORK: OVERALL_NEEDS_WORK, NOT_JUDGED: OVERALL_NOT_JUDGED}.get(
        judgement.verdict, judgement.overall)
    if judgement.verdict in (APPROVED, APPROVED_MINOR):
        assert judgement.overall in (OVERALL_EXCELLENT, OVERALL_ACCEPTABLE)
    # A conclusive unacceptable throughput or p99 blocks, load-bound or not; an inconclusive figure never does.
    for command in comparisons:
        for verdict, status, metric in ((command.throughput_verdict, command.throughput_status, "throughput"),
                                        (command.latency_verdict, command.latency_status, "p99")):
            named = f"{command.command} {metric} is"
            listed = any(blocker.startswith(named) for blocker in judgement.blockers)
            if command.failure is None and verdict.level == UNACCEPTABLE and verdict.conclusive:
                assert status == UNACCEPTABLE and listed, (command, judgement)
            if not verdict.conclusive:
                assert not listed, (command, judgement)
    # Critical findings and regressions block.
    if with_critical or regression == REGRESSION:
        assert judgement.verdict == NEEDS_WORK
    # APPROVED only when every figure passed: none load-bound, unstable, failed on Redis or undecided.
    if judgement.verdict in (APPROVED, APPROVED_MINOR):
        assert not judgement.blockers and not judgement.undecided
        for command in comparisons:
            assert command.failure is None or command.failure.server == TARGET
            if command.failure is None:
                assert {command.throughput_status, command.latency_status} <= {EXCELLENT, ACCEPTABLE}
        assert (judgement.verdict == APPROVED_MINOR) == (regression == MINOR)
    if judgement.verdict == NOT_JUDGED:
        assert judgement.undecided and not judgement.blockers


def test_a_conclusive_p99_far_over_redis_blocks():
    estimate = RatioEstimate(159.0, (150.0, 170.0), 3)
    verdict = judge(estimate, 110, 125, higher_is_better=False)
    outcome = figure_outcome("SET p99", estimate, verdict, status_of(verdict, False, False, False), "over 125%")
    assert outcome.outcome == BLOCKS and "159.0%" in outcome.why


def test_a_load_bound_ratio_blocks_only_when_its_interval_lies_under_the_threshold():
    for interval, expected in (((40.0, 55.0), BLOCKS), ((35.0, 75.0), UNDECIDED)):
        estimate = RatioEstimate(46.0, interval, 3)
        verdict = judge(estimate, 90, 70, higher_is_better=True)
        status = status_of(verdict, False, False, True)
        assert figure_outcome("SET throughput", estimate, verdict, status, "").outcome == expected


def test_an_inconclusive_ratio_never_blocks():
    estimate = RatioEstimate(68.9, (40.0, 120.0), 2)
    verdict = judge(estimate, 90, 70, higher_is_better=True)
    outcome = figure_outcome("SET throughput", estimate, verdict, status_of(verdict, False, False, False), "")
    assert outcome.outcome == UNDECIDED and "reaches an acceptable level" in outcome.why


def test_an_acceptable_ratio_passes_and_no_comparison_is_not_measured():
    estimate = RatioEstimate(80.0, (75.0, 85.0), 3)
    verdict = judge(estimate, 90, 70, higher_is_better=True)
    assert figure_outcome("GET throughput", estimate, verdict, ACCEPTABLE, "").outcome == PASSES
    assert judge_validation(None, [], None, None, None).verdict == NOT_MEASURED


def test_intervals_are_printed_only_when_they_say_something():
    assert _interval(RatioEstimate(50.0, (0.0, 32556754819.0), 2)) == "too wide (2 pairs)"
    assert _interval(RatioEstimate(50.0, (10.0, 60.0), 2)) == "too wide (2 pairs)"
    assert _interval(RatioEstimate(82.0, (71.6, 94.1), 5)) == "72-94%"


# The rules that feed the table ----------------------------------------------------------------------------------
def evidence(**changes) -> Evidence:  # type: ignore[no-untyped-def]
    return replace(Evidence(allocs=[], flame=None, costs=ProfileCosts({}, 1.0), memory=None, bench=None), **changes)


def test_writes_that_fail_under_load_are_a_critical_finding_and_a_blocker():
    failed = ErrorReplies("SET", "zprof memory", 15_873, 16_000, "-ERR out of memory")
    (found,) = [r for r in recommend(evidence(failed_measurements=[failed])) if r.rule == "error-replies"]
    assert found.critical and "99.2%" in found.evidence and "-ERR out of memory" in found.evidence
    judgement = judge_validation(replace(BENCH, memory=None), [found], None, None, None)
    assert judgement.verdict == NEEDS_WORK and "critical: Requests answered with errors: SET" in judgement.blockers


def test_a_rare_error_is_a_finding_but_not_critical_and_no_error_is_none():
    rare = ErrorReplies("GET", "zprof allocs GET", 5, 2_000, "-ERR planted sporadic error")
    (found,) = [r for r in recommend(evidence(failed_measurements=[rare])) if r.rule == "error-replies"]
    assert not found.critical and found.impact == "High"
    assert [r for r in recommend(evidence()) if r.rule == "error-replies"] == []


def test_a_target_that_fails_in_bench_is_critical_and_redis_failing_is_not_the_targets():
    target_failed = replace(BENCH.commands[0], failure=CommandFailure(TARGET, 1, None, None, "-ERR out of memory"),
                            throughput_status="failed", latency_status="failed")
    (found,) = [r for r in recommend(evidence(bench=replace(BENCH, commands=[target_failed])))
                if r.rule == "error-replies"]
    assert found.critical and "stopped at the first error in zprof bench" in found.evidence
    redis_failed = replace(target_failed, failure=CommandFailure(REDIS, 1, None, None, "-ERR unknown command"))
    assert [r for r in recommend(evidence(bench=replace(BENCH, commands=[redis_failed])))
            if r.rule == "error-replies"] == []
    judgement = judge_validation(replace(BENCH, commands=[redis_failed], memory=None), [], None, None, None)
    assert judgement.verdict == NOT_JUDGED and f"{redis_failed.command} failed on Redis" in judgement.undecided[0]
    blocked = judge_validation(replace(BENCH, commands=[target_failed], memory=None), [], None, None, None)
    assert blocked.verdict == NEEDS_WORK and blocked.blockers == [
        f"{target_failed.command} failed on the target: -ERR out of memory"]


def test_a_debug_build_is_the_first_recommendation_and_a_release_build_has_none():
    debug = replace(BENCH, target=replace(BENCH.target, optimize="Debug", optimize_source="zig default"))
    found = recommend(evidence(bench=debug, debug_capture_share=0.76))
    assert found[0].rule == "release-build" and ".optimize = b.standardOptimizeOption(.{})," in found[0].fix
    assert "76.0% of the CPU samples are the Debug allocator capturing a stack trace" in found[0].evidence
    requested = replace(BENCH, target=replace(BENCH.target, optimize="Debug", optimize_source="requested"))
    assert "--optimize ReleaseFast" in recommend(evidence(bench=requested))[0].fix
    release = replace(BENCH, target=replace(BENCH.target, optimize="ReleaseFast", optimize_source="requested"))
    assert all(r.rule != "release-build" for r in recommend(evidence(bench=release)))


def test_the_readme_shows_the_table_the_code_has():
    start, end = "<!-- verdict-table -->", "<!-- /verdict-table -->"
    code = judgement.__doc__
    table = code[code.index(start):code.index(end)]
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert table in readme
