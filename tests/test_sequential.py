"""The sequential A/B gate (zprof.analysis.sequential) on simulated rounds: its false regressions and
its power at the threshold, round by round, for spreads of 1% to 10% per round, normal and
heavy-tailed, in both directions of metric; looks after every round; quantised and identical figures;
the planning helper. Seeded, so every run draws the same rounds; pure Python, a few seconds."""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest

from zprof.analysis import sequential
from zprof.analysis.sequential import (
    HIGHER_IS_BETTER,
    INCONCLUSIVE,
    LOWER_IS_BETTER,
    PASS,
    REGRESSION,
    Decision,
    Design,
    decide,
    detectable_percent,
    plan,
    resolution_floor,
)

RUNS = 1000  # simulated runs per setting: the binomial margin below is then 2 points at 5%
CVS = (0.01, 0.03, 0.05, 0.10)
NOISES = ("normal", "t5")


def margin(rate: float, runs: int = RUNS) -> float:
    """Three standard errors of a rate measured over `runs` runs."""
    return 3 * math.sqrt(rate * (1 - rate) / runs)


@functools.cache
def planned(direction: str, cv: float) -> Design:
    return plan(Design(direction=direction), cv).design


def rounds(rng: np.random.Generator, design: Design, cv: float, noise: str, change: float = 0.0) -> np.ndarray:
    """`design.max_rounds` log-ratios with a spread of `cv` per round around `change`."""
    if noise == "normal":
        draws = rng.standard_normal(design.max_rounds)
    else:  # Student's t with 5 degrees of freedom, scaled to the same standard deviation
        draws = rng.standard_t(5, design.max_rounds) / math.sqrt(5 / 3)
    return change + cv * draws


def bad_change(design: Design) -> float:
    """A true change of exactly the threshold, in the bad direction, as a log-ratio."""
    return -design.delta if design.direction == HIGHER_IS_BETTER else design.delta


def stepwise(design: Design, log_ratios: np.ndarray) -> Decision:
    """What the engine does: a look after every round, stopping at the first decision."""
    for done in range(1, len(log_ratios) + 1):
        decision = decide(design, log_ratios[:done])
        if decision.outcome != INCONCLUSIVE:
            return decision
    return decision


# Error rates -------------------------------------------------------------------------------------
@pytest.mark.parametrize("noise", NOISES)
@pytest.mark.parametrize("direction", [HIGHER_IS_BETTER, LOWER_IS_BETTER])
@pytest.mark.parametrize("cv", CVS)
def test_false_regressions_stay_under_alpha_and_the_threshold_is_caught_with_the_power(cv, direction, noise):
    design = planned(direction, cv)
    rng = np.random.default_rng([CVS.index(cv), int(direction == LOWER_IS_BETTER), NOISES.index(noise)])
    # decide() over all of a run's rounds gives the decision of its first crossing, as a look after
    # every round would (test_a_look_after_every_round_decides_as_one_look_at_the_end).
    false = sum(decide(design, rounds(rng, design, cv, noise)).outcome == REGRESSION for _ in range(RUNS))
    caught = sum(decide(design, rounds(rng, design, cv, noise, bad_change(design))).outcome == REGRESSION
                 for _ in range(RUNS))
    alpha = design.test_alpha
    assert false / RUNS <= alpha + margin(alpha), f"{false} false regressions in {RUNS} runs"
    assert caught / RUNS >= design.power - margin(design.power), f"{caught} of {RUNS} regressions caught"


def test_a_look_after_every_round_decides_as_one_look_at_the_end():
    design = planned(HIGHER_IS_BETTER, 0.05)
    rng = np.random.default_rng(7)
    for change in (0.0, bad_change(design) / 2, bad_change(design)):
        for _ in range(150):
            path = rounds(rng, design, 0.05, "normal", change)
            assert stepwise(design, path) == decide(design, path)


def test_a_decision_stands_when_more_rounds_come():
    design = Design(max_rounds=20)
    slower = [math.log(0.90), math.log(0.91), math.log(0.89), math.log(0.90)]
    first = decide(design, slower)
    assert first.outcome == REGRESSION
    assert decide(design, [*slower, 0.0, 0.0, 0.0, 0.05]) == first


