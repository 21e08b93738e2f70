"""The records, written once for both dialects: projects, keys, endpoints, subscriptions,
events, deliveries and attempts, and the background operations over them.

Every method is one transaction (or one consistent read) on the :class:`Database` it is
given, in the neutral SQL of :mod:`hookcast.store.sql`; rows are mapped in
:mod:`hookcast.store.rows`; routing is decided in :mod:`hookcast.domain.planning`. What
truly differs between SQLite and PostgreSQL lives in the drivers (``sqlite.py``,
``postgres.py``) and the delivery queues (``queue/``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import orjson

from hookcast.domain import storable
from hookcast.domain.breaker import state_counts
from hookcast.domain.config import ProjectConfig, stored_config
from hookcast.domain.errors import (
    ConflictError,
    LeaseLostError,
    NotFoundError,
    ValidationError,
)
from hookcast.domain.ids import new_id, ulid_floor
from hookcast.domain.models import (
    HELD_US,
    PARKED_US,
    ApiKey,
    Attempt,
    BatchJob,
    BatchKind,
    Delivery,
    DeliveryStatus,
    Endpoint,
    Event,
    EventKind,
    EventStatus,
    Ordering,
    OrderingBlock,
    Project,
    Subscription,
)
from hookcast.domain.paging import Direction, Page, PageRequest
from hookcast.domain.planning import (
    Broadcast,
    DeliveryRow,
    EventRow,
    Snapshot,
    plan_chunk,
    plan_ingest,
)
from hookcast.domain.ports.records import (
    BroadcastProgress,
    ChunkResult,
    DeliveryFilter,
    EventFilter,
    FanoutJob,
    IngestResult,
    NewEvent,
    QueueStats,
    delivery_filter_from_json,
    event_filter_from_json,
)
from hookcast.domain.routing import FilterCache, group_by_endpoint
from hookcast.store import partitions, schema
from hookcast.store.db import Database, Row, Tx
from hookcast.store.rows import (
    API_KEY,
    ATTEMPT,
    BATCH_JOB,
    DELIVERY,
    ENDPOINT,
    EVENT,
    ORDERING_BLOCK,
    PROJECT,
    SUBSCRIPTION,
    Mapping,
    dumps,
    loads,
)
from hookcast.store.sql import Dialect

PENDING = "status IN ('Scheduled', 'Retry', 'Processing')"
#: added to a delivery's description when an operator skips it (its ordering key goes on)
SKIPPED_NOTE = "; skipped by an operator: the next delivery of its ordering key goes"

#: the slowest and fastest release of held deliveries (per second) the store accepts
MIN_RELEASE_RATE = 0.01
MAX_RELEASE_RATE = 1_000_000.0


def release_step_us(rate: float) -> float:
    """Microseconds between two released deliveries at *rate* per second (0 = at once);
    a rate outside the bounds (a value stored before they existed) is clamped to them."""
    if rate <= 0:
        return 0.0
    return 1_000_000 / min(max(rate, MIN_RELEASE_RATE), MAX_RELEASE_RATE)


class Records:
    """Every record port (:class:`hookcast.domain.ports.Records`) over one database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.filters = FilterCache()
        self._configs: dict[tuple[str, int], ProjectConfig] = {}

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    async def data_version(self) -> int:
        return await self.db.data_version()

    # ------------------------------------------------------------ small helpers

    async def _one(self, mapping: Mapping[Any], where: str, **args: Any) -> Any:
        async def run(tx: Tx) -> Any:
            row = await tx.row(
                f"SELECT {mapping.select} FROM {mapping.table} WHERE {where}", **args
            )
            return None if row is None else mapping.load(row)

        return await self.db.read(run)

    def config(self, project_id: str, version: int, text: str) -> ProjectConfig:
        """A project's parsed settings, cached by (project, updated_at)."""
        cfg = self._configs.get((project_id, version))
        if cfg is None:
            cfg = stored_config(text)
            if len(self._configs) > 10_000:
                self._configs.clear()
            self._configs[(project_id, version)] = cfg
        return cfg

    async def _configs_of(self, tx: Tx, project_ids: Iterable[str]) -> dict[str, ProjectConfig]:
        rows = await tx.rows(
            "SELECT id, updated_at_us, config FROM projects WHERE id = ANY(:ids)",
            ids=list(set(project_ids)),
        )
        return {r[0]: self.config(r[0], r[1], r[2]) for r in rows}

    # ------------------------------------------------------------ projects and keys

    async def create_project(self, project: Project) -> None:
        await self.db.write(lambda tx: tx.run(PROJECT.insert, **PROJECT.args(project)))

    async def list_projects(self) -> list[Project]:
        async def run(tx: Tx) -> list[Project]:
            return PROJECT.all(await tx.rows(f"SELECT {PROJECT.select} FROM projects ORDER BY id"))

        return await self.db.read(run)

    async def get_project(self, project_id: str) -> Project | None:
        found: Project | None = await self._one(PROJECT, "id = :id", id=project_id)
        return found

    async def update_project(self, project: Project) -> None:
        await self.db.write(
            lambda tx: tx.run(
                "UPDATE projects SET name = :name, config = :config, updated_at_us = :at "
                "WHERE id = :id",
                name=project.name,
                config=project.config.model_dump_json(),
                at=project.updated_at_us,
                id=project.id,
            )
        )

    async def delete_project(self, project_id: str) -> bool:
        async def run(tx: Tx) -> bool:
            if not await tx.run("DELETE FROM projects WHERE id = :id", id=project_id):
                return False
            for table in (
                "api_keys",
                "endpoints",
                "subscriptions",
                "events",
                "deliveries",
                "attempts",
                "ordering_blocks",
            ):
                await tx.run(f"DELETE FROM {table} WHERE project_id = :id", id=project_id)
            return True

        return await self.db.write(run)

    async def create_api_key(self, key: ApiKey, key_hash: str) -> None:
        await self.db.write(
            lambda tx: tx.run(
                f"INSERT INTO api_keys ({API_KEY.select}, key_hash) VALUES "
                f"({', '.join(':' + c for c in API_KEY.columns)}, :key_hash)",
                **API_KEY.args(key),
                key_hash=key_hash,
            )
        )

    async def find_api_key(self, mask: str) -> tuple[ApiKey, str] | None:
        async def run(tx: Tx) -> tuple[ApiKey, str] | None:
            row = await tx.row(
                f"SELECT {API_KEY.select}, key_hash FROM api_keys WHERE mask = :mask", mask=mask
            )
            return None if row is None else (API_KEY.load(row), row[-1])

        return await self.db.read(run)

    async def list_api_keys(self, project_id: str | None) -> list[ApiKey]:
        """The keys of a project, oldest first; every key when *project_id* is None."""
        where = "WHERE project_id = :p" if project_id else ""

        async def run(tx: Tx) -> list[ApiKey]:
            rows = await tx.rows(
                f"SELECT {API_KEY.select} FROM api_keys {where} ORDER BY id", p=project_id
            )
            return API_KEY.all(rows)

        return await self.db.read(run)

    async def revoke_api_key(
        self, key_id: str, project_id: str | None, now_us: int
    ) -> ApiKey | None:
        """Revoke a key (of *project_id*, or of any project when None); revoking twice
        keeps the first time. None when there is no such key."""
        where = "id = :id AND project_id = :p" if project_id else "id = :id"

        async def run(tx: Tx) -> ApiKey | None:
            row = await tx.row(
                "UPDATE api_keys SET revoked_at_us = COALESCE(revoked_at_us, :now) "
                f"WHERE {where} RETURNING {API_KEY.select}",
                id=key_id,
                p=project_id,
                now=now_us,
            )
            return None if row is None else API_KEY.load(row)

        return await self.db.write(run)

    # ------------------------------------------------------------ endpoints

    async def create_endpoint(self, endpoint: Endpoint) -> None:
        await self.db.write(lambda tx: tx.run(ENDPOINT.insert, **ENDPOINT.args(endpoint)))

    async def get_endpoint(self, project_id: str, endpoint_id: str) -> Endpoint | None:
        found: Endpoint | None = await self._one(
            ENDPOINT, "id = :id AND project_id = :p", id=endpoint_id, p=project_id
        )
        return found

    async def list_endpoints(
        self,
        project_id: str,
        owner_id: str | None,
        q: str | None,
        page: PageRequest,
        *,
        owner_scope: str | None = None,
    ) -> Page[Endpoint]:
        where: list[str] = ["project_id = :project"]
        args: dict[str, Any] = {"project": project_id}
        if owner_id:
            where.append("owner_id = :owner")
            args["owner"] = owner_id
        if owner_scope is not None:
            where.append("owner_id = :scope")
            args["scope"] = owner_scope
        if q:
            where.append("name LIKE :q ESCAPE '\\'")
            args["q"] = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return await self.db.read(lambda tx: paged(tx, ENDPOINT, where, args, page))

    async def owned_endpoint_ids(
        self, project_id: str, owner_id: str, endpoint_ids: Sequence[str]
    ) -> set[str]:
        """Which of *endpoint_ids* are endpoints of *owner_id* in the project."""
        if not endpoint_ids:
            return set()

        async def run(tx: Tx) -> set[str]:
            rows = await tx.rows(
                "SELECT id FROM endpoints WHERE project_id = :p AND owner_id = :o "
                "AND id = ANY(:ids)",
                p=project_id,
                o=owner_id,
                ids=list(set(endpoint_ids)),
            )
            return {str(r[0]) for r in rows}

        return await self.db.read(run)

    async def update_endpoint(self, endpoint: Endpoint) -> None:
        async def run(tx: Tx) -> None:
            changed = await tx.run(
                ENDPOINT.update(where="id = :id AND project_id = :project_id"),
                **ENDPOINT.args(endpoint),
            )
            if not changed:
                raise NotFoundError("endpoint not found")

        await self.db.write(run)

    async def delete_endpoint(self, project_id: str, endpoint_id: str) -> bool:
        async def run(tx: Tx) -> bool:
            deleted = await tx.run(
                "DELETE FROM endpoints WHERE id = :id AND project_id = :p",
                id=endpoint_id,
                p=project_id,
            )
            if deleted:
                await tx.run("DELETE FROM subscriptions WHERE endpoint_id = :id", id=endpoint_id)
                await tx.run("DELETE FROM ordering_blocks WHERE endpoint_id = :id", id=endpoint_id)
            return deleted > 0

        return await self.db.write(run)

    async def load_targets(
        self, endpoint_ids: Sequence[str]
    ) -> list[tuple[Endpoint, ProjectConfig]]:
        """Endpoints with their projects' settings (the worker's directory reads these)."""

        async def run(tx: Tx) -> list[tuple[Endpoint, ProjectConfig]]:
            rows = await tx.rows(
                f"SELECT {ENDPOINT.select} FROM endpoints WHERE id = ANY(:ids)",
                ids=list(endpoint_ids),
            )
            endpoints = ENDPOINT.all(rows)
            configs = await self._configs_of(tx, (e.project_id for e in endpoints))
            return [(e, configs[e.project_id]) for e in endpoints if e.project_id in configs]

        return await self.db.read(run)

    # ------------------------------------------------------------ subscriptions

    async def create_subscription(self, sub: Subscription, *, allow_multiple: bool) -> None:
        async def run(tx: Tx) -> None:
            # the same lock as ingest's catch-all subscription: one check-then-insert at once
            await tx.lock([f"sub\x1f{sub.endpoint_id}"])
            await _require_endpoint(tx, sub.project_id, sub.endpoint_id)
            if not allow_multiple and await tx.value(
                "SELECT 1 FROM subscriptions WHERE endpoint_id = :e LIMIT 1", e=sub.endpoint_id
            ):
                raise ConflictError("a subscription for this endpoint already exists")
            await tx.run(SUBSCRIPTION.insert, **SUBSCRIPTION.args(sub))

        await self.db.write(run)

    async def get_subscription(self, project_id: str, sub_id: str) -> Subscription | None:
        found: Subscription | None = await self._one(
            SUBSCRIPTION, "id = :id AND project_id = :p", id=sub_id, p=project_id
        )
        return found

    async def list_subscriptions(
        self,
        project_id: str,
        endpoint_ids: Sequence[str],
        name: str | None,
        page: PageRequest,
        *,
        owner_scope: str | None = None,
    ) -> Page[Subscription]:
        where: list[str] = ["project_id = :project"]
        args: dict[str, Any] = {"project": project_id}
        _scope(where, args, "endpoint_id", owner_scope)
        if endpoint_ids:
            where.append("endpoint_id = ANY(:endpoints)")
            args["endpoints"] = list(endpoint_ids)
        if name:
            where.append("name = :name")
            args["name"] = name
        return await self.db.read(lambda tx: paged(tx, SUBSCRIPTION, where, args, page))

    async def update_subscription(self, sub: Subscription) -> None:
        async def run(tx: Tx) -> None:
            await _require_endpoint(tx, sub.project_id, sub.endpoint_id)
            changed = await tx.run(
                SUBSCRIPTION.update(where="id = :id AND project_id = :project_id"),
                **SUBSCRIPTION.args(sub),
            )
            if not changed:
                raise NotFoundError("subscription not found")

        await self.db.write(run)

    async def delete_subscription(self, project_id: str, sub_id: str) -> bool:
        async def run(tx: Tx) -> bool:
            return (
                await tx.run(
                    "DELETE FROM subscriptions WHERE id = :id AND project_id = :p",
                    id=sub_id,
                    p=project_id,
                )
                > 0
            )

        return await self.db.write(run)

    # ------------------------------------------------------------ ingest (group commit)

    async def ingest(self, batch: Sequence[NewEvent]) -> list[IngestResult]:
        """Route and store a batch of events in one transaction: read what routing needs,
        plan (pure), write the plan."""

        async def run(tx: Tx) -> list[IngestResult]:
            snapshot = await self._snapshot(tx, batch)
            plan = plan_ingest(batch, snapshot, new_id, self.filters)
            await tx.insert(
                schema.endpoints, ENDPOINT.columns, [ENDPOINT.dump(e) for e in plan.endpoints]
            )
            await tx.insert(
                schema.subscriptions,
                SUBSCRIPTION.columns,
                [SUBSCRIPTION.dump(s) for s in plan.subscriptions],
            )
            await tx.insert(schema.events, EventRow._fields, plan.events)
            await tx.insert(schema.deliveries, DeliveryRow._fields, plan.deliveries)
            if plan.events:
                tx.notify()
            return plan.results

        return await self.db.write(run)

    async def _snapshot(self, tx: Tx, batch: Sequence[NewEvent]) -> Snapshot:
        """What routing reads, then the locks that make check-then-write safe across
        processes (idempotency keys, catch-all subscriptions, dynamic endpoints), then what
        must be read under them."""
        single = list(
            {ev.endpoint_id for ev in batch if ev.kind is EventKind.SINGLE and ev.endpoint_id}
        )
        endpoints: dict[str, Endpoint] = {}
        subs: dict[str, Sequence[Subscription]] = {}
        if single:
            found, found_subs = await _with_subscriptions(tx, "e.id = ANY(:ids)", ids=single)
            endpoints = {e.id: e for e in found}
            subs.update(found_subs)
        owners: dict[tuple[str, str], list[Endpoint]] = {}
        for project_id, owner_id in {
            (ev.project_id, ev.owner_id) for ev in batch if ev.kind is EventKind.FANOUT
        }:
            owners[(project_id, owner_id)], found_subs = await _with_subscriptions(
                tx, "e.project_id = :p AND e.owner_id = :o", p=project_id, o=owner_id
            )
            subs.update(found_subs)
        sources: dict[str, list[Endpoint]] = {}
        for source_id in {ev.source_id for ev in batch if ev.kind is EventKind.INCOMING}:
            sources[source_id], found_subs = await _with_subscriptions(
                tx,
                "e.id IN (SELECT endpoint_id FROM subscriptions WHERE source_id = :s)",
                s=source_id,
            )
            subs.update(found_subs)
        known = [*endpoints, *(e.id for eps in owners.values() for e in eps)]
        unsubscribed = [eid for eid in known if not subs.get(eid)]
        keys = {(ev.project_id, ev.idempotency_key) for ev in batch if ev.idempotency_key}
        urls = {(ev.project_id, ev.url) for ev in batch if ev.kind is EventKind.DYNAMIC}
        await tx.lock(
            [f"sub\x1f{eid}" for eid in unsubscribed]
            + [f"idem\x1f{p}\x1f{k}" for p, k in keys]
            + [f"dyn\x1f{p}\x1f{u}" for p, u in urls]
        )
        if unsubscribed:  # another process may have subscribed them before the lock
            subs.update(await _subscriptions_of(tx, unsubscribed))
        dynamic: dict[tuple[str, str], Endpoint] = {}
        for project_id, url in urls:
            row = await tx.row(
                f"SELECT {ENDPOINT.select} FROM endpoints WHERE project_id = :p AND url = :u "
                "ORDER BY id LIMIT 1",
                p=project_id,
                u=url,
            )
            if row is not None:
                endpoint = dynamic[(project_id, url)] = ENDPOINT.load(row)
                subs.update(await _subscriptions_of(tx, [endpoint.id]))
        return Snapshot(endpoints, owners, subs, await _used_keys(tx, keys), dynamic, sources)

    # ------------------------------------------------------------ events

    async def get_event(self, project_id: str, event_id: str) -> Event | None:
        found: Event | None = await self._one(
            EVENT, "id = :id AND project_id = :p", id=event_id, p=project_id
        )
        return found

    async def list_events(
        self,
        project_id: str,
        flt: EventFilter,
        page: PageRequest,
        *,
        owner_scope: str | None = None,
    ) -> Page[Event]:
        where, args = _event_where(project_id, flt)
        if owner_scope is not None:
            # the events that went to an endpoint of the owner (one of those named, if
            # any: naming another owner's endpoint finds what naming none that exists does)
            named = " AND d.endpoint_id = ANY(:endpoints)" if flt.endpoint_ids else ""
            where.append(
                "EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND "
                "d.endpoint_id IN (SELECT id FROM endpoints WHERE project_id = :project "
                f"AND owner_id = :scope){named})"
            )
            args["scope"] = owner_scope
        return await self.db.read(lambda tx: paged(tx, EVENT, where, args, page))

    async def broadcast_progress(self, project_id: str, event_id: str) -> BroadcastProgress | None:
        return await self.db.read(lambda tx: _broadcast_progress(tx, project_id, event_id))

    # ------------------------------------------------------------ deliveries and attempts

    async def get_delivery(self, project_id: str, delivery_id: str) -> Delivery | None:
        found: Delivery | None = await self._one(
            DELIVERY, "id = :id AND project_id = :p", id=delivery_id, p=project_id
        )
        return found

    async def list_deliveries(
        self,
        project_id: str,
        flt: DeliveryFilter,
        page: PageRequest,
        *,
        owner_scope: str | None = None,
    ) -> Page[Delivery]:
        where, args = _delivery_where(project_id, flt)
        _scope(where, args, "endpoint_id", owner_scope)
        return await self.db.read(lambda tx: paged(tx, DELIVERY, where, args, page))

    async def requeue_delivery(
        self, project_id: str, delivery_id: str, expected: Sequence[DeliveryStatus], now_us: int
    ) -> Delivery | None:
        """Put a finished delivery back in the queue, due now, with a fresh attempt budget.
        Returns None when it was not in one of the *expected* statuses (a no-op)."""

        async def run(tx: Tx) -> Delivery | None:
            row = await tx.row(
                "UPDATE deliveries SET status = 'Scheduled', due_at_us = :now, attempts = 0, "
                "lease_token = NULL, description = '', updated_at_us = :now "
                "WHERE id = :id AND project_id = :p AND status = ANY(:expected) "
                f"RETURNING {DELIVERY.select}",
                now=now_us,
                id=delivery_id,
                p=project_id,
                expected=[s.value for s in expected],
            )
            if row is None:
                return None
            # requeued, it is its key's head again: the key it blocked goes on
            await tx.run("DELETE FROM ordering_blocks WHERE delivery_id = :id", id=delivery_id)
            tx.notify()
            return DELIVERY.load(row)

        return await self.db.write(run)

    async def list_ordering_blocks(self, project_id: str, endpoint_id: str) -> list[OrderingBlock]:
        """The endpoint's blocked ordering keys, each with the delivery that blocks it."""

        async def run(tx: Tx) -> list[OrderingBlock]:
            rows = await tx.rows(
                f"SELECT {ORDERING_BLOCK.select} FROM ordering_blocks WHERE project_id = :p "
                "AND endpoint_id = :e ORDER BY blocked_at_us, ordering_key",
                p=project_id,
                e=endpoint_id,
            )
            return ORDERING_BLOCK.all(rows)

        return await self.db.read(run)

    async def skip_blocked_delivery(
        self, project_id: str, delivery_id: str, now_us: int
    ) -> Delivery | None:
        """Let the key a failed delivery blocks go on without it (the skip is recorded on
        the delivery). None when the delivery blocks no key."""

        async def run(tx: Tx) -> Delivery | None:
            gone = await tx.run(
                "DELETE FROM ordering_blocks WHERE delivery_id = :d AND project_id = :p",
                d=delivery_id,
                p=project_id,
            )
            if not gone:
                return None
            row = await tx.row(
                "UPDATE deliveries SET description = description || :note, updated_at_us = :now "
                f"WHERE id = :d AND project_id = :p RETURNING {DELIVERY.select}",
                note=SKIPPED_NOTE,
                now=now_us,
                d=delivery_id,
                p=project_id,
            )
            if row is None:
                return None
            skipped = DELIVERY.load(row)
            # the key's waiting deliveries go at once, not when their parking ends
            await tx.run(
                "UPDATE deliveries SET due_at_us = :now, lease_token = NULL "
                "WHERE endpoint_id = :e AND ordering_key = :k AND status = 'Scheduled' "
                "AND due_at_us = :parked",
                now=now_us,
                parked=PARKED_US,
                e=skipped.endpoint_id,
                k=skipped.ordering_key,
            )
            tx.notify()
            return skipped

        return await self.db.write(run)

    async def list_attempts(self, project_id: str, delivery_id: str) -> list[Attempt]:
        async def run(tx: Tx) -> list[Attempt]:
            rows = await tx.rows(
                f"SELECT {ATTEMPT.select} FROM attempts WHERE delivery_id = :d AND project_id = :p "
                "ORDER BY id",
                d=delivery_id,
                p=project_id,
            )
            return ATTEMPT.all(rows)

        return await self.db.read(run)

    async def get_attempt(
        self, project_id: str, delivery_id: str, attempt_id: str
    ) -> Attempt | None:
        found: Attempt | None = await self._one(
            ATTEMPT,
            "id = :id AND delivery_id = :d AND project_id = :p",
            id=attempt_id,
            d=delivery_id,
            p=project_id,
        )
        return found

    # ------------------------------------------------------------ endpoint health

    async def disable_endpoint(
        self, endpoint_id: str, reason: str, probe_at_us: int | None, now_us: int
    ) -> None:
        await self.db.write(lambda tx: disable(tx, endpoint_id, reason, probe_at_us, now_us))

    async def enable_endpoint(self, endpoint_id: str, now_us: int, release_rate: float) -> int:
        """Activate, reset health, and release the deliveries held while it was disabled,
        spread at *release_rate* per second (0 = all at once). Returns how many."""
        step = release_step_us(release_rate)

        async def run(tx: Tx) -> int:
            await tx.run(
                "UPDATE endpoints SET status = 'active', disabled_reason = '', breaker = NULL, "
                "probe_at_us = NULL, probe_attempts = 0, updated_at_us = :now WHERE id = :id",
                now=now_us,
                id=endpoint_id,
            )
            released = await tx.run(
                "UPDATE deliveries SET due_at_us = :now + "
                "CAST((held.n - 1) * CAST(:step AS DOUBLE PRECISION) AS BIGINT), "
                "updated_at_us = :now FROM (SELECT id AS held_id, "
                "ROW_NUMBER() OVER (ORDER BY id) AS n FROM deliveries WHERE endpoint_id = :id "
                "AND due_at_us = :held AND status IN ('Scheduled', 'Retry')) AS held "
                "WHERE deliveries.id = held.held_id",
                now=now_us,
                step=step,
                id=endpoint_id,
                held=HELD_US,
            )
            if released:
                tx.notify()
            return released

        return await self.db.write(run)

    async def due_probes(self, now_us: int, limit: int) -> list[tuple[Endpoint, ProjectConfig]]:
        async def run(tx: Tx) -> list[tuple[Endpoint, ProjectConfig]]:
            endpoints = ENDPOINT.all(
                await tx.rows(
                    f"SELECT {ENDPOINT.select} FROM endpoints WHERE probe_at_us IS NOT NULL "
                    "AND probe_at_us <= :now AND status = 'inactive' ORDER BY probe_at_us "
                    "LIMIT :limit",
                    now=now_us,
                    limit=limit,
                )
            )
            configs = (
                await self._configs_of(tx, (e.project_id for e in endpoints)) if endpoints else {}
            )
            return [(e, configs[e.project_id]) for e in endpoints if e.project_id in configs]

        return await self.db.read(run)

    async def reschedule_probe(self, endpoint_id: str, probe_at_us: int, attempts: int) -> None:
        await self.db.write(
            lambda tx: tx.run(
                "UPDATE endpoints SET probe_at_us = :at, probe_attempts = :n WHERE id = :id",
                at=probe_at_us,
                n=attempts,
                id=endpoint_id,
            )
        )

    # ------------------------------------------------------------ metrics

    async def queue_stats(self, now_us: int) -> QueueStats:
        """One pass over the queue index and one over the endpoints table."""

        async def run(tx: Tx) -> QueueStats:
            row = await tx.row(
                "SELECT count(*) FILTER (WHERE due_at_us <= :now), "
                "MIN(due_at_us) FILTER (WHERE due_at_us <= :now), "
                # (ordered deliveries parked behind their key's head count as later)
                "count(*) FILTER (WHERE due_at_us > :now AND due_at_us <> :held), "
                f"count(*) FILTER (WHERE due_at_us = :held) FROM deliveries WHERE {PENDING}",
                now=now_us,
                held=HELD_US,
            )
            assert row is not None  # an aggregate always has a row
            disabled = await tx.rows(
                "SELECT disabled_reason, COUNT(*) FROM endpoints WHERE status = 'inactive' "
                "GROUP BY disabled_reason"
            )
            endpoints = int(await tx.value("SELECT COUNT(*) FROM endpoints") or 0)
            # a breaker is stored on its endpoint at each transition: those never tripped
            # have none (closed)
            stored = await tx.rows("SELECT breaker FROM endpoints WHERE breaker IS NOT NULL")
            blocked = int(await tx.value("SELECT COUNT(*) FROM ordering_blocks") or 0)
            return QueueStats(
                int(row[0]),
                None if row[1] is None else int(row[1]),
                int(row[2]),
                int(row[3]),
                {str(r[0]): int(r[1]) for r in disabled},
                state_counts(endpoints, (loads(r[0]) for r in stored)),
                blocked,
            )

        return await self.db.read(run)

    # ------------------------------------------------------------ operator actions

    async def replay_event(self, project_id: str, event_id: str, now_us: int) -> int:
        """Send an event again to the endpoints it went to: its finished deliveries go back
        in the queue (those still pending are left alone, so a second call is a no-op)."""
        return await self.db.write(
            lambda tx: _requeue(tx, project_id, "event_id", [event_id], now_us)
        )

    async def create_batch_job(self, job: BatchJob) -> BatchJob:
        async def run(tx: Tx) -> BatchJob:
            # one active batch of a kind per project, even across processes
            await tx.lock([f"batch\x1f{job.project_id}\x1f{job.kind.value}"])
            if await tx.value(
                "SELECT 1 FROM batch_jobs WHERE project_id = :p AND kind = :k "
                "AND status IN ('queued', 'running') LIMIT 1",
                p=job.project_id,
                k=job.kind.value,
            ):
                raise ConflictError(f"an active batch {job.kind.value} already exists")
            table, where, args = _batch_where(job)
            total = await tx.value(
                f"SELECT COUNT(*) FROM {table} WHERE {' AND '.join(where)}", **args
            )
            created = replace(job, total=int(total))
            await tx.run(
                f"INSERT INTO batch_jobs ({BATCH_JOB.select}, due_at_us) VALUES "
                f"({', '.join(':' + c for c in BATCH_JOB.columns)}, :created_at_us)",
                **BATCH_JOB.args(created),
            )
            tx.notify()
            return created

        return await self.db.write(run)

    async def get_batch_job(self, project_id: str, job_id: str) -> BatchJob | None:
        found: BatchJob | None = await self._one(
            BATCH_JOB, "id = :id AND project_id = :p", id=job_id, p=project_id
        )
        return found

    async def claim_batch_job(
        self, *, now_us: int, lease_us: int, lease_token: str
    ) -> tuple[BatchJob, str] | None:
        async def run(tx: Tx) -> tuple[BatchJob, str] | None:
            row = await tx.row(
                "UPDATE batch_jobs SET status = 'running', lease_token = :token, "
                "due_at_us = :until, updated_at_us = :now WHERE id = (SELECT id FROM batch_jobs "
                "WHERE due_at_us IS NOT NULL AND due_at_us <= :now ORDER BY due_at_us LIMIT 1 "
                f"{{lock}}) RETURNING {BATCH_JOB.select}",
                now=now_us,
                token=lease_token,
                until=now_us + lease_us,
            )
            return None if row is None else (BATCH_JOB.load(row), lease_token)

        return await self.db.write(run)

    async def run_batch_chunk(
        self, job_id: str, lease_token: str, *, limit: int, now_us: int, lease_us: int
    ) -> BatchJob:
        """Requeue the next *limit* matching rows (keyset by id); progress and cursor are
        committed with them, so a crashed job resumes where it stopped."""

        async def run(tx: Tx) -> BatchJob:
            row = await tx.row(
                f"SELECT {BATCH_JOB.select}, cursor, lease_token FROM batch_jobs WHERE id = :id "
                "{row_lock}",
                id=job_id,
            )
            if row is None or row[-1] != lease_token:
                raise LeaseLostError("the batch job's lease was lost")
            job = BATCH_JOB.load(row)
            table, where, args = _batch_where(job)
            ids = [
                r[0]
                for r in await tx.rows(
                    f"SELECT id FROM {table} WHERE {' AND '.join(where)} AND id > :cursor "
                    "ORDER BY id LIMIT :limit",
                    **args,
                    cursor=row[-2] or "",
                    limit=limit,
                )
            ]
            column = "id" if job.kind is BatchKind.RETRY else "event_id"
            statuses = ("Failure", "Discarded") if job.kind is BatchKind.RETRY else None
            requeued = await _requeue(tx, job.project_id, column, ids, now_us, statuses)
            done = len(ids) < limit
            updated = await tx.row(
                "UPDATE batch_jobs SET cursor = COALESCE(:cursor, cursor), "
                "processed = processed + :n, requeued = requeued + :requeued, status = :status, "
                "due_at_us = :due, finished_at_us = :finished, lease_token = :token, "
                f"updated_at_us = :now WHERE id = :id RETURNING {BATCH_JOB.select}",
                cursor=ids[-1] if ids else None,
                n=len(ids),
                requeued=requeued,
                status="done" if done else "running",
                due=None if done else now_us + lease_us,
                finished=now_us if done else None,
                token=None if done else lease_token,
                now=now_us,
                id=job_id,
            )
            assert updated is not None
            return BATCH_JOB.load(updated)

        return await self.db.write(run)

    # ------------------------------------------------------------ retention

    async def retention_policies(self) -> list[tuple[str, int]]:
        """Every project's retention in hours (0: kept for ever)."""

        async def run(tx: Tx) -> list[Row]:
            return await tx.rows("SELECT id, config FROM projects")

        return [
            (project_id, stored_config(text).retention_hours)
            for project_id, text in await self.db.read(run)
        ]

    async def purge_before(self, project_id: str, cutoff_us: int, limit: int) -> int:
        """Delete up to *limit* rows of each table older than *cutoff_us* (by id, which
        carries the time: an index range, whatever the history), in small transactions,
        so delivery is never locked out for long. Returns rows deleted."""
        floor = ulid_floor(cutoff_us // 1000)

        async def run(tx: Tx) -> int:
            n = 0
            for table in ("attempts", "deliveries", "events"):
                n += await tx.run(
                    f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} "
                    "WHERE project_id = :p AND id < :floor LIMIT :limit)",
                    p=project_id,
                    floor=floor,
                    limit=limit,
                )
            return n

        return await self.db.write(run)

    async def maintain_partitions(
        self, now_us: int, drop_before_us: int | None
    ) -> tuple[list[str], list[str]]:
        """PostgreSQL: make the coming days' partitions and drop those wholly before
        *drop_before_us* (``store/partitions.py``); one process at a time. Returns the
        partitions created and dropped (none on SQLite)."""
        if self.db.dialect is not Dialect.POSTGRES:
            return [], []
        drop_ms = None if drop_before_us is None else drop_before_us // 1000

        async def run(tx: Tx) -> tuple[list[str], list[str]]:
            await tx.lock(["hookcast\x1fpartitions"])
            done = await partitions.maintain(tx, now_us // 1000, drop_ms)
            return done.created, done.dropped

        return await self.db.write(run)

    # ------------------------------------------------------------ broadcast fan-out

    async def claim_fanout(
        self, *, now_us: int, lease_us: int, lease_token: str
    ) -> FanoutJob | None:
        """Lease the oldest broadcast whose fan-out is due (new, or its lease expired)."""

        async def run(tx: Tx) -> FanoutJob | None:
            row = await tx.row(
                "UPDATE events SET fanout_lease_token = :token, fanout_due_at_us = :until, "
                "status = 'Processing', updated_at_us = :now WHERE id = (SELECT id FROM events "
                "WHERE fanout_due_at_us IS NOT NULL AND fanout_due_at_us <= :now "
                "ORDER BY fanout_due_at_us LIMIT 1 {lock}) RETURNING id, project_id, event_type, "
                "data, headers, idempotency_key",
                token=lease_token,
                until=now_us + lease_us,
                now=now_us,
            )
            if row is None:
                return None
            project = await tx.row("SELECT config FROM projects WHERE id = :id", id=row[1])
            config = stored_config(project[0]) if project is not None else ProjectConfig()
            return FanoutJob(
                row[0],
                row[1],
                row[2],
                orjson.loads(row[3]),
                orjson.loads(row[4]),
                row[5],
                lease_token,
                config.strategy,
                config.broadcast_rate,
            )

        return await self.db.write(run)

    async def write_fanout_chunk(
        self, job: FanoutJob, *, limit: int, now_us: int, lease_us: int
    ) -> ChunkResult:
        """Route the next *limit* endpoints (keyset by id) and write their deliveries, the
        cursor and the counters in one transaction: a crash resumes exactly here."""

        async def run(tx: Tx) -> ChunkResult:
            row = await tx.row(
                "SELECT fanout_cursor, fanout_lease_token, fanout_matched, ordering_key "
                "FROM events WHERE id = :id {row_lock}",
                id=job.event_id,
            )
            if row is None or row[1] != job.lease_token:
                raise LeaseLostError("the broadcast's fan-out lease was lost")
            found = await tx.rows(
                "SELECT id, status, ordering FROM endpoints WHERE project_id = :p "
                "AND id > :cursor ORDER BY id LIMIT :limit",
                p=job.project_id,
                cursor=row[0] or "",
                limit=limit,
            )
            endpoints = [(r[0], r[1]) for r in found]
            ordered = {r[0] for r in found if r[2] == Ordering.PER_KEY.value}
            subs: dict[str, list[Subscription]] = {}
            if endpoints:
                subs = group_by_endpoint(
                    SUBSCRIPTION.all(
                        await tx.rows(
                            f"SELECT {SUBSCRIPTION.select} FROM subscriptions "
                            "WHERE project_id = :p AND endpoint_id >= :first "
                            "AND endpoint_id <= :last ORDER BY endpoint_id, id",
                            p=job.project_id,
                            first=endpoints[0][0],
                            last=endpoints[-1][0],
                        )
                    )
                )
            clock = await tx.value(
                "SELECT broadcast_release_at_us FROM projects WHERE id = :p {row_lock}",
                p=job.project_id,
            )
            broadcast = Broadcast(
                job.event_id,
                job.project_id,
                job.event_type,
                job.parsed,
                job.headers,
                job.idempotency_key,
                job.strategy,
                job.broadcast_rate,
                row[3],
            )
            plan = plan_chunk(
                broadcast,
                endpoints,
                subs,
                release_clock_us=clock or 0,
                now_us=now_us,
                filters=self.filters,
                ordered=ordered,
            )
            if plan.deliveries:
                await tx.insert(schema.deliveries, DeliveryRow._fields, plan.deliveries)
                tx.notify()
            if plan.release_clock_us != (clock or 0):
                await tx.run(
                    "UPDATE projects SET broadcast_release_at_us = :at WHERE id = :p",
                    at=plan.release_clock_us,
                    p=job.project_id,
                )
            done = len(endpoints) < limit
            await _advance(
                tx,
                job,
                endpoints,
                plan.matched,
                plan.skipped,
                done,
                row[2],
                now_us + lease_us,
                now_us,
            )
            return ChunkResult(plan.matched, plan.skipped, len(endpoints), done)

        return await self.db.write(run)


# ---------------------------------------------------------------- helpers over a Tx


async def paged(
    tx: Tx, mapping: Mapping[Any], where: list[str], args: dict[str, Any], page: PageRequest
) -> Page[Any]:
    """Keyset pagination on ``id`` in Convoy's shape (fetch one extra row)."""
    table = mapping.table
    base = " AND ".join(where) if where else "TRUE"
    desc = page.descending
    backwards = page.direction is Direction.PREV and bool(page.prev_cursor)
    if backwards:
        # prev_page_cursor is the first item of the current page: the page before it
        # ends just before that item (exclusive), whereas next cursors are inclusive
        op, order = (">", "ASC") if desc else ("<", "DESC")
        cursor: str | None = page.prev_cursor
    else:
        op, order = ("<=", "DESC") if desc else (">=", "ASC")
        cursor = page.next_cursor
    sql = f"SELECT {mapping.select} FROM {table} WHERE {base}"
    if cursor:
        sql += f" AND id {op} :page_cursor"
    sql += f" ORDER BY id {order} LIMIT :page_limit"
    rows = await tx.rows(sql, **args, page_cursor=cursor, page_limit=page.per_page + 1)
    extra = len(rows) > page.per_page
    rows = rows[: page.per_page]
    if backwards:
        rows.reverse()
    items = mapping.all(rows)
    if not rows:
        return Page(items, page.per_page, False, False, "", "")
    first_id, last_id = rows[0][0], rows[-1][0]
    before, after = (">", "<") if desc else ("<", ">")

    async def beyond(op: str, value: str) -> str | None:
        found = await tx.value(
            f"SELECT id FROM {table} WHERE {base} AND id {op} :edge "
            f"ORDER BY id {'DESC' if op == '<' else 'ASC'} LIMIT 1",
            **args,
            edge=value,
        )
        return None if found is None else str(found)

    has_prev = extra if backwards else await beyond(before, first_id) is not None
    if backwards:
        following = await beyond(after, last_id)
        has_next = following is not None
    else:
        has_next = extra
        following = await beyond(after, last_id) if extra else None
    next_cursor = following or ""
    return Page(items, page.per_page, has_next, has_prev, next_cursor, first_id)


async def _require_endpoint(tx: Tx, project_id: str, endpoint_id: str) -> None:
    if not await tx.value(
        "SELECT 1 FROM endpoints WHERE id = :id AND project_id = :p", id=endpoint_id, p=project_id
    ):
        raise ValidationError("endpoint not found in this project")


async def _with_subscriptions(
    tx: Tx, where: str, **args: Any
) -> tuple[list[Endpoint], dict[str, Sequence[Subscription]]]:
    """The endpoints *where* selects (alias ``e``, in id order) and the subscriptions of
    each, in one statement (one round trip on PostgreSQL)."""
    n = len(ENDPOINT.columns)
    rows = await tx.rows(
        f"SELECT {ENDPOINT.prefixed('e')}, {SUBSCRIPTION.prefixed('s')} FROM endpoints e "
        f"LEFT JOIN subscriptions s ON s.endpoint_id = e.id WHERE {where} ORDER BY e.id, s.id",
        **args,
    )
    endpoints: list[Endpoint] = []
    subs: dict[str, list[Subscription]] = {}
    for row in rows:
        values = tuple(row)
        mine = subs.get(values[0])
        if mine is None:
            endpoints.append(ENDPOINT.load(values[:n]))
            mine = subs[values[0]] = []
        if values[n] is not None:
            mine.append(SUBSCRIPTION.load(values[n:]))
    return endpoints, dict(subs)


async def _subscriptions_of(
    tx: Tx, endpoint_ids: Sequence[str]
) -> dict[str, Sequence[Subscription]]:
    if not endpoint_ids:
        return {}
    rows = await tx.rows(
        f"SELECT {SUBSCRIPTION.select} FROM subscriptions WHERE endpoint_id = ANY(:ids) "
        "ORDER BY id",
        ids=list(set(endpoint_ids)),
    )
    found = group_by_endpoint(SUBSCRIPTION.all(rows))
    return {eid: found.get(eid, []) for eid in endpoint_ids}


async def _used_keys(tx: Tx, keys: set[tuple[str, str]]) -> frozenset[tuple[str, str]]:
    """Which (project, idempotency key) a stored, non-duplicate event already has."""
    used: set[tuple[str, str]] = set()
    by_project: dict[str, list[str]] = {}
    for project_id, key in keys:
        by_project.setdefault(project_id, []).append(key)
    for project_id, project_keys in by_project.items():
        rows = await tx.rows(
            "SELECT DISTINCT idempotency_key FROM events WHERE project_id = :p "
            "AND idempotency_key = ANY(:keys) AND NOT is_duplicate_event",
            p=project_id,
            keys=project_keys,
        )
        used.update((project_id, r[0]) for r in rows)
    return frozenset(used)


async def disable(
    tx: Tx, endpoint_id: str, reason: str, probe_at_us: int | None, now_us: int
) -> None:
    """Disable an endpoint and hold (not discard) its pending deliveries."""
    await tx.run(
        "UPDATE endpoints SET status = 'inactive', disabled_reason = :reason, "
        "probe_at_us = :probe, updated_at_us = :now WHERE id = :id",
        reason=reason,
        probe=probe_at_us,
        now=now_us,
        id=endpoint_id,
    )
    await tx.run(
        "UPDATE deliveries SET due_at_us = :held, updated_at_us = :now WHERE endpoint_id = :id "
        "AND status IN ('Scheduled', 'Retry')",
        held=HELD_US,
        now=now_us,
        id=endpoint_id,
    )


async def _requeue(
    tx: Tx,
    project_id: str,
    column: str,
    ids: Sequence[str],
    now_us: int,
    statuses: Sequence[str] | None = None,
) -> int:
    """Finished deliveries (by their ``id`` or ``event_id``) back in the queue, due now,
    with a fresh attempt budget: a batch retry (failed or discarded ones) or a replay (every
    finished one)."""
    if not ids:
        return 0
    n = await tx.run(
        "UPDATE deliveries SET status = 'Scheduled', due_at_us = :now, attempts = 0, "
        "lease_token = NULL, description = 'requeued by an operator', updated_at_us = :now "
        f"WHERE project_id = :p AND status = ANY(:statuses) AND {column} = ANY(:ids)",
        now=now_us,
        p=project_id,
        statuses=list(statuses or ("Success", "Failure", "Discarded")),
        ids=list(ids),
    )
    if n:
        await tx.run(  # requeued, each is its key's head again: the keys they blocked go on
            "DELETE FROM ordering_blocks WHERE delivery_id IN (SELECT id FROM deliveries "
            f"WHERE project_id = :p AND {column} = ANY(:ids) AND {PENDING})",
            p=project_id,
            ids=list(ids),
        )
        tx.notify()
    return n


def _scope(where: list[str], args: dict[str, Any], column: str, owner: str | None) -> None:
    """Only rows whose *column* is an endpoint of *owner* (a portal token's scope); the
    query's ``:project`` is the project."""
    if owner is None:
        return
    where.append(
        f"{column} IN (SELECT id FROM endpoints WHERE project_id = :project AND owner_id = :scope)"
    )
    args["scope"] = owner


def _time_window(
    where: list[str], args: dict[str, Any], start: int | None, end: int | None
) -> None:
    if start is not None:
        where.append("created_at_us >= :start")
        args["start"] = start
    if end is not None:
        where.append("created_at_us <= :end")
        args["end"] = end


def _event_where(project_id: str, flt: EventFilter) -> tuple[list[str], dict[str, Any]]:
    where: list[str] = ["project_id = :project"]
    args: dict[str, Any] = {"project": project_id}
    if flt.source_ids:
        where.append("source_id = ANY(:sources)")
        args["sources"] = list(flt.source_ids)
    if flt.endpoint_ids:
        where.append(
            "EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND "
            "d.endpoint_id = ANY(:endpoints))"
        )
        args["endpoints"] = list(flt.endpoint_ids)
    if flt.idempotency_key:
        where.append("idempotency_key = :key")
        args["key"] = flt.idempotency_key
    if flt.query:
        where.append("(event_type = :q OR id = :q OR idempotency_key = :q)")
        args["q"] = flt.query
    _time_window(where, args, flt.start_us, flt.end_us)
    return where, args


def _delivery_where(project_id: str, flt: DeliveryFilter) -> tuple[list[str], dict[str, Any]]:
    where: list[str] = ["project_id = :project"]
    args: dict[str, Any] = {"project": project_id}
    if flt.endpoint_ids:
        where.append("endpoint_id = ANY(:endpoints)")
        args["endpoints"] = list(flt.endpoint_ids)
    for column, value in (
        ("event_id", flt.event_id),
        ("subscription_id", flt.subscription_id),
        ("idempotency_key", flt.idempotency_key),
        ("event_type", flt.event_type),
    ):
        if value:
            where.append(f"{column} = :{column}")
            args[column] = value
    if flt.statuses:
        where.append("status = ANY(:statuses)")
        args["statuses"] = [s.value for s in flt.statuses]
    _time_window(where, args, flt.start_us, flt.end_us)
    return where, args


def _batch_where(job: BatchJob) -> tuple[str, list[str], dict[str, Any]]:
    if job.kind is BatchKind.RETRY:
        where, args = _delivery_where(job.project_id, delivery_filter_from_json(job.filter))
        return "deliveries", where, args
    where, args = _event_where(job.project_id, event_filter_from_json(job.filter))
    return "events", where, args


async def _advance(
    tx: Tx,
    job: FanoutJob,
    endpoints: list[tuple[str, str]],
    matched: int,
    skipped: int,
    done: bool,
    before: int,
    lease_until_us: int,
    now_us: int,
) -> None:
    """The broadcast's cursor and counters after a chunk; when it is the last, its status."""
    cursor = endpoints[-1][0] if endpoints else None
    if not done:
        await tx.run(
            "UPDATE events SET fanout_cursor = :cursor, fanout_matched = fanout_matched + :m, "
            "fanout_skipped = fanout_skipped + :s, fanout_due_at_us = :until, "
            "updated_at_us = :now WHERE id = :id",
            cursor=cursor,
            m=matched,
            s=skipped,
            until=lease_until_us,
            now=now_us,
            id=job.event_id,
        )
        return
    total = before + matched
    status = EventStatus.SUCCESS if total else EventStatus.FAILURE
    await tx.run(
        "UPDATE events SET fanout_cursor = COALESCE(:cursor, fanout_cursor), "
        "fanout_matched = fanout_matched + :m, fanout_skipped = fanout_skipped + :s, "
        "fanout_due_at_us = NULL, fanout_lease_token = NULL, fanout_done_at_us = :now, "
        "status = :status, failure_reason = :reason, updated_at_us = :now WHERE id = :id",
        cursor=cursor,
        m=matched,
        s=skipped,
        now=now_us,
        status=status.value,
        reason="" if total else "no subscription matched this event",
        id=job.event_id,
    )


async def _percentile(tx: Tx, event_id: str, ack: int, count: int, q: float) -> float | None:
    if count == 0:
        return None
    value = await tx.value(
        "SELECT updated_at_us FROM deliveries WHERE event_id = :id AND status = 'Success' "
        "ORDER BY updated_at_us LIMIT 1 OFFSET :offset",
        id=event_id,
        offset=min(count - 1, int(q * count)),
    )
    return None if value is None else (int(value) - ack) / 1000


async def _broadcast_progress(tx: Tx, project_id: str, event_id: str) -> BroadcastProgress | None:
    row = await tx.row(
        "SELECT fanout_matched, fanout_skipped, fanout_due_at_us, acknowledged_at_us FROM events "
        "WHERE id = :id AND project_id = :p",
        id=event_id,
        p=project_id,
    )
    if row is None:
        return None
    statuses = {
        str(r[0]): int(r[1])
        for r in await tx.rows(
            "SELECT status, COUNT(*) FROM deliveries WHERE event_id = :id GROUP BY status",
            id=event_id,
        )
    }
    span = await tx.row(
        "SELECT MIN(updated_at_us), MAX(updated_at_us) FROM deliveries "
        "WHERE event_id = :id AND status = 'Success'",
        id=event_id,
    )
    first, last = (span[0], span[1]) if span is not None else (None, None)
    ok = statuses.get("Success", 0)
    latency = {
        name: await _percentile(tx, event_id, row[3], ok, q)
        for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))
    }
    return BroadcastProgress(row[0], row[1], row[2] is None, statuses, first, last, latency)


__all__ = ["Records", "disable", "dumps", "paged", "release_step_us", "storable"]
