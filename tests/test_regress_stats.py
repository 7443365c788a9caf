"""zprof regress's rules on figures made up for the purpose: the statistics of noisy signals with
synthetic samples, the deterministic counts, the ratio to Redis, what makes two runs comparable,
the settings in zprof.toml, and the store of baselines. Fast: nothing is built or run."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from zprof import artifact
from zprof.analysis.regression import (
    MANN_WHITNEY,
    NoisyComparison,
    Samples,
    assess_allocs,
    assess_growth,
    assess_noisy,
    assess_redis_ratio,
    compare,
    function_changes,
    holm,
    judge_noisy,
    p_value,
    site_changes,
)
from zprof.collect.perf_stat import PerfCounter, event_unavailable
from zprof.config import load_config
from zprof.errors import ZprofError
from zprof.model.baseline import (
    FAIL,
    INCONCLUSIVE,
    MINOR,
    NONE,
    NOT_COMPARABLE,
    NOT_MEASURED,
    PASS,
    REGRESSION,
    UNMEASURED,
    UNSTABLE,
    AllocSignals,
    AllocSite,
    Baseline,
    Check,
    CommandSignals,
    FunctionCost,
    InstructionSignals,
    NoisySignals,
    RegressThresholds,
    SuiteSettings,
    TrialSample,
)
from zprof.model.common import MachineInfo, TargetInfo
from zprof.sessions.baseline import check_name, default_name, load_baseline, read_baseline, save_baseline

DEFAULTS = RegressThresholds()


def steady(values: list[float], other_cpu: float | None = 10.0) -> Samples:
    return Samples(values, [other_cpu] * len(values))


def comparison(before: list[float], after: list[float], *, higher_is_better: bool = True,
               other_cpu: float | None = 10.0) -> NoisyComparison:
    return NoisyComparison("SET", "throughput", "req/s", steady(before, other_cpu), steady(after, other_cpu),
                           higher_is_better)


def noisy_check(before: list[float], after: list[float], *, higher_is_better: bool = True,
                thresholds: RegressThresholds = DEFAULTS, other_cpu: float | None = 10.0):
    return assess_noisy(comparison(before, after, higher_is_better=higher_is_better, other_cpu=other_cpu),
                        thresholds)


BASE = [100_000.0, 101_000.0, 99_000.0, 100_500.0, 99_500.0]  # CV 0.8%


# Noisy signals ------------------------------------------------------------------------------
def test_a_significant_drop_beyond_the_minimum_effect_is_a_regression():
    check = noisy_check(BASE, [value * 0.90 for value in BASE])
    assert check.assessment == REGRESSION and check.p_value < 0.001
    assert check.change_percent == pytest.approx(-10.0)


def test_a_significant_drop_of_three_to_five_percent_is_minor():
    check = noisy_check(BASE, [value * 0.96 for value in BASE])
    assert check.assessment == MINOR and check.p_value < 0.05


def test_a_significant_drop_under_three_percent_is_not_a_regression():
    tight = [100_000.0, 100_050.0, 99_950.0, 100_020.0, 99_980.0]
    check = noisy_check(tight, [value * 0.98 for value in tight])
    assert check.p_value < 0.001  # the test sees the change; the minimum effect keeps it from mattering
    assert check.assessment == NONE and "under 3%" in check.basis


def test_a_large_change_without_significance_is_not_a_regression():
    # Both sides spread by 9% (under the unstable CV): the 7% lower median is within what 3 trials can tell.
    check = noisy_check([100.0, 110.0, 92.0], [93.0, 103.0, 85.0])
    assert check.change_percent == pytest.approx(-7.0)
    assert check.assessment == NONE and check.p_value > 0.05 and "not significant" in check.basis


def test_a_side_that_spread_more_than_ten_percent_is_unstable_never_a_regression():
    check = noisy_check(BASE, [60_000.0, 80_000.0, 72_000.0, 50_000.0, 75_000.0])
    assert check.assessment == UNSTABLE and "current trials spread by" in check.basis


def test_trials_during_which_other_processes_took_the_cpu_are_unstable():
    check = noisy_check(BASE, [value * 0.80 for value in BASE], other_cpu=85.0)
    assert check.assessment == UNSTABLE and "other processes used 85% of a core" in check.basis


def test_latency_regresses_upwards_and_improves_downwards():
    latencies = [0.50, 0.51, 0.49, 0.505, 0.495]
    worse = noisy_check(latencies, [value * 1.10 for value in latencies], higher_is_better=False)
    better = noisy_check(latencies, [value * 0.80 for value in latencies], higher_is_better=False)
    assert worse.assessment == REGRESSION
    assert better.assessment == NONE and better.basis.startswith("better")


def test_unequal_trial_counts_are_tested():
    check = noisy_check(BASE[:3], [value * 0.9 for value in BASE + BASE[:3]])
    assert check.assessment == REGRESSION


def test_one_trial_on_a_side_cannot_be_tested():
    check = noisy_check(BASE[:1], [BASE[0] * 0.5])
    assert check.assessment == NONE and "too few to test" in check.basis and check.p_value is None


def test_mann_whitney_needs_enough_trials_to_reach_significance():
    thresholds = replace(DEFAULTS, test=MANN_WHITNEY)
    # Five against five, wholly apart: the smallest two-sided p there is, 2/252.
    assert p_value(BASE, [value * 0.9 for value in BASE], MANN_WHITNEY) == pytest.approx(2 / 252)
    assert noisy_check(BASE, [value * 0.9 for value in BASE], thresholds=thresholds).assessment == REGRESSION
    # Three against three can never get under 0.05 (2/20 = 0.1): a regression needs more trials.
    three = noisy_check(BASE[:3], [value * 0.5 for value in BASE[:3]], thresholds=thresholds)
    assert three.p_value == pytest.approx(0.1) and three.assessment == NONE


def _lognormal_trials(rng: random.Random, centre: float, sigma: float, count: int) -> list[float]:
    return [centre * rng.lognormvariate(0.0, sigma) for _ in range(count)]


@pytest.mark.slow  # a seeded simulation of a thousand checks
def test_one_metric_of_an_unchanged_server_is_rarely_a_regression():
    """1,000 pairs of 5-trial runs of the same server with a 4% spread from trial to trial (seeded, so
    the counts are exact): Welch's test passes in about alpha = 5% of them by chance, half of those in
    the worse direction, and the 5% minimum effect leaves fewer still."""
    rng = random.Random(11)
    pairs = [(_lognormal_trials(rng, 1e5, 0.04, 5), _lognormal_trials(rng, 1e5, 0.04, 5)) for _ in range(1000)]
    significant = sum(p_value(before, after) < 0.05 for before, after in pairs)
    assert 30 <= significant <= 75  # the test keeps to its alpha
    assert [noisy_check(before, after).assessment for before, after in pairs].count(REGRESSION) <= 25


@pytest.mark.slow  # a seeded simulation of a thousand checks
def test_a_whole_check_of_an_unchanged_server_is_rarely_a_regression():
    """A check tests 12 noisy metrics (4 commands, throughput, p50, p99): at 1.5% each, a fifth of the
    checks of an unchanged tree would fail. Holm's correction over the check keeps that under alpha."""
    rng = random.Random(3)
    failed = 0
    for _ in range(300):
        family = [comparison(_lognormal_trials(rng, 1e5, 0.04, 5), _lognormal_trials(rng, 1e5, 0.04, 5))
                  for _ in range(12)]
        failed += any(check.assessment == REGRESSION for check in judge_noisy(family, DEFAULTS))
    assert failed <= 300 * 0.05


