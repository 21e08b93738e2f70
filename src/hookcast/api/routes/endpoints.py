"""/endpoints: create, list, get, update, delete, pause, activate, expire_secret.

A portal token sees its owner's endpoints only, and (``can_manage_endpoint``) creates and
changes endpoints of that owner alone: ``owner_id`` is its owner's whatever the body says.
"""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from hookcast.api import scope
from hookcast.api import serializers as ser
from hookcast.api.auth import Permission, PortalAccess
from hookcast.api.context import Route, ctx
from hookcast.api.envelope import ok
from hookcast.api.params import json_body, one, page_request, validate
from hookcast.api.schemas import EndpointBody, ExpireSecretBody
from hookcast.domain.errors import NotFoundError, ValidationError
from hookcast.domain.ids import new_id
from hookcast.domain.models import (
    Endpoint,
    EndpointStatus,
    Ordering,
    OrderingOnFailure,
    Project,
    Secret,
)
from hookcast.domain.signing import (
    ed25519_public_key,
    generate_ed25519_secret,
    generate_secret,
    is_ed25519_secret,
)
from hookcast.domain.urls import validate_endpoint_url

DEFAULT_TIMEOUT_S = 10


async def _load(
    request: web.Request, permission: Permission, portal: PortalAccess
) -> tuple[Project, Endpoint]:
    c = ctx(request)
    principal, project = await c.auth.authorize(request, permission, portal)
    endpoint = await scope.endpoint(c, principal, project.id, request.match_info["endpoint_id"])
    return project, endpoint


def _check_ed25519(secret: str) -> None:
    try:
        ed25519_public_key(secret)
    except ValueError as exc:
        raise ValidationError(f"invalid whsk_ secret: {exc}") from exc


async def create_endpoint(request: web.Request) -> web.Response:
    c = ctx(request)
    principal, project = await c.auth.authorize(request, Permission.MANAGE, PortalAccess.MANAGE)
    body = validate(EndpointBody, await json_body(request))
    # a portal token makes endpoints of its owner only, whatever the body says
    owner = principal.owner_scope if principal.owner_scope is not None else body.owner_id or ""
    if not body.url:
        raise ValidationError("please provide the endpoint url")
    url = validate_endpoint_url(body.url, require_https=project.config.ssl.enforce_secure_endpoints)
    now = c.clock()
    secret = body.secret or (
        generate_ed25519_secret(c.randbytes)
        if body.signature_scheme == "ed25519"
        else generate_secret(c.randbytes)
    )
    if is_ed25519_secret(secret):
        _check_ed25519(secret)
    endpoint = Endpoint(
        id=new_id(),
        project_id=project.id,
        owner_id=owner,
        name=body.name or url[:200],  # the name column holds 200 characters
        url=url,
        description=body.description or "",
        status=EndpointStatus.INACTIVE if body.is_disabled else EndpointStatus.ACTIVE,
        disabled_reason="manual" if body.is_disabled else "",
        secrets=(Secret(new_id(), secret, now),),
        advanced_signatures=True if body.advanced_signatures is None else body.advanced_signatures,
        http_timeout=body.http_timeout or DEFAULT_TIMEOUT_S,
        rate_limit=body.rate_limit or 0,
        rate_limit_duration=body.rate_limit_duration or 0,
        content_type=body.content_type or "application/json",
        max_in_flight=body.max_in_flight or 0,
        ordering=Ordering(body.ordering or "none"),
        ordering_on_failure=OrderingOnFailure(body.ordering_on_failure or "block"),
        authentication=None if body.authentication is None else body.authentication.model_dump(),
        support_email=body.support_email or "",
        slack_webhook_url=body.slack_webhook_url or "",
        teams_webhook_url=body.teams_webhook_url or "",
        created_at_us=now,
        updated_at_us=now,
    )
    await c.store.create_endpoint(endpoint)
    return ok(ser.endpoint(endpoint), "Endpoint created successfully", 201)


