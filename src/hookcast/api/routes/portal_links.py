"""/portal-links (Convoy's): a project admin gives a customer, an ``owner_id`` of the
project's endpoints, a token of its own (``Bearer PRT.…``) that sees only that owner's
endpoints, subscriptions, events and deliveries and, with ``can_manage_endpoint``, manages
those endpoints (:mod:`hookcast.api.scope`); and lists, updates and revokes links and
refreshes their tokens.

A token is shown in full once, when it is made (create, ``refresh_token``): only its
SHA-256 is stored, as for API keys. Every other answer shows it masked. A link has one
token at a time: ``refresh_token`` voids the last one at once in this process (within the
one-second auth cache in other API processes), and so does revoking the link.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from hookcast.api import serializers as ser
from hookcast.api.auth import Permission
from hookcast.api.context import ApiContext, Route, ctx
from hookcast.api.envelope import ok
from hookcast.api.params import json_body, one, page_request, validate
from hookcast.api.schemas import PortalLinkBody
from hookcast.domain.errors import NotFoundError, StoreError
from hookcast.domain.ids import new_id
from hookcast.domain.models import Endpoint
from hookcast.domain.portal_links import (
    AuthType,
    PortalLink,
    PortalLinkFields,
    apply_update,
    issue_token,
    new_portal_link,
    with_token,
)
from hookcast.domain.ports.portal_links import PortalLinks

audit = logging.getLogger("hookcast.audit")

#: endpoints of the owner shown in ``endpoints_metadata`` (``endpoint_count`` counts all)
ENDPOINTS_SHOWN = 50


def _links(c: ApiContext) -> PortalLinks:
    if c.portal_links is None:
        raise StoreError("portal links are not configured")
    return c.portal_links


def _fields(body: PortalLinkBody) -> PortalLinkFields:
    return PortalLinkFields(
        name=body.name,
        owner_id=body.owner_id,
        can_manage_endpoint=body.can_manage_endpoint,
        auth_type=AuthType(body.auth_type) if body.auth_type else None,
        endpoints=None if body.endpoints is None else tuple(body.endpoints),
    )


def _base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


async def _json(
    request: web.Request,
    links: list[PortalLink],
    token: str | None = None,
) -> list[dict[str, Any]]:
    """The links as Convoy shows them, with their owners' endpoints (one read per owner)."""
    store = _links(ctx(request))
    owners: dict[tuple[str, str], tuple[int, list[Endpoint]]] = {}
    out = []
    for link in links:
        key = (link.project_id, link.owner_id)
        if key not in owners:
            owners[key] = await store.owner_endpoints(*key, ENDPOINTS_SHOWN)
        count, endpoints = owners[key]
        out.append(
            ser.portal_link(
                link,
                token=token,
                base_url=_base_url(request),
                endpoint_count=count,
                endpoints=endpoints,
            )
        )
    return out


async def _load(request: web.Request) -> tuple[str | None, PortalLink]:
    c = ctx(request)
    principal, project = await c.auth.authorize(request, Permission.MANAGE)
    link = await _links(c).get_portal_link(project.id, request.match_info["portal_link_id"])
    if link is None:
        raise NotFoundError("Resource not found")
    return principal.key_id, link


def _audit(what: str, link: PortalLink, by_key_id: str | None) -> None:
    audit.info(
        what,
        extra={
            "portal_link_id": link.id,
            "project_id": link.project_id,
            "owner_id": link.owner_id,
            "can_manage_endpoint": link.can_manage_endpoint,
            "by_key_id": by_key_id,
        },
    )


async def create_portal_link(request: web.Request) -> web.Response:
    c = ctx(request)
    principal, project = await c.auth.authorize(request, Permission.MANAGE)
    body = validate(PortalLinkBody, await json_body(request))
    link, issued = new_portal_link(project.id, _fields(body), new_id(), c.clock(), c.randbytes)
    await _links(c).create_portal_link(link)
    _audit("portal_link.created", link, principal.key_id)
    [data] = await _json(request, [link], issued.token)
    return ok(data, "Portal link created successfully: its token is shown only once", 201)


async def list_portal_links(request: web.Request) -> web.Response:
    c = ctx(request)
    _, project = await c.auth.authorize(request, Permission.MANAGE)
    q = request.query
    page = await _links(c).list_portal_links(
        project.id, one(q, "ownerId", "owner_id"), one(q, "q", "query"), page_request(q)
    )
    return ok(ser.page(page, await _json(request, page.items)), "Portal links fetched successfully")


async def get_portal_link(request: web.Request) -> web.Response:
    _, link = await _load(request)
    [data] = await _json(request, [link])
    return ok(data, "Portal link fetched successfully")


async def update_portal_link(request: web.Request) -> web.Response:
    c = ctx(request)
    by, link = await _load(request)
    body = validate(PortalLinkBody, await json_body(request))
    updated, _ = apply_update(link, _fields(body), c.clock())
    await _links(c).update_portal_link(updated)
    # its token's scope (owner, can_manage_endpoint) changes at once in this process
    c.auth.forget_portal_link(link.id)
    _audit("portal_link.updated", updated, by)
    [data] = await _json(request, [updated])
    return ok(data, "Portal link updated successfully", 202)


async def revoke_portal_link(request: web.Request) -> web.Response:
    c = ctx(request)
    principal, project = await c.auth.authorize(request, Permission.MANAGE)
    link_id = request.match_info["portal_link_id"]
    revoked = await _links(c).revoke_portal_link(project.id, link_id, c.clock())
    if revoked is None:
        raise NotFoundError("Resource not found")
    c.auth.forget_portal_link(revoked.id)
    _audit("portal_link.revoked", revoked, principal.key_id)
    return ok(None, "Portal link revoked successfully")


async def refresh_portal_link_token(request: web.Request) -> web.Response:
    """A new token for the link (the last one stops working); ``data`` is the token."""
    c = ctx(request)
    by, link = await _load(request)
    now = c.clock()
    issued = issue_token(link.auth_type, now, c.randbytes)
    refreshed = await _links(c).set_portal_token(with_token(link, issued, now))
    if refreshed is None:  # revoked meanwhile
        raise NotFoundError("Resource not found")
    c.auth.forget_portal_link(link.id)
    _audit("portal_link.token_refreshed", refreshed, by)
    return ok(issued.token, "Portal link auth token refreshed successfully")


P = "/api/v1/projects/{project_id}/portal-links"
ROUTES = [
    Route(
        "POST",
        P,
        create_portal_link,
        "Create a portal link: a token that sees only one owner's endpoints (project admin)",
        "Portal Links",
        201,
        PortalLinkBody,
    ),
    Route(
        "GET",
        P,
        list_portal_links,
        "List portal links (tokens masked)",
        "Portal Links",
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
    Route("GET", P + "/{portal_link_id}", get_portal_link, "Get a portal link", "Portal Links"),
    Route(
        "PUT",
        P + "/{portal_link_id}",
        update_portal_link,
        "Update a portal link (changing auth_type voids its token)",
        "Portal Links",
        202,
        PortalLinkBody,
    ),
    Route(
        "PUT",
        P + "/{portal_link_id}/revoke",
        revoke_portal_link,
        "Revoke a portal link: its token stops working",
        "Portal Links",
    ),
    Route(
        "GET",
        P + "/{portal_link_id}/refresh_token",
        refresh_portal_link_token,
        "Issue a new token for the link (the last one stops working)",
        "Portal Links",
    ),
]
