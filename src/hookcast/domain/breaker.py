"""A per-endpoint circuit breaker, as pure state transitions.

Convoy's semantics, with a few improvements:

* **closed**: every request goes through; outcomes are tallied in a sliding window of
  per-second buckets (at most ``observability_window_s`` of them, whatever the traffic).
  A *failure* that leaves the window with at least ``minimum_request_count`` requests and a
  failure rate of at least ``failure_threshold`` percent trips the breaker. A success never
  trips it: it is evidence that the endpoint works right now.
* **open**: requests are refused until ``opened_until_us``; the caller is told when to come
  back. Each consecutive trip doubles the open time, from ``error_timeout_s`` up to
  ``max_error_timeout_s``. Late results of requests admitted earlier are tallied only.
* **half_open**: the first request at or after ``opened_until_us`` turns the breaker
  half-open; at most ``half_open_probes`` probes are in flight at once. Probes hold a
  lease of ``error_timeout_s``, so a probe whose result never comes back (a crashed
  worker) cannot wedge the breaker. ``success_threshold`` successes close it and forget
  the past (window and trip count); any failure opens it again.

After ``disable_after_trips`` consecutive trips each transition into *open* says that the
endpoint should be disabled (0 = never). Times are integer microseconds passed in.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_US_PER_SECOND = 1_000_000
#: beyond this many doublings every allowed timeout already exceeds every allowed cap
_MAX_DOUBLINGS = 62


class BreakerConfig(BaseModel):
    """Circuit-breaker settings of a project (durations in seconds)."""

    model_config = ConfigDict(extra="ignore", validate_assignment=True)

    #: failure rate (percent) within the window that trips the breaker
    failure_threshold: int = Field(default=50, ge=1, le=100)
    #: requests needed within the window before the failure rate counts
    minimum_request_count: int = Field(default=10, ge=1, le=1_000_000)
    #: length of the sliding window
    observability_window_s: int = Field(default=60, ge=1, le=86_400)
    #: how long the first trip keeps the breaker open
    error_timeout_s: int = Field(default=30, ge=1, le=86_400)
    #: probes admitted at once while half-open
    half_open_probes: int = Field(default=1, ge=1, le=1_000)
    #: probe successes that close a half-open breaker
    success_threshold: int = Field(default=1, ge=1, le=1_000)
    #: consecutive trips after which the endpoint should be disabled (0 = never)
    disable_after_trips: int = Field(default=5, ge=0, le=1_000)
    #: the cap on the doubling open time
    max_error_timeout_s: int = Field(default=600, ge=1, le=7 * 86_400)


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class TransitionKind(enum.StrEnum):
    #: closed -> open
    OPENED = "opened"
    #: open -> half_open (reported by :func:`admit`)
    HALF_OPENED = "half_opened"
    #: half_open -> closed
    CLOSED = "closed"
    #: half_open -> open
    REOPENED = "reopened"


@dataclass(frozen=True, slots=True)
class Tally:
    """Outcomes recorded during one whole second (``second`` = ``now_us // 1_000_000``)."""

    second: int
    successes: int
    failures: int


@dataclass(frozen=True, slots=True)
class Breaker:
    """The breaker of one endpoint. ``window`` is sorted by second, oldest first."""

    state: BreakerState
    window: tuple[Tally, ...]
    opened_until_us: int | None
    consecutive_trips: int
    half_open_in_flight: int
    half_open_successes: int
    #: when the in-flight probes are presumed lost and new ones may be admitted
    probe_expires_us: int | None


@dataclass(frozen=True, slots=True)
class Admission:
    """Whether a request may go now; when not, ``retry_at_us`` says when to ask again."""

    allowed: bool
    retry_at_us: int | None
    transition: TransitionKind | None


@dataclass(frozen=True, slots=True)
class Transition:
    """A state change caused by a result; ``disable`` asks for the endpoint to be disabled."""

    kind: TransitionKind
    disable: bool


def new_breaker() -> Breaker:
    return Breaker(
        state=BreakerState.CLOSED,
        window=(),
        opened_until_us=None,
        consecutive_trips=0,
        half_open_in_flight=0,
        half_open_successes=0,
        probe_expires_us=None,
    )


# --- the sliding window ---------------------------------------------------------------


def _second(window: tuple[Tally, ...], now_us: int) -> int:
    """The bucket ``now_us`` falls in; a clock that went back lands in the newest one."""
    second = now_us // _US_PER_SECOND
    return max(second, window[-1].second) if window else second


def _prune(window: tuple[Tally, ...], now_s: int, span_s: int) -> tuple[Tally, ...]:
    """Keep the buckets of the ``span_s`` seconds ending with ``now_s``."""
    oldest = now_s - span_s + 1
    return tuple(t for t in window if t.second >= oldest)


def _tally(window: tuple[Tally, ...], now_s: int, success: bool) -> tuple[Tally, ...]:
    ok, bad = (1, 0) if success else (0, 1)
    if window and window[-1].second == now_s:
        last = window[-1]
        return (*window[:-1], Tally(now_s, last.successes + ok, last.failures + bad))
    return (*window, Tally(now_s, ok, bad))


def _tallied(b: Breaker, cfg: BreakerConfig, now_us: int, success: bool) -> tuple[Tally, ...]:
    now_s = _second(b.window, now_us)
    return _tally(_prune(b.window, now_s, cfg.observability_window_s), now_s, success)


def _counts(window: tuple[Tally, ...]) -> tuple[int, int]:
    """(requests, failures) in ``window``."""
    failures = sum(t.failures for t in window)
    return sum(t.successes for t in window) + failures, failures


def _should_trip(window: tuple[Tally, ...], cfg: BreakerConfig) -> bool:
    requests, failures = _counts(window)
    return (
        requests >= cfg.minimum_request_count and failures * 100 >= cfg.failure_threshold * requests
    )


# --- opening --------------------------------------------------------------------------


def open_duration_us(cfg: BreakerConfig, trips: int) -> int:
    """How long the ``trips``-th consecutive trip (>= 1) keeps the breaker open."""
    doublings = min(max(trips - 1, 0), _MAX_DOUBLINGS)
    seconds = min(cfg.max_error_timeout_s, cfg.error_timeout_s << doublings)
    return seconds * _US_PER_SECOND


def _should_disable(cfg: BreakerConfig, trips: int) -> bool:
    return cfg.disable_after_trips > 0 and trips >= cfg.disable_after_trips


def _trip(
    b: Breaker, cfg: BreakerConfig, now_us: int, kind: TransitionKind
) -> tuple[Breaker, Transition]:
    trips = b.consecutive_trips + 1
    opened = replace(
        b,
        state=BreakerState.OPEN,
        opened_until_us=now_us + open_duration_us(cfg, trips),
        consecutive_trips=trips,
        half_open_in_flight=0,
        half_open_successes=0,
        probe_expires_us=None,
    )
    return opened, Transition(kind, _should_disable(cfg, trips))


# --- admission ------------------------------------------------------------------------


def _admit_probe(b: Breaker, cfg: BreakerConfig, now_us: int) -> Breaker:
    return replace(
        b,
        half_open_in_flight=b.half_open_in_flight + 1,
        probe_expires_us=now_us + cfg.error_timeout_s * _US_PER_SECOND,
    )


def _admit_open(b: Breaker, cfg: BreakerConfig, now_us: int) -> tuple[Breaker, Admission]:
    until = b.opened_until_us or 0
    if now_us < until:
        return b, Admission(False, until, None)
    half = replace(b, state=BreakerState.HALF_OPEN, half_open_in_flight=0, half_open_successes=0)
    return _admit_probe(half, cfg, now_us), Admission(True, None, TransitionKind.HALF_OPENED)


def _probes_lost(b: Breaker, now_us: int) -> bool:
    return b.probe_expires_us is None or now_us >= b.probe_expires_us


def _admit_half_open(b: Breaker, cfg: BreakerConfig, now_us: int) -> tuple[Breaker, Admission]:
    if b.half_open_in_flight >= cfg.half_open_probes:
        if not _probes_lost(b, now_us):
            return b, Admission(False, b.probe_expires_us, None)
        b = replace(b, half_open_in_flight=0)
    return _admit_probe(b, cfg, now_us), Admission(True, None, None)


def admit(b: Breaker, cfg: BreakerConfig, now_us: int) -> tuple[Breaker, Admission]:
    """Ask whether a request to the endpoint may go out at ``now_us``."""
    if b.state == BreakerState.OPEN:
        return _admit_open(b, cfg, now_us)
    if b.state == BreakerState.HALF_OPEN:
        return _admit_half_open(b, cfg, now_us)
    return b, Admission(True, None, None)


# --- results --------------------------------------------------------------------------


def _with_window(b: Breaker, window: tuple[Tally, ...]) -> Breaker:
    # built field by field: dataclasses.replace costs several times more, once per result
    return Breaker(
        b.state,
        window,
        b.opened_until_us,
        b.consecutive_trips,
        b.half_open_in_flight,
        b.half_open_successes,
        b.probe_expires_us,
    )


def _record_closed(
    b: Breaker, cfg: BreakerConfig, now_us: int, success: bool
) -> tuple[Breaker, Transition | None]:
    window = b.window
    now_s = now_us // _US_PER_SECOND
    if (
        success
        and window
        and window[-1].second == now_s
        and window[0].second > now_s - cfg.observability_window_s
    ):  # the common case: one more success in the current second, nothing to prune
        last = window[-1]
        tally = Tally(now_s, last.successes + 1, last.failures)
        return _with_window(b, (*window[:-1], tally)), None
    tallied = _with_window(b, _tallied(b, cfg, now_us, success))
    if success or not _should_trip(tallied.window, cfg):
        return tallied, None
    return _trip(tallied, cfg, now_us, TransitionKind.OPENED)


def _record_half_open(
    b: Breaker, cfg: BreakerConfig, now_us: int, success: bool
) -> tuple[Breaker, Transition | None]:
    tallied = replace(b, window=_tallied(b, cfg, now_us, success))
    if not success:
        return _trip(tallied, cfg, now_us, TransitionKind.REOPENED)
    successes = b.half_open_successes + 1
    if successes >= cfg.success_threshold:
        return new_breaker(), Transition(TransitionKind.CLOSED, False)
    in_flight = max(b.half_open_in_flight - 1, 0)
    return replace(tallied, half_open_in_flight=in_flight, half_open_successes=successes), None


def record(
    b: Breaker, cfg: BreakerConfig, now_us: int, success: bool
) -> tuple[Breaker, Transition | None]:
    """Take in the result of a request that went out (admitted by :func:`admit`)."""
    if b.state == BreakerState.CLOSED:
        return _record_closed(b, cfg, now_us, success)
    if b.state == BreakerState.HALF_OPEN:
        return _record_half_open(b, cfg, now_us, success)
    return replace(b, window=_tallied(b, cfg, now_us, success)), None


# --- display and persistence ----------------------------------------------------------


def snapshot(b: Breaker, now_us: int, cfg: BreakerConfig | None = None) -> dict[str, Any]:
    """What the endpoint object shows: the state, the window's counts as of ``now_us``, when
    an open breaker lets a probe through, and the consecutive trips. ``cfg`` gives the
    window length (the default configuration's when omitted)."""
    span = (cfg or BreakerConfig()).observability_window_s
    window = _prune(b.window, _second(b.window, now_us), span)
    requests, failures = _counts(window)
    return {
        "state": str(b.state),
        "failure_rate": failures / requests if requests else 0.0,
        "requests": requests,
        "failures": failures,
        "opened_until": b.opened_until_us if b.state == BreakerState.OPEN else None,
        "consecutive_trips": b.consecutive_trips,
    }


def to_json(b: Breaker) -> dict[str, Any]:
    """A small JSON-able dict; :func:`from_json` restores it."""
    return {
        "state": str(b.state),
        "window": [[t.second, t.successes, t.failures] for t in b.window],
        "opened_until_us": b.opened_until_us,
        "consecutive_trips": b.consecutive_trips,
        "half_open_in_flight": b.half_open_in_flight,
        "half_open_successes": b.half_open_successes,
        "probe_expires_us": b.probe_expires_us,
    }


class _Malformed(ValueError):
    pass


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Malformed(value)
    return value


def _optional_count(value: object) -> int | None:
    return None if value is None else _count(value)


def _window(value: object) -> tuple[Tally, ...]:
    if not isinstance(value, list | tuple):
        raise _Malformed(value)
    tallies: list[Tally] = []
    for item in value:
        if not isinstance(item, list | tuple) or len(item) != 3:
            raise _Malformed(item)
        tallies.append(Tally(_count(item[0]), _count(item[1]), _count(item[2])))
    return tuple(sorted(tallies, key=lambda t: t.second))


def _parse(d: Mapping[str, Any]) -> Breaker:
    state = BreakerState(d["state"])
    opened_until = _optional_count(d["opened_until_us"])
    if state != BreakerState.CLOSED and opened_until is None:
        raise _Malformed(d)
    return Breaker(
        state=state,
        window=_window(d["window"]),
        opened_until_us=opened_until,
        consecutive_trips=_count(d["consecutive_trips"]),
        half_open_in_flight=_count(d["half_open_in_flight"]),
        half_open_successes=_count(d["half_open_successes"]),
        probe_expires_us=_optional_count(d["probe_expires_us"]),
    )


def from_json(d: object) -> Breaker:
    """Restore a breaker saved by :func:`to_json`; anything missing or malformed gives a
    new (closed) breaker rather than an error."""
    if not isinstance(d, Mapping):
        return new_breaker()
    try:
        return _parse(d)
    except (KeyError, TypeError, ValueError):
        return new_breaker()


def state_counts(endpoints: int, stored: Iterable[object]) -> dict[str, int]:
    """Endpoints by breaker state, for the metrics gauge: *endpoints* in all, *stored* the
    breakers persisted on some of them (as :func:`to_json` wrote them); the rest have never
    tripped and are closed."""
    counts = dict.fromkeys((s.value for s in BreakerState), 0)
    seen = 0
    for doc in stored:
        counts[from_json(doc).state.value] += 1
        seen += 1
    counts[BreakerState.CLOSED.value] += max(endpoints - seen, 0)
    return counts