async def list_endpoints(request: web.Request) -> web.Response:
    c = ctx(request)
    principal, project = await c.auth.authorize(request, Permission.READ, PortalAccess.READ)
    q = request.query
    page = await c.store.list_endpoints(
        project.id,
        one(q, "ownerId", "owner_id"),
        one(q, "q", "query"),
        page_request(q),
        owner_scope=principal.owner_scope,
    )
    return ok(
        ser.page(page, [ser.endpoint(e) for e in page.items]), "Endpoints fetched successfully"
    )


async def get_endpoint(request: web.Request) -> web.Response:
    _, endpoint = await _load(request, Permission.READ, PortalAccess.READ)
    return ok(ser.endpoint(endpoint), "Endpoint fetched successfully")


async def update_endpoint(request: web.Request) -> web.Response:
    c = ctx(request)
    principal, project = await c.auth.authorize(request, Permission.MANAGE, PortalAccess.MANAGE)
    endpoint = await scope.endpoint(c, principal, project.id, request.match_info["endpoint_id"])
    body = validate(EndpointBody, await json_body(request))
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    if principal.owner_scope is not None:
        changes.pop("owner_id", None)  # a portal token cannot give its endpoints away
    if "url" in changes:
        changes["url"] = validate_endpoint_url(
            changes["url"], require_https=project.config.ssl.enforce_secure_endpoints
        )
    secrets = endpoint.secrets
    if body.secret and body.secret != endpoint.secrets[-1].value:
        if is_ed25519_secret(body.secret):
            _check_ed25519(body.secret)
        secrets = (*endpoint.secrets[:-1], Secret(new_id(), body.secret, c.clock()))
    status = endpoint.status
    updated = replace(
        endpoint,
        url=changes.get("url", endpoint.url),
        name=changes.get("name") or endpoint.name,
        owner_id=changes.get("owner_id", endpoint.owner_id),
        description=changes.get("description", endpoint.description),
        advanced_signatures=changes.get("advanced_signatures", endpoint.advanced_signatures),
        support_email=changes.get("support_email", endpoint.support_email),
        slack_webhook_url=changes.get("slack_webhook_url", endpoint.slack_webhook_url),
        teams_webhook_url=changes.get("teams_webhook_url", endpoint.teams_webhook_url),
        http_timeout=changes.get("http_timeout") or endpoint.http_timeout,
        rate_limit=changes.get("rate_limit", endpoint.rate_limit),
        rate_limit_duration=changes.get("rate_limit_duration", endpoint.rate_limit_duration),
        content_type=changes.get("content_type") or endpoint.content_type,
        max_in_flight=changes.get("max_in_flight", endpoint.max_in_flight),
        ordering=Ordering(changes.get("ordering", endpoint.ordering)),
        ordering_on_failure=OrderingOnFailure(
            changes.get("ordering_on_failure", endpoint.ordering_on_failure)
        ),
        authentication=(
            body.authentication.model_dump() if body.authentication else endpoint.authentication
        ),
        secrets=secrets,
        status=status,
        updated_at_us=c.clock(),
    )
    await c.store.update_endpoint(updated)
    if body.is_disabled and endpoint.status is not EndpointStatus.INACTIVE:
        await c.store.disable_endpoint(endpoint.id, "manual", None, c.clock())
    elif body.is_disabled is False and endpoint.status is EndpointStatus.INACTIVE:
        await c.store.enable_endpoint(endpoint.id, c.clock(), project.config.recovery_rate)
        c.ingest.notify()
    fresh = await c.store.get_endpoint(project.id, endpoint.id)
    return ok(ser.endpoint(fresh or updated), "Endpoint updated successfully", 202)


async def delete_endpoint(request: web.Request) -> web.Response:
    c = ctx(request)
    project, endpoint = await _load(request, Permission.MANAGE, PortalAccess.MANAGE)
    await c.store.delete_endpoint(project.id, endpoint.id)
    return ok(None, "Endpoint deleted successfully")


async def _set_status(
    request: web.Request, status: EndpointStatus | None, msg: str
) -> web.Response:
    c = ctx(request)
    project, endpoint = await _load(request, Permission.MANAGE, PortalAccess.MANAGE)
    if status is None:  # pause toggles active <-> paused
        status = (
            EndpointStatus.ACTIVE
            if endpoint.status is EndpointStatus.PAUSED
            else EndpointStatus.PAUSED
        )
    if status is EndpointStatus.ACTIVE:
        # back in service: health reset, held deliveries released at the recovery rate
        await c.store.enable_endpoint(endpoint.id, c.clock(), project.config.recovery_rate)
        c.ingest.notify()
    else:
        await c.store.update_endpoint(replace(endpoint, status=status, updated_at_us=c.clock()))
    updated = await c.store.get_endpoint(project.id, endpoint.id)
    if updated is None:
        raise NotFoundError("Resource not found")
    return ok(ser.endpoint(updated), msg, 202)