@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_the_boundaries_spend_exactly_alpha_over_the_looks(alpha):
    """The boundaries come from integrating the t statistic's chain of looks, not from a normal
    approximation: over 100,000 simulated runs with no change, the share that crosses at some look
    matches the level (a conversion of normal boundaries to t quantiles lets 10-30% more through)."""
    paths, max_rounds, first = 100_000, 20, 3
    bounds = sequential._boundaries((alpha,), max_rounds, first)[0]
    draws = np.random.default_rng(11).standard_normal((paths, max_rounds))
    done = np.arange(1, max_rounds + 1)
    mean = np.cumsum(draws, axis=1) / done
    variance = (np.cumsum(draws**2, axis=1) - done * mean**2) / np.maximum(done - 1, 1)
    t = (mean * np.sqrt(done))[:, first - 1:] / np.sqrt(variance[:, first - 1:])
    crossed = (t >= bounds).any(axis=1).mean()
    assert abs(crossed - alpha) <= 4 * math.sqrt(alpha * (1 - alpha) / paths)


# Quantised and identical figures -------------------------------------------------------------------
@pytest.mark.parametrize("quantum", [0.001, 0.008])
def test_identical_quantised_figures_never_make_an_instant_certain_regression(quantum):
    """redis-benchmark's p50, 0.351 ms in every trial of A and 0.375 ms in every trial of B."""
    design = Design(direction=LOWER_IS_BETTER, sd_floor=resolution_floor(quantum, 0.351), max_rounds=20)
    ratio = math.log(0.375 / 0.351)
    for done in range(1, design.max_rounds + 1):
        decision = decide(design, [ratio] * done)
        assert decision.estimate_percent == pytest.approx(100 * (0.375 / 0.351 - 1))
        if done < design.min_rounds:
            assert decision.outcome == INCONCLUSIVE
            assert decision.interval_percent is None
            continue
        low, high = decision.interval_percent
        # Never an interval narrower than the floor allows: a t of infinity would make it a point.
        assert high - low > 100 * design.sd_floor
        assert decision.outcome in (INCONCLUSIVE, REGRESSION)
    assert decision.outcome == REGRESSION  # it is 6.8% slower, and 20 rounds show it
    assert decision.rounds >= design.min_rounds


def test_identical_figures_on_both_sides_pass_once_the_floor_allows():
    first_pass = {}
    for quantum in (0.001, 0.008):
        design = Design(direction=LOWER_IS_BETTER, sd_floor=resolution_floor(quantum, 0.351), max_rounds=20)
        outcomes = [decide(design, [0.0] * done) for done in range(1, design.max_rounds + 1)]
        assert all(decision.outcome != REGRESSION for decision in outcomes)
        assert all(decision.outcome == INCONCLUSIVE for decision in outcomes[:design.min_rounds - 1])
        passed = next(decision for decision in outcomes if decision.outcome == PASS)
        low, high = passed.interval_percent
        assert low < 0 < high < design.threshold_percent
        first_pass[quantum] = passed.rounds
    # The pass comes when the floor's interval clears the threshold: later for the coarser quantum.
    assert 3 <= first_pass[0.001] < first_pass[0.008] <= 20


def test_identical_ratios_keep_a_finite_interval_under_the_default_floor():
    decision = decide(Design(max_rounds=10), [math.log(1.02)] * 10)
    low, high = decision.interval_percent
    assert low < decision.estimate_percent < high


def test_the_resolution_floor():
    assert resolution_floor(0.001, 0.351) == pytest.approx(0.001 / 0.351)
    assert resolution_floor(0.0, 100_000.0) == sequential.DEFAULT_SD_FLOOR
    with pytest.raises(ValueError):
        resolution_floor(0.001, 0.0)


# What a decision says ---------------------------------------------------------------------------
def test_a_regression_reads_as_the_figures_change():
    throughput = decide(Design(max_rounds=20), [math.log(r) for r in (0.90, 0.91, 0.89, 0.90, 0.92)])
    assert throughput.outcome == REGRESSION and throughput.worse and not throughput.improved
    assert throughput.estimate_percent == pytest.approx(-10, abs=0.5)
    low, high = throughput.interval_percent
    assert low < throughput.estimate_percent < high < 0  # the interval clears no change too
    latency = decide(Design(direction=LOWER_IS_BETTER, max_rounds=20),
                     [math.log(r) for r in (1.10, 1.11, 1.09, 1.10, 1.12)])
    assert latency.outcome == REGRESSION
    assert 0 < latency.interval_percent[0] < latency.estimate_percent < latency.interval_percent[1]


