"""/api-keys: a project admin makes keys for the project, the broadcast grant included."""

from __future__ import annotations

import time

from aiohttp import web

from hookcast import admin
from hookcast.api import serializers as ser
from hookcast.api.auth import Permission
from hookcast.api.context import Route, ctx
from hookcast.api.envelope import ok
from hookcast.api.params import json_body, validate
from hookcast.api.schemas import ApiKeyBody
from hookcast.domain.models import KeyRole


async def create_api_key(request: web.Request) -> web.Response:
    c = ctx(request)
    _, project = await c.auth.authorize(request, Permission.MANAGE)
    body = validate(ApiKeyBody, await json_body(request, required=False))
    expires = None
    if body.expires_in_days:
        expires = time.time_ns() // 1000 + int(body.expires_in_days * 86_400 * 1_000_000)
    key, token = await admin.create_api_key(
        c.store,
        project_id=project.id,
        role=KeyRole(body.role),
        can_broadcast=body.broadcast,
        name=body.name or "",
        expires_at_us=expires,
        clock=c.clock,
        randbytes=c.randbytes,
    )
    data = {
        "uid": key.id,
        "name": key.name,
        "role": key.role.value,
        "broadcast": key.can_broadcast,
        "project_id": key.project_id,
        "key": token,
        "expires_at": ser.ts(key.expires_at_us),
        "created_at": ser.ts(key.created_at_us),
    }
    return ok(data, "API key created successfully: it is shown only once", 201)


ROUTES = [
    Route(
        "POST",
        "/api/v1/projects/{project_id}/api-keys",
        create_api_key,
        "Create an API key for the project (project admin); broadcast is an explicit grant",
        "API Keys",
        201,
        ApiKeyBody,
    ),
]