def test_holm_adjusts_in_step_down_order():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5]) == [0.5]


def test_a_real_regression_survives_the_correction():
    family = [comparison(BASE, [value * 0.9 for value in BASE])] + [comparison(BASE, BASE) for _ in range(11)]
    checks = judge_noisy(family, DEFAULTS)
    assert checks[0].assessment == REGRESSION and "Holm" in checks[0].basis and checks[0].p_adjusted < 0.05
    assert {check.assessment for check in checks[1:]} == {NONE}


def test_a_true_change_under_the_minimum_effect_is_never_a_regression():
    """A real 2% slowdown with 1% spread: significant nearly always, a regression never."""
    rng = random.Random(5)
    assessments = [noisy_check(_lognormal_trials(rng, 1e5, 0.01, 5), _lognormal_trials(rng, 0.98e5, 0.01, 5)).assessment
                   for _ in range(500)]
    assert assessments.count(REGRESSION) == 0
    assert assessments.count(NONE) + assessments.count(MINOR) == 500


# Deterministic signals ----------------------------------------------------------------------
def allocs(per_request: float, requests: int = 2000, sites: list[AllocSite] | None = None,
           bytes_allocated: float = 100.0) -> AllocSignals:
    return AllocSignals(requests, per_request, per_request, bytes_allocated, 10.0, sites or [])


