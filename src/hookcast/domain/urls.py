"""Validation of endpoint URLs at create and update time.

A URL accepted here can always be sent to: its host encodes to ASCII (IDNA), each label
fits DNS's limits, and nothing in it can split the request line (no whitespace or control
characters, which ``urlsplit`` would otherwise drop or keep silently).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from hookcast.domain.errors import ValidationError

_UNSAFE = re.compile(r"[\x00-\x20\x7f]")
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
MAX_HOST_CHARS = 253


def ascii_host(host: str) -> str:
    """*host* as it goes in a request (IDNA-encoded), or ValueError saying why it cannot.
    IP literals pass as they are."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return host
    name = host[:-1] if host.endswith(".") else host
    try:
        encoded = name.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"the host {host[:80]!r} cannot be encoded: {exc}") from exc
    if not encoded or len(encoded) > MAX_HOST_CHARS:
        raise ValueError(f"the host must hold 1 to {MAX_HOST_CHARS} characters")
    for label in encoded.split("."):
        if not _LABEL.fullmatch(label):
            raise ValueError(
                f"the host label {label[:70]!r} is not valid (1-63 letters, digits, '-' or '_', "
                "not starting or ending with '-')"
            )
    return encoded


def validate_endpoint_url(url: str, *, require_https: bool) -> str:
    url = url.strip()
    if not url:
        raise ValidationError("please provide the endpoint url")
    found = _UNSAFE.search(url)
    if found is not None:
        raise ValidationError(
            f"invalid endpoint url: it contains {found.group()!r}; spaces and control "
            "characters must be percent-encoded"
        )
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a bad port
    except ValueError as exc:
        raise ValidationError(f"invalid endpoint url: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise ValidationError("endpoint url must use http or https")
    if require_https and parts.scheme != "https":
        raise ValidationError("this project requires https endpoint urls")
    if not parts.hostname:
        raise ValidationError("endpoint url must have a host")
    if parts.username or parts.password:
        raise ValidationError("endpoint url must not carry credentials; use authentication")
    if port == 0:
        raise ValidationError("endpoint url has an invalid port")
    try:
        ascii_host(parts.hostname)
    except ValueError as exc:
        raise ValidationError(f"invalid endpoint url: {exc}") from exc
    return url
