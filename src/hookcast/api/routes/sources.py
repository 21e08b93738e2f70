"""/sources (Convoy's): list (paging, ``type`` and ``provider`` filters), create, get,
update, delete. An ``http`` source belongs to an incoming project and is its ingest URL
(``{base}/ingest/{mask_id}``); a ``pub_sub`` source is a broker consumer's config.

Secrets in ``verifier`` are returned as Convoy returns them (the source's owner set them
and reads them back), but never written to a log.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from aiohttp import web
from pydantic import Field

from hookcast.api import serializers as ser
from hookcast.api.auth import Permission
from hookcast.api.context import ApiContext, Route, ctx
from hookcast.api.envelope import ok
from hookcast.api.params import json_body, one, page_request, validate
from hookcast.api.schemas import _Body
from hookcast.domain.errors import NotFoundError, StoreError, ValidationError
from hookcast.domain.ids import new_id
from hookcast.domain.models import Project, Source, SourceType
from hookcast.domain.sources import (
    SourceCatalog,
    SourceFields,
    check_source,
    ingest_url,
    new_mask_id,
    new_source,
)

audit = logging.getLogger("hookcast.audit")


class SourceBody(_Body):
    """CreateSource / UpdateSource. On update, absent fields keep their values."""

    name: str | None = Field(default=None, max_length=200)
    type: str | None = Field(default=None, max_length=40)
    provider: str | None = Field(default=None, max_length=40)
    verifier: dict[str, Any] | None = None
    custom_response: dict[str, Any] | None = None
    idempotency_keys: list[str] | None = Field(default=None, max_length=50)
    forward_headers: list[str] | None = Field(default=None, max_length=50)
    body_function: str | None = Field(default=None, max_length=20_000)
    header_function: str | None = Field(default=None, max_length=20_000)
    event_type_location: str | None = Field(default=None, max_length=400)
    pub_sub: dict[str, Any] | None = None
    is_disabled: bool | None = None


def catalog(c: ApiContext) -> SourceCatalog:
    if c.sources is None:
        raise StoreError("sources are not configured")
    return c.sources


def _base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _verifier(v: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": v.get("type") or "noop",
        "hmac": v.get("hmac"),
        "basic_auth": v.get("basic_auth"),
        "api_key": v.get("api_key"),
    }


def source_json(s: Source, base_url: str) -> dict[str, Any]:
    return {
        "uid": s.id,
        "mask_id": s.mask_id,
        "name": s.name,
        "type": s.type.value,
        "provider": s.provider,
        "url": ingest_url(base_url, s.mask_id) if s.type is SourceType.HTTP else "",
        "is_disabled": s.is_disabled,
        "verifier": _verifier(s.verifier),
        "custom_response": s.custom_response or {"body": "", "content_type": ""},
        "idempotency_keys": list(s.idempotency_keys),
        "forward_headers": list(s.forward_headers),
        "body_function": s.body_function,
        "header_function": s.header_function,
        "event_type_location": s.event_type_location,
        "pub_sub": s.pub_sub,
        "provider_config": None,
        "project_id": s.project_id,
        "created_at": ser.ts(s.created_at_us),
        "updated_at": ser.ts(s.updated_at_us),
    }


def _fields(body: SourceBody, old: Source | None) -> SourceFields:
    def pick(value: Any, current: Any, default: Any) -> Any:
        if value is not None:
            return value
        return current if old is not None else default

    return SourceFields(
        name=pick(body.name, old and old.name, ""),
        type=pick(body.type, old and old.type.value, ""),
        provider=pick(body.provider, old and old.provider, ""),
        is_disabled=pick(body.is_disabled, old and old.is_disabled, False),
        verifier=pick(body.verifier, old and old.verifier, {"type": "noop"}),
        custom_response=pick(body.custom_response, old and old.custom_response, None),
        idempotency_keys=tuple(pick(body.idempotency_keys, old and old.idempotency_keys, ())),
        forward_headers=tuple(pick(body.forward_headers, old and old.forward_headers, ())),
        body_function=pick(body.body_function, old and old.body_function, ""),
        header_function=pick(body.header_function, old and old.header_function, ""),
        event_type_location=pick(body.event_type_location, old and old.event_type_location, ""),
        pub_sub=pick(body.pub_sub, old and old.pub_sub, None),
    )


def _check_project(c: ApiContext, project: Project, fields: SourceFields) -> None:
    if fields.type == SourceType.PUB_SUB and c.check_pub_sub is not None:
        c.check_pub_sub(fields.pub_sub)  # the broker's own fields (a 400 names them)
    if fields.type == SourceType.HTTP and project.type != "incoming":
        raise ValidationError(
            "http sources belong to incoming projects: create a project with "
            '"type": "incoming" for webhooks you receive'
        )


async def list_sources(request: web.Request) -> web.Response:
    c = ctx(request)
    _, project = await c.auth.authorize(request, Permission.READ)
    q = request.query
    page = await catalog(c).list_sources(
        project.id, one(q, "type"), one(q, "provider"), page_request(q)
    )
    base = _base_url(request)
    items = [source_json(s, base) for s in page.items]
    return ok(ser.page(page, items), "Sources fetched successfully")


async def create_source(request: web.Request) -> web.Response:
    c = ctx(request)
    _, project = await c.auth.authorize(request, Permission.MANAGE)
    body = validate(SourceBody, await json_body(request))
    if body.is_disabled is not None:
        body = body.model_copy(update={"is_disabled": None})  # update only, as Convoy
    fields = check_source(_fields(body, None))
    _check_project(c, project, fields)
    source = new_source(project.id, fields, new_id(), new_mask_id(c.randbytes(16)), c.clock())
    await catalog(c).create_source(source)
    audit.info("source.created", extra={"project_id": project.id, "source_id": source.id})
    return ok(source_json(source, _base_url(request)), "Source created successfully", 201)


async def _load(request: web.Request, permission: Permission) -> tuple[Source, Project]:
    c = ctx(request)
    _, project = await c.auth.authorize(request, permission)
    found = await catalog(c).get_source(project.id, request.match_info["source_id"])
    if found is None:
        raise NotFoundError("Resource not found")
    return found, project


async def get_source(request: web.Request) -> web.Response:
    found, _ = await _load(request, Permission.READ)
    return ok(source_json(found, _base_url(request)), "Source fetched successfully")


async def update_source(request: web.Request) -> web.Response:
    c = ctx(request)
    found, project = await _load(request, Permission.MANAGE)
    body = validate(SourceBody, await json_body(request))
    fields = check_source(_fields(body, found))
    _check_project(c, project, fields)
    updated = replace(
        new_source(project.id, fields, found.id, found.mask_id, found.created_at_us),
        updated_at_us=c.clock(),
    )
    await catalog(c).update_source(updated)
    audit.info("source.updated", extra={"project_id": project.id, "source_id": found.id})
    return ok(source_json(updated, _base_url(request)), "Source updated successfully", 202)


async def delete_source(request: web.Request) -> web.Response:
    c = ctx(request)
    found, project = await _load(request, Permission.MANAGE)
    await catalog(c).delete_source(project.id, found.id)
    audit.info("source.deleted", extra={"project_id": project.id, "source_id": found.id})
    return ok(None, "Source deleted successfully")


P = "/api/v1/projects/{project_id}/sources"
ROUTES = [
    Route(
        "GET",
        P,
        list_sources,
        "List sources",
        "Sources",
        query=(
            "perPage",
            "direction",
            "next_page_cursor",
            "prev_page_cursor",
            "sort",
            "type",
            "provider",
        ),
    ),
    Route("POST", P, create_source, "Create a source", "Sources", 201, SourceBody),
    Route("GET", P + "/{source_id}", get_source, "Get a source", "Sources"),
    Route("PUT", P + "/{source_id}", update_source, "Update a source", "Sources", 202, SourceBody),
    Route("DELETE", P + "/{source_id}", delete_source, "Delete a source", "Sources"),
]
