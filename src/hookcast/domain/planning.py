"""Where published events go: every routing decision of ingest and of a broadcast chunk,
as data in and data out, for both stores.

The store reads a :class:`Snapshot` (the endpoints a batch names, their subscriptions, the
idempotency keys already used), :func:`plan_ingest` decides, and the store writes the
:class:`IngestPlan` in the same transaction. A broadcast walks a project's endpoints in
chunks: :func:`plan_chunk` decides one chunk's deliveries and their release times.
Identifiers and the current time come in as arguments; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from hookcast.domain.config import StrategyConfig
from hookcast.domain.errors import ValidationError
from hookcast.domain.ids import delivery_id
from hookcast.domain.models import (
    HELD_US,
    DeliveryMode,
    Endpoint,
    EndpointStatus,
    EventKind,
    FilterConfig,
    Ordering,
    Secret,
    Subscription,
)
from hookcast.domain.ports import IngestResult, NewEvent
from hookcast.domain.routing import (
    FilterCache,
    first_match,
    initial_event_status,
    strategy_for,
)

Ids = Callable[[], str]


class EventRow(NamedTuple):
    """A new ``events`` row (the field names are the columns)."""

    id: str
    project_id: str
    kind: str
    event_type: str
    data: bytes
    headers: str
    idempotency_key: str
    is_duplicate_event: bool
    endpoints: str
    status: str
    failure_reason: str
    api_key_id: str | None
    owner_id: str
    fanout_due_at_us: int | None
    acknowledged_at_us: int
    created_at_us: int
    updated_at_us: int
    ordering_key: str | None
    source_id: str = ""
    url_path: str = ""
    url_query_params: str = ""


class DeliveryRow(NamedTuple):
    """A new ``deliveries`` row (the field names are the columns)."""

    id: str
    project_id: str
    event_id: str
    endpoint_id: str
    subscription_id: str
    event_type: str
    status: str
    delivery_mode: str
    idempotency_key: str
    retry_limit: int
    strategy: str
    interval_seconds: int
    max_retry_seconds: int
    due_at_us: int
    created_at_us: int
    updated_at_us: int
    ordering_key: str | None


def ordering_key(ordering: Ordering | str, key: str | None) -> str | None:
    """A delivery's ordering key: None for an endpoint without ordering (nothing
    changes), else the publish's key, or "" (one key for the whole endpoint) when the
    publish named none."""
    if ordering != Ordering.PER_KEY:
        return None
    return key or ""


@dataclass(frozen=True)
class Snapshot:
    """What a batch's routing reads, fetched by the store before planning."""

    #: endpoints named by single events, by id (any project: checked here)
    endpoints: Mapping[str, Endpoint] = field(default_factory=dict)
    #: each (project, owner) of a fan-out event: that owner's endpoints, by id
    owners: Mapping[tuple[str, str], Sequence[Endpoint]] = field(default_factory=dict)
    #: subscriptions of every endpoint above, oldest first
    subscriptions: Mapping[str, Sequence[Subscription]] = field(default_factory=dict)
    #: (project, idempotency key) already used by a stored, non-duplicate event
    used_keys: frozenset[tuple[str, str]] = frozenset()
    #: (project, url) of dynamic events: the oldest endpoint with that URL, if any
    dynamic: Mapping[tuple[str, str], Endpoint] = field(default_factory=dict)
    #: each source of an incoming event: the endpoints its subscriptions name, by id
    sources: Mapping[str, Sequence[Endpoint]] = field(default_factory=dict)


@dataclass
class IngestPlan:
    results: list[IngestResult] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    deliveries: list[DeliveryRow] = field(default_factory=list)
    #: created by routing: dynamic events' endpoints, and their and catch-all subscriptions
    endpoints: list[Endpoint] = field(default_factory=list)
    subscriptions: list[Subscription] = field(default_factory=list)

    @property
    def broadcasts(self) -> int:
        return sum(1 for e in self.events if e.fanout_due_at_us is not None)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


