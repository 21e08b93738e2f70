"""/api-keys: a project admin makes, lists and revokes keys for the project, the broadcast
grant included. Secrets are shown once, at creation; lists never carry them or their hashes.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web

from hookcast.api import admin
from hookcast.api import serializers as ser
from hookcast.api.auth import Permission
from hookcast.api.context import Route, ctx
from hookcast.api.envelope import ok
from hookcast.api.params import json_body, validate
from hookcast.api.schemas import ApiKeyBody
from hookcast.domain.models import ApiKey, KeyRole

audit = logging.getLogger("hookcast.audit")


def key_json(key: ApiKey, now_us: int) -> dict[str, Any]:
    """What may be shown of a key, at any time: never its secret or its hash."""
    return {
        "uid": key.id,
        "name": key.name,
        "role": key.role.value,
        "broadcast": key.can_broadcast,
        "project_id": key.project_id,
        "status": admin.key_state(key, now_us),
        "expires_at": ser.ts(key.expires_at_us),
        "revoked_at": ser.ts(key.revoked_at_us),
        "created_at": ser.ts(key.created_at_us),
    }


async def create_api_key(request: web.Request) -> web.Response:
    c = ctx(request)
    principal, project = await c.auth.authorize(request, Permission.MANAGE)
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
    audit.info(
        "key.created",
        extra={
            "key_id": key.id,
            "project_id": project.id,
            "role": key.role.value,
            "broadcast": key.can_broadcast,
            "by_key_id": principal.key_id,
        },
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


async def list_api_keys(request: web.Request) -> web.Response:
    c = ctx(request)
    _, project = await c.auth.authorize(request, Permission.MANAGE)
    keys = await c.store.list_api_keys(project.id)
    now = c.clock()
    return ok([key_json(k, now) for k in keys], "API keys fetched successfully")


async def revoke_api_key(request: web.Request) -> web.Response:
    c = ctx(request)
    principal, project = await c.auth.authorize(request, Permission.MANAGE)
    key = await admin.revoke_api_key(
        c.store, request.match_info["key_id"], project_id=project.id, clock=c.clock
    )
    c.auth.forget_key(key.id)  # at once here; other API processes within their 1 s cache
    audit.info(
        "key.revoked",
        extra={"key_id": key.id, "project_id": project.id, "by_key_id": principal.key_id},
    )
    return ok(key_json(key, c.clock()), "API key revoked successfully")


P = "/api/v1/projects/{project_id}/api-keys"
ROUTES = [
    Route(
        "POST",
        P,
        create_api_key,
        "Create an API key for the project (project admin); broadcast is an explicit grant",
        "API Keys",
        201,
        ApiKeyBody,
    ),
    Route("GET", P, list_api_keys, "List the project's API keys (never their secrets)", "API Keys"),
    Route(
        "DELETE",
        P + "/{key_id}",
        revoke_api_key,
        "Revoke an API key: it stops working within a second",
        "API Keys",
    ),
]
