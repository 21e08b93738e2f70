"""/events: publish (single, fan-out, dynamic), list, get.

A portal token never publishes; it sees the events that went to its owner's endpoints.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from hookcast.api import scope
from hookcast.api import serializers as ser
from hookcast.api.auth import Permission, PortalAccess, Principal
from hookcast.api.context import Route, ctx
from hookcast.api.envelope import ok
from hookcast.api.params import date_window, json_body, many, one, page_request, validate
from hookcast.api.schemas import (
    BroadcastEvent,
    CreateEvent,
    DynamicEvent,
    FanoutEvent,
    _EventBody,
)
from hookcast.domain import headers
from hookcast.domain.errors import ValidationError
from hookcast.domain.ids import new_id
from hookcast.domain.models import EventKind, EventStatus, Project
from hookcast.domain.ports import EventFilter, IngestResult, NewEvent
from hookcast.domain.signing import generate_secret
from hookcast.domain.urls import validate_endpoint_url

MAX_CUSTOM_HEADERS = 50


def _custom_headers(custom: dict[str, str] | None) -> dict[str, str]:
    if not custom:
        return {}
    if len(custom) > MAX_CUSTOM_HEADERS:
        raise ValidationError(f"custom_headers: at most {MAX_CUSTOM_HEADERS} headers")
    return headers.check_headers(custom, "custom_headers")


def _common(body: _EventBody) -> tuple[str, bytes]:
    if not body.event_type:
        raise ValidationError("please provide an event type")
    if body.data is None:
        raise ValidationError("please provide your data")
    return body.event_type, orjson.dumps(body.data)


def _new_event(
    principal: Principal,
    project: Project,
    kind: EventKind,
    body: _EventBody,
    now: int,
    trace: dict[str, str],
    **kw: Any,
) -> NewEvent:
    event_type, data = _common(body)
    custom = _custom_headers(body.custom_headers)
    if trace:  # tracing is on: the publish span's context travels with the event
        custom = {k: v for k, v in custom.items() if k.lower() not in trace} | trace
    return NewEvent(
        id=new_id(),
        project_id=project.id,
        kind=kind,
        event_type=event_type,
        data=data,
        parsed=body.data,
        headers=custom,
        idempotency_key=body.idempotency_key or "",
        ordering_key=body.ordering_key or None,
        api_key_id=principal.key_id,
        acknowledged_at_us=now,
        strategy=project.config.strategy,
        multiple_endpoint_subscriptions=project.config.multiple_endpoint_subscriptions,
        **kw,
    )


def _initial_status(ev: NewEvent, result: IngestResult) -> EventStatus:
    if result.is_duplicate:
        return EventStatus.SUCCESS
    if ev.kind is EventKind.BROADCAST:
        return EventStatus.PENDING
    return EventStatus.SUCCESS if result.deliveries else EventStatus.FAILURE


def _created(ev: NewEvent, result: IngestResult, message: str) -> web.Response:
    if result.error is not None:
        raise result.error
    if result.is_duplicate:
        message = "Duplicate event received, but will not be sent"
    stamp = ser.ts(ev.acknowledged_at_us)
    data = {
        "uid": ev.id,
        "event_type": ev.event_type,
        "project_id": ev.project_id,
        "kind": ev.kind.value,
        "data": orjson.Fragment(ev.data),
        "headers": {k: [v] for k, v in ev.headers.items()},
        "idempotency_key": ev.idempotency_key,
        "ordering_key": ev.ordering_key,
        "is_duplicate_event": result.is_duplicate,
        "deliveries": result.deliveries,
        "status": _initial_status(ev, result).value,
        "api_key_id": ev.api_key_id,
        "acknowledged_at": stamp,
        "created_at": stamp,
        "updated_at": stamp,
    }
    return ok(data, message, 201)


async def create_event(request: web.Request) -> web.Response:
    c = ctx(request)
    principal, project = await c.auth.authorize(request, Permission.PUBLISH)
    body = validate(CreateEvent, await json_body(request))
    endpoint_id = body.endpoint_id or body.app_id
    if not endpoint_id:
        raise ValidationError("please provide an endpoint ID")
    with c.tracing.publish(request.headers, "single", project.id) as trace:
        ev = _new_event(
            principal, project, EventKind.SINGLE, body, c.clock(), trace, endpoint_id=endpoint_id
        )
        await c.schemas.check(project, ev)
        return _created(ev, await c.ingest.submit(ev), "Event queued successfully")


async def create_fanout_event(request: web.Request) -> web.Response:
    c = ctx(request)
    principal, project = await c.auth.authorize(request, Permission.PUBLISH)
    body = validate(FanoutEvent, await json_body(request))
    if not body.owner_id:
        raise ValidationError("please provide an owner id")
    with c.tracing.publish(request.headers, "fanout", project.id) as trace:
        ev = _new_event(
            principal, project, EventKind.FANOUT, body, c.clock(), trace, owner_id=body.owner_id
        )
        await c.schemas.check(project, ev)
        return _created(ev, await c.ingest.submit(ev), "Endpoint fanout event queued successfully")


async def create_broadcast_event(request: web.Request) -> web.Response:
    """Every endpoint of the project with a matching subscription, whatever its owner.
    Acknowledged once the event is stored; the fan-out then writes deliveries in chunks."""
    c = ctx(request)
    principal, project = await c.auth.authorize(request, Permission.BROADCAST)
    body = validate(BroadcastEvent, await json_body(request))
    with c.tracing.publish(request.headers, "broadcast", project.id) as trace:
        ev = _new_event(principal, project, EventKind.BROADCAST, body, c.clock(), trace)
        await c.schemas.check(project, ev)
        return _created(ev, await c.ingest.submit(ev), "Broadcast event created successfully")


async def create_dynamic_event(request: web.Request) -> web.Response:
    c = ctx(request)
    principal, project = await c.auth.authorize(request, Permission.PUBLISH)
    body = validate(DynamicEvent, await json_body(request))
    if not body.url:
        raise ValidationError("please provide a url")
    url = validate_endpoint_url(body.url, require_https=project.config.ssl.enforce_secure_endpoints)
    with c.tracing.publish(request.headers, "dynamic", project.id) as trace:
        ev = _new_event(
            principal,
            project,
            EventKind.DYNAMIC,
            body,
            c.clock(),
            trace,
            url=url,
            secret=body.secret or generate_secret(c.randbytes),
            event_types=tuple(t for t in (body.event_types or []) if t) or ("*",),
        )
        await c.schemas.check(project, ev)
        return _created(ev, await c.ingest.submit(ev), "Dynamic event created successfully")


def event_filter(request: web.Request) -> EventFilter:
    q = request.query
    start, end = date_window(q)
    return EventFilter(
        endpoint_ids=many(q, "endpointId", "endpointId[]"),
        idempotency_key=one(q, "idempotencyKey", "idempotency_key"),
        query=one(q, "query", "q"),
        source_ids=many(q, "sourceId", "sourceId[]"),
        start_us=start,
        end_us=end,
    )


async def list_events(request: web.Request) -> web.Response:
    c = ctx(request)
    principal, project = await c.auth.authorize(request, Permission.READ, PortalAccess.READ)
    q = request.query
    flt = event_filter(request)
    page = await c.store.list_events(
        project.id, flt, page_request(q), owner_scope=principal.owner_scope
    )
    items = await scope.events_json(c, principal, project.id, page.items)
    return ok(ser.page(page, items), "Events fetched successfully")


async def get_event(request: web.Request) -> web.Response:
    c = ctx(request)
    principal, project = await c.auth.authorize(request, Permission.READ, PortalAccess.READ)
    event = await scope.event(c, principal, project.id, request.match_info["event_id"])
    [data] = await scope.events_json(c, principal, project.id, [event])
    # a broadcast's progress counts every owner's deliveries: not a portal token's to see
    if event.kind is EventKind.BROADCAST and principal.portal is None:
        progress = await c.store.broadcast_progress(project.id, event.id)
        if progress is not None:
            data["broadcast"] = ser.broadcast_progress(progress)
    return ok(data, "Event fetched successfully")


P = "/api/v1/projects/{project_id}/events"
_LIST_QUERY = (
    "perPage",
    "direction",
    "next_page_cursor",
    "prev_page_cursor",
    "sort",
    "endpointId",
    "sourceId",
    "idempotencyKey",
    "query",
    "startDate",
    "endDate",
)
PUBLISH = Route(
    "POST", P, create_event, "Publish an event to one endpoint", "Events", 201, CreateEvent
)
ROUTES = [
    Route(
        "POST",
        P + "/fanout",
        create_fanout_event,
        "Publish to all endpoints of an owner",
        "Events",
        201,
        FanoutEvent,
    ),
    Route(
        "POST",
        P + "/broadcast",
        create_broadcast_event,
        "Publish to every matching endpoint of the project (needs the broadcast permission)",
        "Events",
        201,
        BroadcastEvent,
    ),
    Route(
        "POST",
        P + "/dynamic",
        create_dynamic_event,
        "Publish to a URL",
        "Events",
        201,
        DynamicEvent,
    ),
    Route("GET", P, list_events, "List events", "Events", query=_LIST_QUERY),
    Route("GET", P + "/{event_id}", get_event, "Get an event", "Events"),
]