class _Planner:
    def __init__(self, snapshot: Snapshot, ids: Ids, filters: FilterCache) -> None:
        self.snap = snapshot
        self.ids = ids
        self.filters = filters
        self.plan = IngestPlan()
        self.subs: dict[str, Sequence[Subscription]] = dict(snapshot.subscriptions)
        self.dynamic: dict[tuple[str, str], Endpoint] = dict(snapshot.dynamic)
        self.seen_keys: set[tuple[str, str]] = set()

    def one(self, ev: NewEvent) -> IngestResult:
        targets = self.targets(ev)  # validates references before anything is planned
        key = (ev.project_id, ev.idempotency_key)
        if ev.idempotency_key and (key in self.seen_keys or key in self.snap.used_keys):
            self.event(ev, [], duplicate=True)
            return IngestResult(ev.id, is_duplicate=True)
        if ev.idempotency_key:
            self.seen_keys.add(key)
        self.event(ev, [ep.id for ep, _ in targets], duplicate=False)
        for endpoint, sub in targets:
            self.plan.deliveries.append(
                delivery_row(delivery_id(ev.id, endpoint.id), ev, endpoint, sub)
            )
        return IngestResult(ev.id, deliveries=len(targets))

    def targets(self, ev: NewEvent) -> list[tuple[Endpoint, Subscription]]:
        if ev.kind is EventKind.INCOMING:
            subscribed = self.snap.sources.get(ev.source_id, ())
            return self.route(subscribed, ev, auto_subscribe=False)
        if ev.kind is EventKind.SINGLE:
            endpoint = self.snap.endpoints.get(ev.endpoint_id or "")
            if endpoint is None or endpoint.project_id != ev.project_id:
                raise ValidationError("endpoint not found in this project")
            return self.route([endpoint], ev, auto_subscribe=True)
        if ev.kind is EventKind.FANOUT:
            owned = self.snap.owners.get((ev.project_id, ev.owner_id), ())
            return self.route(owned, ev, auto_subscribe=False)
        if ev.kind is EventKind.DYNAMIC:
            return self.route([self.dynamic_endpoint(ev)], ev, auto_subscribe=False)
        return []  # broadcast: routed later, chunk by chunk (plan_chunk)

    def route(
        self, endpoints: Sequence[Endpoint], ev: NewEvent, *, auto_subscribe: bool
    ) -> list[tuple[Endpoint, Subscription]]:
        out = []
        for endpoint in endpoints:
            candidates = self.subs.get(endpoint.id) or ()
            # a source's events go through that source's subscriptions only, and
            # published events through those that name no source
            candidates = [s for s in candidates if s.source_id == ev.source_id]
            if not candidates and auto_subscribe:
                candidates = [self.subscribe(endpoint, FilterConfig(), endpoint.updated_at_us)]
            match = first_match(candidates, ev.event_type, ev.parsed, ev.headers, self.filters)
            if match is not None:
                out.append((endpoint, match))
        return out

    def subscribe(self, endpoint: Endpoint, filters: FilterConfig, now: int) -> Subscription:
        """A subscription routing creates: once per endpoint, remembered for the batch."""
        sub = Subscription(
            self.ids(),
            endpoint.project_id,
            endpoint.id,
            f"{endpoint.name[:187]}-subscription",
            "api",
            filters,
            None,
            None,
            None,
            DeliveryMode.AT_LEAST_ONCE,
            "",
            now,
            now,
        )
        self.plan.subscriptions.append(sub)
        self.subs[endpoint.id] = [sub]
        return sub

    def dynamic_endpoint(self, ev: NewEvent) -> Endpoint:
        key = (ev.project_id, ev.url)
        endpoint = self.dynamic.get(key)
        now = ev.acknowledged_at_us
        if endpoint is None:
            endpoint = Endpoint(
                id=self.ids(),
                project_id=ev.project_id,
                owner_id="",
                name=ev.url[:200],  # the name: the URL, cut to the column's size
                url=ev.url,
                description="",
                status=EndpointStatus.ACTIVE,
                secrets=(Secret(self.ids(), ev.secret, now),),
                advanced_signatures=True,
                http_timeout=10,
                rate_limit=0,
                rate_limit_duration=0,
                content_type="application/json",
                authentication=None,
                support_email="",
                slack_webhook_url="",
                teams_webhook_url="",
                created_at_us=now,
                updated_at_us=now,
            )
            self.plan.endpoints.append(endpoint)
            self.dynamic[key] = endpoint
        if not self.subs.get(endpoint.id):
            self.subscribe(endpoint, FilterConfig(event_types=ev.event_types), now)
        return endpoint

    def event(self, ev: NewEvent, endpoint_ids: list[str], *, duplicate: bool) -> None:
        now = ev.acknowledged_at_us
        status, reason, fan_out = initial_event_status(
            ev.kind, duplicate=duplicate, routed=bool(endpoint_ids)
        )
        self.plan.events.append(
            EventRow(
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
                now if fan_out else None,
                now,
                now,
                now,
                ev.ordering_key,
                ev.source_id,
                ev.url_path,
                ev.url_query_params,
            )
        )


