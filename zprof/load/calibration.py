"""Trials long enough to measure, as pyperf calibrates its loops.

A rate from a run of a few milliseconds is the timer's resolution, not the
server's speed: redis-benchmark prints 2,000,000 req/s for 20,000 requests that
took 10 ms. zprof sizes every timed trial from the rate of a run it already
made (the warm-up), so that it lasts at least `min_seconds`, lengthens it again
if it still came out short, and never reports a rate from a shorter run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_TRIAL_SECONDS = 1.0
# Aim this far past the minimum, so that a trial sized from a rate rarely comes out short.
HEADROOM = 1.3
# A trial still too short is made longer at most this many times.
MAX_LENGTHENINGS = 4


def requests_for(rate: float, min_seconds: float, requested: int) -> int:
    """The requests a trial needs to last `min_seconds` at `rate` per second, never fewer than asked for."""
    if rate <= 0 or min_seconds <= 0:
        return requested
    return max(requested, math.ceil(rate * min_seconds * HEADROOM))


def long_enough(seconds: float, min_seconds: float) -> bool:
    return seconds >= min_seconds


def rate(requests: int, seconds: float, min_seconds: float = MIN_TRIAL_SECONDS) -> float | None:
    """Requests per second, or None when the run was too short for the figure to mean anything."""
    if seconds <= 0 or not long_enough(seconds, min_seconds):
        return None
    return requests / seconds


@dataclass
class Lengthened:
    """A trial zprof made longer than asked: the command, the requests asked for and used."""

    command: str
    server: str
    requested: int
    used: int
