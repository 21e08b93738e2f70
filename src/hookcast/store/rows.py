"""Rows of an ingest batch, the same for every store (each writes them its own way)."""

from __future__ import annotations

from typing import Any

import orjson

from hookcast.domain.ids import new_id
from hookcast.domain.models import HELD_US, Endpoint, EndpointStatus, Subscription
from hookcast.domain.ports import NewEvent
from hookcast.domain.routing import initial_event_status, strategy_for


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def event_row(ev: NewEvent, endpoint_ids: list[str], *, duplicate: bool) -> tuple[Any, ...]:
    """The events row of a published event (columns as the stores insert them); its
    ``fanout_due_at_us`` (index 14) is set when a broadcast fan-out is due."""
    now = ev.acknowledged_at_us
    status, reason, fan_out = initial_event_status(
        ev.kind, duplicate=duplicate, routed=bool(endpoint_ids)
    )
    return (
        ev.id,
        ev.project_id,
        ev.kind.value,
        ev.event_type,
        ev.data,
        _json(ev.headers),
        ev.idempotency_key,
        duplicate,
        _json(endpoint_ids),
        status.value,
        reason,
        ev.api_key_id,
        ev.owner_id,
        None,
        now if fan_out else None,
        now,
        now,
        now,
    )


def delivery_row(ev: NewEvent, endpoint: Endpoint, sub: Subscription) -> tuple[Any, ...]:
    """The deliveries row of one routed target. Disabled endpoints keep their deliveries
    (held until they are back); paused ones discard them, as Convoy does."""
    now = ev.acknowledged_at_us
    status = "Discarded" if endpoint.status is EndpointStatus.PAUSED else "Scheduled"
    due = HELD_US if endpoint.status is EndpointStatus.INACTIVE else now
    s = strategy_for(sub, ev.strategy)
    return (
        new_id(),
        ev.project_id,
        ev.id,
        endpoint.id,
        sub.id,
        ev.event_type,
        status,
        sub.delivery_mode.value,
        ev.idempotency_key,
        s.retry_count,
        s.type.value,
        s.duration,
        s.max_retry_seconds,
        due,
        now,
        now,
    )