def plan_ingest(
    batch: Sequence[NewEvent], snapshot: Snapshot, ids: Ids, filters: FilterCache
) -> IngestPlan:
    """Route a group-commit batch. An event with a bad reference gets its error in its
    result and leaves nothing behind; the others are planned in order."""
    planner = _Planner(snapshot, ids, filters)
    for ev in batch:
        try:
            planner.plan.results.append(planner.one(ev))
        except ValidationError as exc:
            planner.plan.results.append(IngestResult(ev.id, error=exc))
    return planner.plan


def delivery_row(
    delivery_id: str, ev: NewEvent, endpoint: Endpoint, sub: Subscription
) -> DeliveryRow:
    """One routed target. A disabled endpoint's delivery is held until it is back; a
    paused one's is discarded, as Convoy does."""
    now = ev.acknowledged_at_us
    status = "Discarded" if endpoint.status is EndpointStatus.PAUSED else "Scheduled"
    due = HELD_US if endpoint.status is EndpointStatus.INACTIVE else now
    s = strategy_for(sub, ev.strategy)
    return DeliveryRow(
        delivery_id,
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
        ordering_key(endpoint.ordering, ev.ordering_key),
    )


# ---------------------------------------------------------------- broadcast chunks


@dataclass(frozen=True)
class Broadcast:
    """What a chunk needs of the broadcast event."""

    event_id: str
    project_id: str
    event_type: str
    parsed: Any
    headers: Mapping[str, str]
    idempotency_key: str
    strategy: StrategyConfig
    #: deliveries released per second (0: all at once)
    rate: int
    #: the publish's ordering key
    ordering_key: str | None = None


@dataclass(frozen=True)
class ChunkPlan:
    deliveries: list[DeliveryRow]
    matched: int
    #: matched, but the endpoint is paused or disabled: no delivery
    skipped: int
    #: when the project's next broadcast delivery may be released
    release_clock_us: int


def plan_chunk(
    job: Broadcast,
    endpoints: Sequence[tuple[str, str]],
    subscriptions: Mapping[str, Sequence[Subscription]],
    *,
    release_clock_us: int,
    now_us: int,
    filters: FilterCache,
    ordered: Collection[str] = (),
) -> ChunkPlan:
    """One chunk of a broadcast: *endpoints* are ``(id, status)`` in id order (*ordered*:
    the ids of those whose ordering is per key). Active
    endpoints whose subscription matches get a delivery, released at the project's rate
    from its release clock on (the clock moves past them)."""
    matched: list[tuple[str, Subscription]] = []
    skipped = 0
    for endpoint_id, status in endpoints:
        candidates = subscriptions.get(endpoint_id)
        if not candidates:
            continue
        sub = first_match(candidates, job.event_type, job.parsed, job.headers, filters)
        if sub is None:
            continue
        if status == EndpointStatus.ACTIVE.value:
            matched.append((endpoint_id, sub))
        else:
            skipped += 1
    start, step = max(release_clock_us, now_us), 0.0
    if job.rate > 0 and matched:
        step = 1_000_000 / job.rate
    rows = []
    for i, (endpoint_id, sub) in enumerate(matched):
        s = strategy_for(sub, job.strategy)
        due = int(start + i * step) if step else now_us
        rows.append(
            DeliveryRow(
                delivery_id(job.event_id, endpoint_id),
                job.project_id,
                job.event_id,
                endpoint_id,
                sub.id,
                job.event_type,
                "Scheduled",
                sub.delivery_mode.value,
                job.idempotency_key,
                s.retry_count,
                s.type.value,
                s.duration,
                s.max_retry_seconds,
                due,
                now_us,
                now_us,
                ordering_key(
                    Ordering.PER_KEY if endpoint_id in ordered else Ordering.NONE,
                    job.ordering_key,
                ),
            )
        )
    clock = int(start + len(matched) * step) if step else release_clock_us
    return ChunkPlan(rows, len(matched), skipped, clock)
