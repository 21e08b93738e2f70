"""The per-endpoint circuit breaker: transitions, window, snapshot, persistence."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from hookcast.domain.breaker import (
    Admission,
    Breaker,
    BreakerConfig,
    BreakerState,
    Tally,
    Transition,
    TransitionKind,
    admit,
    from_json,
    new_breaker,
    open_duration_us,
    record,
    snapshot,
    to_json,
)

NOW_US = 1_700_000_000_000_000
S = 1_000_000


def config(**overrides: Any) -> BreakerConfig:
    return BreakerConfig(**overrides)


def feed(
    b: Breaker, cfg: BreakerConfig, outcomes: str, now_us: int = NOW_US
) -> tuple[Breaker, list[Transition]]:
    """Record ``outcomes`` ("s" success, "f" failure) at ``now_us``."""
    transitions = []
    for c in outcomes:
        b, t = record(b, cfg, now_us, c == "s")
        if t is not None:
            transitions.append(t)
    return b, transitions


def tripped(cfg: BreakerConfig, now_us: int = NOW_US) -> Breaker:
    b, transitions = feed(new_breaker(), cfg, "f" * cfg.minimum_request_count, now_us)
    assert b.state == BreakerState.OPEN
    assert [t.kind for t in transitions] == [TransitionKind.OPENED]
    return b


def half_open(cfg: BreakerConfig, now_us: int = NOW_US) -> tuple[Breaker, int]:
    """A breaker just turned half-open by one admitted probe, and the instant it happened."""
    b = tripped(cfg, now_us)
    at = b.opened_until_us
    assert at is not None
    b, adm = admit(b, cfg, at)
    assert adm == Admission(True, None, TransitionKind.HALF_OPENED)
    return b, at


# --- config ---------------------------------------------------------------------------


def test_config_defaults() -> None:
    cfg = BreakerConfig()
    assert (cfg.failure_threshold, cfg.minimum_request_count, cfg.observability_window_s) == (
        50,
        10,
        60,
    )
    assert (cfg.error_timeout_s, cfg.half_open_probes, cfg.success_threshold) == (30, 1, 1)
    assert (cfg.disable_after_trips, cfg.max_error_timeout_s) == (5, 600)


def test_config_ignores_unknown_keys() -> None:
    assert (
        BreakerConfig.model_validate({"failure_threshold": 70, "nope": 1}).failure_threshold == 70
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"failure_threshold": 0},
        {"failure_threshold": 101},
        {"minimum_request_count": 0},
        {"observability_window_s": 0},
        {"error_timeout_s": 0},
        {"half_open_probes": 0},
        {"success_threshold": 0},
        {"disable_after_trips": -1},
        {"max_error_timeout_s": 0},
    ],
)
def test_config_rejects_out_of_range(bad: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        BreakerConfig.model_validate(bad)


# --- closed -> open -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcomes", "minimum", "threshold", "opens"),
    [
        ("f" * 9, 10, 50, False),  # below the minimum sample, however bad
        ("f" * 10, 10, 50, True),
        ("s" * 5 + "f" * 5, 10, 50, True),  # exactly at the threshold
        ("s" * 6 + "f" * 4, 10, 50, False),
        ("s" * 6 + "f" * 4, 10, 40, True),
        ("f" * 4 + "s" * 6, 10, 40, False),  # a success never trips
        ("f" * 4 + "s" * 6 + "f", 10, 40, True),  # 5/11 >= 40%
        ("s" * 99 + "f", 100, 1, True),
        ("s" * 100 + "f", 100, 1, False),  # 1/101 < 1%
        ("f", 1, 100, True),
        ("sf", 1, 100, False),
    ],
)
def test_closed_opens_only_with_minimum_sample_and_rate(
    outcomes: str, minimum: int, threshold: int, opens: bool
) -> None:
    cfg = config(minimum_request_count=minimum, failure_threshold=threshold)
    b, transitions = feed(new_breaker(), cfg, outcomes)
    assert (b.state == BreakerState.OPEN) is opens
    assert transitions == ([Transition(TransitionKind.OPENED, False)] if opens else [])


def test_opening_sets_the_first_timeout_and_counts_a_trip() -> None:
    b = tripped(config(error_timeout_s=30))
    assert b.opened_until_us == NOW_US + 30 * S
    assert b.consecutive_trips == 1


@pytest.mark.parametrize(
    ("age_s", "opens"),
    [(0, True), (30, True), (59, True), (60, False), (61, False), (3600, False)],
)
def test_window_slides_so_old_failures_expire(age_s: int, opens: bool) -> None:
    cfg = config(observability_window_s=60, minimum_request_count=10)
    b, _ = feed(new_breaker(), cfg, "f" * 9, NOW_US)
    b, transitions = feed(b, cfg, "f", NOW_US + age_s * S)
    assert (b.state == BreakerState.OPEN) is opens
    assert bool(transitions) is opens


def test_window_keeps_one_bucket_per_second() -> None:
    cfg = config(minimum_request_count=1000)
    b, _ = feed(new_breaker(), cfg, "ssf", NOW_US)
    b, _ = feed(b, cfg, "ff", NOW_US + S // 2)  # same second
    b, _ = feed(b, cfg, "s", NOW_US + 3 * S)
    sec = NOW_US // S
    assert b.window == (Tally(sec, 2, 3), Tally(sec + 3, 1, 0))


def test_a_clock_going_back_lands_in_the_newest_bucket() -> None:
    cfg = config(minimum_request_count=1000)
    b, _ = feed(new_breaker(), cfg, "s", NOW_US + 10 * S)
    b, _ = feed(b, cfg, "f", NOW_US)
    assert b.window == (Tally(NOW_US // S + 10, 1, 1),)


def test_closed_always_admits() -> None:
    cfg = config()
    b, _ = feed(new_breaker(), cfg, "f" * 9)
    assert admit(b, cfg, NOW_US) == (b, Admission(True, None, None))


# --- open -----------------------------------------------------------------------------


@pytest.mark.parametrize("offset_us", [0, 1, 15 * S, 30 * S - 1])
def test_open_rejects_with_retry_at(offset_us: int) -> None:
    cfg = config(error_timeout_s=30)
    b = tripped(cfg)
    assert admit(b, cfg, NOW_US + offset_us) == (b, Admission(False, NOW_US + 30 * S, None))


@pytest.mark.parametrize("offset_us", [30 * S, 30 * S + 1, 3600 * S])
def test_open_turns_half_open_at_opened_until(offset_us: int) -> None:
    cfg = config(error_timeout_s=30)
    b, adm = admit(tripped(cfg), cfg, NOW_US + offset_us)
    assert adm == Admission(True, None, TransitionKind.HALF_OPENED)
    assert b.state == BreakerState.HALF_OPEN
    assert (b.half_open_in_flight, b.half_open_successes) == (1, 0)


def test_late_results_while_open_are_tallied_but_change_nothing() -> None:
    cfg = config()
    b = tripped(cfg)
    after, t = feed(b, cfg, "ssf", NOW_US + S)
    assert t == []
    assert after.state == BreakerState.OPEN
    assert after.opened_until_us == b.opened_until_us
    assert snapshot(after, NOW_US + S, cfg)["requests"] == 13


# --- half-open ------------------------------------------------------------------------


@pytest.mark.parametrize("probes", [1, 2, 5])
def test_half_open_admits_only_n_probes(probes: int) -> None:
    cfg = config(half_open_probes=probes, error_timeout_s=30)
    b, at = half_open(cfg)
    for _ in range(probes - 1):
        b, adm = admit(b, cfg, at)
        assert adm == Admission(True, None, None)
    assert b.half_open_in_flight == probes
    after, adm = admit(b, cfg, at + S)
    assert after == b
    assert adm == Admission(False, at + 30 * S, None)  # the probes' lease


def test_a_returned_probe_frees_its_slot() -> None:
    cfg = config(half_open_probes=1, success_threshold=2)
    b, at = half_open(cfg)
    b, t = record(b, cfg, at + S, True)
    assert t is None
    assert (b.state, b.half_open_in_flight, b.half_open_successes) == (BreakerState.HALF_OPEN, 0, 1)
    assert admit(b, cfg, at + S)[1].allowed


def test_lost_probes_expire_so_the_breaker_cannot_wedge() -> None:
    cfg = config(half_open_probes=1, error_timeout_s=30)
    b, at = half_open(cfg)
    assert not admit(b, cfg, at + 30 * S - 1)[1].allowed
    b, adm = admit(b, cfg, at + 30 * S)
    assert adm == Admission(True, None, None)
    assert b.half_open_in_flight == 1
    assert b.probe_expires_us == at + 60 * S


@pytest.mark.parametrize("threshold", [1, 2, 4])
def test_half_open_closes_after_success_threshold_and_resets(threshold: int) -> None:
    cfg = config(success_threshold=threshold, half_open_probes=threshold)
    b, at = half_open(cfg)
    for _ in range(threshold - 1):
        b, _ = admit(b, cfg, at)
    for i in range(threshold):
        b, t = record(b, cfg, at + S, True)
        last = i == threshold - 1
        assert t == (Transition(TransitionKind.CLOSED, False) if last else None)
    assert b == new_breaker()
    assert b.consecutive_trips == 0


def test_after_closing_the_old_failures_are_forgotten() -> None:
    cfg = config(minimum_request_count=10)
    b, at = half_open(cfg)
    b, _ = record(b, cfg, at, True)
    b, transitions = feed(b, cfg, "f" * 9, at)
    assert b.state == BreakerState.CLOSED
    assert transitions == []


@pytest.mark.parametrize(
    ("timeout_s", "cap_s", "trips", "expected_s"),
    [
        (30, 600, 1, 30),
        (30, 600, 2, 60),
        (30, 600, 3, 120),
        (30, 600, 5, 480),
        (30, 600, 6, 600),
        (30, 600, 10**6, 600),
        (10, 5, 1, 5),  # a cap below the base timeout wins
        (1, 604_800, 21, 604_800),
    ],
)
def test_open_duration_doubles_and_is_capped(
    timeout_s: int, cap_s: int, trips: int, expected_s: int
) -> None:
    cfg = config(error_timeout_s=timeout_s, max_error_timeout_s=cap_s)
    assert open_duration_us(cfg, trips) == expected_s * S


def reopen(b: Breaker, cfg: BreakerConfig) -> tuple[Breaker, Transition | None, int]:
    """Wait out the open time, admit a probe, fail it."""
    assert b.opened_until_us is not None
    at = b.opened_until_us
    b, adm = admit(b, cfg, at)
    assert adm.allowed
    b, t = record(b, cfg, at, False)
    return b, t, at


def test_half_open_failure_reopens_with_doubled_capped_timeout() -> None:
    cfg = config(error_timeout_s=30, max_error_timeout_s=200, disable_after_trips=0)
    b = tripped(cfg)
    expected = [60, 120, 200, 200]
    for trips, seconds in enumerate(expected, start=2):
        b, t, at = reopen(b, cfg)
        assert t == Transition(TransitionKind.REOPENED, False)
        assert b.state == BreakerState.OPEN
        assert b.consecutive_trips == trips
        assert b.opened_until_us == at + seconds * S
        assert (b.half_open_in_flight, b.half_open_successes) == (0, 0)


@pytest.mark.parametrize(("limit", "disable_at"), [(1, 1), (2, 2), (5, 5), (0, None)])
def test_disable_flag_after_n_consecutive_trips(limit: int, disable_at: int | None) -> None:
    cfg = config(disable_after_trips=limit)
    b, transitions = feed(new_breaker(), cfg, "f" * cfg.minimum_request_count)
    flags = [transitions[0].disable]
    for _ in range(6):
        b, t, _ = reopen(b, cfg)
        assert t is not None
        flags.append(t.disable)
    expected = [disable_at is not None and trip >= disable_at for trip in range(1, 8)]
    assert flags == expected


def test_closing_resets_the_trip_count_toward_disabling() -> None:
    cfg = config(disable_after_trips=2)
    b = tripped(cfg)
    assert b.opened_until_us is not None
    b, _ = admit(b, cfg, b.opened_until_us)
    b, t = record(b, cfg, b.opened_until_us or 0, True)
    assert t == Transition(TransitionKind.CLOSED, False)
    b, transitions = feed(b, cfg, "f" * 10, NOW_US + 3600 * S)
    assert transitions == [Transition(TransitionKind.OPENED, False)]


# --- snapshot -------------------------------------------------------------------------


def test_snapshot_of_a_new_breaker() -> None:
    assert snapshot(new_breaker(), NOW_US) == {
        "state": "closed",
        "failure_rate": 0.0,
        "requests": 0,
        "failures": 0,
        "opened_until": None,
        "consecutive_trips": 0,
    }


def test_snapshot_counts_the_window_as_of_now() -> None:
    cfg = config(minimum_request_count=100, observability_window_s=60)
    b, _ = feed(new_breaker(), cfg, "sssf", NOW_US)
    b, _ = feed(b, cfg, "sf", NOW_US + 30 * S)
    assert snapshot(b, NOW_US + 30 * S, cfg) == {
        "state": "closed",
        "failure_rate": pytest.approx(2 / 6),
        "requests": 6,
        "failures": 2,
        "opened_until": None,
        "consecutive_trips": 0,
    }
    later = snapshot(b, NOW_US + 60 * S, cfg)
    assert (later["requests"], later["failures"], later["failure_rate"]) == (2, 1, 0.5)
    assert snapshot(b, NOW_US + 90 * S, cfg)["requests"] == 0


def test_snapshot_of_an_open_breaker() -> None:
    cfg = config(error_timeout_s=30)
    snap = snapshot(tripped(cfg), NOW_US + S, cfg)
    assert snap == {
        "state": "open",
        "failure_rate": 1.0,
        "requests": 10,
        "failures": 10,
        "opened_until": NOW_US + 30 * S,
        "consecutive_trips": 1,
    }
    b, _ = half_open(cfg)
    assert snapshot(b, NOW_US + 30 * S, cfg)["opened_until"] is None
    assert snapshot(b, NOW_US + 30 * S, cfg)["state"] == "half_open"


def test_snapshot_uses_the_default_window_without_config() -> None:
    cfg = config(minimum_request_count=100)
    b, _ = feed(new_breaker(), cfg, "f", NOW_US)
    assert snapshot(b, NOW_US + 59 * S)["requests"] == 1
    assert snapshot(b, NOW_US + 60 * S)["requests"] == 0


# --- persistence ----------------------------------------------------------------------


def test_json_roundtrip_of_each_state() -> None:
    cfg = config(half_open_probes=2, success_threshold=2)
    closed, _ = feed(new_breaker(), cfg, "ssff")
    opened = tripped(cfg)
    half, at = half_open(cfg)
    half, _ = record(half, cfg, at, True)
    for b in (new_breaker(), closed, opened, half):
        stored = json.loads(json.dumps(to_json(b)))
        assert from_json(stored) == b


def test_json_is_small() -> None:
    b = tripped(config())
    assert set(to_json(b)) == {
        "state",
        "window",
        "opened_until_us",
        "consecutive_trips",
        "half_open_in_flight",
        "half_open_successes",
        "probe_expires_us",
    }
    assert to_json(b)["window"] == [[NOW_US // S, 0, 10]]


def _without(key: str) -> dict[str, Any]:
    d = to_json(tripped(config()))
    del d[key]
    return d


def _with(key: str, value: object) -> dict[str, Any]:
    d = to_json(tripped(config()))
    d[key] = value
    return d


@pytest.mark.parametrize(
    "stored",
    [
        None,
        [],
        "open",
        {},
        _without("state"),
        _without("window"),
        _without("opened_until_us"),
        _without("consecutive_trips"),
        _without("half_open_in_flight"),
        _without("half_open_successes"),
        _without("probe_expires_us"),
        _with("state", "ajar"),
        _with("state", None),
        _with("opened_until_us", None),  # open without an end
        _with("opened_until_us", "soon"),
        _with("consecutive_trips", -1),
        _with("consecutive_trips", True),
        _with("consecutive_trips", 1.5),
        _with("window", "x"),
        _with("window", [[1, 2]]),
        _with("window", [[1, 2, -3]]),
        _with("window", [None]),
    ],
)
def test_from_json_falls_back_to_a_new_breaker(stored: object) -> None:
    assert from_json(stored) == new_breaker()


def test_from_json_ignores_extra_keys_and_sorts_the_window() -> None:
    d = to_json(new_breaker())
    d["window"] = [[20, 1, 0], [10, 0, 1]]
    d["future"] = "field"
    assert from_json(d).window == (Tally(10, 0, 1), Tally(20, 1, 0))


# --- properties -----------------------------------------------------------------------

CONFIGS = st.builds(
    BreakerConfig,
    failure_threshold=st.integers(1, 100),
    minimum_request_count=st.integers(1, 20),
    observability_window_s=st.integers(1, 30),
    error_timeout_s=st.integers(1, 20),
    half_open_probes=st.integers(1, 3),
    success_threshold=st.integers(1, 3),
    disable_after_trips=st.integers(0, 4),
    max_error_timeout_s=st.integers(1, 100),
)
#: (microseconds to advance, operation): "a" admit, "s"/"f" record a success/failure
STEPS = st.lists(
    st.tuples(st.integers(0, 10 * S), st.sampled_from("asf")), min_size=1, max_size=200
)


def check_invariants(b: Breaker, cfg: BreakerConfig, now_us: int) -> None:
    assert len(b.window) <= cfg.observability_window_s
    seconds = [t.second for t in b.window]
    assert seconds == sorted(set(seconds))
    if seconds:
        assert seconds[-1] - seconds[0] < cfg.observability_window_s
        assert seconds[-1] <= now_us // S
    assert 0 <= b.half_open_in_flight <= cfg.half_open_probes
    assert b.half_open_successes < cfg.success_threshold
    if b.state == BreakerState.CLOSED:
        assert (b.opened_until_us, b.consecutive_trips, b.half_open_in_flight) == (None, 0, 0)
    else:
        assert b.opened_until_us is not None
        assert b.consecutive_trips >= 1
    assert from_json(json.loads(json.dumps(to_json(b)))) == b


@given(CONFIGS, STEPS)
def test_any_sequence_keeps_the_invariants(
    cfg: BreakerConfig, steps: list[tuple[int, str]]
) -> None:
    b, now = new_breaker(), NOW_US
    for gap, op in steps:
        now += gap
        if op == "a":
            b, adm = admit(b, cfg, now)
            assert adm.allowed == (adm.retry_at_us is None)
            assert adm.retry_at_us is None or adm.retry_at_us > now
        else:
            b, _ = record(b, cfg, now, op == "s")
        check_invariants(b, cfg, now)


@given(CONFIGS, st.lists(st.tuples(st.integers(0, 3 * S), st.booleans()), max_size=200))
def test_closed_breaker_opens_exactly_when_the_window_says_so(
    cfg: BreakerConfig, results: list[tuple[int, bool]]
) -> None:
    """Against a naive model that keeps every result: the breaker opens on the first
    failure after which the last ``observability_window_s`` seconds hold enough requests
    with a high enough failure rate."""
    b, now, seen = new_breaker(), NOW_US, []
    for gap, success in results:
        now += gap
        seen.append((now // S, success))
        b, t = record(b, cfg, now, success)
        recent = [ok for sec, ok in seen if sec > now // S - cfg.observability_window_s]
        failures = recent.count(False)
        should = (
            not success
            and len(recent) >= cfg.minimum_request_count
            and failures * 100 >= cfg.failure_threshold * len(recent)
        )
        assert (t is not None) is should
        if should:
            assert b.state == BreakerState.OPEN
            return
        assert b.state == BreakerState.CLOSED
        assert snapshot(b, now, cfg)["requests"] == len(recent)
        assert snapshot(b, now, cfg)["failures"] == failures


@given(CONFIGS, st.integers(1, 30))
def test_retry_at_of_open_breaker_is_honoured(cfg: BreakerConfig, trips: int) -> None:
    b, tripped_at = tripped(cfg), NOW_US
    for _ in range(trips - 1):
        b, _, tripped_at = reopen(b, cfg)
    assert b.consecutive_trips == trips
    assert b.opened_until_us == tripped_at + open_duration_us(cfg, trips)
    assert b.opened_until_us - tripped_at <= cfg.max_error_timeout_s * S
    _, adm = admit(b, cfg, b.opened_until_us - 1)
    assert adm == Admission(False, b.opened_until_us, None)
    assert admit(b, cfg, b.opened_until_us)[1].allowed
