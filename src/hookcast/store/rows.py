"""Rows of an ingest batch, the same for every store (each writes them its own way)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

import orjson

from hookcast.domain import storable
from hookcast.domain.errors import StoreError
from hookcast.domain.ids import new_id
from hookcast.domain.models import HELD_US, Endpoint, EndpointStatus, Subscription
from hookcast.domain.ports import Completion, NewEvent
from hookcast.domain.routing import initial_event_status, strategy_for

log = logging.getLogger("hookcast.store")


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


async def complete_isolated(
    write: Callable[[Sequence[Completion]], Awaitable[int]], completions: Sequence[Completion]
) -> int:
    """Write *completions* as one batch; when that fails, row by row, so that one result
    that cannot be stored never holds back the others (they would stay leased, be sent
    again at lease expiry and come back in the same failing batch). A row that fails on
    its own is written once more without the response (body, headers); if even that
    fails, its lease expires and the delivery is tried again."""
    if not completions:
        return 0
    try:
        return await write(completions)
    except StoreError as exc:
        if len(completions) == 1:
            return await _write_bare(write, completions[0], exc)
        log.warning("delivery.complete_batch_failed", extra={"count": len(completions)})
    written = 0
    for comp in completions:
        try:
            written += await write([comp])
        except StoreError as exc:
            written += await _write_bare(write, comp, exc)
    return written


async def _write_bare(
    write: Callable[[Sequence[Completion]], Awaitable[int]], comp: Completion, exc: StoreError
) -> int:
    log.error(
        "delivery.complete_row_failed",
        extra={"delivery_id": comp.delivery_id, "error": exc.message[:300]},
    )
    why = f"the attempt's response could not be stored ({exc.message[:200]})"
    bare = replace(
        comp,
        description=storable.text(comp.description, 200),
        attempt=None if comp.attempt is None else storable.bare(comp.attempt, why),
    )
    try:
        return await write([bare])
    except StoreError:
        log.exception("delivery.complete_row_lost", extra={"delivery_id": comp.delivery_id})
        return 0


#: the slowest and fastest release of held deliveries (per second) the stores accept
MIN_RELEASE_RATE = 0.01
MAX_RELEASE_RATE = 1_000_000.0


def release_step_us(rate: float) -> float:
    """Microseconds between two released deliveries at *rate* per second (0 = at once);
    a rate outside the bounds (a value stored before they existed) is clamped to them."""
    if rate <= 0:
        return 0.0
    return 1_000_000 / min(max(rate, MIN_RELEASE_RATE), MAX_RELEASE_RATE)
