"""A sequential A/B gate for one noisy metric: the baseline build (A) and the current one (B) run
alternately, round after round, and after every round the gate says pass, regression, or not yet.

Each round gives one paired log-ratio d = log(B/A) of the metric (or the mean of a round's two AB
pairs). Pairing cancels the machine's slow drifts; the logarithm makes a slowdown a difference that
means the same at every speed. The rounds are taken as independent draws from a normal distribution of
unknown mean and unknown variance, and the gate tests the mean.

The design is a group-sequential t-test with a look after every round, its boundaries from error
spending (Lan & DeMets 1983, Biometrika 70) with the power family eps * (k/N)**2 (Kim & DeMets 1987,
Biometrics 43), N the most rounds the run may take; Jennison & Turnbull, *Group Sequential Methods with
Applications to Clinical Trials* (2000), ch. 7, 9 and 11, is the reference for all of it. It was chosen
over an anytime-valid confidence sequence (the t-mixture of Lai 1976, Ann. Statist. 4) because at the 3
to 50 rounds a benchmark affords, a confidence sequence needs about 1.5 to 2.5 times the rounds for the
same power. The price: N is fixed before the first round (`plan` picks it from an earlier spread), and
rounds past it are refused.

- Unknown variance at small n: the boundaries are exact for the t statistic of the rounds so far, not
  normal ones converted to t quantiles (with a look every round, that lets 10-30% more false alarms
  through than alpha). Under no change the self-normalised sum W_k = S_k / |x_1..k| is a Markov chain,
  W_k+1 = (W_k + y) / sqrt(1 + y^2) with y ~ t_k / sqrt(k) independent of the past; integrating it
  numerically gives each look's boundary, so that the chance of a crossing by look k is the spending
  function's (exact computations of this kind: Jennison & Turnbull 1991, Biometrika 78). That holds
  for normal rounds; heavier tails (t with 5 degrees of freedom, simulated) make the test more
  cautious, not less.
- Repeated looks: over all the looks up to N, a false regression has a chance of at most alpha per
  test (the family's alpha split over `family` tests, Bonferroni). Skipping looks, or stopping early
  for any reason (a time budget), only lowers it. The decision is the one at the first look that
  crosses a boundary: rounds run after it (for other metrics) do not change it.
- Regression: the change's lower confidence bound at the test's alpha, and the 95% interval, both
  exclude no change in the bad direction (the interval's condition only matters for a lone test at
  5%, which becomes one at 2.5%). Pass: the 95% interval's bad end is inside the threshold, which rules
  out a regression of the threshold's size at 97.5%, one-sided. If both hold at the same look, a change
  is shown but shown to be within the threshold: a pass, with `worse` set. An improvement, however
  large, is a pass, with `improved` set when it is shown at the test's alpha.
- The 95% interval is a repeated confidence interval (ch. 9): valid at whatever round the run stops,
  for whatever reason. The estimate is the mean log-ratio there, a little biased away from zero when
  the run stopped early on a crossing; the interval allows for that.
- Quantised figures: a round's log-ratio never counts as more precise than `sd_floor` (the rounds'
  standard deviation is raised to at least that), so identical figures round after round
  (redis-benchmark's 0.001 ms, or 8 us histogram buckets) give a finite t and a finite interval,
  never p = 0; and nothing is decided before `min_rounds` rounds (3). `resolution_floor` turns a
  figure's quantum into a floor. Both only make the test more cautious.
- Power: with N from `plan`, a change of the threshold's size is called a regression with at least the
  design's power (80%). If the rounds run out first the outcome is inconclusive, with the smallest
  change the rounds done could have caught with that power (`detectable_percent`). At a 5% threshold,
  one test, and a round-to-round spread (CV) of 1, 3, 5 or 10%, that takes at most 3, 6, 12 or 38 rounds
  (about 3, 5, 9 or 26 on average, changed or not).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import optimize, special

HIGHER_IS_BETTER, LOWER_IS_BETTER = "higher-is-better", "lower-is-better"
DIRECTIONS = (HIGHER_IS_BETTER, LOWER_IS_BETTER)
PASS, REGRESSION, INCONCLUSIVE = "pass", "regression", "inconclusive"
# The reported interval is a 95% one; its bad end also decides a pass (2.5% one-sided).
INTERVAL_TAIL = 0.025
# Error spending eps * (k/N)**RHO: between Pocock's flat boundaries (1) and O'Brien-Fleming's steep
# ones (about 3); it stops early on clear evidence while keeping the last look close to a fixed test.
RHO = 2
DEFAULT_SD_FLOOR = 0.001  # no benchmark round repeats to better than 0.1%


@dataclass(frozen=True)
class Design:
    """What one metric's test must do. `threshold_percent`: the change in the bad direction that must
    be caught (a 5% lower throughput, a 10% higher p99); `alpha`: the family-wise false-regression
    rate, split over `family` tests (metrics times commands in one run); `power`: the chance of
    calling a regression of the threshold's size; `sd_floor`: the smallest standard deviation of one
    round's log-ratio believed (`resolution_floor`). `max_rounds` should come from `plan`: the
    boundaries are computed for it once per process (under a second for 50 rounds, 2-3 s for 150)."""

    threshold_percent: float = 5.0
    direction: str = HIGHER_IS_BETTER
    alpha: float = 0.05
    family: int = 1
    power: float = 0.8
    min_rounds: int = 3
    max_rounds: int = 30
    sd_floor: float = DEFAULT_SD_FLOOR

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, not {self.direction!r}")
        if not 0 < self.threshold_percent < 100:
            raise ValueError("threshold_percent must be between 0 and 100")
        if not 0 < self.alpha < 0.5 or self.family < 1:
            raise ValueError("alpha must be in (0, 0.5) and family at least 1")
        if not 0.5 <= self.power < 1:
            raise ValueError("power must be in [0.5, 1)")
        if self.min_rounds < 2:
            raise ValueError("min_rounds must be at least 2: one round has no spread")
        if self.max_rounds < self.min_rounds:
            raise ValueError("max_rounds must be at least min_rounds")
        if not self.sd_floor > 0:
            raise ValueError("sd_floor must be positive: without it identical rounds would prove anything")

    @property
    def test_alpha(self) -> float:
        """The false-regression rate of this one test (Bonferroni)."""
        return self.alpha / self.family

    @property
    def delta(self) -> float:
        """The threshold as a log-ratio in the bad direction (positive)."""
        fraction = self.threshold_percent / 100
        return -math.log1p(-fraction) if self.direction == HIGHER_IS_BETTER else math.log1p(fraction)


@dataclass(frozen=True)
class Decision:
    """Where one metric stands. `rounds`: the rounds the decision rests on (the look that crossed a
    boundary, or all so far). Percentages are changes of the metric's figure from A to B (-4.8: B's
    throughput 4.8% lower); `interval_percent` is a 95% interval valid at any stopping round (None
    before `min_rounds`); `detectable_percent` is the size of a change in the bad direction those rounds
    would have caught with the design's power. `worse`/`improved`: a change in that direction is shown
    at the test's alpha at that look (a pass with `worse`: a change shown, but within the threshold)."""

    outcome: str
    rounds: int
    estimate_percent: float | None
    interval_percent: tuple[float, float] | None
    detectable_percent: float | None
    worse: bool = False
    improved: bool = False


