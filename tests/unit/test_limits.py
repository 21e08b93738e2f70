"""The per-endpoint rate limiter (GCRA with burst = limit)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hookcast.domain.limits import Bucket, emission_interval_us, new_bucket, take

NOW_US = 1_700_000_000_000_000
S = 1_000_000


def take_many(bucket: Bucket, limit: int, period_s: int, times: list[int]) -> list[int | None]:
    answers: list[int | None] = []
    for t in times:
        bucket, retry_at = take(bucket, limit, period_s, t)
        answers.append(retry_at)
    return answers


@pytest.mark.parametrize(("limit", "period_s"), [(0, 60), (-1, 60), (10, 0), (10, -5), (0, 0)])
def test_zero_or_negative_is_unlimited(limit: int, period_s: int) -> None:
    bucket = new_bucket()
    for _ in range(1000):
        bucket, retry_at = take(bucket, limit, period_s, NOW_US)
        assert retry_at is None
    assert bucket == new_bucket()


@pytest.mark.parametrize(
    ("limit", "period_s", "interval_us"),
    [(1, 1, S), (10, 60, 6 * S), (3, 1, 333_334), (1000, 60, 60_000), (7, 1, 142_858)],
)
def test_emission_interval_rounds_up(limit: int, period_s: int, interval_us: int) -> None:
    assert emission_interval_us(limit, period_s) == interval_us


def test_a_full_burst_goes_at_once_then_throttles() -> None:
    answers = take_many(new_bucket(), 5, 10, [NOW_US] * 7)
    assert answers == [None] * 5 + [NOW_US + 2 * S] * 2


def test_throttled_take_leaves_the_bucket_unchanged() -> None:
    bucket = new_bucket()
    for _ in range(3):
        bucket, _ = take(bucket, 3, 30, NOW_US)
    after, retry_at = take(bucket, 3, 30, NOW_US + 1)
    assert after == bucket
    assert retry_at == NOW_US + 10 * S


def test_after_the_burst_deliveries_are_spaced_by_the_interval() -> None:
    bucket = new_bucket()
    for _ in range(4):
        bucket, _ = take(bucket, 4, 8, NOW_US)  # burst spent; interval is 2 s
    times = [NOW_US + 2 * S - 1, NOW_US + 2 * S, NOW_US + 3 * S, NOW_US + 4 * S]
    assert take_many(bucket, 4, 8, times) == [NOW_US + 2 * S, None, NOW_US + 4 * S, None]


def test_an_idle_period_refills_the_whole_burst_and_no_more() -> None:
    bucket = new_bucket()
    for _ in range(4):
        bucket, _ = take(bucket, 4, 8, NOW_US)
    later = NOW_US + 100 * S
    assert take_many(bucket, 4, 8, [later] * 5) == [None] * 4 + [later + 2 * S]


def test_a_clock_going_back_does_not_grant_extra_tokens() -> None:
    bucket = new_bucket()
    for _ in range(2):
        bucket, _ = take(bucket, 2, 10, NOW_US)
    _, retry_at = take(bucket, 2, 10, NOW_US - 5 * S)
    assert retry_at == NOW_US + 5 * S


# --- properties -----------------------------------------------------------------------

LIMITS = st.integers(min_value=1, max_value=50)
PERIODS = st.integers(min_value=1, max_value=120)
GAPS = st.lists(st.integers(min_value=0, max_value=5 * S), min_size=1, max_size=150)


def allowed_times(limit: int, period_s: int, gaps: list[int]) -> list[int]:
    bucket, now, allowed = new_bucket(), NOW_US, []
    for gap in gaps:
        now += gap
        bucket, retry_at = take(bucket, limit, period_s, now)
        if retry_at is None:
            allowed.append(now)
    return allowed


@given(LIMITS, PERIODS, GAPS)
def test_never_more_than_burst_plus_rate(limit: int, period_s: int, gaps: list[int]) -> None:
    allowed = allowed_times(limit, period_s, gaps)
    period_us = period_s * S
    for i, start in enumerate(allowed):
        for j in range(i, len(allowed)):
            count = j - i + 1
            elapsed = allowed[j] - start
            # count <= limit + limit * elapsed / period, in integers
            assert count * period_us <= limit * period_us + limit * elapsed


@given(LIMITS, PERIODS, GAPS)
def test_retry_at_is_in_the_future_exact_and_honoured(
    limit: int, period_s: int, gaps: list[int]
) -> None:
    bucket, now = new_bucket(), NOW_US
    for gap in gaps:
        now += gap
        after, retry_at = take(bucket, limit, period_s, now)
        if retry_at is None:
            bucket = after
            continue
        assert after == bucket
        assert retry_at > now
        assert take(bucket, limit, period_s, retry_at - 1)[1] == retry_at
        assert take(bucket, limit, period_s, retry_at)[1] is None


@given(LIMITS, PERIODS, st.integers(min_value=1, max_value=100))
def test_deliveries_at_the_configured_rate_are_never_throttled(
    limit: int, period_s: int, count: int
) -> None:
    interval = emission_interval_us(limit, period_s)
    gaps = [0] + [interval] * (count - 1)
    assert len(allowed_times(limit, period_s, gaps)) == count


@given(LIMITS, PERIODS)
def test_a_fresh_bucket_allows_exactly_one_burst(limit: int, period_s: int) -> None:
    answers = take_many(new_bucket(), limit, period_s, [NOW_US] * (limit + 1))
    assert answers[:limit] == [None] * limit
    assert answers[limit] is not None