async def pause_endpoint(request: web.Request) -> web.Response:
    return await _set_status(request, None, "Endpoint status updated successfully")


async def activate_endpoint(request: web.Request) -> web.Response:
    return await _set_status(request, EndpointStatus.ACTIVE, "Endpoint activated successfully")


async def expire_secret(request: web.Request) -> web.Response:
    """Roll the secret: the current one keeps signing for ``expiration`` seconds."""
    c = ctx(request)
    _, endpoint = await _load(request, Permission.MANAGE, PortalAccess.MANAGE)
    body = validate(ExpireSecretBody, await json_body(request, required=False))
    now = c.clock()
    expires = now + (body.expiration or 0) * 1_000_000
    kept = tuple(
        replace(s, expires_at_us=expires) if s.expires_at_us is None else s
        for s in endpoint.secrets
        if s.expires_at_us is None or s.expires_at_us > now
    )
    current = endpoint.secrets[-1].value if endpoint.secrets else ""
    make = generate_ed25519_secret if is_ed25519_secret(current) else generate_secret
    if body.secret and is_ed25519_secret(body.secret):
        _check_ed25519(body.secret)
    fresh = Secret(new_id(), body.secret or make(c.randbytes), now)
    updated = replace(endpoint, secrets=(*kept, fresh), updated_at_us=now)
    await c.store.update_endpoint(updated)
    return ok(ser.endpoint(updated), "endpoint secret expired successfully")


async def list_blocked_keys(request: web.Request) -> web.Response:
    """The endpoint's ordering keys held by a delivery that failed for good
    (docs/ordering.md): each with that delivery, which an operator resends or skips."""
    c = ctx(request)
    # an operator's view: portal tokens are refused
    project, endpoint = await _load(request, Permission.READ, PortalAccess.NONE)
    blocks = await c.store.list_ordering_blocks(project.id, endpoint.id)
    return ok(
        [
            {
                "endpoint_id": b.endpoint_id,
                "ordering_key": b.ordering_key,
                "delivery_id": b.delivery_id,
                "blocked_at": ser.ts(b.blocked_at_us),
            }
            for b in blocks
        ],
        "Blocked ordering keys fetched successfully",
    )


P = "/api/v1/projects/{project_id}/endpoints"
ROUTES = [
    Route("POST", P, create_endpoint, "Create an endpoint", "Endpoints", 201, EndpointBody),
    Route(
        "GET",
        P,
        list_endpoints,
        "List endpoints",
        "Endpoints",
        query=(
            "perPage",
            "direction",
            "next_page_cursor",
            "prev_page_cursor",
            "sort",
            "ownerId",
            "q",
        ),
    ),
    Route("GET", P + "/{endpoint_id}", get_endpoint, "Get an endpoint", "Endpoints"),
    Route(
        "GET",
        P + "/{endpoint_id}/ordering/blocked",
        list_blocked_keys,
        "List the endpoint's blocked ordering keys",
        "Endpoints",
    ),
    Route(
        "PUT",
        P + "/{endpoint_id}",
        update_endpoint,
        "Update an endpoint",
        "Endpoints",
        202,
        EndpointBody,
    ),
    Route("DELETE", P + "/{endpoint_id}", delete_endpoint, "Delete an endpoint", "Endpoints"),
    Route("PUT", P + "/{endpoint_id}/pause", pause_endpoint, "Pause or unpause", "Endpoints", 202),
    Route("POST", P + "/{endpoint_id}/activate", activate_endpoint, "Activate", "Endpoints", 202),
    Route(
        "PUT",
        P + "/{endpoint_id}/expire_secret",
        expire_secret,
        "Roll the secret",
        "Endpoints",
        200,
        ExpireSecretBody,
    ),
]
