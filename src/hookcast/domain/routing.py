"""Which endpoints an event goes to: pure selection over candidate subscriptions.

Every kind of event (single, fan-out, broadcast, dynamic) ends here: given an endpoint's
subscriptions, the first one (by id) whose filter matches the event wins, so an endpoint
gets at most one delivery per event however many of its subscriptions match.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from hookcast.domain.config import StrategyConfig, StrategyType
from hookcast.domain.errors import ValidationError
from hookcast.domain.filters import (
    CompiledSubscriptionFilter,
    compile_subscription_filter,
    safe_matches,
)
from hookcast.domain.models import EventKind, EventStatus, Subscription

_CACHE_SIZE = 50_000


class FilterCache:
    """Compiled filters keyed by (subscription id, updated_at): a change recompiles. Equal
    filters share one compiled object (most subscriptions of a large project have the same
    few filters), so the cache costs a reference per subscription, not a compiled filter."""

    def __init__(self, size: int = _CACHE_SIZE) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, int], CompiledSubscriptionFilter | None] = OrderedDict()
        self._by_content: dict[bytes, CompiledSubscriptionFilter | None] = {}

    def get(self, sub: Subscription) -> CompiledSubscriptionFilter | None:
        """The compiled filter, or None when the stored filter is not valid."""
        key = (sub.id, sub.updated_at_us)
        if key in self._items:
            return self._items[key]
        doc = {
            "event_types": list(sub.filter_config.event_types),
            "filter": sub.filter_config.filter,
        }
        content = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
        if content in self._by_content:
            found = self._by_content[content]
        else:
            try:
                found = compile_subscription_filter(doc)
            except ValidationError:
                found = None
            if len(self._by_content) >= self._size:
                self._by_content.clear()
            self._by_content[content] = found
        self._items[key] = found
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return found


def first_match(
    subs: Sequence[Subscription],
    event_type: str,
    body: Any,
    headers: Mapping[str, str],
    cache: FilterCache,
) -> Subscription | None:
    """The first subscription (in the given order) that matches; a subscription whose filter
    cannot be compiled or evaluated is skipped, never fatal."""
    for sub in subs:
        if sub.status != "active":
            continue
        compiled = cache.get(sub)
        if compiled is not None and safe_matches(compiled, event_type, body, headers):
            return sub
    return None


def group_by_endpoint(subs: Iterable[Subscription]) -> dict[str, list[Subscription]]:
    grouped: dict[str, list[Subscription]] = {}
    for sub in subs:
        grouped.setdefault(sub.endpoint_id, []).append(sub)
    return grouped


def strategy_for(sub: Subscription, project: StrategyConfig) -> StrategyConfig:
    """The subscription's own retry strategy when it has one, else the project's."""
    rc = sub.retry_config
    if not rc:
        return project
    return StrategyConfig.model_construct(
        type=StrategyType(rc.get("type", project.type)),
        duration=int(rc.get("duration", project.duration)),
        retry_count=int(rc.get("retry_count", project.retry_count)),
        max_retry_seconds=project.max_retry_seconds,
    )


def initial_event_status(
    kind: EventKind, *, duplicate: bool, routed: bool
) -> tuple[EventStatus, str, bool]:
    """An event's status when it is stored, the reason shown with it, and whether a
    broadcast fan-out is due for it. *routed*: it got at least one delivery."""
    if duplicate:
        return EventStatus.SUCCESS, "duplicate event: not delivered", False
    if kind is EventKind.BROADCAST:
        return EventStatus.PENDING, "", True
    if routed:
        return EventStatus.SUCCESS, "", False
    return EventStatus.FAILURE, "no subscription matched this event", False