@dataclass(frozen=True)
class Plan:
    """The rounds a design needs at a given spread: `max_rounds` reaches the design's power at the
    threshold (`power`, simulated), `design` carries it; the expected rounds to a decision when
    nothing changed and when the change is the threshold's size."""

    design: Design
    max_rounds: int
    expected_rounds_no_change: float
    expected_rounds_at_threshold: float
    power: float


def resolution_floor(quantum: float, figure: float, minimum: float = DEFAULT_SD_FLOOR) -> float:
    """An `sd_floor` for figures rounded to `quantum` (0.001 ms, or an 8 us bucket) near `figure`:
    the largest log-ratio that rounding can hide between two figures (half a quantum each), so
    identical readings stand for a spread up to that, not none."""
    if quantum < 0 or figure <= 0:
        raise ValueError("quantum must be non-negative and figure positive")
    return max(minimum, quantum / figure)


# Boundaries ---------------------------------------------------------------------------------------
# Grid of the recursion: z is a look's t statistic as a normal score (z ~ N(0, 1) at every look under
# no change), kept on the scale v = z * sqrt(k) where one round moves v by about 1 at every k. At a
# step of 0.25 each look's spending is within a few percent of a grid 2.5 times finer, and the total
# about 2% under alpha (simulated: 0.0498 for 0.05).
_Z_LO, _Z_HI, _STEP, _TAIL = -6.0, 12.0, 0.25, 1e-13


