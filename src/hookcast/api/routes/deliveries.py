"""/eventdeliveries: list, get, resend, forceresend; their delivery attempts.

A portal token sees the deliveries to its owner's endpoints only (attempts with their
request header values redacted) and, with ``can_manage_endpoint``, resends those alone.
"""

from __future__ import annotations

from aiohttp import web

from hookcast.api import scope
from hookcast.api import serializers as ser
from hookcast.api.auth import Permission, PortalAccess, Principal
from hookcast.api.context import Route, ctx
from hookcast.api.envelope import ok
from hookcast.api.params import date_window, json_body, many, one, page_request, validate
from hookcast.api.schemas import ForceResendBody
from hookcast.domain.errors import ConflictError, NotFoundError, ValidationError
from hookcast.domain.models import Delivery, DeliveryStatus, EndpointStatus
from hookcast.domain.ports import DeliveryFilter

_RESENDABLE = (DeliveryStatus.FAILURE, DeliveryStatus.DISCARDED)


def _statuses(values: tuple[str, ...]) -> tuple[DeliveryStatus, ...]:
    out = []
    for value in values:
        try:
            out.append(DeliveryStatus(value))
        except ValueError as exc:
            allowed = ", ".join(s.value for s in DeliveryStatus)
            raise ValidationError(f"unknown status {value!r}; use one of {allowed}") from exc
    return tuple(out)


def delivery_filter(request: web.Request) -> DeliveryFilter:
    q = request.query
    start, end = date_window(q)
    return DeliveryFilter(
        endpoint_ids=many(q, "endpointId", "endpointId[]"),
        event_id=one(q, "eventId", "event_id"),
        subscription_id=one(q, "subscriptionId", "subscription_id"),
        idempotency_key=one(q, "idempotencyKey", "idempotency_key"),
        statuses=_statuses(many(q, "status", "status[]")),
        event_type=one(q, "eventType", "event_type"),
        start_us=start,
        end_us=end,
    )


async def list_deliveries(request: web.Request) -> web.Response:
    c = ctx(request)
    principal, project = await c.auth.authorize(request, Permission.READ, PortalAccess.READ)
    q = request.query
    flt = delivery_filter(request)
    page = await c.store.list_deliveries(
        project.id, flt, page_request(q), owner_scope=principal.owner_scope
    )
    return ok(
        ser.page(page, [ser.delivery(d) for d in page.items]),
        "Event deliveries fetched successfully",
    )


async def _load(
    request: web.Request, permission: Permission, portal: PortalAccess
) -> tuple[Principal, Delivery]:
    c = ctx(request)
    principal, project = await c.auth.authorize(request, permission, portal)
    delivery = await scope.delivery(c, principal, project.id, request.match_info["delivery_id"])
    return principal, delivery


async def get_delivery(request: web.Request) -> web.Response:
    _, delivery = await _load(request, Permission.READ, PortalAccess.READ)
    return ok(ser.delivery(delivery), "Event Delivery fetched successfully")


async def _endpoint_is_active(request: web.Request, delivery: Delivery) -> bool:
    endpoint = await ctx(request).store.get_endpoint(delivery.project_id, delivery.endpoint_id)
    return endpoint is not None and endpoint.status is EndpointStatus.ACTIVE


async def resend_delivery(request: web.Request) -> web.Response:
    c = ctx(request)
    _, delivery = await _load(request, Permission.PUBLISH, PortalAccess.MANAGE)
    if delivery.status is DeliveryStatus.SUCCESS:
        raise ConflictError("event already sent")
    if delivery.status not in _RESENDABLE:
        raise ConflictError("cannot resend event that did not fail previously")
    if not await _endpoint_is_active(request, delivery):
        raise ConflictError("the endpoint is not active: activate it before resending")
    requeued = await c.store.requeue_delivery(
        delivery.project_id, delivery.id, _RESENDABLE, c.clock()
    )
    if requeued is None:  # someone else resent it first
        raise ConflictError("cannot resend event that did not fail previously")
    c.ingest.notify()
    return ok(ser.delivery(requeued), "App event processed for retry successfully")


