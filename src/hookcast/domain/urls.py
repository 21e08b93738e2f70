"""Validation of endpoint URLs at create and update time."""

from __future__ import annotations

from urllib.parse import urlsplit

from hookcast.domain.errors import ValidationError


def validate_endpoint_url(url: str, *, require_https: bool) -> str:
    url = url.strip()
    if not url:
        raise ValidationError("please provide the endpoint url")
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
    return url