def test_one_more_allocation_in_the_whole_run_is_a_regression():
    assert assess_allocs("HSET", allocs(2.4285), allocs(2.4285 + 1 / 2000)).assessment == REGRESSION
    check = assess_allocs("HSET", allocs(2.4285), allocs(3.4285))
    assert check.assessment == REGRESSION and check.basis == "+1.00 per request (any increase)"
    assert assess_allocs("HSET", allocs(2.4285), allocs(2.4285)).assessment == NONE
    assert assess_allocs("HSET", allocs(2.4285), allocs(1.4285)).basis == "-1.00 per request (fewer)"


def test_instructions_regress_beyond_the_threshold():
    def instructions(before: float, after: float):
        return assess_growth("ZADD", "instructions/request", "", before, after, 2.0, lambda delta: f"{delta:+.0f}")

    assert instructions(2609, 2609 * 1.019).assessment == NONE
    assert instructions(2609, 2609 * 1.021).assessment == REGRESSION
    assert instructions(2609, 258_622).change_percent == pytest.approx(9812.6, abs=0.1)
    assert instructions(0, 0).assessment == NONE and instructions(0, 5).assessment == REGRESSION


def site(function: str, line: int, per_request: float, nested_in: str | None = None) -> AllocSite:
    return AllocSite(function, "/src/commands.zig", line, "page" if nested_in else "debug/GPA", nested_in,
                     per_request, 64.0 * per_request)


def test_site_changes_are_by_function_so_that_shifted_lines_are_no_change():
    before = allocs(3.0, sites=[site("cmdSet", 100, 1.0), site("cmdSet", 120, 1.0), site("parse", 10, 1.0)])
    # One line more in cmdSet: its sites moved down, and a new one allocates once per request.
    after = allocs(4.0, sites=[site("cmdSet", 101, 1.0), site("cmdSet", 121, 1.0), site("cmdSet", 110, 1.0),
                               site("parse", 10, 1.0), site("cmdSet", 110, 0.5, nested_in="debug/GPA")])
    changes = site_changes(before, after)
    assert [(change.function, change.nested_in, change.delta) for change in changes] == [
        ("cmdSet", None, 1.0), ("cmdSet", "debug/GPA", 0.5)]
    assert changes[0].places[0] == ("/src/commands.zig", 101)
    assert site_changes(before, before) == []


def costs(*pairs: tuple[str, float]) -> InstructionSignals:
    return InstructionSignals("callgrind", 100, 0, sum(value for _, value in pairs),
                              [FunctionCost(name, None, value) for name, value in pairs])


def test_function_changes_name_the_functions_that_grew_most():
    before = costs(("zadd", 600.0), ("parse", 300.0), ("hash", 200.0))
    after = costs(("zadd", 604.0), ("parse", 290.0), ("spinScore", 256_000.0), ("hash", 200.0))
    changes = function_changes(before, after)
    assert [(change.function, change.delta) for change in changes] == [("spinScore", 256_000.0), ("zadd", 4.0)]


def test_an_edit_elsewhere_renumbering_generic_instances_is_no_change():
    before = costs(("Thread.spawn__anon_8017.Instance.entryFn", 1100.0), ("Writer__struct_17141.drain", 73.0))
    after = costs(("Thread.spawn__anon_8128.Instance.entryFn", 1100.0), ("Writer__struct_17308.drain", 73.0))
    assert function_changes(before, after) == []
    sites = [site("cmdSet__anon_41", 10, 1.0)]
    assert site_changes(allocs(1.0, sites=sites), allocs(1.0, sites=[site("cmdSet__anon_97", 10, 1.0)])) == []


# The ratio to Redis -------------------------------------------------------------------------
def trial_pairs(ratios: list[float], other_cpu: float = 10.0) -> NoisySignals:
    return NoisySignals("zprof", 1, 1,
                        [TrialSample(index, 1000.0 * ratio, 0.1, 0.2, 50.0, other_cpu)
                         for index, ratio in enumerate(ratios, 1)],
                        [TrialSample(index, 1000.0, 0.1, 0.2, 50.0, other_cpu) for index in range(1, len(ratios) + 1)])