async def force_resend(request: web.Request) -> web.Response:
    c = ctx(request)
    principal, project = await c.auth.authorize(request, Permission.PUBLISH, PortalAccess.MANAGE)
    body = validate(ForceResendBody, await json_body(request))
    done = failed = 0
    for delivery_id in dict.fromkeys(body.ids):
        # another owner's delivery counts as a missing one for a portal token
        delivery = await scope.delivery_or_none(c, principal, project.id, delivery_id)
        if delivery is None or delivery.status is not DeliveryStatus.SUCCESS:
            if delivery is not None and len(body.ids) == 1:
                raise ConflictError("only successful events can be force resent")
            failed += 1
            continue
        if not await _endpoint_is_active(request, delivery):
            failed += 1
            continue
        requeued = await c.store.requeue_delivery(
            project.id, delivery_id, (DeliveryStatus.SUCCESS,), c.clock()
        )
        if requeued is None:
            failed += 1
        else:
            done += 1
    if done:
        c.ingest.notify()
    return ok(None, f"{done} successful, {failed} failed")


async def skip_delivery(request: web.Request) -> web.Response:
    """Let the ordering key a failed delivery blocks go on without it (docs/ordering.md);
    the skip is recorded on the delivery, which stays failed."""
    c = ctx(request)
    # an operator's action: portal tokens are refused
    _, delivery = await _load(request, Permission.PUBLISH, PortalAccess.NONE)
    skipped = await c.store.skip_blocked_delivery(delivery.project_id, delivery.id, c.clock())
    if skipped is None:
        raise ConflictError(
            "this delivery blocks no ordering key: only a delivery listed by its endpoint's "
            "ordering/blocked route can be skipped (resend it to send it again)"
        )
    c.ingest.notify()
    return ok(ser.delivery(skipped), "Delivery skipped: its ordering key goes on")


async def list_attempts(request: web.Request) -> web.Response:
    c = ctx(request)
    principal, delivery = await _load(request, Permission.READ, PortalAccess.READ)
    attempts = await c.store.list_attempts(delivery.project_id, delivery.id)
    return ok(
        [scope.attempt_json(principal, a) for a in attempts],
        "Delivery attempts fetched successfully",
    )


async def get_attempt(request: web.Request) -> web.Response:
    c = ctx(request)
    principal, delivery = await _load(request, Permission.READ, PortalAccess.READ)
    attempt = await c.store.get_attempt(
        delivery.project_id, delivery.id, request.match_info["attempt_id"]
    )
    if attempt is None:
        raise NotFoundError("Resource not found")
    return ok(scope.attempt_json(principal, attempt), "Delivery attempt fetched successfully")


P = "/api/v1/projects/{project_id}/eventdeliveries"
ROUTES = [
    Route(
        "GET",
        P,
        list_deliveries,
        "List event deliveries",
        "Event Deliveries",
        query=(
            "perPage",
            "direction",
            "next_page_cursor",
            "prev_page_cursor",
            "sort",
            "endpointId",
            "eventId",
            "subscriptionId",
            "idempotencyKey",
            "status",
            "eventType",
            "event_type",
            "startDate",
            "endDate",
        ),
    ),
    Route(
        "POST",
        P + "/forceresend",
        force_resend,
        "Force-resend successful deliveries",
        "Event Deliveries",
        200,
        ForceResendBody,
    ),
    Route("GET", P + "/{delivery_id}", get_delivery, "Get an event delivery", "Event Deliveries"),
    Route(
        "PUT",
        P + "/{delivery_id}/resend",
        resend_delivery,
        "Resend a failed delivery",
        "Event Deliveries",
    ),
    Route(
        "POST",
        P + "/{delivery_id}/skip",
        skip_delivery,
        "Skip a delivery that blocks its ordering key",
        "Event Deliveries",
    ),
    Route(
        "GET",
        P + "/{delivery_id}/deliveryattempts",
        list_attempts,
        "List delivery attempts",
        "Delivery Attempts",
    ),
    Route(
        "GET",
        P + "/{delivery_id}/deliveryattempts/{attempt_id}",
        get_attempt,
        "Get a delivery attempt",
        "Delivery Attempts",
    ),
]
