"""Rows and domain values, mapped by column name in one place, for both dialects.

Each mapping names the columns it reads (their order is the SELECT's), the function that
builds the domain value from such a row, and the one that gives a value's columns for an
INSERT or UPDATE. JSON documents are stored as text, booleans as the dialect's own (SQLite
gives 0/1 back), times as integer microseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson

from hookcast.domain import storable
from hookcast.domain.config import stored_config
from hookcast.domain.models import (
    ApiKey,
    Attempt,
    BatchJob,
    BatchKind,
    BatchStatus,
    Delivery,
    DeliveryMode,
    DeliveryStatus,
    Endpoint,
    EndpointStatus,
    Event,
    EventKind,
    EventStatus,
    FilterConfig,
    KeyRole,
    Ordering,
    OrderingBlock,
    OrderingOnFailure,
    Project,
    Secret,
    Subscription,
)

T = TypeVar("T")
Row = Sequence[Any]


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def loads(text: str | bytes | None) -> Any:
    return None if text is None else orjson.loads(text)


def _maybe(value: Any) -> str | None:
    return None if value is None else dumps(value)


@dataclass(frozen=True)
class Mapping(Generic[T]):
    """How one domain type lives in one table."""

    table: str
    columns: tuple[str, ...]
    load: Callable[[Row], T]
    dump: Callable[[T], tuple[Any, ...]]

    @property
    def select(self) -> str:
        """The column list of a SELECT, in ``load``'s order."""
        return ", ".join(self.columns)

    def prefixed(self, alias: str) -> str:
        return ", ".join(f"{alias}.{c}" for c in self.columns)

    @property
    def insert(self) -> str:
        names = ", ".join(self.columns)
        values = ", ".join(":" + c for c in self.columns)
        return f"INSERT INTO {self.table} ({names}) VALUES ({values})"

    def update(self, *, where: str = "id = :id") -> str:
        """``UPDATE … SET`` every column but the id."""
        sets = ", ".join(f"{c} = :{c}" for c in self.columns if c != "id")
        return f"UPDATE {self.table} SET {sets} WHERE {where}"

    def args(self, value: T) -> dict[str, Any]:
        return dict(zip(self.columns, self.dump(value), strict=True))

    def all(self, rows: Iterable[Row]) -> list[T]:
        return [self.load(r) for r in rows]


# ---------------------------------------------------------------- projects and keys

PROJECT = Mapping[Project](
    "projects",
    ("id", "name", "type", "config", "created_at_us", "updated_at_us"),
    lambda r: Project(r[0], r[1], r[2], stored_config(r[3]), r[4], r[5]),
    lambda p: (
        p.id,
        p.name,
        p.type,
        p.config.model_dump_json(),
        p.created_at_us,
        p.updated_at_us,
    ),
)

API_KEY = Mapping[ApiKey](
    "api_keys",
    (
        "id",
        "mask",
        "name",
        "role",
        "project_id",
        "can_broadcast",
        "expires_at_us",
        "revoked_at_us",
        "created_at_us",
    ),
    lambda r: ApiKey(r[0], r[1], r[2], KeyRole(r[3]), r[4], bool(r[5]), r[6], r[7], r[8]),
    lambda k: (
        k.id,
        k.mask,
        k.name,
        k.role.value,
        k.project_id,
        k.can_broadcast,
        k.expires_at_us,
        k.revoked_at_us,
        k.created_at_us,
    ),
)


# ---------------------------------------------------------------- endpoints


def secrets_json(secrets: Iterable[Secret]) -> str:
    return dumps(
        [
            {
                "id": s.id,
                "value": s.value,
                "created_at_us": s.created_at_us,
                "expires_at_us": s.expires_at_us,
            }
            for s in secrets
        ]
    )


def _secrets(text: str) -> tuple[Secret, ...]:
    return tuple(
        Secret(d["id"], d["value"], d["created_at_us"], d.get("expires_at_us"))
        for d in orjson.loads(text)
    )


