"""Domain nouns (Convoy's): Project, ApiKey, Endpoint, Subscription, Event, EventDelivery,
DeliveryAttempt. Frozen dataclasses; statuses are StrEnums whose values are the stored
(and wire) strings. Times are integer microseconds since the Unix epoch (``*_us``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from hookcast.domain.config import ProjectConfig


class EndpointStatus(enum.StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"  # disabled (by an operator, or automatically)
    PAUSED = "paused"


class EventStatus(enum.StrEnum):
    PENDING = "Pending"
    PROCESSING = "Processing"
    SUCCESS = "Success"
    FAILURE = "Failure"
    RETRY = "Retry"


class DeliveryStatus(enum.StrEnum):
    SCHEDULED = "Scheduled"
    PROCESSING = "Processing"
    DISCARDED = "Discarded"
    FAILURE = "Failure"
    SUCCESS = "Success"
    RETRY = "Retry"


#: the due time of deliveries held for a disabled endpoint: never claimed until released
HELD_US = 1 << 62
#: the due time of an ordered delivery parked behind its key's head (docs/ordering.md):
#: never claimed as such, unparked when the delivery before it ends
PARKED_US = HELD_US + 1

#: statuses a worker may claim (Processing only once its lease has expired)
CLAIMABLE = (DeliveryStatus.SCHEDULED, DeliveryStatus.RETRY, DeliveryStatus.PROCESSING)
FINAL = (DeliveryStatus.SUCCESS, DeliveryStatus.FAILURE, DeliveryStatus.DISCARDED)


class Ordering(enum.StrEnum):
    """An endpoint's delivery order (docs/ordering.md)."""

    NONE = "none"
    PER_KEY = "per_key"


class OrderingOnFailure(enum.StrEnum):
    """What a delivery that failed for good does to its ordering key."""

    BLOCK = "block"  # the key waits until an operator requeues or skips the delivery
    SKIP = "skip"  # the next delivery of the key goes; the skip is recorded


@dataclass(frozen=True, slots=True)
class OrderingBlock:
    """An ordering key held by the delivery that failed for good at its head."""

    endpoint_id: str
    ordering_key: str
    project_id: str
    delivery_id: str
    blocked_at_us: int


class EventKind(enum.StrEnum):
    SINGLE = "single"
    FANOUT = "fanout"
    BROADCAST = "broadcast"
    DYNAMIC = "dynamic"
    #: received on a source's ingest URL (an incoming project): routed to the endpoints
    #: of the subscriptions that name that source
    INCOMING = "incoming"


class KeyRole(enum.StrEnum):
    INSTANCE_ADMIN = "instance_admin"
    ADMIN = "admin"
    PUBLISHER = "publisher"
    VIEWER = "viewer"


class DeliveryMode(enum.StrEnum):
    AT_LEAST_ONCE = "at_least_once"
    AT_MOST_ONCE = "at_most_once"


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    name: str
    type: str
    config: ProjectConfig
    created_at_us: int
    updated_at_us: int


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    mask: str
    name: str
    role: KeyRole
    project_id: str | None  # None for instance admin keys
    can_broadcast: bool
    expires_at_us: int | None
    revoked_at_us: int | None
    created_at_us: int


@dataclass(frozen=True, slots=True)
class Secret:
    id: str
    value: str
    created_at_us: int
    expires_at_us: int | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    project_id: str
    owner_id: str
    name: str
    url: str
    description: str
    status: EndpointStatus
    secrets: tuple[Secret, ...]
    advanced_signatures: bool
    http_timeout: int
    rate_limit: int
    rate_limit_duration: int
    content_type: str
    authentication: dict[str, Any] | None
    support_email: str
    slack_webhook_url: str
    teams_webhook_url: str
    created_at_us: int
    updated_at_us: int
    #: deliveries in flight at once (0 = the worker's default)
    max_in_flight: int = 0
    #: the persisted circuit breaker (see domain.breaker), None = closed and fresh
    breaker: dict[str, Any] | None = None
    #: why it is inactive: "manual", "gone" (410), "breaker"; empty when active
    disabled_reason: str = ""
    #: when a disabled endpoint is probed next (None: no probing)
    probe_at_us: int | None = None
    probe_attempts: int = 0
    #: ordered delivery (docs/ordering.md): "none" or "per_key", and what a delivery
    #: failed for good does to its key: "block" or "skip"
    ordering: Ordering = Ordering.NONE
    ordering_on_failure: OrderingOnFailure = OrderingOnFailure.BLOCK