def _w_of_z(z: np.ndarray | float, k: int) -> np.ndarray:
    """The self-normalised sum W = S_k / |x_1..k| whose t statistic (k - 1 degrees of freedom) has
    normal score z."""
    z = np.asarray(z, float)
    # From the nearer tail, so that z = 8 does not round to t = inf.
    t = -np.sign(z) * special.stdtrit(k - 1, special.ndtr(-np.abs(z)))
    with np.errstate(divide="ignore"):
        return np.sign(t) * np.sqrt(k / ((k - 1) / np.minimum(t * t, 1e300) + 1))


def _next_cdf(w: np.ndarray, omega: np.ndarray, k: int) -> np.ndarray:
    """P(W_{k+1} <= omega | W_k = w), where W_{k+1} = (w + y) / sqrt(1 + y^2) and y ~ t_k / sqrt(k)
    (the next round over the length of the rounds so far). Broadcasts."""
    w, omega = np.broadcast_arrays(np.asarray(w, float), np.asarray(omega, float))
    # At |omega| = 1 the quadratic below loses its square term: move omega off it by a hair.
    omega = np.where(np.abs(np.abs(omega) - 1) < 1e-9, omega * (1 - 1e-9), omega)
    # g(y) = (w + y) / sqrt(1 + y^2) = omega: a quadratic; squaring adds the roots of g = -omega.
    one = 1 - omega * omega
    root = np.abs(omega) * np.sqrt(np.maximum(1 + w * w - omega * omega, 0))
    r1, r2 = (-w - root) / one, (-w + root) / one
    scale = math.sqrt(k)
    out = np.zeros(w.shape)
    # |omega| < 1: g goes from -1 to +1 and crosses omega once, upwards; the root of g = omega is the
    # one where w + y has omega's sign.
    once = np.abs(omega) < 1
    y = np.where((w + r1) * omega >= 0, r1, r2)[once]
    out[once] = special.stdtr(k, y * scale)
    # |omega| >= 1: g passes omega twice, or never: above it between the roots when w > 0 and g's
    # peak, sqrt(1 + w^2), is higher; below it between them when w < 0 and its trough is lower.
    reach = omega * omega < 1 + w * w
    up, down = (omega >= 1) & (w > 0) & reach, (omega <= -1) & (w < 0) & reach
    out[(omega >= 1) & ~up] = 1.0
    twice = up | down
    between = np.abs(special.stdtr(k, r2[twice] * scale) - special.stdtr(k, r1[twice] * scale))
    out[twice] = np.where(up[twice], 1 - between, between)
    return out


def _edges(tops: np.ndarray, k: int) -> np.ndarray:
    """Cell edges on the z scale for look k: even steps of v up to the highest boundary, and every
    boundary an edge, so that each level's cells end at its own."""
    root = math.sqrt(k)
    grid = np.arange(_Z_LO * root, float(tops.max()) * root, _STEP) / root
    return np.unique(np.concatenate([grid, tops]))


def _crossing(z: float, centres: np.ndarray, mass: np.ndarray, k: int) -> float:
    """The chance of crossing z (z scale) at look k + 1 from the cells at `centres` (as W_k)."""
    return float(mass @ (1 - _next_cdf(centres, _w_of_z(z, k + 1), k)))


