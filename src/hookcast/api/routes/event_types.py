"""/event-types: the event catalog (Convoy's ``event-types``): list, create, get, update,
deprecate, and import from an OpenAPI document's ``webhooks`` or a plain list."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
from aiohttp import web

from hookcast.api import serializers as ser
from hookcast.api.auth import Permission, PortalAccess
from hookcast.api.context import ApiContext, Route, ctx
from hookcast.api.envelope import ok
from hookcast.api.params import (
    MAX_JSON_DEPTH,
    json_body,
    json_depth_exceeds,
    one,
    page_request,
    validate,
)
from hookcast.api.schemas import EventTypeBody, EventTypeImportBody
from hookcast.domain.errors import NotFoundError, StoreError, ValidationError
from hookcast.domain.event_types import (
    EventType,
    EventTypeFields,
    Outcome,
    check_fields,
    check_import,
    deprecate,
    from_openapi,
    merge,
    new_event_type,
)
from hookcast.domain.ids import new_id
from hookcast.domain.models import Project
from hookcast.domain.ports.event_types import EventTypeCatalog


def _catalog(c: ApiContext) -> EventTypeCatalog:
    if c.event_types is None:
        raise StoreError("the event catalog is not configured")
    return c.event_types


def _fields(body: EventTypeBody, name: str) -> EventTypeFields:
    return EventTypeFields(
        name=name,
        category=body.category,
        description=body.description,
        json_schema=body.json_schema,
        example=body.example,
    )


async def list_event_types(request: web.Request) -> web.Response:
    c = ctx(request)
    # the catalog is for readers: a portal token reads it too (its writes are refused)
    _, project = await c.auth.authorize(request, Permission.READ, PortalAccess.READ)
    q = request.query
    page = await _catalog(c).list_event_types(project.id, one(q, "category"), page_request(q))
    items = [ser.event_type(e) for e in page.items]
    return ok(ser.page(page, items), "Event types fetched successfully")


async def create_event_type(request: web.Request) -> web.Response:
    c = ctx(request)
    _, project = await c.auth.authorize(request, Permission.MANAGE)
    body = validate(EventTypeBody, await json_body(request))
    if body.name is None:
        raise ValidationError("please provide a name for this event type")
    fields = check_fields(_fields(body, body.name))
    created = new_event_type(project.id, fields, new_id(), c.clock())
    await _catalog(c).create_event_type(created)
    c.schemas.forget(project.id, [created.name])
    return ok(ser.event_type(created), "Event type created successfully", 201)


async def _load(
    request: web.Request, permission: Permission, portal: PortalAccess = PortalAccess.NONE
) -> tuple[EventType, Project]:
    c = ctx(request)
    _, project = await c.auth.authorize(request, permission, portal)
    found = await _catalog(c).get_event_type(project.id, request.match_info["event_type_id"])
    if found is None:
        raise NotFoundError("Resource not found")
    return found, project


async def get_event_type(request: web.Request) -> web.Response:
    found, _ = await _load(request, Permission.READ, PortalAccess.READ)
    return ok(ser.event_type(found), "Event type fetched successfully")


async def update_event_type(request: web.Request) -> web.Response:
    c = ctx(request)
    found, project = await _load(request, Permission.MANAGE)
    body = validate(EventTypeBody, await json_body(request))
    fields = check_fields(_fields(body, body.name or found.name))
    updated, outcome = merge(found, fields, c.clock())
    if outcome is Outcome.UPDATED:
        await _catalog(c).update_event_type(updated)
        c.schemas.forget(project.id, [updated.name])
    return ok(ser.event_type(updated), "Event type updated successfully", 202)


async def deprecate_event_type(request: web.Request) -> web.Response:
    c = ctx(request)
    found, project = await _load(request, Permission.MANAGE)
    deprecated = deprecate(found, c.clock())
    if deprecated is not found:
        await _catalog(c).update_event_type(deprecated)
        c.schemas.forget(project.id, [deprecated.name])
    return ok(ser.event_type(deprecated), "Event type deprecated successfully")


def _openapi_document(body: EventTypeImportBody, doc: dict[str, Any]) -> dict[str, Any]:
    spec: Any = body.spec
    if isinstance(spec, str):
        try:
            spec = orjson.loads(spec)
        except orjson.JSONDecodeError as exc:
            raise ValidationError(
                f"spec: not JSON ({exc}); YAML is not read: send the document as JSON"
            ) from exc
        if json_depth_exceeds(spec):
            raise ValidationError(f"spec: nested too deeply: the limit is {MAX_JSON_DEPTH} levels")
    elif spec is None:
        if not any(k in doc for k in ("openapi", "webhooks", "x-webhooks")):
            raise ValidationError(
                "nothing to import: send an OpenAPI 3.1 document (its webhooks), as the body"
                ' or as "spec", or a list as {"event_types": [...]}'
            )
        spec = doc
    if not isinstance(spec, dict):
        raise ValidationError("spec: must be an OpenAPI document (a JSON object)")
    return spec


def _entries(body: EventTypeImportBody, doc: dict[str, Any]) -> list[EventTypeFields]:
    if body.event_types is None:
        return check_import(from_openapi(_openapi_document(body, doc)), openapi=True)
    if body.spec is not None or "webhooks" in doc or "x-webhooks" in doc:
        raise ValidationError("send either event_types or an OpenAPI document, not both")
    entries = [_fields(item, item.name or "") for item in body.event_types]
    return check_import(entries, openapi=False)


async def import_event_types(request: web.Request) -> web.Response:
    """Create or update (by name) every event type given, all or none; an entry equal to
    the stored one is left as it is, so importing the same document again changes
    nothing."""
    c = ctx(request)
    _, project = await c.auth.authorize(request, Permission.MANAGE)
    doc = await json_body(request)
    entries = _entries(validate(EventTypeImportBody, doc), doc)
    results = await _catalog(c).import_event_types(project.id, entries, new_id, c.clock())
    c.schemas.forget(project.id, [e.name for e in entries])
    counts = Counter(outcome for _, outcome in results)
    message = (
        f"Event types imported successfully: {counts[Outcome.CREATED]} created, "
        f"{counts[Outcome.UPDATED]} updated, {counts[Outcome.UNCHANGED]} unchanged"
    )
    return ok([ser.event_type(et) for et, _ in results], message)


P = "/api/v1/projects/{project_id}/event-types"
ROUTES = [
    Route(
        "POST",
        P + "/import",
        import_event_types,
        "Import event types from an OpenAPI 3.1 document's webhooks, or a list (upsert by name)",
        "Event types",
        200,
        EventTypeImportBody,
    ),
    Route(
        "GET",
        P,
        list_event_types,
        "List the event catalog",
        "Event types",
        query=("perPage", "direction", "next_page_cursor", "prev_page_cursor", "sort", "category"),
    ),
    Route(
        "POST",
        P,
        create_event_type,
        "Create an event type",
        "Event types",
        201,
        EventTypeBody,
    ),
    Route("GET", P + "/{event_type_id}", get_event_type, "Get an event type", "Event types"),
    Route(
        "PUT",
        P + "/{event_type_id}",
        update_event_type,
        "Update an event type",
        "Event types",
        202,
        EventTypeBody,
    ),
    Route(
        "POST",
        P + "/{event_type_id}/deprecate",
        deprecate_event_type,
        "Deprecate an event type",
        "Event types",
    ),
]
