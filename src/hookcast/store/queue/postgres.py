"""The delivery queue on PostgreSQL: a tick is one statement in its own implicit
transaction, so one round trip (no BEGIN, no COMMIT).

Its data-modifying parts record what the worker finished (an ``UPDATE … FROM unnest``
fenced by each lease token, and the attempt rows, ``INSERT … SELECT FROM unnest``) and
lease what is due next (``FOR UPDATE SKIP LOCKED``: rows another worker is claiming are
skipped, never shared), returning each lease with its event payload and the versions of
its endpoint and project. A delivery just finished is never claimed by the same
statement (its id is excluded: PostgreSQL does not allow one row to be changed twice in
one statement). When a result changes an endpoint's health (a breaker transition, or
disabling it), that is written first, in the same transaction.

Every reference to ``deliveries`` names the statuses it wants (the claim the live ones, a
completion 'Processing'), and the updates that keep a delivery in the queue (leasing,
parking) name ``deliveries_queue`` itself: PostgreSQL then plans and locks
``deliveries_queue`` alone and never the history's daily partitions
(``store/partitions.py``), so a tick costs the same with a year of history as with none.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from hookcast.domain import storable
from hookcast.domain.errors import StoreError
from hookcast.domain.models import HELD_US, PARKED_US
from hookcast.domain.ports.queue import AttemptRow, Deferral, Finish, Lease
from hookcast.store.db import Tx
from hookcast.store.partitions import QUEUE
from hookcast.store.postgres import PostgresDatabase, PostgresTx, columns_of, count
from hookcast.store.queue import (
    BLOCK_KEY,
    FANNING,
    HEAD_OF_KEY_FANNING,
    PARK_BATCH,
    PARKABLE,
    UNPARK_SWEEP,
    SweepClock,
    next_of_key,
    ordering_note,
    tick_isolated,
)
from hookcast.store.records import disable

_ATTEMPT_TYPES = (
    "text[]",
    "text[]",
    "text[]",
    "text[]",
    "text[]",
    "text[]",
    "text[]",
    "text[]",
    "text[]",
    "int[]",
    "text[]",
    "text[]",
    "boolean[]",
    "bigint[]",
    "bigint[]",
    "bigint[]",
)

_TICK = (
    "WITH finished AS ("
    " UPDATE deliveries d SET status = u.status, due_at_us = CASE WHEN u.status = 'Retry' AND"
    " EXISTS (SELECT 1 FROM endpoints e WHERE e.id = d.endpoint_id AND e.status = 'inactive')"
    f" THEN {HELD_US} ELSE u.due_at_us END,"
    " latency_us = COALESCE(u.latency_us, d.latency_us),"
    f" description = u.description || {ordering_note('u.status', 'd')},"
    " lease_token = NULL, updated_at_us = $7"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[])"
    " AS u(id, token, status, due_at_us, latency_us, description)"
    " WHERE d.id = u.id AND d.lease_token = u.token AND d.status = 'Processing'"
    " RETURNING d.id, d.endpoint_id, d.project_id, d.ordering_key, d.status),"
    f" blocked AS ({BLOCK_KEY.format(now='$7', finished='finished')}),"
    # the end of an ordered delivery unparks the next of its key (rows finished by this
    # statement are still live in its snapshot: they are not the next)
    # (each update that keeps a delivery in the queue names the queue's partition and
    # joins on the id from its small set of rows: its plan is then a primary-key lookup
    # per row whatever the statistics say. Through the parent with a status test, a
    # generic plan made while the queue was small walked the queue's whole due index per
    # row, 80 ms a tick with 20,000 queued.)
    f" unparked AS (UPDATE {QUEUE} d SET due_at_us = $7, lease_token = NULL FROM ("
    + next_of_key("finished", " AND n.id <> ALL($1::text[])")
    + f") AS nx(id) WHERE d.id = nx.id AND d.status = 'Scheduled' AND d.due_at_us = {PARKED_US}),"
    # ordered deliveries waiting behind their key's head are parked until it ends
    f" parked AS (UPDATE {QUEUE} d SET due_at_us = {PARKED_US}, lease_token = 'parked'"
    " FROM ("
    + PARKABLE.format(now="$7", limit=f"CASE WHEN $8 > 0 THEN {PARK_BATCH} ELSE 0 END")
    + " FOR UPDATE OF q SKIP LOCKED) AS w WHERE d.id = w.id"
    # not behind a delivery this statement finishes: that one is still live in its
    # snapshot, and the next of its key is claimed at once after it (PostgresQueue.tick)
    " AND NOT EXISTS (SELECT 1 FROM unnest($1::text[], $3::text[]) AS x(id, status)"
    " JOIN deliveries y ON y.id = x.id AND y.status = 'Processing' WHERE x.status <> 'Retry'"
    " AND y.endpoint_id = d.endpoint_id AND y.ordering_key = d.ordering_key)),"
    f" {FANNING},"
    " attempts_written AS ("
    f" INSERT INTO attempts ({', '.join(AttemptRow._fields)}) SELECT * FROM unnest("
    + ", ".join(f"${i + 11}::{t}" for i, t in enumerate(_ATTEMPT_TYPES))
    + ")),"
    " picked AS ("
    " SELECT q.id, q.status, q.due_at_us FROM deliveries q"
    " WHERE q.status IN ('Scheduled', 'Retry', 'Processing') AND q.due_at_us <= $7"
    f" AND q.id <> ALL($1::text[]) AND {HEAD_OF_KEY_FANNING}"
    " ORDER BY q.due_at_us LIMIT $8 FOR UPDATE OF q SKIP LOCKED),"
    " leased AS ("
    f" UPDATE {QUEUE} d SET status = 'Processing', lease_token = $9,"
    " due_at_us = $10 + COALESCE((SELECT e.http_timeout FROM endpoints e"
    " WHERE e.id = d.endpoint_id), 30)::bigint * 1000000,"
    " attempts = d.attempts + 1, updated_at_us = $7"
    " FROM picked p WHERE d.id = p.id"
    " RETURNING d.id, d.project_id, d.event_id, d.endpoint_id, d.event_type,"
    " d.idempotency_key, d.delivery_mode, d.attempts, d.retry_limit, d.strategy,"
    " d.interval_seconds, d.max_retry_seconds, d.created_at_us, p.status AS previous_status,"
    " d.lease_token,"
    " p.due_at_us AS previous_due, d.ordering_key)"
    " SELECT l.id, l.project_id, l.event_id, l.endpoint_id, l.event_type, l.idempotency_key,"
    " l.delivery_mode, l.attempts, l.retry_limit, l.strategy, l.interval_seconds,"
    " l.max_retry_seconds, l.created_at_us, l.previous_status, v.data, v.headers,"
    " e.updated_at_us, p.updated_at_us, l.lease_token, l.ordering_key IS NOT NULL"
    " FROM leased l LEFT JOIN events v ON v.id = l.event_id"
    " LEFT JOIN endpoints e ON e.id = l.endpoint_id"
    " LEFT JOIN projects p ON p.id = l.project_id"
    " ORDER BY l.previous_due, l.id"
)

log = logging.getLogger("hookcast.store")

_SWEEP = UNPARK_SWEEP.format(table=QUEUE, now="$1")

_DEFER = (
    "UPDATE deliveries d SET status = u.status, due_at_us = u.due_at_us, lease_token = NULL, "
    "attempts = GREATEST(d.attempts - 1, 0), description = u.description, updated_at_us = $6 "
    "FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[]) "
    "AS u(id, token, status, due_at_us, description) "
    "WHERE d.id = u.id AND d.lease_token = u.token AND d.status = 'Processing' RETURNING 1"
)
_RELEASE = (
    "UPDATE deliveries d SET status = 'Scheduled', due_at_us = $3, lease_token = NULL, "
    "attempts = GREATEST(d.attempts - 1, 0), updated_at_us = $3 "
    "FROM unnest($1::text[], $2::text[]) AS u(id, token) "
    "WHERE d.id = u.id AND d.lease_token = u.token AND d.status = 'Processing'"
)


#: ordered deliveries remembered as leased here at most (past it the memory is cleared:
#: it only hastens a successor's claim)
_ORDERED_MEMORY = 100_000


class PostgresQueue:
    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        #: ids of ordered deliveries leased by this queue and not finished yet
        self._ordered: set[str] = set()
        self._sweep = SweepClock()

    async def tick(
        self, finished: Sequence[Finish], *, limit: int, now_us: int, lease_us: int, token: str
    ) -> list[Lease]:
        async def claim(done: Sequence[Finish]) -> list[Lease]:
            return await self._run(done, limit, now_us, now_us + lease_us, token)

        async def record(done: Sequence[Finish]) -> None:
            await self._run(done, 0, now_us, now_us, token)

        if self._sweep.due(now_us, limit):  # parked ones whose wait ended unseen
            try:
                await self._db.statement(_SWEEP, now_us)
            except StoreError as exc:  # never holds back the tick: the next sweep tries again
                log.warning("delivery.sweep_failed", extra={"error": exc.message[:200]})
        heads = self._ordered.intersection(f.delivery_id for f in finished if f.status != "Retry")
        leases = await tick_isolated(claim, record, finished)
        if heads and len(leases) < limit:
            # an ordered delivery finished in this tick was still live in its snapshot, so
            # the next of its key could not be claimed by it: claim once more at once
            self._ordered.difference_update(heads)
            leases += await self._run([], limit - len(leases), now_us, now_us + lease_us, token)
        return leases

    async def _run(
        self, finished: Sequence[Finish], limit: int, now_us: int, until_us: int, token: str
    ) -> list[Lease]:
        """The tick's statement; alone (one round trip) unless a result changes an
        endpoint's health, which is written first in the same transaction."""
        args = _tick_args(finished, limit, now_us, until_us, token)
        if any(f.breaker is not None or f.disable for f in finished):

            async def run(tx: Tx) -> Sequence[Any]:
                await _health(tx, finished, now_us)
                rows: Sequence[Any] = await (await _conn(tx)).fetch(_TICK, *args)
                return rows

            rows = await self._db.write(run)
        else:
            rows = await self._db.statement(_TICK, *args)
        if len(self._ordered) > _ORDERED_MEMORY:
            self._ordered.clear()
        self._ordered.difference_update(f.delivery_id for f in finished)
        self._ordered.update(r[0] for r in rows if r[-1])
        return _leases(rows)

    async def defer(self, deferrals: Sequence[Deferral], now_us: int) -> int:
        """Give leases back unspent: the attempt counted at the claim is undone."""
        if not deferrals:
            return 0
        self._ordered.difference_update(d.delivery_id for d in deferrals)
        ordered = sorted(deferrals)  # one lock order for every worker
        rows = await self._db.statement(
            _DEFER,
            [d.delivery_id for d in ordered],
            [d.token for d in ordered],
            [d.status for d in ordered],
            [d.due_at_us for d in ordered],
            [d.description for d in ordered],
            now_us,
        )
        return len(rows)

    async def release(self, leases: Sequence[tuple[str, str]], now_us: int) -> int:
        if not leases:
            return 0
        self._ordered.difference_update(d for d, _ in leases)
        ordered = sorted(leases)

        async def run(tx: Tx) -> int:
            status = await (await _conn(tx)).execute(
                _RELEASE, [d for d, _ in ordered], [t for _, t in ordered], now_us
            )
            tx.notify()
            return count(status)

        return await self._db.write(run)


