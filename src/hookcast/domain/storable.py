"""Values from outside made storable in every store.

What a receiver answers is hostile input: a NUL byte that PostgreSQL's text type refuses,
a status code too large for an integer column, megabytes of text. Each store maps these
through here before it writes an attempt, so one receiver's answer can never fail the
write of a batch that other projects' results share.
"""

from __future__ import annotations

from dataclasses import replace

from hookcast.domain.models import Attempt
from hookcast.domain.ports.queue import AttemptRow

MAX_TEXT = 8192
#: the response excerpt kept: as much as HOOKCAST_RESPONSE_CAPTURE_BYTES may ask for
MAX_RESPONSE = 1_048_576
MAX_URL = 4096
MAX_HEADERS = 50
MAX_HEADER_CHARS = 1024
#: HTTP status codes are three digits; anything else is stored as 0 (no status)
MAX_STATUS = 999


def text(value: str, limit: int = MAX_TEXT) -> str:
    """*value* without NUL (replaced by U+FFFD) or lone surrogates, at most *limit* chars."""
    if len(value) > limit:
        value = value[:limit]
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def status(code: int) -> int:
    return code if 0 <= code <= MAX_STATUS else 0


def headers(values: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in values.items():
        if len(out) >= MAX_HEADERS:
            break
        out[text(str(name), MAX_HEADER_CHARS)] = text(str(value), MAX_HEADER_CHARS)
    return out


def attempt(a: Attempt) -> Attempt:
    """*a* with every field a store can hold."""
    return replace(
        a,
        url=text(a.url, MAX_URL),
        ip_address=text(a.ip_address, 64),
        request_headers=headers(a.request_headers),
        response_headers=headers(a.response_headers),
        http_status=status(a.http_status),
        response_data=text(a.response_data, MAX_RESPONSE),
        error=text(a.error),
    )


def bare(a: Attempt, why: str) -> Attempt:
    """The least of *a* worth keeping when even its cleaned form could not be stored: no
    response body or headers, and *why* as the error."""
    return replace(
        attempt(a),
        request_headers={},
        response_headers={},
        response_data="",
        error=text(why, 1000),
    )


def attempt_row(row: AttemptRow) -> AttemptRow:
    """*row* with every field a store can hold (the headers are JSON text already, which
    escapes NUL)."""
    if (
        0 <= row.http_status <= MAX_STATUS
        and _clean(row.response_data, MAX_RESPONSE)
        and _clean(row.error, MAX_TEXT)
        and _clean(row.url, MAX_URL)
    ):
        return row  # the common case: nothing to change
    return row._replace(
        url=text(row.url, MAX_URL),
        http_status=status(row.http_status),
        response_data=text(row.response_data, MAX_RESPONSE),
        error=text(row.error),
    )


def bare_row(row: AttemptRow, why: str) -> AttemptRow:
    """The least of an attempt worth keeping when even its cleaned form could not be
    stored: no response body or headers, and *why* as the error."""
    return attempt_row(row)._replace(
        request_headers="{}", response_headers="{}", response_data="", error=text(why, 1000)
    )


def _clean(value: str, limit: int) -> bool:
    return len(value) <= limit and "\x00" not in value and (value.isascii() or _encodes(value))


def _encodes(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
