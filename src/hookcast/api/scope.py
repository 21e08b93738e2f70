"""What a caller sees of a project: all of it for a key; one owner's share for a portal
token (:class:`hookcast.api.auth.PortalScope`).

Every route a portal token may use (``PortalAccess.READ`` or ``MANAGE`` when it
authorizes) goes through these helpers, so the rule lives here once:

* a resource by id (an endpoint, a subscription, a delivery and its attempts, an event)
  of another owner answers exactly as a missing one does (404 ``Resource not found``);
* a body's reference to another owner's endpoint answers as a reference to a missing one;
* lists are filtered by owner in the store (``owner_scope``), so pages, cursors and
  ``has_next_page`` never count what the caller may not see;
* what is shown of an event or an attempt is cut to the caller's share: an event names only
  the owner's endpoints (and not the API key that published it), an attempt's request
  header values are redacted (signatures, the endpoint's credentials).
"""

from __future__ import annotations

from typing import Any

from hookcast.api import serializers as ser
from hookcast.api.auth import Principal
from hookcast.api.context import ApiContext
from hookcast.domain.errors import NotFoundError, ValidationError
from hookcast.domain.models import Attempt, Delivery, Endpoint, Event, Subscription
from hookcast.domain.paging import PageRequest
from hookcast.domain.ports import DeliveryFilter

NOT_FOUND = "Resource not found"
#: what the store says of a body's reference to an endpoint it does not have
NO_SUCH_ENDPOINT = "endpoint not found in this project"


def sees(principal: Principal, endpoint: Endpoint | None) -> bool:
    """Whether *principal* may see *endpoint* (None: a missing one, never)."""
    owner = principal.owner_scope
    return endpoint is not None and (owner is None or endpoint.owner_id == owner)


async def endpoint(
    c: ApiContext, principal: Principal, project_id: str, endpoint_id: str
) -> Endpoint:
    found = await c.store.get_endpoint(project_id, endpoint_id)
    if found is None or not sees(principal, found):
        raise NotFoundError(NOT_FOUND)
    return found


async def endpoint_reference(
    c: ApiContext, principal: Principal, project_id: str, endpoint_id: str
) -> None:
    """A body's ``endpoint_id``: a portal token may name only its owner's endpoints (the
    store checks that the endpoint exists, for everyone)."""
    if principal.owner_scope is None:
        return
    if not sees(principal, await c.store.get_endpoint(project_id, endpoint_id)):
        raise ValidationError(NO_SUCH_ENDPOINT)


async def subscription(
    c: ApiContext, principal: Principal, project_id: str, sub_id: str
) -> tuple[Subscription, Endpoint | None]:
    """A subscription and its endpoint (None when the endpoint is gone)."""
    sub = await c.store.get_subscription(project_id, sub_id)
    if sub is None:
        raise NotFoundError(NOT_FOUND)
    found = await c.store.get_endpoint(project_id, sub.endpoint_id)
    if principal.owner_scope is not None and not sees(principal, found):
        raise NotFoundError(NOT_FOUND)
    return sub, found


async def delivery(
    c: ApiContext, principal: Principal, project_id: str, delivery_id: str
) -> Delivery:
    found = await delivery_or_none(c, principal, project_id, delivery_id)
    if found is None:
        raise NotFoundError(NOT_FOUND)
    return found


async def delivery_or_none(
    c: ApiContext, principal: Principal, project_id: str, delivery_id: str
) -> Delivery | None:
    found = await c.store.get_delivery(project_id, delivery_id)
    if found is None or principal.owner_scope is None:
        return found
    if not sees(principal, await c.store.get_endpoint(project_id, found.endpoint_id)):
        return None
    return found


async def event(c: ApiContext, principal: Principal, project_id: str, event_id: str) -> Event:
    """An event; for a portal token, only one that went to an endpoint of its owner."""
    found = await c.store.get_event(project_id, event_id)
    if found is None:
        raise NotFoundError(NOT_FOUND)
    owner = principal.owner_scope
    if owner is not None:
        mine = await c.store.list_deliveries(
            project_id, DeliveryFilter(event_id=found.id), PageRequest(1), owner_scope=owner
        )
        if not mine.items:
            raise NotFoundError(NOT_FOUND)
    return found


async def events_json(
    c: ApiContext, principal: Principal, project_id: str, events: list[Event]
) -> list[dict[str, Any]]:
    owner = principal.owner_scope
    if owner is None:
        return [ser.event(e) for e in events]
    named = [eid for e in events for eid in e.endpoints]
    owned = await c.store.owned_endpoint_ids(project_id, owner, named) if named else set()
    out = []
    for e in events:
        data = ser.event(e)
        data["endpoints"] = [eid for eid in e.endpoints if eid in owned]
        data["api_key_id"] = None
        out.append(data)
    return out


def attempt_json(principal: Principal, attempt: Attempt) -> dict[str, Any]:
    data = ser.attempt(attempt)
    if principal.portal is not None:
        data["request_http_header"] = {name: ser.REDACTED for name in attempt.request_headers}
    return data
