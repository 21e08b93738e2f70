"""When to try a failed delivery again, and when to stop.

Two schedules, as in Convoy: *linear* waits ``duration`` seconds between attempts;
*exponential* doubles from ``duration`` after each attempt, is capped at
``max_retry_seconds`` and is spread by a +/-20% jitter so endpoints that failed together
do not all come back in the same instant. Randomness and the current time are passed in.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from hookcast.domain.config import StrategyConfig, StrategyType
from hookcast.domain.models import DeliveryStatus

JITTER_LOW = 0.8
JITTER_HIGH = 1.2
#: beyond this many doublings every allowed duration already exceeds every allowed cap,
#: so the exponent is clamped here instead of building an enormous integer
_MAX_DOUBLINGS = 62
_US_PER_SECOND = 1_000_000
#: the shortest wait a server's Retry-After can impose, so "0" does not cause a hot loop
MIN_RETRY_AFTER_SECONDS = 1.0


def _jitter_factor(rand: Callable[[], float]) -> float:
    """Map ``rand()`` (expected in [0, 1)) onto [0.8, 1.2]; out-of-range draws are
    clamped so a faulty source cannot push the delay outside that band."""
    draw = min(max(rand(), 0.0), 1.0)
    return JITTER_LOW + (JITTER_HIGH - JITTER_LOW) * draw


def _exponential_base(duration: int, attempts_made: int, cap: int) -> int:
    doublings = min(attempts_made - 1, _MAX_DOUBLINGS)
    return min(cap, duration << doublings)


def next_delay_seconds(
    strategy: StrategyConfig, attempts_made: int, rand: Callable[[], float]
) -> float:
    """Seconds to wait before the next attempt, given how many attempts were made (>= 1).

    Linear strategies always answer ``duration``. Exponential ones answer
    ``min(max_retry_seconds, duration * 2**(attempts_made - 1))`` scaled by a jitter
    factor drawn from ``rand`` in [0.8, 1.2], and never more than ``max_retry_seconds``.
    With ``rand`` returning 0.5 the factor is exactly 1, which makes the schedule exact.
    """
    if attempts_made < 1:
        raise ValueError("attempts_made counts attempts already made and starts at 1")
    if strategy.type == StrategyType.LINEAR:
        return float(strategy.duration)
    cap = strategy.max_retry_seconds
    base = _exponential_base(strategy.duration, attempts_made, cap)
    return min(float(cap), base * _jitter_factor(rand))


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What happens to a delivery after a failed attempt: ``RETRY`` with the instant of the
    next attempt, or ``FAILURE`` with no next attempt. ``reason`` is for humans."""

    status: DeliveryStatus
    next_attempt_at_us: int | None
    reason: str


def _bounded_retry_after(retry_after_seconds: float, cap: float) -> float:
    return min(max(retry_after_seconds, MIN_RETRY_AFTER_SECONDS), cap)


def decide_after_failure(
    *,
    attempts_made: int,
    retry_limit: int,
    strategy: StrategyConfig,
    now_us: int,
    rand: Callable[[], float],
    retry_after_seconds: float | None = None,
    max_retry_after_seconds: float = 3600.0,
) -> RetryDecision:
    """Decide the fate of a delivery whose latest attempt failed.

    ``retry_limit`` counts every attempt, the first included, so once ``attempts_made``
    reaches it the delivery has failed for good. Otherwise it is retried after the
    strategy's delay, unless the endpoint sent a ``Retry-After``: the server knows its own
    load better than our schedule does, so its value replaces the computed delay outright
    (it may be shorter or longer). It is held to at least one second, so a ``0`` cannot
    cause a tight loop, and to at most ``max_retry_after_seconds``, so a hostile or
    mistaken endpoint cannot park a delivery for days. A non-finite value is ignored.
    """
    if attempts_made >= retry_limit:
        return RetryDecision(DeliveryStatus.FAILURE, None, "retry limit exceeded")
    if retry_after_seconds is not None and math.isfinite(retry_after_seconds):
        delay = _bounded_retry_after(retry_after_seconds, max_retry_after_seconds)
        source = "Retry-After"
    else:
        delay = next_delay_seconds(strategy, attempts_made, rand)
        source = f"{strategy.type} backoff"
    next_at = now_us + round(delay * _US_PER_SECOND)
    reason = f"attempt {attempts_made} of {retry_limit} failed; retrying in {delay:.3f}s ({source})"
    return RetryDecision(DeliveryStatus.RETRY, next_at, reason)
