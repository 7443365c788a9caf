"""Statistics over a handful of benchmark trials: summaries, and the confidence
interval of a ratio between two servers measured in pairs."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from zprof.model.common import RatioEstimate, Summary

# Two-sided 95% quantiles of Student's t for 1 to 30 degrees of freedom.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
_Z975 = 1.959964


def t975(degrees_of_freedom: int) -> float:
    """The 97.5th percentile of Student's t, for a two-sided 95% interval."""
    if degrees_of_freedom < 1:
        raise ValueError("a t interval needs at least one degree of freedom")
    if degrees_of_freedom <= len(_T975):
        return _T975[degrees_of_freedom - 1]
    # Cornish-Fisher expansion around the normal quantile; exact to 3 decimals beyond 30.
    z, df = _Z975, degrees_of_freedom
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def summarize(values: Sequence[float]) -> Summary:
    if not values:
        raise ValueError("nothing to summarize")
    mean = statistics.fmean(values)
    cv = 100 * statistics.stdev(values) / mean if len(values) > 1 and mean > 0 else None
    return Summary(median=statistics.median(values), min=min(values), max=max(values),
                   cv_percent=None if cv is None else round(cv, 2), n=len(values))


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> RatioEstimate | None:
    """The ratio numerator/denominator over trials measured in pairs.

    Each trial's two measurements were made one right after the other, so the
    machine's slow drifts (other jobs, thermal state) fall on both alike; the
    ratio within a pair cancels them, and only the pair-to-pair scatter is left.
    Ratios are multiplicative, so the interval is a t interval on their
    logarithms, transformed back (a geometric mean with an asymmetric interval,
    which stays positive). Student's t rather than a bootstrap: with the 3 to 10
    trials a benchmark affords, a bootstrap has too few distinct resamples and
    its percentile interval is known to be too narrow.
    """
    logs = [math.log(n / d) for n, d in zip(numerators, denominators, strict=True) if n > 0 and d > 0]
    if not logs:
        return None
    mean = statistics.fmean(logs)
    percent = round(100 * math.exp(mean), 2)
    if len(logs) < 2:
        return RatioEstimate(percent, None, 1)
    half_width = t975(len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    ci = (round(100 * math.exp(mean - half_width), 2), round(100 * math.exp(mean + half_width), 2))
    return RatioEstimate(percent, ci, len(logs))