async def _conn(tx: Tx) -> Any:
    assert isinstance(tx, PostgresTx)
    return await tx.connection()


async def _health(tx: Tx, finished: Sequence[Finish], now_us: int) -> None:
    """Endpoint health first: a retry of an endpoint disabled here is then held."""
    for fin in finished:
        if fin.breaker is not None:
            await tx.run(
                "UPDATE endpoints SET breaker = :breaker, updated_at_us = :now WHERE id = :id",
                breaker=fin.breaker,
                now=now_us,
                id=fin.endpoint_id,
            )
        if fin.disable:
            await disable(tx, fin.endpoint_id, fin.disable, fin.probe_at_us, now_us)


def _tick_args(
    finished: Sequence[Finish], limit: int, now_us: int, lease_until_us: int, token: str
) -> list[Any]:
    done = sorted(finished)  # one lock order for every worker
    attempts = [storable.attempt_row(f.attempt) for f in done if f.attempt is not None]
    return [
        [f.delivery_id for f in done],
        [f.token for f in done],
        [f.status for f in done],
        [f.due_at_us for f in done],
        [f.latency_us for f in done],
        [storable.text(f.description, 2000) for f in done],
        now_us,
        limit,
        token,
        lease_until_us,
        *columns_of(attempts, 16),
    ]


def _leases(rows: Sequence[Any]) -> list[Lease]:
    make = Lease._make
    return [make(tuple(r)[:-1]) for r in rows]  # the last column: ordered or not