def test_a_throughput_under_seventy_percent_of_redis_blocks():
    check = assess_redis_ratio("ZADD", trial_pairs([1.0, 1.01, 0.99]), trial_pairs([0.05, 0.051, 0.049]), DEFAULTS)
    assert check.assessment == REGRESSION and "under 70% blocks" in check.basis
    assert check.current == pytest.approx(5.0, abs=0.1)


def test_under_the_floor_but_unsteady_with_an_interval_reaching_it_is_unstable():
    check = assess_redis_ratio("SET", None, trial_pairs([0.50, 0.95, 0.62]), DEFAULTS)
    assert check.assessment == UNSTABLE and "under 70%" in check.basis


def test_a_steady_ratio_above_the_floor_is_compared_with_the_baseline():
    lower = assess_redis_ratio("SET", trial_pairs([0.95, 0.96, 0.94]), trial_pairs([0.80, 0.81, 0.79]), DEFAULTS)
    assert isinstance(lower, NoisyComparison)  # judged with the check's other noisy metrics
    check = assess_noisy(lower, DEFAULTS)
    assert check.assessment == REGRESSION and check.metric == "throughput % of Redis"
    assert check.current == pytest.approx(80.0, abs=0.1) and check.baseline == pytest.approx(95.0, abs=0.1)
    same = assess_redis_ratio("SET", trial_pairs([0.95, 0.96, 0.94]), trial_pairs([0.95, 0.94, 0.96]), DEFAULTS)
    assert assess_noisy(same, DEFAULTS).assessment == NONE


# Whole checks on made-up baselines ----------------------------------------------------------
MACHINE = MachineInfo(2, 1, "AMD EPYC", "Linux 6.1", 8 << 30, (0.5, 0.5, 0.5))


def made_up(name: str = "a1b2c3d", *, zig: str = "0.15.2", machine: MachineInfo = MACHINE, per_request: float = 2.0,
            instructions: float = 2600.0, rps: float = 100_000.0, trials: int = 3) -> Baseline:
    noisy = NoisySignals("redis-benchmark", 50, 16,
                         [TrialSample(trial, rps * (1 + 0.005 * trial), 0.3, 0.9, 60.0, 10.0)
                          for trial in range(1, trials + 1)]) if trials else None
    signals = CommandSignals("SET", ["SET", "key:__rand_int__", "xxx"], allocs(per_request),
                             InstructionSignals("callgrind", 2000, int(instructions * 2000), instructions), noisy)
    return Baseline(name, "2026-01-01T10:00:00+00:00", None,
                    TargetInfo("minikv", "/bin/minikv", "/src/minikv", zig, "ReleaseFast"), machine,
                    SuiteSettings(["SET"], 2000, 1000, trials, None, 1.0, 4, 1), [signals], "callgrind", None)


def test_the_same_figures_pass():
    checks, _, warnings, outcome = compare(made_up(), made_up("working tree"), DEFAULTS)
    assert outcome == PASS and warnings == []
    assert {check.assessment for check in checks} == {NONE}
    assert [check.metric for check in checks] == ["allocations/request", "bytes allocated/request",
                                                  "bytes retained/request", "instructions/request", "throughput",
                                                  "p50 latency", "p99 latency"]


def test_another_zig_version_is_compared_with_a_warning():
    checks, _, warnings, outcome = compare(made_up(zig="0.14.1"), made_up(instructions=3000.0), DEFAULTS)
    assert [note.code for note in warnings] == ["regress.other-build"]
    by_metric = {check.metric: check.assessment for check in checks}
    assert by_metric["instructions/request"] == NOT_COMPARABLE and by_metric["throughput"] == NOT_COMPARABLE
    # Nothing regressed, but neither instructions nor times could be compared: not a pass.
    assert by_metric["allocations/request"] == NONE and outcome == INCONCLUSIVE
    # Allocation counts still are compared.
    assert compare(made_up(zig="0.14.1"), made_up(per_request=3.0), DEFAULTS)[3] == FAIL