def test_an_improvement_beyond_the_threshold_is_a_pass_with_improved():
    rng = np.random.default_rng(3)
    decision = decide(Design(max_rounds=20), math.log(1.20) + 0.02 * rng.standard_normal(20))
    assert decision.outcome == PASS and decision.improved and not decision.worse
    assert decision.estimate_percent > 15


def test_a_change_shown_but_within_the_threshold_passes_with_worse():
    """Rounds so steady that the look that rules out the threshold also shows the 2.5% loss. Their
    spread (0.02%) is far under the sd floor (0.1%), so the floor sets the standard error whatever the
    draws; at the first look, where the boundaries are widest (about 30 standard errors, 1.7%), a 2.5%
    loss clears both no change and the 5% threshold by about 0.8 points, not by a hair of the boundary."""
    design = Design(max_rounds=20)
    for seed in range(10):
        rng = np.random.default_rng(seed)
        decision = decide(design, math.log(0.975) + 0.0002 * rng.standard_normal(20))
        assert decision.outcome == PASS and decision.worse and not decision.improved
        low, high = decision.interval_percent
        assert -design.threshold_percent < low < decision.estimate_percent < high < 0


def test_no_decision_before_min_rounds():
    for done in (0, 1, 2):
        decision = decide(Design(), [math.log(0.5)] * done)
        assert decision.outcome == INCONCLUSIVE and decision.interval_percent is None
        assert decision.detectable_percent is None


def test_running_out_of_rounds_is_inconclusive_with_the_change_they_could_detect():
    design = Design(max_rounds=8)
    rng = np.random.default_rng(5)
    path = -design.delta / 2 + 0.08 * rng.standard_normal(8)
    decision = decide(design, path)
    assert decision.outcome == INCONCLUSIVE and decision.rounds == 8
    assert decision.detectable_percent == pytest.approx(detectable_percent(design, 8, float(np.std(path, ddof=1))))
    assert decision.detectable_percent > design.threshold_percent


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="max_rounds"):
        decide(Design(max_rounds=5), [0.0] * 6)
    with pytest.raises(ValueError, match="finite"):
        decide(Design(), [0.0, math.nan, 0.0])
    for wrong in ({"direction": "faster"}, {"sd_floor": 0.0}, {"min_rounds": 1}, {"max_rounds": 2},
                  {"alpha": 0.0}, {"family": 0}, {"threshold_percent": 0.0}, {"power": 0.3}):
        with pytest.raises(ValueError):
            Design(**wrong)


# Planning ---------------------------------------------------------------------------------------
def test_the_plan_grows_with_the_spread_and_the_family():
    alone = [plan(Design(), cv) for cv in CVS]
    assert [p.max_rounds for p in alone] == sorted(p.max_rounds for p in alone)
    assert alone[0].max_rounds < alone[-1].max_rounds
    for p in alone:
        assert p.power >= p.design.power
        assert p.design.min_rounds <= p.expected_rounds_no_change <= p.max_rounds
        assert p.design.min_rounds <= p.expected_rounds_at_threshold <= p.max_rounds
    # Twelve tests at a 5% family-wise rate need more rounds than one.
    assert plan(Design(family=12), 0.05).max_rounds > alone[2].max_rounds


def test_a_planned_design_reaches_its_power_in_a_fresh_simulation():
    result = plan(Design(family=3, threshold_percent=10, direction=LOWER_IS_BETTER), 0.08)
    design, rng = result.design, np.random.default_rng(9)
    caught = sum(decide(design, rounds(rng, design, 0.08, "normal", bad_change(design))).outcome == REGRESSION
                 for _ in range(RUNS))
    assert caught / RUNS >= design.power - margin(design.power)


def test_the_detectable_change_shrinks_as_rounds_grow():
    design = planned(HIGHER_IS_BETTER, 0.05)
    detectable = [detectable_percent(design, done, 0.05) for done in range(design.min_rounds, design.max_rounds + 1)]
    assert all(later < earlier for earlier, later in itertools.pairwise(detectable))
    # At the planned rounds it is about the threshold (from the last look alone, so a little above).
    assert design.threshold_percent * 0.8 < detectable[-1] < design.threshold_percent * 1.3
    with pytest.raises(ValueError):
        detectable_percent(design, design.max_rounds + 1, 0.05)
