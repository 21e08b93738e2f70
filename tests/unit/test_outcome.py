"""Classifying attempt results, and parsing Retry-After."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hookcast.domain.outcome import Outcome, OutcomeKind, classify, parse_retry_after

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def http_date(ts: float) -> str:
    return format_datetime(datetime.fromtimestamp(ts, tz=UTC), usegmt=True)


# --- classify -------------------------------------------------------------------------


@pytest.mark.parametrize("code", [200, 201, 202, 204, 299])
def test_2xx_is_success(code: int) -> None:
    assert classify(code, None, {}, NOW) == Outcome(OutcomeKind.SUCCESS, None, f"HTTP {code}")


@pytest.mark.parametrize("error", ["connection refused", "timeout after 10s", "connection reset"])
def test_no_response_retries_with_error_as_reason(error: str) -> None:
    assert classify(None, error, {}, NOW) == Outcome(OutcomeKind.RETRY, None, error)


def test_no_response_without_error_text() -> None:
    got = classify(None, None, {}, NOW)
    assert got.kind is OutcomeKind.RETRY
    assert got.reason == "no response"


def test_410_disables_endpoint() -> None:
    got = classify(410, None, {"Retry-After": "5"}, NOW)
    assert got.kind is OutcomeKind.DISABLE_ENDPOINT
    assert got.retry_after_seconds is None


@pytest.mark.parametrize("code", [301, 302, 303, 304, 307, 308])
def test_redirects_are_failures(code: int) -> None:
    got = classify(code, None, {"Location": "https://elsewhere.example"}, NOW)
    assert got == Outcome(OutcomeKind.RETRY, None, "redirect not followed (3xx is a failure)")


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 422, 500, 502, 504, 599, 100, 999])
def test_other_codes_retry(code: int) -> None:
    got = classify(code, None, {"Retry-After": "30"}, NOW)
    assert got == Outcome(OutcomeKind.RETRY, None, f"HTTP {code}")


@pytest.mark.parametrize("code", [429, 503])
@pytest.mark.parametrize("name", ["Retry-After", "retry-after", "RETRY-AFTER", "rEtRy-AfTeR"])
def test_429_and_503_carry_retry_after(code: int, name: str) -> None:
    got = classify(code, None, {"Content-Type": "text/plain", name: "120"}, NOW)
    assert got == Outcome(OutcomeKind.RETRY, 120.0, f"HTTP {code}")


def test_429_with_http_date() -> None:
    got = classify(429, None, {"Retry-After": http_date(NOW + 90)}, NOW)
    assert got.kind is OutcomeKind.RETRY
    assert got.retry_after_seconds == pytest.approx(90.0)


@pytest.mark.parametrize("value", ["soon", "-5", "", http_date(NOW - 60)])
def test_503_with_unusable_retry_after(value: str) -> None:
    got = classify(503, None, {"Retry-After": value}, NOW)
    assert got == Outcome(OutcomeKind.RETRY, None, "HTTP 503")


def test_429_without_retry_after() -> None:
    assert classify(429, None, {}, NOW).retry_after_seconds is None


def test_give_up_exists_for_callers() -> None:
    assert OutcomeKind.GIVE_UP.value == "give_up"
    assert {k.value for k in OutcomeKind} == {"success", "retry", "give_up", "disable_endpoint"}


@given(
    code=st.none() | st.integers(min_value=0, max_value=1000),
    error=st.none() | st.text(max_size=50),
    headers=st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=5),
)
def test_classify_never_gives_up_and_never_raises(
    code: int | None, error: str | None, headers: dict[str, str]
) -> None:
    got = classify(code, error, headers, NOW)
    assert got.kind is not OutcomeKind.GIVE_UP
    assert (got.kind is OutcomeKind.SUCCESS) == (code is not None and 200 <= code < 300)
    assert (got.kind is OutcomeKind.DISABLE_ENDPOINT) == (code == 410)
    if code not in (429, 503):
        assert got.retry_after_seconds is None


# --- parse_retry_after ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("120", 120.0),
        ("  45 ", 45.0),
        ("1.5", 1.5),
        ("007", 7.0),
    ],
)
def test_delta_seconds(value: str, expected: float) -> None:
    assert parse_retry_after(value, NOW) == expected


@pytest.mark.parametrize(
    "value",
    [
        "Tue, 14 Nov 2023 22:15:20 GMT",  # IMF-fixdate
        "Tuesday, 14-Nov-23 22:15:20 GMT",  # obsolete RFC 850
        "Tue Nov 14 22:15:20 2023",  # asctime, read as GMT
    ],
)
def test_http_date_forms(value: str) -> None:
    assert parse_retry_after(value, NOW) == pytest.approx(120.0)


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Kolkata"])
def test_zoneless_http_date_is_gmt_whatever_the_local_zone(
    zone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        assert parse_retry_after("Tue Nov 14 22:15:20 2023", NOW) == pytest.approx(120.0)
        assert parse_retry_after("Tue, 14 Nov 2023 22:15:20 -0000", NOW) == pytest.approx(120.0)
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        "-1",
        "+5",
        "1e3",
        "5 seconds",
        "later",
        "Tue, 14 Nov 2023 22:10:00 GMT",  # in the past
        "Mon, 1 Jan 99999 00:00:00 GMT",  # out of range
        "٣",  # a non-ASCII digit
        "9" * 400,  # would be infinite
    ],
)
def test_unusable_values(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None


@given(value=st.text(max_size=200), now=st.floats(min_value=0, max_value=4e9))
def test_parse_never_raises(value: str, now: float) -> None:
    got = parse_retry_after(value, now)
    assert got is None or (math.isfinite(got) and got >= 0)


@given(seconds=st.integers(min_value=0, max_value=10**12))
def test_delta_seconds_roundtrip(seconds: int) -> None:
    assert parse_retry_after(str(seconds), NOW) == float(seconds)


@given(ahead=st.integers(min_value=0, max_value=10 * 365 * 86_400))
def test_http_date_roundtrip(ahead: int) -> None:
    assert parse_retry_after(http_date(NOW + ahead), NOW) == pytest.approx(float(ahead))
