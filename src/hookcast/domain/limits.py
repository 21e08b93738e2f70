"""A per-endpoint rate limit, as a pure GCRA (generic cell rate algorithm).

Convoy limits each endpoint to ``rate_limit`` deliveries per ``rate_limit_duration``
seconds, with a burst of ``rate_limit``: a whole period's worth may go at once, after which
deliveries are spaced one emission interval (``period / limit``) apart. A limit or period
of 0 (or less) means unlimited.

The bucket is a single instant, the *theoretical arrival time* (TAT): when the bucket
would be empty again at the configured rate. The emission interval is rounded *up* to a
whole microsecond, so rounding can only make the limiter stricter, never looser.
"""

from __future__ import annotations

from dataclasses import dataclass

_US_PER_SECOND = 1_000_000


@dataclass(frozen=True, slots=True)
class Bucket:
    """The state of one endpoint's limiter: its theoretical arrival time, in microseconds.
    ``tat_us`` at or before now means the bucket is full (a whole burst may go)."""

    tat_us: int = 0


def new_bucket() -> Bucket:
    return Bucket()


def is_unlimited(limit: int, period_s: int) -> bool:
    return limit <= 0 or period_s <= 0


def emission_interval_us(limit: int, period_s: int) -> int:
    """Microseconds one delivery "costs": ``period / limit``, rounded up."""
    return -(-period_s * _US_PER_SECOND // limit)


def take(bucket: Bucket, limit: int, period_s: int, now_us: int) -> tuple[Bucket, int | None]:
    """Try to send one delivery at ``now_us``.

    Gives the new bucket and None when allowed; when throttled, the bucket unchanged and
    the earliest instant (> ``now_us``) at which taking would succeed.
    """
    if is_unlimited(limit, period_s):
        return bucket, None
    interval = emission_interval_us(limit, period_s)
    burst_us = interval * limit
    new_tat = max(bucket.tat_us, now_us) + interval
    if new_tat - now_us > burst_us:
        return bucket, new_tat - burst_us
    return Bucket(new_tat), None
