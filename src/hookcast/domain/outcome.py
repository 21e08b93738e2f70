"""What one delivery attempt's result means for the delivery.

The worker hands over what it saw (a status code, or an error when no response came back,
plus the response headers) and gets back an :class:`Outcome`. Only a 2xx is a success;
redirects are not followed and count as failures, as in Convoy. A ``410 Gone`` asks for
the endpoint to be disabled, and ``429``/``503`` may carry a ``Retry-After`` hint.
"""

from __future__ import annotations

import email.utils
import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC

_DELTA_SECONDS = re.compile(r"\d+(?:\.\d+)?", re.ASCII)
_RETRY_AFTER = "retry-after"
_HINTED_STATUSES = frozenset({429, 503})


class OutcomeKind(enum.StrEnum):
    SUCCESS = "success"
    RETRY = "retry"
    #: stop without retrying; never returned by :func:`classify`, but callers such as
    #: at-most-once delivery turn a failure into this
    GIVE_UP = "give_up"
    DISABLE_ENDPOINT = "disable_endpoint"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The verdict on one attempt. ``retry_after_seconds`` is the server's own wait hint,
    when it gave a usable one; ``reason`` is a short human explanation."""

    kind: OutcomeKind
    retry_after_seconds: float | None
    reason: str


def _parse_http_date(value: str, now_s: float) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # HTTP dates are always GMT
    return when.timestamp() - now_s


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds the server asked us to wait, from a ``Retry-After`` value.

    Accepts delta-seconds (leniently, a decimal fraction too) and HTTP-dates, the latter
    measured from ``now_s``. Anything unusable (missing, unparsable, a date already past,
    a number too large to represent) gives None, and nothing raises.
    """
    if value is None:
        return None
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        seconds = float(text)
    else:
        parsed = _parse_http_date(text, now_s)
        if parsed is None:
            return None
        seconds = parsed
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup that also works on a plain dict."""
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _retry_hint(headers: Mapping[str, str], now_s: float) -> float | None:
    return parse_retry_after(_header(headers, _RETRY_AFTER), now_s)


def classify(
    status_code: int | None, error: str | None, headers: Mapping[str, str], now_s: float
) -> Outcome:
    """Judge one attempt from its status code (None when no response arrived, with
    ``error`` saying why), the response headers and the current time in seconds."""
    if status_code is None:
        return Outcome(OutcomeKind.RETRY, None, error or "no response")
    if 200 <= status_code < 300:
        return Outcome(OutcomeKind.SUCCESS, None, f"HTTP {status_code}")
    if status_code == 410:
        return Outcome(OutcomeKind.DISABLE_ENDPOINT, None, "HTTP 410 (endpoint is gone)")
    if status_code in _HINTED_STATUSES:
        return Outcome(OutcomeKind.RETRY, _retry_hint(headers, now_s), f"HTTP {status_code}")
    if 300 <= status_code < 400:
        return Outcome(OutcomeKind.RETRY, None, "redirect not followed (3xx is a failure)")
    return Outcome(OutcomeKind.RETRY, None, f"HTTP {status_code}")
