"""``POST /ingest/{mask_id}``: a third party's webhook, received on a source's ingest URL.

Named steps: find the source (404 when unknown, disabled or not ``http``) → take one from
its rate bucket (429) → read the body (413 over the limit) → verify (401, counted, never
stored) → parse the JSON body (400) → the event: the raw body byte for byte as ``data``,
the headers (but framing and credentials), path and query; its type and idempotency key
from the source's locations → the group-commit ingest (the answer waits for the commit) →
Convoy's ``{"status":true,"message":"Event received","data":<body length>}`` or the
source's ``custom_response``. No API key: the URL's mask and the verifier are the guard.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import orjson
from aiohttp import web

from hookcast.api.context import ApiContext, ctx
from hookcast.api.envelope import error, ok
from hookcast.domain.errors import NotFoundError, ValidationError
from hookcast.domain.headers import FRAMING
from hookcast.domain.ids import new_id
from hookcast.domain.limits import Bucket, take
from hookcast.domain.models import EventKind, Source, SourceType
from hookcast.domain.ports import NewEvent
from hookcast.domain.sources import (
    event_type,
    headers_of,
    idempotency_key,
    kept_headers,
)
from hookcast.domain.verifiers import Request, Verifier, build_verifier, secret_headers, verify

log = logging.getLogger("hookcast.ingest")

_CACHE_TTL_S = 1.0
_CACHE_MAX = 10_000
#: never kept on the event (so never forwarded): the connection's, and credentials
_DROPPED = FRAMING | {"authorization", "cookie", "proxy-authorization"}


class SourceGate:
    """What the ingest route keeps between requests, per process: sources by mask (a
    one-second cache, as API keys), their compiled verifiers, their rate buckets."""

    def __init__(self, rate: int, max_body: int) -> None:
        self.rate = max(rate, 0)
        self.max_body = max_body
        self._sources: dict[str, tuple[float, Source | None]] = {}
        self._verifiers: dict[tuple[str, int], Verifier] = {}
        self._buckets: dict[str, Bucket] = {}

    async def source(self, c: ApiContext, mask_id: str) -> Source:
        now = time.monotonic()
        cached = self._sources.get(mask_id)
        if cached is None or cached[0] <= now:
            found = None
            if c.sources is not None and 0 < len(mask_id) <= 64:
                found = await c.sources.find_source_by_mask(mask_id)
            if len(self._sources) >= _CACHE_MAX:
                self._sources.clear()
            cached = self._sources[mask_id] = (now + _CACHE_TTL_S, found)
        source = cached[1]
        if source is None or source.is_disabled or source.type is not SourceType.HTTP:
            raise NotFoundError("Source not found")
        return source

    def verifier(self, source: Source) -> Verifier:
        key = (source.id, source.updated_at_us)
        found = self._verifiers.get(key)
        if found is None:
            if len(self._verifiers) >= _CACHE_MAX:
                self._verifiers.clear()
            found = self._verifiers[key] = build_verifier(source.provider, source.verifier)
        return found

    def retry_after(self, source_id: str) -> int | None:
        """Take one request from the source's bucket: None, or the seconds to wait."""
        if not self.rate:
            return None
        now_us = time.monotonic_ns() // 1000
        bucket, retry_at_us = take(self._buckets.get(source_id, Bucket()), 2 * self.rate, 2, now_us)
        if retry_at_us is not None:
            return max(1, math.ceil((retry_at_us - now_us) / 1_000_000))
        if len(self._buckets) >= _CACHE_MAX and source_id not in self._buckets:
            self._buckets = {k: b for k, b in self._buckets.items() if b.tat_us > now_us}
        self._buckets[source_id] = bucket
        return None


GATE = web.AppKey("hookcast_source_gate", SourceGate)


def _refused(c: ApiContext, source: Source, why: str) -> web.Response:
    if c.metrics is not None:
        c.metrics.source_verification_failures.labels(source.project_id, source.id).inc()
    log.info(
        "source.verification_failed",
        extra={"project_id": source.project_id, "source_id": source.id, "reason": why},
    )
    return error(f"the request failed the source's verification: {why}", 401)


def _parsed(body: bytes) -> Any:
    if not body.strip():
        raise ValidationError("the request has no body: send the event as JSON")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"the body is not JSON ({exc}): send the event as JSON") from exc


def _answer(source: Source, size: int) -> web.Response:
    custom = source.custom_response
    if custom and (custom.get("body") or custom.get("content_type")):
        return web.Response(
            body=str(custom.get("body", "")).encode(),
            status=200,
            headers={"Content-Type": str(custom.get("content_type") or "text/plain")},
        )
    return ok(size, "Event received")


async def ingest(request: web.Request) -> web.Response:
    c = ctx(request)
    gate = request.app[GATE]
    source = await gate.source(c, request.match_info["mask_id"])
    wait = gate.retry_after(source.id)
    if wait is not None:
        return error("exceeded rate limit", 429, headers={"Retry-After": str(wait)})
    limit = gate.max_body
    if request.content_length is not None and request.content_length > limit:
        return error(f"request body too large: the limit is {limit} bytes", 413)
    body = await request.read()
    verifier = gate.verifier(source)
    req = Request(body, headers_of(list(request.headers.items())), request.query)
    why = verify(verifier, req, c.clock() // 1_000_000)
    if why is not None:
        return _refused(c, source, why)
    parsed = _parsed(body)
    project = await c.auth.project(source.project_id)
    now = c.clock()
    ev = NewEvent(
        id=new_id(),
        project_id=source.project_id,
        kind=EventKind.INCOMING,
        event_type=event_type(source.event_type_location, req, parsed),
        data=body,
        parsed=parsed,
        headers=kept_headers(list(request.headers.items()), _DROPPED | secret_headers(verifier)),
        idempotency_key=idempotency_key(source.id, source.idempotency_keys, req, parsed),
        api_key_id=None,
        acknowledged_at_us=now,
        strategy=project.config.strategy,
        multiple_endpoint_subscriptions=project.config.multiple_endpoint_subscriptions,
        source_id=source.id,
        url_path=request.path,
        url_query_params=request.rel_url.raw_query_string,
    )
    result = await c.ingest.submit(ev)
    if result.error is not None:
        raise result.error
    return _answer(source, len(body))


def setup(app: web.Application, context: ApiContext, max_body: int) -> None:
    """Register ``/ingest/{mask_id}`` (POST; any other method answers 405)."""
    app[GATE] = SourceGate(context.source_rate_limit, max_body)
    app.router.add_post("/ingest/{mask_id}", ingest)
