"""/projects: create, list (instance admin); get, update, delete."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from aiohttp import web

from hookcast.api import admin
from hookcast.api import serializers as ser
from hookcast.api.auth import Permission
from hookcast.api.context import Route, ctx
from hookcast.api.envelope import ok
from hookcast.api.params import json_body, validate
from hookcast.api.schemas import ProjectBody
from hookcast.domain.errors import PermissionDeniedError, ValidationError
from hookcast.domain.models import ApiKey

audit = logging.getLogger("hookcast.audit")


def _key_json(key: ApiKey, token: str) -> dict[str, Any]:
    return {
        "uid": key.id,
        "name": key.name,
        "role": {"type": key.role.value, "project": key.project_id},
        "key_type": "project",
        "key": token,
        "expires_at": ser.ts(key.expires_at_us),
        "created_at": ser.ts(key.created_at_us),
    }


async def create_project(request: web.Request) -> web.Response:
    c = ctx(request)
    await c.auth.require_instance_admin(request)
    body = validate(ProjectBody, await json_body(request))
    if not body.name:
        raise ValidationError("please provide a project name")
    project, key, token = await admin.create_project(
        c.store,
        body.name,
        config=body.config,
        project_type=body.type or "outgoing",
        clock=c.clock,
        randbytes=c.randbytes,
    )
    audit.info("project.created", extra={"project_id": project.id, "key_id": key.id})
    data = {"project": ser.project(project), "api_key": _key_json(key, token)}
    return ok(data, "Project created successfully", 201)


async def list_projects(request: web.Request) -> web.Response:
    c = ctx(request)
    principal = await c.auth.principal(request)
    if principal.portal is not None:
        raise PermissionDeniedError("a portal token may not use this route")
    projects = await c.store.list_projects()
    if not principal.is_instance_admin:
        assert principal.key is not None
        projects = [p for p in projects if p.id == principal.key.project_id]
    return ok([ser.project(p) for p in projects], "Projects fetched successfully")


async def get_project(request: web.Request) -> web.Response:
    _, project = await ctx(request).auth.authorize(request, Permission.READ)
    return ok(ser.project(project), "Project fetched successfully")


async def update_project(request: web.Request) -> web.Response:
    c = ctx(request)
    _, project = await c.auth.authorize(request, Permission.MANAGE)
    body = validate(ProjectBody, await json_body(request))
    meta = (body.config or {}).get("meta_event")
    if isinstance(meta, dict) and meta.get("secret") == ser.REDACTED:
        del meta["secret"]  # a config read back and sent again keeps the stored secret
    updated = replace(
        project,
        name=(body.name or project.name).strip() or project.name,
        config=admin.build_config(body.config, project.config) if body.config else project.config,
        updated_at_us=c.clock(),
    )
    await c.store.update_project(updated)
    c.auth.forget_project(project.id)
    audit.info("project.updated", extra={"project_id": project.id})
    return ok(ser.project(updated), "Project updated successfully", 202)


async def delete_project(request: web.Request) -> web.Response:
    c = ctx(request)
    await c.auth.require_instance_admin(request)
    _, project = await c.auth.authorize(request, Permission.MANAGE)
    await c.store.delete_project(project.id)
    if c.event_types is not None:
        await c.event_types.delete_event_types(project.id)
    if c.portal_links is not None:
        await c.portal_links.delete_portal_links(project.id)
    if c.sources is not None:
        await c.sources.delete_sources(project.id)
    c.auth.forget_project(project.id)
    audit.info("project.deleted", extra={"project_id": project.id})
    return ok(None, "Project deleted successfully")


P = "/api/v1/projects"
ROUTES = [
    Route(
        "POST", P, create_project, "Create a project (instance admin)", "Projects", 201, ProjectBody
    ),
    Route("GET", P, list_projects, "List projects", "Projects"),
    Route("GET", P + "/{project_id}", get_project, "Get a project", "Projects"),
    Route(
        "PUT", P + "/{project_id}", update_project, "Update a project", "Projects", 202, ProjectBody
    ),
    Route(
        "DELETE",
        P + "/{project_id}",
        delete_project,
        "Delete a project (instance admin)",
        "Projects",
    ),
]