def _solve(crossing: Callable[[float], float], step: float, guess: float) -> float:
    """The boundary (z scale) that `crossing` passes with probability `step`; it falls as z rises."""
    if crossing(_Z_HI) >= step:
        return _Z_HI
    if crossing(_Z_LO) <= step:
        return _Z_LO
    low, high = max(_Z_LO, guess - 0.5), min(_Z_HI, guess + 0.5)  # boundaries move little between looks
    if crossing(low) < step:
        low = _Z_LO
    if crossing(high) > step:
        high = _Z_HI
    return float(optimize.brentq(lambda z: crossing(z) - step, low, high, xtol=1e-8))


@functools.lru_cache(maxsize=32)
def _boundaries(levels: tuple[float, ...], max_rounds: int, min_rounds: int) -> np.ndarray:
    """One-sided boundaries for the t statistic at looks min_rounds..max_rounds (a row per level),
    crossed under no change with total probability `level`, spent as level * (k/N)**RHO. The levels
    share the grid and the transitions, the costly part."""
    looks = np.arange(min_rounds, max_rounds + 1)
    steps = np.diff(np.array(levels)[:, None] * (looks / max_rounds) ** RHO, prepend=0.0, axis=1)
    tops = np.empty(steps.shape)
    tops[:, 0] = special.ndtri(1 - steps[:, 0])  # the first look's t has k - 1 degrees of freedom exactly
    edges = _edges(tops[:, 0], min_rounds)
    masses = np.diff(special.ndtr(np.minimum(edges, tops[:, :1])), axis=1)
    for index, k in enumerate(looks[:-1].tolist()):
        keep = masses.max(axis=0) > 1e-15  # cells far below can no longer reach a boundary
        centres = _w_of_z(0.5 * (edges[:-1] + edges[1:]), k)[keep]
        masses = masses[:, keep]
        for level, mass in enumerate(masses):
            crossing = functools.partial(_crossing, centres=centres, mass=mass, k=k)
            tops[level, index + 1] = _solve(crossing, steps[level, index + 1], tops[level, index])
        edges = _edges(tops[:, index + 1], k + 1)
        masses = _propagate(centres, masses, edges, k)
        masses[edges[None, :-1] >= tops[:, index + 1:index + 2]] = 0.0  # crossed: stops there
    bounds = -np.sign(tops) * special.stdtrit(looks - 1, special.ndtr(-np.abs(tops)))
    bounds.setflags(write=False)  # cached and shared by every caller: none may change it in place
    return bounds


def _propagate(centres: np.ndarray, masses: np.ndarray, edges: np.ndarray, k: int) -> np.ndarray:
    """The masses (a row per level) that go on to look k + 1, per cell between `edges`, from cells at
    `centres` (as W_k). Only the columns a cell can reach are computed: beyond them the next round has
    less than _TAIL."""
    omega = _w_of_z(edges, k + 1)
    y = special.stdtrit(k, 1 - _TAIL) / math.sqrt(k)
    ends = np.stack([(centres + s) / math.sqrt(1 + y * y) for s in (-y, y)])
    # The step's extreme, +-sqrt(1 + w^2) at y = 1/w, when that y is within reach.
    turn = np.abs(centres) * y >= 1
    low = np.minimum(ends.min(axis=0), np.where(turn & (centres < 0), -np.sqrt(1 + centres**2), np.inf))
    high = np.maximum(ends.max(axis=0), np.where(turn & (centres > 0), np.sqrt(1 + centres**2), -np.inf))
    first = np.clip(np.searchsorted(omega, low) - 1, 0, len(omega) - 1)
    last = np.clip(np.searchsorted(omega, high) + 1, 0, len(omega) - 1)
    width = int((last - first).max()) + 1
    columns = np.minimum(first[:, None] + np.arange(width), len(omega) - 1)
    moves = np.diff(_next_cdf(centres[:, None], omega[columns], k), axis=1)
    cells = len(omega) - 1
    return np.array([np.bincount(columns[:, :-1].ravel(), weights=(mass[:, None] * moves).ravel(),
                                 minlength=cells)[:cells] for mass in masses])


