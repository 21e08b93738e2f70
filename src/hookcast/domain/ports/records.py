"""The record ports: what the API and the background runners read and write.

Narrow protocols (:class:`Catalog`, :class:`EventLog`, :class:`EndpointHealth`,
:class:`Operations`) so each part of hookcast depends on what it uses; one store object
implements them all for both dialects (:mod:`hookcast.store.records`). The delivery queue
has its own port (:mod:`hookcast.domain.ports.queue`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hookcast.domain.config import ProjectConfig, StrategyConfig
from hookcast.domain.errors import HookcastError
from hookcast.domain.models import (
    ApiKey,
    Attempt,
    BatchJob,
    Delivery,
    DeliveryStatus,
    Endpoint,
    Event,
    EventKind,
    OrderingBlock,
    Project,
    Subscription,
)
from hookcast.domain.paging import Page, PageRequest


@dataclass(frozen=True, slots=True)
class NewEvent:
    """One publish request, already validated and serialised by the API."""

    id: str
    project_id: str
    kind: EventKind
    event_type: str
    data: bytes
    parsed: Any  # the decoded ``data``, for payload filters (never stored)
    headers: dict[str, str]
    idempotency_key: str
    api_key_id: str | None
    acknowledged_at_us: int
    strategy: StrategyConfig
    multiple_endpoint_subscriptions: bool = False
    endpoint_id: str | None = None  # single
    owner_id: str = ""  # fanout
    # dynamic: the endpoint and subscription are found or created from these
    url: str = ""
    secret: str = ""
    event_types: tuple[str, ...] = ("*",)
    # incoming: the source it came in on (routed to that source's subscriptions), and the
    # request's path and query string, kept on the event
    source_id: str = ""
    url_path: str = ""
    url_query_params: str = ""
    #: the publish's ordering key (used by endpoints with ordering "per_key")
    ordering_key: str | None = None


@dataclass(frozen=True, slots=True)
class IngestResult:
    event_id: str
    is_duplicate: bool = False
    deliveries: int = 0
    error: HookcastError | None = None


@dataclass(frozen=True, slots=True)
class EventFilter:
    endpoint_ids: tuple[str, ...] = ()
    idempotency_key: str | None = None
    query: str | None = None
    source_ids: tuple[str, ...] = ()
    start_us: int | None = None
    end_us: int | None = None


@dataclass(frozen=True, slots=True)
class DeliveryFilter:
    endpoint_ids: tuple[str, ...] = ()
    event_id: str | None = None
    subscription_id: str | None = None
    idempotency_key: str | None = None
    statuses: tuple[DeliveryStatus, ...] = ()
    event_type: str | None = None
    start_us: int | None = None
    end_us: int | None = None


@dataclass(frozen=True, slots=True)
class FanoutJob:
    """A leased broadcast whose deliveries are being written, chunk by chunk."""

    event_id: str
    project_id: str
    event_type: str
    parsed: Any
    headers: dict[str, str]
    idempotency_key: str
    lease_token: str
    strategy: StrategyConfig
    broadcast_rate: int


@dataclass(frozen=True, slots=True)
class ChunkResult:
    matched: int  # endpoints whose subscription matched and got a delivery
    skipped: int  # endpoints that matched but are paused or disabled
    scanned: int  # endpoints looked at in this chunk
    done: bool


@dataclass(frozen=True, slots=True)
class BroadcastProgress:
    matched: int
    skipped: int
    fanout_done: bool
    statuses: dict[str, int]
    first_success_us: int | None
    last_success_us: int | None
    latency_ms: dict[str, float | None]  # publish → first success: p50, p95, p99


@dataclass(frozen=True, slots=True)
class QueueStats:
    """The queue at a glance, for metrics: one cheap read, computed at scrape time."""

    #: claimable now: Scheduled/Retry rows whose time has come, and expired leases
    due: int
    #: the due time of the longest-waiting due row (its age is the queue's lag)
    oldest_due_at_us: int | None
    #: waiting for a later attempt time, or leased to a worker right now
    scheduled: int
    #: held for a disabled endpoint until it is enabled again
    held: int
    #: disabled (inactive) endpoints by ``disabled_reason`` ("manual", "gone", "breaker")
    disabled_endpoints: dict[str, int]
    #: endpoints by circuit-breaker state ("closed", "open", "half_open"), as persisted
    breakers: dict[str, int]
    #: ordering keys held by a delivery that failed for good (docs/ordering.md)
    blocked_keys: int = 0


class Catalog(Protocol):
    """Projects, keys, endpoints and subscriptions."""

    async def create_project(self, project: Project) -> None: ...
    async def list_projects(self) -> list[Project]: ...
    async def get_project(self, project_id: str) -> Project | None: ...
    async def update_project(self, project: Project) -> None: ...
    async def delete_project(self, project_id: str) -> bool: ...
    async def create_api_key(self, key: ApiKey, key_hash: str) -> None: ...
    async def find_api_key(self, mask: str) -> tuple[ApiKey, str] | None: ...
    async def list_api_keys(self, project_id: str | None) -> list[ApiKey]: ...
    async def revoke_api_key(
        self, key_id: str, project_id: str | None, now_us: int
    ) -> ApiKey | None: ...

    async def create_endpoint(self, endpoint: Endpoint) -> None: ...
    async def get_endpoint(self, project_id: str, endpoint_id: str) -> Endpoint | None: ...
    async def list_endpoints(
        self,
        project_id: str,
        owner_id: str | None,
        q: str | None,
        page: PageRequest,
        *,
        owner_scope: str | None = None,
    ) -> Page[Endpoint]:
        """*owner_scope* (a portal token's owner): only that owner's endpoints, whatever
        the other filters say; so for every ``owner_scope`` below."""
        ...

    async def owned_endpoint_ids(
        self, project_id: str, owner_id: str, endpoint_ids: Sequence[str]
    ) -> set[str]: ...
    async def update_endpoint(self, endpoint: Endpoint) -> None: ...
    async def delete_endpoint(self, project_id: str, endpoint_id: str) -> bool: ...
    async def create_subscription(self, sub: Subscription, *, allow_multiple: bool) -> None: ...
    async def get_subscription(self, project_id: str, sub_id: str) -> Subscription | None: ...
    async def list_subscriptions(
        self,
        project_id: str,
        endpoint_ids: Sequence[str],
        name: str | None,
        page: PageRequest,
        *,
        owner_scope: str | None = None,
    ) -> Page[Subscription]: ...
    async def update_subscription(self, sub: Subscription) -> None: ...
    async def delete_subscription(self, project_id: str, sub_id: str) -> bool: ...


class EventLog(Protocol):
    """Publishing, and what was published and sent."""

    async def ingest(self, batch: Sequence[NewEvent]) -> list[IngestResult]: ...
    async def get_event(self, project_id: str, event_id: str) -> Event | None: ...
    async def list_events(
        self,
        project_id: str,
        flt: EventFilter,
        page: PageRequest,
        *,
        owner_scope: str | None = None,
    ) -> Page[Event]: ...
    async def broadcast_progress(
        self, project_id: str, event_id: str
    ) -> BroadcastProgress | None: ...
    async def get_delivery(self, project_id: str, delivery_id: str) -> Delivery | None: ...
    async def list_deliveries(
        self,
        project_id: str,
        flt: DeliveryFilter,
        page: PageRequest,
        *,
        owner_scope: str | None = None,
    ) -> Page[Delivery]: ...
    async def requeue_delivery(
        self, project_id: str, delivery_id: str, expected: Sequence[DeliveryStatus], now_us: int
    ) -> Delivery | None: ...
    async def list_attempts(self, project_id: str, delivery_id: str) -> list[Attempt]: ...
    async def get_attempt(
        self, project_id: str, delivery_id: str, attempt_id: str
    ) -> Attempt | None: ...
    async def list_ordering_blocks(
        self, project_id: str, endpoint_id: str
    ) -> list[OrderingBlock]: ...
    async def skip_blocked_delivery(
        self, project_id: str, delivery_id: str, now_us: int
    ) -> Delivery | None: ...


class EndpointHealth(Protocol):
    """Disabling an endpoint (its deliveries held), probing it, enabling it again."""

    async def disable_endpoint(
        self, endpoint_id: str, reason: str, probe_at_us: int | None, now_us: int
    ) -> None: ...
    async def enable_endpoint(self, endpoint_id: str, now_us: int, release_rate: float) -> int: ...
    async def due_probes(self, now_us: int, limit: int) -> list[tuple[Endpoint, ProjectConfig]]: ...
    async def reschedule_probe(self, endpoint_id: str, probe_at_us: int, attempts: int) -> None: ...


class Operations(Protocol):
    """Background work over many rows: broadcast fan-out, batch jobs, retention."""

    async def claim_fanout(
        self, *, now_us: int, lease_us: int, lease_token: str
    ) -> FanoutJob | None: ...
    async def write_fanout_chunk(
        self, job: FanoutJob, *, limit: int, now_us: int, lease_us: int
    ) -> ChunkResult: ...
    async def replay_event(self, project_id: str, event_id: str, now_us: int) -> int: ...
    async def create_batch_job(self, job: BatchJob) -> BatchJob: ...
    async def get_batch_job(self, project_id: str, job_id: str) -> BatchJob | None: ...
    async def claim_batch_job(
        self, *, now_us: int, lease_us: int, lease_token: str
    ) -> tuple[BatchJob, str] | None: ...
    async def run_batch_chunk(
        self, job_id: str, lease_token: str, *, limit: int, now_us: int, lease_us: int
    ) -> BatchJob: ...
    async def retention_policies(self) -> list[tuple[str, int]]: ...
    async def purge_before(self, project_id: str, cutoff_us: int, limit: int) -> int: ...
    async def maintain_partitions(
        self, now_us: int, drop_before_us: int | None
    ) -> tuple[list[str], list[str]]: ...
    async def queue_stats(self, now_us: int) -> QueueStats: ...


class Lifecycle(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def data_version(self) -> int: ...


class Records(Catalog, EventLog, EndpointHealth, Operations, Lifecycle, Protocol):
    """Every record port at once: what the API serves from (one object implements all)."""


def filter_to_json(flt: EventFilter | DeliveryFilter) -> dict[str, Any]:
    """A filter as the JSON stored on a batch job."""
    doc: dict[str, Any] = {}
    for name in flt.__dataclass_fields__:
        value = getattr(flt, name)
        if isinstance(value, tuple):
            value = [str(v) for v in value]
        doc[name] = value
    return doc


def delivery_filter_from_json(doc: dict[str, Any]) -> DeliveryFilter:
    return DeliveryFilter(
        endpoint_ids=tuple(doc.get("endpoint_ids") or ()),
        event_id=doc.get("event_id"),
        subscription_id=doc.get("subscription_id"),
        idempotency_key=doc.get("idempotency_key"),
        statuses=tuple(DeliveryStatus(s) for s in doc.get("statuses") or ()),
        event_type=doc.get("event_type"),
        start_us=doc.get("start_us"),
        end_us=doc.get("end_us"),
    )


def event_filter_from_json(doc: dict[str, Any]) -> EventFilter:
    return EventFilter(
        endpoint_ids=tuple(doc.get("endpoint_ids") or ()),
        idempotency_key=doc.get("idempotency_key"),
        query=doc.get("query"),
        source_ids=tuple(doc.get("source_ids") or ()),
        start_us=doc.get("start_us"),
        end_us=doc.get("end_us"),
    )