def test_another_machine_leaves_counts_comparable_but_not_times():
    other = replace(MACHINE, model="Intel Xeon")
    checks, _, warnings, outcome = compare(made_up(machine=other), made_up(rps=50_000.0), DEFAULTS)
    assert [note.code for note in warnings] == ["regress.other-machine"]
    by_metric = {check.metric: check.assessment for check in checks}
    assert by_metric["throughput"] == NOT_COMPARABLE and by_metric["instructions/request"] == NONE
    # Times from another machine say nothing either way: inconclusive, not a pass.
    assert outcome == INCONCLUSIVE


def test_a_signal_measured_before_but_not_now_could_not_be_measured():
    now = made_up("working tree")
    now.commands = [replace(now.commands[0], instructions=None, instructions_absent="callgrind: valgrind crashed")]
    checks, _, _, outcome = compare(made_up(), now, DEFAULTS)
    assert outcome == NOT_MEASURED
    assert next(check for check in checks if check.metric == "instructions/request").assessment == UNMEASURED
    # A regression elsewhere wins: exit 1, not 2.
    now.commands = [replace(now.commands[0], allocs=allocs(3.0))]
    assert compare(made_up(), now, DEFAULTS)[3] == FAIL


def test_without_trials_now_only_the_deterministic_signals_are_compared():
    checks, _, _, outcome = compare(made_up(), made_up(trials=0, rps=1.0), DEFAULTS)
    assert outcome == PASS and "throughput" not in {check.metric for check in checks}


# Settings -----------------------------------------------------------------------------------
def test_baseline_and_regress_tables_in_zprof_toml(tmp_path):
    (tmp_path / "zprof.toml").write_text(
        '[baseline]\ncommands = ["set", "zadd"]\nrequests = 500\ntrials = 3\nagainst = "redis"\n'
        '[regress]\ninstructions_percent = 5\nmin_effect_percent = 8\ntest = "mann-whitney"\n'
        '[bench]\nthroughput_acceptable = 80\n')
    config = load_config(tmp_path)
    assert config.baseline == {"commands": ["SET", "ZADD"], "requests": 500, "trials": 3, "against": "redis"}
    assert config.regress.instructions_percent == 5.0 and config.regress.test == "mann-whitney"
    assert config.thresholds.throughput_acceptable == 80.0


@pytest.mark.parametrize(("table", "message"), [
    ('[regress]\ninstructions_percnt = 5\n', "unknown key 'instructions_percnt'"),
    ('[baseline]\ntrials = -1\n', "trials must be at least 0"),
    ('[baseline]\nagainst = "memcached"\n', 'against must be "redis" or "none"'),
    ('[regress]\ntest = "ks"\n', 'test must be "welch" or "mann-whitney"'),
    ('[regress]\nminor_effect_percent = 6\n', "minor_effect_percent must not be above min_effect_percent"),
    ('[regress]\nredis_floor_percent = 60\n', "unknown key 'redis_floor_percent'"),  # [bench]'s, not here
])
def test_bad_settings_are_named(tmp_path, table, message):
    (tmp_path / "zprof.toml").write_text(table)
    with pytest.raises(ZprofError, match=message.replace("(", r"\(")):
        load_config(tmp_path)


# The store ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["", ".hidden", "-x", "a/b", "../up", "main.json", "x" * 101])
def test_bad_baseline_names_are_refused(name):
    with pytest.raises(ZprofError, match="is not a baseline name"):
        check_name(name)


def test_default_names_follow_git_and_fall_back_to_the_time():
    from zprof.model.baseline import GitState

    state = GitState("a" * 40, "a1b2c3d", False, "2026-01-01T10:00:00+01:00", "subject")
    assert default_name(state) == "a1b2c3d" and default_name(replace(state, dirty=True)) == "a1b2c3d-dirty"
    assert default_name(None).startswith("saved-")


def test_a_baseline_is_saved_whole_and_never_overwritten_without_force(tmp_path):
    path = save_baseline(made_up(), tmp_path, force=False)
    assert path == tmp_path / ".zprof" / "baselines" / "a1b2c3d.json"
    assert json.loads(path.read_text())["schema"] == "zprof.baseline/1"
    assert read_baseline(path) == made_up()
    with pytest.raises(ZprofError, match="exists already"):
        save_baseline(made_up(per_request=9.0), tmp_path, force=False)
    assert read_baseline(path).commands[0].allocs.allocs == 2.0
    save_baseline(made_up(per_request=9.0), tmp_path, force=True)
    assert read_baseline(path).commands[0].allocs.allocs == 9.0
    assert [entry.name for entry in path.parent.iterdir()] == ["a1b2c3d.json"]  # no temporary file left