# Decisions ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Looks:
    """Every path's state at the look where it stopped (first crossing, else its last round)."""

    rounds: np.ndarray
    mean: np.ndarray  # log-ratio in the bad direction
    se: np.ndarray
    regression: np.ndarray  # the regression boundary crossed (a pass too when both are)
    passed: np.ndarray
    improved: np.ndarray
    alpha_bound: np.ndarray  # the regression boundary (t scale) at that look
    interval_bound: np.ndarray


def _looks(design: Design, worse: np.ndarray) -> _Looks:
    """Runs the design over paths of log-ratios in the bad direction (one path a row, at least
    min_rounds rounds), vectorised so that `plan` simulates exactly what `decide` does."""
    paths, n = worse.shape
    first = design.min_rounds
    rounds = np.arange(1, n + 1)
    shifted = worse - worse[:, :1]  # the running variance from sums loses less to cancellation
    sums, squares = np.cumsum(shifted, axis=1), np.cumsum(shifted * shifted, axis=1)
    variance = (squares - sums * sums / rounds) / np.maximum(rounds - 1, 1)
    sd = np.maximum(np.sqrt(np.clip(variance, 0, None)), design.sd_floor)
    mean = (sums / rounds + worse[:, :1])[:, first - 1:]
    se = (sd / np.sqrt(rounds))[:, first - 1:]
    alpha_bound, interval_bound = _bounds(design)[:, :n - first + 1]
    regression = mean - alpha_bound * se > 0
    passed = mean + interval_bound * se < design.delta
    crossed = regression | passed
    stop = np.where(crossed.any(axis=1), crossed.argmax(axis=1), n - first)
    row = np.arange(paths)
    mean, se = mean[row, stop], se[row, stop]
    return _Looks(stop + first, mean, se, regression[row, stop], passed[row, stop],
                  mean + alpha_bound[stop] * se < 0, alpha_bound[stop], interval_bound[stop])


def _bounds(design: Design) -> np.ndarray:
    """The regression boundary (row 0) and the 95% interval's (row 1), t scale, per look. A regression
    must also clear the interval's, so that no regression is reported with an interval that reaches
    no change (a lone test at alpha 5% becomes one at 2.5%; with 3 tests or more it changes nothing)."""
    bounds = _boundaries((design.test_alpha, INTERVAL_TAIL), design.max_rounds, design.min_rounds)
    return np.stack([np.maximum(bounds[0], bounds[1]), bounds[1]])


def _signed(design: Design, worse: float) -> float:
    """A log-ratio in the bad direction as the figure's change in percent."""
    return 100 * math.expm1(-worse if design.direction == HIGHER_IS_BETTER else worse)


def _reach(bound: float, rounds: int, power: float) -> float:
    """The true mean, in standard errors, at which a t statistic with rounds - 1 degrees of freedom
    exceeds `bound` with probability `power` (the usual normal approximation of the noncentral t)."""
    return bound + float(special.ndtri(power)) * math.sqrt(1 + bound * bound / (2 * (rounds - 1)))


def _detectable(design: Design, bound: float, rounds: int, se: float) -> float:
    change = _reach(bound, rounds, design.power) * se
    return 100 * (-math.expm1(-change) if design.direction == HIGHER_IS_BETTER else math.expm1(change))


def detectable_percent(design: Design, rounds: int, sd: float) -> float:
    """The smallest change in the bad direction that `rounds` rounds at a spread of `sd` (of one
    round's log-ratio) call a regression with the design's power, from the look at that round alone
    (earlier looks only add to it)."""
    if not design.min_rounds <= rounds <= design.max_rounds:
        raise ValueError(f"rounds must be within {design.min_rounds}..{design.max_rounds}")
    bound = float(_bounds(design)[0, rounds - design.min_rounds])
    return _detectable(design, bound, rounds, max(sd, design.sd_floor) / math.sqrt(rounds))