def _endpoint(r: Row) -> Endpoint:
    return Endpoint(
        id=r[0],
        project_id=r[1],
        owner_id=r[2],
        name=r[3],
        url=r[4],
        description=r[5],
        status=EndpointStatus(r[6]),
        secrets=_secrets(r[7]),
        advanced_signatures=bool(r[8]),
        http_timeout=r[9],
        rate_limit=r[10],
        rate_limit_duration=r[11],
        content_type=r[12],
        authentication=loads(r[13]),
        support_email=r[14],
        slack_webhook_url=r[15],
        teams_webhook_url=r[16],
        created_at_us=r[17],
        updated_at_us=r[18],
        max_in_flight=r[19],
        breaker=loads(r[20]),
        disabled_reason=r[21],
        probe_at_us=r[22],
        probe_attempts=r[23],
        ordering=Ordering(r[24]),
        ordering_on_failure=OrderingOnFailure(r[25]),
    )


ENDPOINT = Mapping[Endpoint](
    "endpoints",
    (
        "id",
        "project_id",
        "owner_id",
        "name",
        "url",
        "description",
        "status",
        "secrets",
        "advanced_signatures",
        "http_timeout",
        "rate_limit",
        "rate_limit_duration",
        "content_type",
        "authentication",
        "support_email",
        "slack_webhook_url",
        "teams_webhook_url",
        "created_at_us",
        "updated_at_us",
        "max_in_flight",
        "breaker",
        "disabled_reason",
        "probe_at_us",
        "probe_attempts",
        "ordering",
        "ordering_on_failure",
    ),
    _endpoint,
    lambda e: (
        e.id,
        e.project_id,
        e.owner_id,
        e.name,
        e.url,
        e.description,
        e.status.value,
        secrets_json(e.secrets),
        e.advanced_signatures,
        e.http_timeout,
        e.rate_limit,
        e.rate_limit_duration,
        e.content_type,
        _maybe(e.authentication),
        e.support_email,
        e.slack_webhook_url,
        e.teams_webhook_url,
        e.created_at_us,
        e.updated_at_us,
        e.max_in_flight,
        _maybe(e.breaker),
        e.disabled_reason,
        e.probe_at_us,
        e.probe_attempts,
        e.ordering.value,
        e.ordering_on_failure.value,
    ),
)


def _filter_config(text: str) -> FilterConfig:
    doc = orjson.loads(text)
    return FilterConfig(tuple(doc.get("event_types") or ("*",)), doc.get("filter") or {})


SUBSCRIPTION = Mapping[Subscription](
    "subscriptions",
    (
        "id",
        "project_id",
        "endpoint_id",
        "name",
        "type",
        "filter_config",
        "alert_config",
        "retry_config",
        "rate_limit_config",
        "delivery_mode",
        "function",
        "created_at_us",
        "updated_at_us",
        "status",
        "source_id",
    ),
    lambda r: Subscription(
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        _filter_config(r[5]),
        loads(r[6]),
        loads(r[7]),
        loads(r[8]),
        DeliveryMode(r[9]),
        r[10],
        r[11],
        r[12],
        r[13],
        r[14],
    ),
    lambda s: (
        s.id,
        s.project_id,
        s.endpoint_id,
        s.name,
        s.type,
        dumps({"event_types": list(s.filter_config.event_types), "filter": s.filter_config.filter}),
        _maybe(s.alert_config),
        _maybe(s.retry_config),
        _maybe(s.rate_limit_config),
        s.delivery_mode.value,
        s.function,
        s.created_at_us,
        s.updated_at_us,
        s.status,
        s.source_id,
    ),
)


# ---------------------------------------------------------------- events, deliveries, attempts

EVENT = Mapping[Event](
    "events",
    (
        "id",
        "project_id",
        "kind",
        "event_type",
        "data",
        "headers",
        "idempotency_key",
        "is_duplicate_event",
        "endpoints",
        "status",
        "api_key_id",
        "acknowledged_at_us",
        "created_at_us",
        "updated_at_us",
        "source_id",
        "url_path",
        "url_query_params",
    ),
    lambda r: Event(
        r[0],
        r[1],
        EventKind(r[2]),
        r[3],
        bytes(r[4]),
        orjson.loads(r[5]),
        r[6],
        bool(r[7]),
        tuple(orjson.loads(r[8])),
        EventStatus(r[9]),
        r[10],
        r[11],
        r[12],
        r[13],
        r[14],
        r[15],
        r[16],
    ),
    lambda e: (
        e.id,
        e.project_id,
        e.kind.value,
        e.event_type,
        e.data,
        dumps(e.headers),
        e.idempotency_key,
        e.is_duplicate_event,
        dumps(list(e.endpoints)),
        e.status.value,
        e.api_key_id,
        e.acknowledged_at_us,
        e.created_at_us,
        e.updated_at_us,
        e.source_id,
        e.url_path,
        e.url_query_params,
    ),
)