def test_corrupt_foreign_and_missing_baselines_are_clear_errors(tmp_path):
    store = tmp_path / ".zprof" / "baselines"
    store.mkdir(parents=True)
    (store / "cut.json").write_text('{"schema": "zprof.baseline/1", "name": ')
    with pytest.raises(ZprofError, match="not readable JSON"):
        load_baseline(tmp_path, "cut")
    body = artifact.to_json(made_up())
    del body["commands"][0]["allocs"]
    (store / "broken.json").write_text(json.dumps(body))
    with pytest.raises(ZprofError, match="not a valid baseline run"):
        load_baseline(tmp_path, "broken")
    (store / "future.json").write_text(json.dumps({**artifact.to_json(made_up()), "schema": "zprof.baseline/9"}))
    with pytest.raises(ZprofError, match=r"layout zprof\.baseline/9"):
        load_baseline(tmp_path, "future")
    with pytest.raises(ZprofError, match="no baseline named nope") as missing:
        load_baseline(tmp_path, "nope")
    assert "broken, cut, future" in missing.value.detail
    with pytest.raises(ZprofError, match="no baseline is saved"):
        load_baseline(tmp_path / "elsewhere", None)


# perf stat ----------------------------------------------------------------------------------
def test_perf_stat_counts_only_between_enable_and_disable():
    """With a software event (hardware counters are absent here): a busy process, counted for 0.5 s
    within 1.5 s of being attached, gets at most what 0.5 s of one core can give."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        with PerfCounter(busy.pid, "task-clock") as counter:
            time.sleep(0.5)
            counter.enable()
            time.sleep(0.5)
            counter.disable()
            time.sleep(0.5)
    finally:
        busy.kill()
        busy.wait()
    assert counter.count is not None and 0 < counter.count <= 600  # milliseconds of task clock


def test_an_event_perf_cannot_count_is_said_with_the_reason():
    assert event_unavailable("task-clock") is None
    reason = event_unavailable("no-such-event-zprof")
    assert reason is not None and "perf stat" in reason


def test_tests_use_no_real_project_store():
    # The store helpers take the project root they are given; nothing here wrote into the checkout.
    assert not (Path(__file__).resolve().parents[1] / "examples" / "minikv" / ".zprof").exists()


def test_a_ratio_under_the_floor_in_the_baseline_too_is_compared_not_blocked():
    """The floor blocks a change that puts a command under 70% of Redis; a command that was under it in
    the baseline already is compared with the baseline, and the row says it is still under."""
    steady = assess_redis_ratio("SET", trial_pairs([0.45, 0.46, 0.44]), trial_pairs([0.45, 0.44, 0.46]), DEFAULTS)
    check = assess_noisy(steady, DEFAULTS)
    assert check.assessment == NONE and "under 70% of Redis, as in the baseline" in check.basis
    fallen = assess_redis_ratio("SET", trial_pairs([0.45, 0.46, 0.44]), trial_pairs([0.20, 0.21, 0.20]), DEFAULTS)
    assert assess_noisy(fallen, DEFAULTS).assessment == REGRESSION


def test_a_baseline_under_the_floor_in_a_trial_does_not_make_a_fall_under_it():
    """A baseline at 73% of Redis whose trials spread from 55% to 95%: it was under 70% in a trial, so
    57% now is not a fall under the floor, only a comparison with the baseline."""
    wide = assess_redis_ratio("GET", trial_pairs([0.55, 0.73, 0.95]), trial_pairs([0.56, 0.57, 0.58]), DEFAULTS)
    assert isinstance(wide, NoisyComparison)
    assert "the baseline was under it in a trial (55%)" in assess_noisy(wide, DEFAULTS).basis


def test_a_baseline_above_the_floor_in_its_two_trials_makes_a_fall_under_it_block():
    """Two trials are enough to say the baseline was above the floor (a 95% interval of two pairs is not:
    it spans most of the axis), so minikv's hot loop under 5% of Redis blocks even on a busy machine."""
    check = assess_redis_ratio("ZADD", trial_pairs([0.93, 1.08], other_cpu=90.0), trial_pairs([0.03, 0.04]),
                               DEFAULTS)
    assert isinstance(check, Check) and check.assessment == REGRESSION and "under 70% blocks" in check.basis
