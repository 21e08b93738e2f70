"""Retry schedules and the retry-or-fail decision."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hookcast.domain.config import StrategyConfig, StrategyType
from hookcast.domain.models import DeliveryStatus
from hookcast.domain.retry import RetryDecision, decide_after_failure, next_delay_seconds

NOW_US = 1_700_000_000_000_000


def half() -> float:
    return 0.5


def exponential(duration: int = 10, cap: int = 7200, count: int = 10) -> StrategyConfig:
    return StrategyConfig(
        type=StrategyType.EXPONENTIAL, duration=duration, retry_count=count, max_retry_seconds=cap
    )


def linear(duration: int = 30) -> StrategyConfig:
    return StrategyConfig(type=StrategyType.LINEAR, duration=duration)


# --- next_delay_seconds ---------------------------------------------------------------


@pytest.mark.parametrize("attempts", [1, 2, 5, 100, 10**9])
@pytest.mark.parametrize("draw", [0.0, 0.5, 0.999])
def test_linear_is_constant(attempts: int, draw: float) -> None:
    assert next_delay_seconds(linear(30), attempts, lambda: draw) == 30.0


def test_linear_accepts_string_type() -> None:
    strategy = StrategyConfig.model_validate({"type": "linear", "duration": 7})
    assert next_delay_seconds(strategy, 3, half) == 7.0


def test_exponential_schedule_without_jitter() -> None:
    delays = [next_delay_seconds(exponential(10, 7200), n, half) for n in range(1, 12)]
    assert delays == [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 7200]


def test_exponential_jitter_bounds() -> None:
    strategy = exponential(10, 7200)
    assert next_delay_seconds(strategy, 3, lambda: 0.0) == pytest.approx(32.0)
    assert next_delay_seconds(strategy, 3, lambda: 0.25) == pytest.approx(36.0)
    assert next_delay_seconds(strategy, 3, lambda: 0.999999) == pytest.approx(48.0, rel=1e-5)


def test_jitter_never_exceeds_cap() -> None:
    strategy = exponential(10, 90)
    assert next_delay_seconds(strategy, 4, lambda: 0.99) == 90.0  # 80 * 1.196 -> capped
    assert next_delay_seconds(strategy, 4, lambda: 0.0) == pytest.approx(64.0)
    assert next_delay_seconds(strategy, 50, lambda: 0.99) == 90.0
    assert next_delay_seconds(strategy, 50, lambda: 0.0) == pytest.approx(72.0)


def test_out_of_range_draws_are_clamped() -> None:
    strategy = exponential(10, 7200)
    assert next_delay_seconds(strategy, 1, lambda: -5.0) == pytest.approx(8.0)
    assert next_delay_seconds(strategy, 1, lambda: 7.0) == pytest.approx(12.0)


def test_huge_attempt_count_is_fast_and_capped() -> None:
    assert next_delay_seconds(exponential(1, 600), 10**12, half) == 600.0


@pytest.mark.parametrize("attempts", [0, -1])
def test_attempts_must_be_positive(attempts: int) -> None:
    with pytest.raises(ValueError, match="attempts_made"):
        next_delay_seconds(exponential(), attempts, half)


strategies = st.builds(
    StrategyConfig,
    type=st.sampled_from(list(StrategyType)),
    duration=st.integers(1, 86_400),
    retry_count=st.integers(1, 100),
    max_retry_seconds=st.integers(1, 7 * 86_400),
)
draws = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


@given(strategy=strategies, attempts=st.integers(1, 10_000), draw=draws)
def test_delay_within_bounds(strategy: StrategyConfig, attempts: int, draw: float) -> None:
    delay = next_delay_seconds(strategy, attempts, lambda: draw)
    assert math.isfinite(delay)
    if strategy.type == StrategyType.LINEAR:
        assert delay == strategy.duration
        return
    base = min(strategy.max_retry_seconds, strategy.duration * 2 ** min(attempts - 1, 80))
    assert delay <= strategy.max_retry_seconds
    assert 0.8 * base - 1e-9 <= delay <= 1.2 * base + 1e-9
    assert delay == pytest.approx(min(strategy.max_retry_seconds, base * (0.8 + 0.4 * draw)))


@given(
    duration=st.integers(1, 86_400),
    cap=st.integers(1, 7 * 86_400),
    attempts=st.integers(1, 200),
)
def test_exponential_without_jitter_is_non_decreasing(
    duration: int, cap: int, attempts: int
) -> None:
    strategy = exponential(duration, cap)
    now = next_delay_seconds(strategy, attempts, half)
    later = next_delay_seconds(strategy, attempts + 1, half)
    assert now <= later <= cap
    assert now == min(cap, duration * 2 ** (attempts - 1))


# --- decide_after_failure -------------------------------------------------------------


def decide(**overrides: object) -> RetryDecision:
    args: dict[str, object] = {
        "attempts_made": 1,
        "retry_limit": 5,
        "strategy": exponential(10, 7200),
        "now_us": NOW_US,
        "rand": half,
    }
    args.update(overrides)
    return decide_after_failure(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(("made", "limit"), [(5, 5), (6, 5), (1, 1)])
def test_failure_once_limit_reached(made: int, limit: int) -> None:
    got = decide(attempts_made=made, retry_limit=limit, retry_after_seconds=10.0)
    assert got == RetryDecision(DeliveryStatus.FAILURE, None, "retry limit exceeded")


@pytest.mark.parametrize(("made", "delay"), [(1, 10), (2, 20), (4, 80)])
def test_retry_uses_backoff(made: int, delay: int) -> None:
    got = decide(attempts_made=made)
    assert got.status is DeliveryStatus.RETRY
    assert got.next_attempt_at_us == NOW_US + delay * 1_000_000
    assert "exponential backoff" in got.reason


def test_retry_linear() -> None:
    got = decide(attempts_made=3, strategy=linear(45))
    assert got.next_attempt_at_us == NOW_US + 45_000_000
    assert "linear" in got.reason


def test_retry_keeps_sub_second_jitter() -> None:
    got = decide(attempts_made=1, rand=lambda: 0.1)  # 10 * 0.84 = 8.4s
    assert got.next_attempt_at_us == NOW_US + 8_400_000


@pytest.mark.parametrize(
    ("retry_after", "expected_s"),
    [
        (120.0, 120.0),  # longer than the backoff (10s): honoured
        (3.0, 3.0),  # shorter than the backoff: honoured too
        (0.0, 1.0),  # held to at least one second
        (0.25, 1.0),
        (10_000.0, 3600.0),  # capped
    ],
)
def test_retry_after_overrides_backoff(retry_after: float, expected_s: float) -> None:
    got = decide(retry_after_seconds=retry_after)
    assert got.status is DeliveryStatus.RETRY
    assert got.next_attempt_at_us == NOW_US + round(expected_s * 1_000_000)
    assert "Retry-After" in got.reason


def test_retry_after_cap_is_configurable() -> None:
    got = decide(retry_after_seconds=500.0, max_retry_after_seconds=60.0)
    assert got.next_attempt_at_us == NOW_US + 60_000_000


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_non_finite_retry_after_is_ignored(bad: float) -> None:
    got = decide(retry_after_seconds=bad)
    assert got.next_attempt_at_us == NOW_US + 10_000_000


@given(
    made=st.integers(1, 100),
    limit=st.integers(1, 100),
    strategy=strategies,
    draw=draws,
    retry_after=st.none() | st.floats(min_value=0, max_value=1e9),
)
def test_decision_is_consistent(
    made: int, limit: int, strategy: StrategyConfig, draw: float, retry_after: float | None
) -> None:
    got = decide(
        attempts_made=made,
        retry_limit=limit,
        strategy=strategy,
        rand=lambda: draw,
        retry_after_seconds=retry_after,
    )
    if made >= limit:
        assert got.status is DeliveryStatus.FAILURE
        assert got.next_attempt_at_us is None
        return
    assert got.status is DeliveryStatus.RETRY
    assert got.next_attempt_at_us is not None
    wait_s = (got.next_attempt_at_us - NOW_US) / 1_000_000
    if retry_after is None:
        assert wait_s == pytest.approx(next_delay_seconds(strategy, made, lambda: draw), abs=1e-6)
    else:
        assert 1.0 <= wait_s <= 3600.0