DELIVERY = Mapping[Delivery](
    "deliveries",
    (
        "id",
        "project_id",
        "event_id",
        "endpoint_id",
        "subscription_id",
        "event_type",
        "status",
        "delivery_mode",
        "idempotency_key",
        "attempts",
        "retry_limit",
        "strategy",
        "interval_seconds",
        "max_retry_seconds",
        "due_at_us",
        "latency_us",
        "description",
        "created_at_us",
        "updated_at_us",
        "ordering_key",
    ),
    lambda r: Delivery(
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        r[5],
        DeliveryStatus(r[6]),
        DeliveryMode(r[7]),
        r[8],
        r[9],
        r[10],
        r[11],
        r[12],
        r[13],
        r[14],
        r[15],
        r[16],
        r[17],
        r[18],
        r[19],
    ),
    lambda d: (
        d.id,
        d.project_id,
        d.event_id,
        d.endpoint_id,
        d.subscription_id,
        d.event_type,
        d.status.value,
        d.delivery_mode.value,
        d.idempotency_key,
        d.attempts,
        d.retry_limit,
        d.strategy,
        d.interval_seconds,
        d.max_retry_seconds,
        d.next_attempt_at_us,
        d.latency_us,
        d.description,
        d.created_at_us,
        d.updated_at_us,
        d.ordering_key,
    ),
)


def _attempt_columns(attempt: Attempt) -> tuple[Any, ...]:
    a = storable.attempt(attempt)  # what a receiver answered, cleaned for any store
    return (
        a.id,
        a.delivery_id,
        a.project_id,
        a.endpoint_id,
        a.url,
        a.method,
        a.ip_address,
        dumps(a.request_headers),
        dumps(a.response_headers),
        a.http_status,
        a.response_data,
        a.error,
        a.success,
        a.requested_at_us,
        a.responded_at_us,
        a.created_at_us,
    )


ATTEMPT = Mapping[Attempt](
    "attempts",
    (
        "id",
        "delivery_id",
        "project_id",
        "endpoint_id",
        "url",
        "method",
        "ip_address",
        "request_headers",
        "response_headers",
        "http_status",
        "response_data",
        "error",
        "success",
        "requested_at_us",
        "responded_at_us",
        "created_at_us",
    ),
    lambda r: Attempt(
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        r[5],
        r[6],
        orjson.loads(r[7]),
        orjson.loads(r[8]),
        r[9],
        r[10],
        r[11],
        bool(r[12]),
        r[13],
        r[14],
        r[15],
    ),
    _attempt_columns,
)

BATCH_JOB = Mapping[BatchJob](
    "batch_jobs",
    (
        "id",
        "project_id",
        "kind",
        "filter",
        "status",
        "total",
        "processed",
        "requeued",
        "error",
        "created_at_us",
        "updated_at_us",
        "finished_at_us",
    ),
    lambda r: BatchJob(
        r[0],
        r[1],
        BatchKind(r[2]),
        orjson.loads(r[3]),
        BatchStatus(r[4]),
        r[5],
        r[6],
        r[7],
        r[8],
        r[9],
        r[10],
        r[11],
    ),
    lambda j: (
        j.id,
        j.project_id,
        j.kind.value,
        dumps(j.filter),
        j.status.value,
        j.total,
        j.processed,
        j.requeued,
        j.error,
        j.created_at_us,
        j.updated_at_us,
        j.finished_at_us,
    ),
)


ORDERING_BLOCK = Mapping[OrderingBlock](
    "ordering_blocks",
    ("endpoint_id", "ordering_key", "project_id", "delivery_id", "blocked_at_us"),
    lambda r: OrderingBlock(r[0], r[1], r[2], r[3], r[4]),
    lambda b: (b.endpoint_id, b.ordering_key, b.project_id, b.delivery_id, b.blocked_at_us),
)
