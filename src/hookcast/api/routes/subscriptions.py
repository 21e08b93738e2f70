"""/subscriptions: create, list, get, update, delete, test_filter.

A portal token sees the subscriptions of its owner's endpoints only, and (with
``can_manage_endpoint``) makes or moves subscriptions onto those endpoints alone.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aiohttp import web

from hookcast.api import scope
from hookcast.api import serializers as ser
from hookcast.api.auth import Permission, PortalAccess, Principal
from hookcast.api.context import ApiContext, Route, ctx
from hookcast.api.envelope import ok
from hookcast.api.params import json_body, many, one, page_request, validate
from hookcast.api.schemas import FilterConfigBody, FilterSample, SubscriptionBody, TestFilterBody
from hookcast.domain.errors import ValidationError
from hookcast.domain.filters import compile_subscription_filter, validate_filter_config
from hookcast.domain.ids import new_id
from hookcast.domain.models import (
    DeliveryMode,
    Endpoint,
    FilterConfig,
    Project,
    SourceType,
    Subscription,
)


def _filter_config(body: FilterConfigBody | None) -> FilterConfig:
    if body is None:
        return FilterConfig()
    types = tuple(t for t in (body.event_types or []) if t) or ("*",)
    docs: dict[str, Any] = {}
    if body.filter is not None:
        for part in ("headers", "body", "query", "path"):
            doc = getattr(body.filter, part)
            if doc:
                docs[part] = doc
    validate_filter_config({"event_types": list(types), "filter": docs})
    return FilterConfig(types, docs)


def _retry_config(body: SubscriptionBody, sub: Subscription) -> dict[str, Any] | None:
    """Normalise to ``{type, duration (s), retry_count}``; absent parts keep their values."""
    if body.retry_config is None:
        return sub.retry_config
    rc = body.retry_config
    old = sub.retry_config or {}
    duration = rc.duration if isinstance(rc.duration, int) else rc.interval_seconds
    return {
        "type": rc.type or old.get("type", "linear"),
        "duration": duration or old.get("duration", 10),
        "retry_count": rc.retry_count or old.get("retry_count", 10),
    }


async def _source_id(c: ApiContext, project: Project, given: str | None) -> str:
    """The source a subscription routes: required in an incoming project (an ``http``
    source of that project), ignored in an outgoing one (as Convoy)."""
    if project.type != "incoming":
        return ""
    if not given:
        raise ValidationError("please provide a source_id: an incoming project routes sources")
    source = None if c.sources is None else await c.sources.get_source(project.id, given)
    if source is None or source.type is not SourceType.HTTP:
        raise ValidationError("source_id: no http source with this id in this project")
    return source.id


async def create_subscription(request: web.Request) -> web.Response:
    c = ctx(request)
    principal, project = await c.auth.authorize(request, Permission.MANAGE, PortalAccess.MANAGE)
    body = validate(SubscriptionBody, await json_body(request))
    if not body.name:
        raise ValidationError("please provide a name for the subscription")
    if not body.endpoint_id:
        raise ValidationError("please provide an endpoint_id")
    await scope.endpoint_reference(c, principal, project.id, body.endpoint_id)
    source_id = await _source_id(c, project, body.source_id)
    now = c.clock()
    sub = Subscription(
        id=new_id(),
        project_id=project.id,
        endpoint_id=body.endpoint_id,
        name=body.name,
        type="api",
        filter_config=_filter_config(body.filter_config),
        alert_config=body.alert_config,
        retry_config=None,  # ignored on create, as upstream
        rate_limit_config=body.rate_limit_config,
        delivery_mode=DeliveryMode(body.delivery_mode or "at_least_once"),
        function=body.function or "",
        created_at_us=now,
        updated_at_us=now,
        source_id=source_id,
    )
    await c.store.create_subscription(
        sub, allow_multiple=project.config.multiple_endpoint_subscriptions
    )
    endpoint = await c.store.get_endpoint(project.id, sub.endpoint_id)
    return ok(ser.subscription(sub, endpoint), "Subscription created successfully", 201)


async def list_subscriptions(request: web.Request) -> web.Response:
    c = ctx(request)
    principal, project = await c.auth.authorize(request, Permission.READ, PortalAccess.READ)
    q = request.query
    page = await c.store.list_subscriptions(
        project.id,
        many(q, "endpointId", "endpointId[]"),
        one(q, "name"),
        page_request(q),
        owner_scope=principal.owner_scope,
    )
    items = []
    for sub in page.items:
        endpoint = await c.store.get_endpoint(project.id, sub.endpoint_id)
        items.append(ser.subscription(sub, endpoint))
    return ok(ser.page(page, items), "Subscriptions fetched successfully")


async def _load(
    request: web.Request, permission: Permission, portal: PortalAccess
) -> tuple[Principal, Subscription, Endpoint | None]:
    c = ctx(request)
    principal, project = await c.auth.authorize(request, permission, portal)
    sub, endpoint = await scope.subscription(
        c, principal, project.id, request.match_info["subscription_id"]
    )
    return principal, sub, endpoint


async def get_subscription(request: web.Request) -> web.Response:
    _, sub, endpoint = await _load(request, Permission.READ, PortalAccess.READ)
    return ok(ser.subscription(sub, endpoint), "Subscription fetched successfully")


async def update_subscription(request: web.Request) -> web.Response:
    c = ctx(request)
    principal, sub, _ = await _load(request, Permission.MANAGE, PortalAccess.MANAGE)
    body = validate(SubscriptionBody, await json_body(request))
    source_id = sub.source_id
    if body.source_id:
        source_id = await _source_id(c, await c.auth.project(sub.project_id), body.source_id)
    if body.endpoint_id:
        await scope.endpoint_reference(c, principal, sub.project_id, body.endpoint_id)
    updated = replace(
        sub,
        name=body.name or sub.name,
        endpoint_id=body.endpoint_id or sub.endpoint_id,
        filter_config=(
            _filter_config(body.filter_config) if body.filter_config else sub.filter_config
        ),
        alert_config=body.alert_config if body.alert_config is not None else sub.alert_config,
        retry_config=_retry_config(body, sub),
        rate_limit_config=(
            body.rate_limit_config if body.rate_limit_config is not None else sub.rate_limit_config
        ),
        delivery_mode=DeliveryMode(body.delivery_mode) if body.delivery_mode else sub.delivery_mode,
        function=body.function if body.function is not None else sub.function,
        updated_at_us=c.clock(),
        source_id=source_id,
    )
    await c.store.update_subscription(updated)
    endpoint = await c.store.get_endpoint(sub.project_id, updated.endpoint_id)
    return ok(ser.subscription(updated, endpoint), "Subscription updated successfully", 202)


async def test_filter(request: web.Request) -> web.Response:
    """Would this filter match this sample? Answers ``data: true|false``."""
    c = ctx(request)
    await c.auth.authorize(request, Permission.READ, PortalAccess.MANAGE)
    body = validate(TestFilterBody, await json_body(request))
    schema = body.schema_ or FilterSample()
    sample = body.request or FilterSample()
    docs = {
        "body": schema.body if isinstance(schema.body, dict) else {},
        "headers": schema.headers or schema.header or {},
    }
    config = {
        "event_types": body.event_types or ["*"],
        "filter": {k: v for k, v in docs.items() if v},
    }
    validate_filter_config(config)
    compiled = compile_subscription_filter(config)
    headers = {str(k): str(v) for k, v in (sample.headers or sample.header or {}).items()}
    matched = compiled.matches(body.event_type or "*", sample.body, headers)
    return ok(matched, "Filter validated successfully")


async def toggle_subscription_status(request: web.Request) -> web.Response:
    c = ctx(request)
    _, sub, _ = await _load(request, Permission.MANAGE, PortalAccess.MANAGE)
    status = "inactive" if sub.status == "active" else "active"
    await c.store.update_subscription(replace(sub, status=status, updated_at_us=c.clock()))
    return ok({}, "Subscription status updated successfully", 202)


async def delete_subscription(request: web.Request) -> web.Response:
    _, sub, _ = await _load(request, Permission.MANAGE, PortalAccess.MANAGE)
    await ctx(request).store.delete_subscription(sub.project_id, sub.id)
    return ok(None, "Subscription deleted successfully")


P = "/api/v1/projects/{project_id}/subscriptions"
ROUTES = [
    Route(
        "POST",
        P + "/test_filter",
        test_filter,
        "Test a filter against a sample payload",
        "Subscriptions",
        200,
        TestFilterBody,
    ),
    Route(
        "POST",
        P,
        create_subscription,
        "Create a subscription",
        "Subscriptions",
        201,
        SubscriptionBody,
    ),
    Route(
        "GET",
        P,
        list_subscriptions,
        "List subscriptions",
        "Subscriptions",
        query=(
            "perPage",
            "direction",
            "next_page_cursor",
            "prev_page_cursor",
            "sort",
            "endpointId",
            "name",
        ),
    ),
    Route("GET", P + "/{subscription_id}", get_subscription, "Get a subscription", "Subscriptions"),
    Route(
        "PUT",
        P + "/{subscription_id}",
        update_subscription,
        "Update a subscription",
        "Subscriptions",
        202,
        SubscriptionBody,
    ),
    Route(
        "PUT",
        P + "/{subscription_id}/toggle_status",
        toggle_subscription_status,
        "Enable or disable a subscription",
        "Subscriptions",
        202,
    ),
    Route(
        "DELETE",
        P + "/{subscription_id}",
        delete_subscription,
        "Delete a subscription",
        "Subscriptions",
    ),
]
