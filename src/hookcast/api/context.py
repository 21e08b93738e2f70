"""What the route handlers share, stored on the aiohttp application."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pydantic
from aiohttp import web

from hookcast.api.auth import Authenticator
from hookcast.api.event_schemas import SchemaGate
from hookcast.api.ingest import IngestQueue
from hookcast.domain.ports import Records
from hookcast.domain.ports.event_types import EventTypeCatalog
from hookcast.domain.ports.portal_links import PortalLinks
from hookcast.domain.sources import SourceCatalog
from hookcast.metrics import Metrics
from hookcast.tracing import Tracing


def _now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class ApiContext:
    store: Records
    auth: Authenticator
    ingest: IngestQueue
    clock: Callable[[], int] = _now_us
    randbytes: Callable[[int], bytes] = os.urandom
    readiness: Callable[[], Awaitable[str | None]] | None = None
    tracing: Tracing = field(default_factory=Tracing)
    #: the event catalog (``/event-types``); publishing checks ``data`` against its
    #: schemas through :attr:`schemas` when a project asks for it
    event_types: EventTypeCatalog | None = None
    #: portal links (``/portal-links``); their tokens are verified by :attr:`auth`
    portal_links: PortalLinks | None = None
    #: sources (``/sources``) and their ingest URLs (``/ingest/{mask_id}``); requests per
    #: second per source on the ingest URL (bursts of twice that), 0 = unlimited
    sources: SourceCatalog | None = None
    source_rate_limit: int = 0
    #: checks a ``pub_sub`` source's broker config (the broker consumers' own check,
    #: ``hookcast.brokers.check_pub_sub``): a ValidationError is a 400 naming the field
    check_pub_sub: Callable[[Any], object] | None = None
    metrics: Metrics | None = None
    schemas: SchemaGate = field(init=False)

    def __post_init__(self) -> None:
        self.schemas = SchemaGate(self.event_types)


CTX = web.AppKey("hookcast_ctx", ApiContext)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    success: int = 200
    body: type[pydantic.BaseModel] | None = None
    query: tuple[str, ...] = field(default_factory=tuple)


def ctx(request: web.Request) -> ApiContext:
    return request.app[CTX]
