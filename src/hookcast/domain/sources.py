"""Sources (Convoy's): what a source may hold, and what an incoming request becomes.

Pure functions: :func:`check_source` validates the fields the API received (a
:class:`ValidationError` names the field), :func:`new_mask_id` makes the ingest URL's
mask from random bytes passed in, :func:`extract` reads a location such as
``request.header.X-Id``, ``request.body.data.id`` or ``request.query.id`` from a request,
:func:`idempotency_key` and :func:`event_type` turn a source's locations into the event's
key (a SHA-256, as Convoy) and type. :class:`SourceCatalog` is the store's port.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from hookcast.domain.errors import ValidationError
from hookcast.domain.models import Source, SourceType
from hookcast.domain.paging import Page, PageRequest
from hookcast.domain.verifiers import Request, build_verifier

#: the event type of an incoming event when the source names no location (or the request
#: has nothing there): ``*``, which every ``["*"]`` subscription matches
DEFAULT_EVENT_TYPE = "*"
MAX_LOCATIONS = 10
MAX_LOCATION_CHARS = 200
MAX_CUSTOM_BODY = 10_000
LOCATION_ROOTS = ("request.header.", "request.body.", "request.query.")
#: what a source's ``type`` may be on create today
ACCEPTED_TYPES = (SourceType.HTTP, SourceType.PUB_SUB)
#: ``pub_sub.type`` values a broker worker consumes (the inner config is theirs to check)
PUB_SUB_TYPES = frozenset({"amqp", "redis_stream"})


@dataclass(frozen=True, slots=True)
class SourceFields:
    """What the API lets a caller set on a source (create, or the merged update)."""

    name: str
    type: str
    provider: str
    is_disabled: bool
    verifier: dict[str, Any]
    custom_response: dict[str, Any] | None
    idempotency_keys: tuple[str, ...]
    forward_headers: tuple[str, ...]
    body_function: str
    header_function: str
    event_type_location: str
    pub_sub: dict[str, Any] | None


def check_location(location: str, field: str) -> str:
    location = location.strip()
    root = next((r for r in LOCATION_ROOTS if location.startswith(r)), None)
    if root is None or len(location) == len(root) or len(location) > MAX_LOCATION_CHARS:
        raise ValidationError(
            f"{field}: {location[:60]!r} is not a location: use request.header.<name>, "
            "request.body.<path> or request.query.<name>"
        )
    return location


def _check_custom_response(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    if not doc:
        return None
    body = doc.get("body", "")
    content_type = doc.get("content_type", "")
    if not isinstance(body, str) or not isinstance(content_type, str):
        raise ValidationError("custom_response: {body: string, content_type: string}")
    if len(body) > MAX_CUSTOM_BODY:
        raise ValidationError(f"custom_response.body: at most {MAX_CUSTOM_BODY} characters")
    if any(c in content_type for c in "\r\n\0") or len(content_type) > 200:
        raise ValidationError("custom_response.content_type: one header value, 200 characters")
    if not body and not content_type:
        return None
    return {"body": body, "content_type": content_type or "text/plain"}


def _check_pub_sub(doc: dict[str, Any] | None) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise ValidationError("pub_sub: required for a pub_sub source, an object")
    kind = doc.get("type")
    if kind not in PUB_SUB_TYPES:
        raise ValidationError(f"pub_sub.type: one of {', '.join(sorted(PUB_SUB_TYPES))}")
    workers = doc.get("workers", 1)
    if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= 64:
        raise ValidationError("pub_sub.workers: a whole number from 1 to 64")
    if not isinstance(doc.get(kind), dict):
        raise ValidationError(f"pub_sub.{kind}: required for pub_sub.type {kind}, an object")
    return doc


def check_source(fields: SourceFields) -> SourceFields:
    """The fields, normalised, or a :class:`ValidationError` naming what is wrong."""
    name = fields.name.strip()
    if not name:
        raise ValidationError("please provide a name for this source")
    if fields.type not in {t.value for t in SourceType}:
        raise ValidationError(
            "type: one of http, rest_api, pub_sub, db_change_stream (hookcast receives "
            "http and pub_sub)"
        )
    if fields.type not in ACCEPTED_TYPES:
        raise ValidationError(
            f"type: {fields.type} sources are not supported yet: use http (an ingest URL) "
            "or pub_sub (a broker queue)"
        )
    if len(fields.idempotency_keys) > MAX_LOCATIONS:
        raise ValidationError(f"idempotency_keys: at most {MAX_LOCATIONS} locations")
    keys = tuple(check_location(k, "idempotency_keys") for k in fields.idempotency_keys)
    event_type = fields.event_type_location.strip()
    if event_type:
        check_location(event_type, "event_type_location")
    if fields.body_function or fields.header_function:
        raise ValidationError(
            "body_function and header_function (JavaScript) are not supported: leave them empty"
        )
    pub_sub = None
    if fields.type == SourceType.PUB_SUB:
        pub_sub = _check_pub_sub(fields.pub_sub)
    else:
        build_verifier(fields.provider, fields.verifier)  # raises on a bad config
    return SourceFields(
        name=name,
        type=fields.type,
        provider=fields.provider,
        is_disabled=fields.is_disabled,
        verifier=fields.verifier or {"type": "noop"},
        custom_response=_check_custom_response(fields.custom_response),
        idempotency_keys=keys,
        forward_headers=tuple(h.strip() for h in fields.forward_headers if h.strip()),
        body_function="",
        header_function="",
        event_type_location=event_type,
        pub_sub=pub_sub,
    )


def new_mask_id(random: bytes) -> str:
    """The ingest URL's mask: 16 random bytes, URL-safe (22 characters)."""
    if len(random) < 16:
        raise ValueError("a mask needs 16 random bytes")
    return base64.urlsafe_b64encode(random[:16]).decode().rstrip("=")