def decide(design: Design, log_ratios: Sequence[float]) -> Decision:
    """The decision after the rounds so far, one paired log-ratio log(B/A) each. Pure: call it after
    every round with all the rounds; once it has decided, more rounds give the same decision."""
    values = np.asarray(log_ratios, dtype=float)
    if values.ndim != 1 or not np.isfinite(values).all():
        raise ValueError("log_ratios must be finite numbers")
    if len(values) > design.max_rounds:
        raise ValueError(f"{len(values)} rounds: the design stops at {design.max_rounds} (max_rounds)")
    worse = values if design.direction == LOWER_IS_BETTER else -values
    if len(values) < design.min_rounds:
        estimate = _signed(design, float(worse.mean())) if len(values) else None
        return Decision(INCONCLUSIVE, len(values), estimate, None, None)
    look = _looks(design, worse[None, :])
    mean, se, rounds = float(look.mean[0]), float(look.se[0]), int(look.rounds[0])
    half = float(look.interval_bound[0]) * se
    ends = sorted((_signed(design, mean - half), _signed(design, mean + half)))
    outcome = PASS if look.passed[0] else REGRESSION if look.regression[0] else INCONCLUSIVE
    return Decision(outcome, rounds, _signed(design, mean), (ends[0], ends[1]),
                    _detectable(design, float(look.alpha_bound[0]), rounds, se),
                    worse=bool(look.regression[0]), improved=bool(look.improved[0]))


# Planning -----------------------------------------------------------------------------------------
def _simulate(design: Design, sd: float, change: float, runs: int, seed: int) -> _Looks:
    # Rounds as rows, so that every max_rounds draws the same first rounds (common random numbers).
    noise = np.random.default_rng(seed).standard_normal((design.max_rounds, runs)).T
    return _looks(design, change + sd * noise)


def plan(design: Design, pilot_sd: float, *, runs: int = 4000, seed: int = 0, limit: int = 1000) -> Plan:
    """The rounds `design` needs when one round's log-ratio spreads by `pilot_sd` (a CV of 3% is about
    0.03): the fewest max_rounds whose simulated power at the threshold (`runs` normal paths, seeded)
    reaches the design's, at most `limit` (then `power` says what it reaches); and the rounds expected
    when nothing changed and at the threshold. Take the spread from before the run (an earlier run, the
    baseline's trials): max_rounds picked from this run's own rounds would make the boundaries depend
    on the data they judge."""
    if not pilot_sd > 0:
        raise ValueError("pilot_sd must be positive")
    sd, first = max(pilot_sd, design.sd_floor), design.min_rounds
    powers: dict[int, float] = {}

    def power(rounds: int) -> float:
        if rounds not in powers:
            paths = _simulate(replace(design, max_rounds=rounds), sd, design.delta, runs, seed)
            powers[rounds] = float((paths.regression & ~paths.passed).mean())
        return powers[rounds]

    # Aim a standard error of the simulation above the power, so that the rounds reach it in truth too.
    target = design.power + math.sqrt(design.power * (1 - design.power) / runs)

    # Start near a fixed-size t test's rounds (at the level a regression must clear) and bracket.
    level = min(design.test_alpha, INTERVAL_TAIL)
    fixed = float(first)
    for _ in range(5):  # the t quantiles depend on the rounds they give: iterate
        t = special.stdtrit(fixed - 1, 1 - level) + special.stdtrit(fixed - 1, design.power)
        fixed = max(float(first), float((t * sd / design.delta) ** 2))
    low, high = first - 1, min(limit, max(first, math.ceil(1.1 * fixed)))
    if power(high) >= target and high > first:
        low = max(first - 1, math.floor(high / 1.25))
        if power(low) >= target:
            low, high = first - 1, low
    while power(high) < target and high < limit:
        low, high = high, min(limit, math.ceil(high * 1.25) + 1)
    while high - low > 1:  # the fewest rounds that reach the power (it grows with them)
        middle = (low + high) // 2
        low, high = (low, middle) if power(middle) >= target else (middle, high)
    chosen = replace(design, max_rounds=high)
    same = _simulate(chosen, sd, 0.0, runs, seed + 1)
    at_threshold = _simulate(chosen, sd, design.delta, runs, seed)
    return Plan(chosen, high, float(same.rounds.mean()), float(at_threshold.rounds.mean()), power(high))
