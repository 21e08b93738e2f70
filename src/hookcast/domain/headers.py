"""Outgoing HTTP header names and values: the one place that turns values into header bytes.

Everything that becomes a header of a delivery (an event's ``custom_headers``, its
``idempotency_key``, an endpoint's ``authentication``, a project's ``request_id_header`` and
``signature.header``) is checked here twice: by the API when it is written (a 400 naming
the field), and again by :func:`encode_header_block` when the request is put on the wire,
so a value stored before these checks existed cannot slip through either.

Why it matters: a CR or LF inside a value ends the header block early, and what follows is
read by the receiver as a second request on the same keep-alive connection (request
smuggling). A configurable *name* such as ``Content-Length`` or ``Transfer-Encoding`` would
reframe the body the same way, so the framing headers are never configurable.

Rules (RFC 9110 §5.1, §5.5): a name is a non-empty token; a value holds no control
character but horizontal tab (so no CR, LF or NUL) and no leading or trailing whitespace.
Characters beyond ASCII are sent as UTF-8, whose bytes are all >= 0x80 and so never a
delimiter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from hookcast.domain.errors import ValidationError

MAX_NAME_CHARS = 100
MAX_VALUE_CHARS = 4096

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

#: headers that frame the message or the connection: the sender alone writes them
FRAMING = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "host",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "proxy-connection",
    }
)


class UnsafeHeaderError(ValidationError):
    """A header name or value that must not reach the wire."""


def name_problem(name: str) -> str | None:
    """Why *name* cannot be an outgoing header name a user configures, or None."""
    if not name:
        return "must not be empty"
    if len(name) > MAX_NAME_CHARS:
        return f"is longer than {MAX_NAME_CHARS} characters"
    if not _TOKEN.fullmatch(name):
        return "may hold only letters, digits and !#$%&'*+.^_`|~- (no spaces or control characters)"
    if name.lower() in FRAMING:
        return f"{name!r} frames the request and is set by hookcast itself"
    return None


def value_problem(value: str) -> str | None:
    """Why *value* cannot be an outgoing header value, or None."""
    if len(value) > MAX_VALUE_CHARS:
        return f"is longer than {MAX_VALUE_CHARS} characters"
    found = _CONTROL.search(value)
    if found is not None:
        return f"contains the control character {found.group()!r} (CR, LF, NUL and the like)"
    if value != value.strip(" \t"):
        return "has leading or trailing whitespace"
    return None


def check_name(name: str, field: str) -> str:
    """*name* when it is a safe header name, else a 400 naming *field*."""
    problem = name_problem(name)
    if problem is not None:
        raise ValidationError(f"{field}: the header name {problem}")
    return name


def check_value(value: str, field: str) -> str:
    """*value* when it is a safe header value, else a 400 naming *field*."""
    problem = value_problem(value)
    if problem is not None:
        raise ValidationError(f"{field}: the header value {problem}")
    return value


def check_headers(headers: Mapping[str, str], field: str) -> dict[str, str]:
    """A copy of *headers* when every name and value is safe, else a 400 naming *field*."""
    for name, value in headers.items():
        check_name(name, field)
        check_value(value, f"{field}[{name}]")
    return dict(headers)


def check_wire(name: str, value: str) -> None:
    """Refuse (before anything is sent) a header that could split the request, whatever
    checks it passed when it was stored."""
    if not _TOKEN.fullmatch(name) or name.lower() in FRAMING:
        raise UnsafeHeaderError(f"refused to send the header name {name[:60]!r}")
    if _CONTROL.search(value) is not None:
        raise UnsafeHeaderError(
            f"refused to send header {name!r}: its value contains a control character"
        )


def encode_header_block(headers: Mapping[str, str], *, checked: bool = False) -> bytes:
    """``Name: value\\r\\n`` lines for *headers*, each through :func:`check_wire` unless
    the caller did that already (*checked*) for every value that came from outside."""
    out = bytearray()
    for name, value in headers.items():
        if not checked:
            check_wire(name, value)
        out += name.encode("ascii")
        out += b": "
        out += value.encode("utf-8")
        out += b"\r\n"
    return bytes(out)