def new_source(
    project_id: str, fields: SourceFields, source_id: str, mask_id: str, now_us: int
) -> Source:
    return Source(
        id=source_id,
        project_id=project_id,
        mask_id=mask_id,
        name=fields.name,
        type=SourceType(fields.type),
        provider=fields.provider,
        is_disabled=fields.is_disabled,
        verifier=fields.verifier,
        custom_response=fields.custom_response,
        idempotency_keys=fields.idempotency_keys,
        forward_headers=fields.forward_headers,
        body_function=fields.body_function,
        header_function=fields.header_function,
        event_type_location=fields.event_type_location,
        pub_sub=fields.pub_sub,
        created_at_us=now_us,
        updated_at_us=now_us,
    )


def ingest_url(base_url: str, mask_id: str) -> str:
    return f"{base_url.rstrip('/')}/ingest/{mask_id}"


# ---------------------------------------------------------------- incoming requests


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _walk(body: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(body, dict):
            body = body.get(part)
        elif isinstance(body, list) and part.isdigit() and int(part) < len(body):
            body = body[int(part)]
        else:
            return None
    return body


def extract(location: str, req: Request, body: Any) -> str:
    """The value at *location* in the request ("" when absent). *body* is the parsed
    JSON body; a non-string value is its compact JSON (keys sorted)."""
    if location.startswith("request.header."):
        return req.headers.get(location.removeprefix("request.header.").lower(), "")
    if location.startswith("request.query."):
        return req.query.get(location.removeprefix("request.query."), "")
    return _text(_walk(body, location.removeprefix("request.body.")))


def idempotency_key(source_id: str, locations: Sequence[str], req: Request, body: Any) -> str:
    """The event's idempotency key: a SHA-256 (hex) over the source id and the values at
    the locations, or "" (no deduplication) when the source names none or the request
    has nothing at any of them."""
    if not locations:
        return ""
    values = [extract(loc, req, body) for loc in locations]
    if not any(values):
        return ""
    digest = hashlib.sha256(source_id.encode())
    for value in values:
        digest.update(b"\x1f")
        digest.update(value.encode())
    return digest.hexdigest()


def event_type(location: str, req: Request, body: Any) -> str:
    """The event's type: the value at *location*, else :data:`DEFAULT_EVENT_TYPE`; cut
    to the column's 200 characters."""
    found = extract(location, req, body).strip() if location else ""
    return (found or DEFAULT_EVENT_TYPE)[:200]


# ---------------------------------------------------------------- the store's port


class SourceCatalog(Protocol):
    async def create_source(self, source: Source) -> None: ...
    async def get_source(self, project_id: str, source_id: str) -> Source | None: ...
    async def find_source_by_mask(self, mask_id: str) -> Source | None: ...
    async def list_sources(
        self, project_id: str, type: str | None, provider: str | None, page: PageRequest
    ) -> Page[Source]: ...
    async def update_source(self, source: Source) -> None: ...
    async def delete_source(self, project_id: str, source_id: str) -> bool: ...
    async def delete_sources(self, project_id: str) -> int: ...
    async def list_pub_sub_sources(self) -> list[Source]: ...


def headers_of(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Request headers with lower-case names, a repeated one joined with ``", "``."""
    out: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def kept_headers(pairs: Sequence[tuple[str, str]], drop: frozenset[str]) -> dict[str, str]:
    """The headers an incoming event keeps (and forwards, as Convoy): all but those in
    *drop* (lower-case: framing, the caller's credentials); original spelling, a repeated
    one joined with ``", "``."""
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for raw_name, value in pairs:
        name = str(raw_name)  # a str subclass (aiohttp's istr) is not a JSON key
        key = name.lower()
        if key in drop:
            continue
        if key in seen:
            out[seen[key]] = f"{out[seen[key]]}, {value}"
        else:
            seen[key] = name
            out[name] = value
    return out
