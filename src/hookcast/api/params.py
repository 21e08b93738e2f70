"""Query and body parsing shared by the routes. Empty query strings count as absent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson
import pydantic
from aiohttp import web
from multidict import MultiMapping

from hookcast.domain.errors import ValidationError
from hookcast.domain.ids import is_ulid
from hookcast.domain.paging import DEFAULT_PER_PAGE, MAX_PER_PAGE, Direction, PageRequest

M = TypeVar("M", bound=pydantic.BaseModel)

_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"


def one(query: MultiMapping[str], *names: str) -> str | None:
    for name in names:
        value = query.get(name)
        if value:
            return value
    return None


def many(query: MultiMapping[str], *names: str) -> tuple[str, ...]:
    out: list[str] = []
    for name in names:
        out.extend(v for v in query.getall(name, []) if v)
    return tuple(out)


def page_request(query: MultiMapping[str]) -> PageRequest:
    try:
        per_page = int(query.get("perPage") or query.get("per_page") or DEFAULT_PER_PAGE)
    except ValueError:
        per_page = DEFAULT_PER_PAGE
    per_page = min(max(per_page, 1), MAX_PER_PAGE)
    direction_text = (query.get("direction") or "next").lower()
    if direction_text not in ("next", "prev"):
        raise ValidationError("direction must be next or prev")
    nxt = one(query, "next_page_cursor")
    prev = one(query, "prev_page_cursor")
    for cursor in (nxt, prev):
        if cursor is not None and not is_ulid(cursor):
            raise ValidationError(f"invalid page cursor {cursor!r}")
    sort = (query.get("sort") or "DESC").upper()
    if sort not in ("ASC", "DESC"):
        raise ValidationError("sort must be ASC or DESC")
    return PageRequest(per_page, Direction(direction_text), nxt, prev, sort == "DESC")


def _parse_date(text: str, name: str) -> datetime | None:
    try:
        value = datetime.strptime(text[:19], _DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError as exc:
        raise ValidationError(f"{name} must look like 2006-01-02T15:04:05") from exc
    return None if value.year <= 1 else value  # Go's zero time means unset


def date_window(query: MultiMapping[str]) -> tuple[int, int]:
    """Convoy's default: from 7 days ago (00:00) to today 23:59:59, UTC."""
    start_text, end_text = one(query, "startDate"), one(query, "endDate")
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = _parse_date(start_text, "startDate") if start_text else None
    end = _parse_date(end_text, "endDate") if end_text else None
    start = start or today - timedelta(days=7)
    end = end or today + timedelta(days=1) - timedelta(microseconds=1)
    if end < start:
        raise ValidationError("endDate is before startDate")
    return int(start.timestamp() * 1_000_000), int(end.timestamp() * 1_000_000)


#: objects and arrays nested deeper than this are refused (400): deep documents cost stack
#: and time in every later walk (validation, filters, serialisation)
MAX_JSON_DEPTH = 64


def json_depth_exceeds(doc: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether *doc* nests objects/arrays more than *limit* levels (the top one counts)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _has_nul(doc: dict[str, Any]) -> bool:
    """A NUL in any key or string of *doc*, the top-level ``data`` (an event's payload,
    stored as bytes) aside: text columns (PostgreSQL's) cannot hold it."""
    stack: list[Any] = [v for k, v in doc.items() if k != "data"]
    if any("\x00" in k for k in doc):
        return True
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return True
        elif isinstance(value, dict):
            if any("\x00" in k for k in value):
                return True
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


async def json_body(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        if required:
            raise ValidationError("body must not be empty")
        return {}
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"malformed JSON: {exc}") from exc
    # fewer brackets than the limit cannot nest past it: skip the walk (the common case)
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH and json_depth_exceeds(doc):
        raise ValidationError(f"JSON nested too deeply: the limit is {MAX_JSON_DEPTH} levels")
    # only an escaped \u0000 can put NUL in a string: skip the walk without one
    if b"\\u0000" in raw and isinstance(doc, dict) and _has_nul(doc):
        raise ValidationError(
            "strings must not contain NUL characters (\\u0000), except in the event data"
        )
    if doc is None and not required:
        return {}
    if not isinstance(doc, dict):
        raise ValidationError("the body must be a JSON object")
    return doc


def validate(model: type[M], doc: dict[str, Any]) -> M:
    try:
        return model.model_validate(doc)
    except pydantic.ValidationError as exc:
        raise ValidationError(_describe(exc)) from exc


def _describe(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "invalid input: " + "; ".join(parts)