@dataclass(frozen=True, slots=True)
class FilterConfig:
    event_types: tuple[str, ...] = ("*",)
    filter: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    project_id: str
    endpoint_id: str
    name: str
    type: str
    filter_config: FilterConfig
    alert_config: dict[str, Any] | None
    retry_config: dict[str, Any] | None
    rate_limit_config: dict[str, Any] | None
    delivery_mode: DeliveryMode
    function: str
    created_at_us: int
    updated_at_us: int
    #: "active" or "inactive" (toggle_status); inactive subscriptions match nothing
    status: str = "active"
    #: incoming projects: the source whose events this subscription routes ("" for the
    #: subscriptions of outgoing projects, which route published events only)
    source_id: str = ""


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    project_id: str
    kind: EventKind
    event_type: str
    data: bytes  # compact JSON, exactly the bytes sent to endpoints
    headers: dict[str, str]
    idempotency_key: str
    is_duplicate_event: bool
    endpoints: tuple[str, ...]
    status: EventStatus
    api_key_id: str | None
    acknowledged_at_us: int
    created_at_us: int
    updated_at_us: int
    #: incoming events: the source it came in on, and the request's path and query string
    source_id: str = ""
    url_path: str = ""
    url_query_params: str = ""


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    project_id: str
    event_id: str
    endpoint_id: str
    subscription_id: str
    event_type: str
    status: DeliveryStatus
    delivery_mode: DeliveryMode
    idempotency_key: str
    attempts: int
    retry_limit: int
    strategy: str
    interval_seconds: int
    max_retry_seconds: int
    next_attempt_at_us: int
    latency_us: int | None
    description: str
    created_at_us: int
    updated_at_us: int
    #: None: unordered; else its ordering key ("" for the endpoint's one key)
    ordering_key: str | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    id: str
    delivery_id: str
    project_id: str
    endpoint_id: str
    url: str
    method: str
    ip_address: str
    request_headers: dict[str, str]
    response_headers: dict[str, str]
    http_status: int  # 0 when no response was received
    response_data: str
    error: str
    success: bool
    requested_at_us: int
    responded_at_us: int
    created_at_us: int


class SourceType(enum.StrEnum):
    """Convoy's source types; hookcast receives ``http`` (an ingest URL) and ``pub_sub``
    (a broker consumer); the other two are refused on create."""

    HTTP = "http"
    REST_API = "rest_api"
    PUB_SUB = "pub_sub"
    DB_CHANGE_STREAM = "db_change_stream"


@dataclass(frozen=True, slots=True)
class Source:
    """Where an incoming project's events come from (Convoy's Source). An ``http`` source
    is an ingest URL, ``/ingest/{mask_id}``, guarded by its ``verifier``; a ``pub_sub``
    source is a broker queue or stream (``pub_sub``: ``{type, workers, amqp | redis_stream}``,
    kept as given). JSON documents are kept as the API received them (after validation)."""

    id: str
    project_id: str
    mask_id: str
    name: str
    type: SourceType
    provider: str
    is_disabled: bool
    #: ``{type: noop|hmac|basic_auth|api_key, hmac{…}, basic_auth{…}, api_key{…}}``
    verifier: dict[str, Any]
    custom_response: dict[str, Any] | None
    idempotency_keys: tuple[str, ...]
    forward_headers: tuple[str, ...]
    body_function: str
    header_function: str
    event_type_location: str
    pub_sub: dict[str, Any] | None
    created_at_us: int
    updated_at_us: int


class BatchKind(enum.StrEnum):
    RETRY = "retry"  # deliveries matching a filter
    REPLAY = "replay"  # events matching a filter: all their finished deliveries


class BatchStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class BatchJob:
    """A background operator action over many deliveries, with its progress."""

    id: str
    project_id: str
    kind: BatchKind
    filter: dict[str, Any]
    status: BatchStatus
    total: int
    processed: int
    requeued: int
    error: str
    created_at_us: int
    updated_at_us: int
    finished_at_us: int | None
