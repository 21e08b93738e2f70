"""The delivery queue: what a worker asks of the store, one tick at a time.

A tick records what the worker finished since the last one and leases what is due next,
in one transaction (SQLite) or one round trip (PostgreSQL). Leased rows travel as small
tuples: a worker handles thousands a second and builds nothing it does not need.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from hookcast.domain.config import ProjectConfig
from hookcast.domain.models import Endpoint


class Lease(NamedTuple):
    """A delivery leased to this worker, with what sending it needs. The queue builds it
    straight from the claim's row (the field names are its columns)."""

    id: str
    project_id: str
    event_id: str
    endpoint_id: str
    event_type: str
    idempotency_key: str
    delivery_mode: str
    #: attempts made, this one included
    attempts: int
    retry_limit: int
    strategy: str
    interval_seconds: int
    max_retry_seconds: int
    created_at_us: int
    #: the status before this claim: Scheduled, Retry, or Processing (a lease that expired)
    previous_status: str
    #: the event: its payload and its custom headers (JSON text)
    data: bytes
    headers: str
    #: versions of the endpoint and its project (their updated_at): a change reloads them;
    #: None when the endpoint (or project) is gone
    endpoint_version: int | None
    project_version: int | None
    #: the lease's fence: what finishing or deferring it must name
    token: str


class AttemptRow(NamedTuple):
    """One row of the attempt log (the field names are its columns)."""

    id: str
    delivery_id: str
    project_id: str
    endpoint_id: str
    url: str
    method: str
    ip_address: str
    request_headers: str  # JSON
    response_headers: str  # JSON
    http_status: int  # 0: no response
    response_data: str
    error: str
    success: bool
    requested_at_us: int
    responded_at_us: int
    created_at_us: int


class Finish(NamedTuple):
    """How one leased delivery ended this time: its new status (final, or Retry due again
    at ``due_at_us``), its attempt record, and what the endpoint's health decided."""

    delivery_id: str
    #: the lease it was sent under (the fence: a lease lost meanwhile records nothing)
    token: str
    endpoint_id: str
    status: str
    due_at_us: int
    latency_us: int | None
    description: str
    attempt: AttemptRow | None
    #: the endpoint's circuit breaker to persist (JSON), on a state change
    breaker: str | None = None
    #: disable the endpoint for this reason ("gone", "breaker"), holding its deliveries
    disable: str = ""
    probe_at_us: int | None = None


class Deferral(NamedTuple):
    """Give a lease back without spending its attempt, due again at ``due_at_us``."""

    delivery_id: str
    token: str
    status: str  # restored: Scheduled or Retry
    due_at_us: int
    description: str = ""


class DeliveryQueue(Protocol):
    async def tick(
        self,
        finished: Sequence[Finish],
        *,
        limit: int,
        now_us: int,
        lease_us: int,
        token: str,
    ) -> list[Lease]:
        """Record *finished* (each fenced by its lease token) and lease up to *limit* due
        deliveries (expired leases included) under *token*; a lease lasts the endpoint's
        timeout plus *lease_us*. Returns the leases, oldest due first."""
        ...

    async def defer(self, deferrals: Sequence[Deferral], now_us: int) -> int: ...
    async def release(self, leases: Sequence[tuple[str, str]], now_us: int) -> int:
        """Give leases back unspent (shutdown), as (delivery id, token): due now, the
        attempt not counted."""
        ...


class Targets(Protocol):
    """Where the worker looks up the endpoints (and their projects' settings) it sends to."""

    async def load_targets(
        self, endpoint_ids: Sequence[str]
    ) -> list[tuple[Endpoint, ProjectConfig]]: ...
