"""The delivery queue on SQLite: one ``BEGIN IMMEDIATE`` per tick records what the worker
finished and leases what is due next.

The claim reads the due rows through the partial index ``ix_deliveries_due`` (only rows
still to be sent are in it: a finished delivery costs the claim nothing), leases them
with one ``UPDATE … RETURNING`` that also brings each one's event payload and the
versions of its endpoint and project. Statements are plain positional SQL, run on the
connection directly: this is the hottest path of the embedded store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import orjson

from hookcast.domain import storable
from hookcast.domain.models import HELD_US, PARKED_US
from hookcast.domain.ports.queue import AttemptRow, Deferral, Finish, Lease
from hookcast.store.db import Tx
from hookcast.store.queue import (
    BLOCK_KEY,
    HEAD_OF_KEY,
    PARK_BATCH,
    PARKABLE,
    UNPARK_SWEEP,
    SweepClock,
    next_of_key,
    ordering_note,
    tick_isolated,
)
from hookcast.store.records import disable
from hookcast.store.sqlite import SqliteDatabase, SqliteTx

_PICK = (
    "SELECT q.id, q.status FROM deliveries q WHERE q.status IN ('Scheduled', 'Retry', "
    f"'Processing') AND q.due_at_us <= ? AND {HEAD_OF_KEY} ORDER BY q.due_at_us LIMIT ?"
)
# the lease lasts the endpoint's own timeout plus the margin
_LEASE = (
    "UPDATE deliveries SET status = 'Processing', lease_token = ?, due_at_us = ? + "
    "COALESCE((SELECT e.http_timeout FROM endpoints e WHERE e.id = deliveries.endpoint_id), 30)"
    " * 1000000, attempts = attempts + 1, updated_at_us = ? "
    "WHERE id IN (SELECT value FROM json_each(?)) RETURNING id, project_id, event_id, "
    "endpoint_id, event_type, idempotency_key, delivery_mode, attempts, retry_limit, strategy, "
    "interval_seconds, max_retry_seconds, created_at_us, "
    "(SELECT v.data FROM events v WHERE v.id = event_id), "
    "(SELECT v.headers FROM events v WHERE v.id = event_id), "
    "(SELECT e.updated_at_us FROM endpoints e WHERE e.id = endpoint_id), "
    "(SELECT p.updated_at_us FROM projects p WHERE p.id = deliveries.project_id), lease_token"
)
# a retry of an endpoint disabled meanwhile (by this tick or an earlier one) is held
_FINISH = (
    "UPDATE deliveries SET status = ?1, due_at_us = CASE WHEN ?1 = 'Retry' AND EXISTS "
    "(SELECT 1 FROM endpoints e WHERE e.id = deliveries.endpoint_id AND e.status = 'inactive') "
    f"THEN {HELD_US} ELSE ?2 END, latency_us = COALESCE(?3, latency_us), "
    f"description = ?4 || {ordering_note('?1', 'deliveries')}, "
    "lease_token = NULL, updated_at_us = ?5 "
    "WHERE id = ?6 AND lease_token = ?7 AND status = 'Processing'"
)
# ordered deliveries waiting behind their key's head are parked until it ends (docs/ordering.md)
_PARK = (
    f"UPDATE deliveries SET due_at_us = {PARKED_US}, lease_token = 'parked' WHERE id IN ("
    + PARKABLE.format(now="?", limit=PARK_BATCH)
    + ")"
)
# the end of an ordered delivery unparks the next of its key
_UNPARK = (
    "UPDATE deliveries SET due_at_us = ?, lease_token = NULL WHERE id IN ("
    + next_of_key("(SELECT * FROM deliveries WHERE id IN (SELECT value FROM json_each(?)))")
    + f") AND status = 'Scheduled' AND due_at_us = {PARKED_US}"
)
_SWEEP = UNPARK_SWEEP.format(table="deliveries", now="?")
# a delivery failed for good blocks its ordered key (endpoint policy "block")
_BLOCK = BLOCK_KEY.format(
    now="?",
    finished="(SELECT id, endpoint_id, project_id, ordering_key, status FROM deliveries "
    "WHERE id IN (SELECT value FROM json_each(?)) AND updated_at_us = ?)",
)
_ATTEMPT = f"INSERT INTO attempts ({', '.join(AttemptRow._fields)}) VALUES ({', '.join('?' * 16)})"
_DEFER = (
    "UPDATE deliveries SET status = ?, due_at_us = ?, lease_token = NULL, "
    "attempts = MAX(attempts - 1, 0), description = ?, updated_at_us = ? "
    "WHERE id = ? AND lease_token = ? AND status = 'Processing'"
)
_RELEASE = (
    "UPDATE deliveries SET status = 'Scheduled', due_at_us = ?, lease_token = NULL, "
    "attempts = MAX(attempts - 1, 0), updated_at_us = ? "
    "WHERE id = ? AND lease_token = ? AND status = 'Processing'"
)


class SqliteQueue:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db
        self._sweep = SweepClock()

    async def tick(
        self, finished: Sequence[Finish], *, limit: int, now_us: int, lease_us: int, token: str
    ) -> list[Lease]:
        sweep = self._sweep.due(now_us, limit)

        async def claim(done: Sequence[Finish]) -> list[Lease]:
            async def run(tx: Tx) -> list[Lease]:
                conn = _conn(tx)
                await _record(tx, done, now_us)
                if sweep:
                    conn.execute(_SWEEP, (now_us,))
                return _lease(conn, limit, now_us, lease_us, token) if limit > 0 else []

            return await self._db.write(run)

        async def record(done: Sequence[Finish]) -> None:
            await self._db.write(lambda tx: _record(tx, done, now_us))

        return await tick_isolated(claim, record, finished)

    async def defer(self, deferrals: Sequence[Deferral], now_us: int) -> int:
        """Give leases back unspent: the attempt counted at the claim is undone."""
        rows = [
            (d.status, d.due_at_us, d.description, now_us, d.delivery_id, d.token)
            for d in deferrals
        ]

        async def run(tx: Tx) -> int:
            return _conn(tx).executemany(_DEFER, rows).rowcount

        return await self._db.write(run) if rows else 0

    async def release(self, leases: Sequence[tuple[str, str]], now_us: int) -> int:
        rows = [(now_us, now_us, delivery_id, token) for delivery_id, token in leases]

        async def run(tx: Tx) -> int:
            return _conn(tx).executemany(_RELEASE, rows).rowcount

        return await self._db.write(run) if rows else 0

    async def reclaim_at_start(self, now_us: int) -> int:
        """Join this file's worker processes; when none other is alive, every lease is
        stale and is due now (see SqliteDatabase.join_workers)."""

        async def run(tx: Tx) -> int:
            return _reclaim_all(_conn(tx), now_us)

        return await self._db.join_workers(run)


def _conn(tx: Tx) -> sqlite3.Connection:
    assert isinstance(tx, SqliteTx)
    return tx.conn


async def _record(tx: Tx, finished: Sequence[Finish], now_us: int) -> None:
    if not finished:
        return
    conn = _conn(tx)
    for fin in finished:  # endpoint health first: a retry of a disabled endpoint is held
        if fin.breaker is not None:
            conn.execute(
                "UPDATE endpoints SET breaker = ?, updated_at_us = ? WHERE id = ?",
                (fin.breaker, now_us, fin.endpoint_id),
            )
        if fin.disable:
            await disable(tx, fin.endpoint_id, fin.disable, fin.probe_at_us, now_us)
    conn.executemany(
        _FINISH,
        [
            (
                f.status,
                f.due_at_us,
                f.latency_us,
                storable.text(f.description, 2000),
                now_us,
                f.delivery_id,
                f.token,
            )
            for f in finished
        ],
    )
    attempts = [storable.attempt_row(f.attempt) for f in finished if f.attempt is not None]
    if attempts:
        conn.executemany(_ATTEMPT, attempts)
    failed = [f.delivery_id for f in finished if f.status == "Failure"]
    if failed:  # recorded by this transaction (the fence held): updated now, Failure
        conn.execute(_BLOCK, (now_us, orjson.dumps(failed).decode(), now_us))
    ended = [f.delivery_id for f in finished if f.status != "Retry"]
    if ended:
        conn.execute(_UNPARK, (now_us, orjson.dumps(ended).decode()))


def _lease(
    conn: sqlite3.Connection, limit: int, now_us: int, lease_us: int, token: str
) -> list[Lease]:
    conn.execute(_PARK, (now_us,))
    picked = conn.execute(_PICK, (now_us, limit)).fetchall()
    if not picked:
        return []
    order = {row[0]: i for i, row in enumerate(picked)}
    ids = orjson.dumps([row[0] for row in picked]).decode()
    rows = conn.execute(_LEASE, (token, now_us + lease_us, now_us, ids)).fetchall()
    rows.sort(key=lambda r: order[r[0]])
    status = dict(picked)
    make = Lease._make
    return [make((*r[:13], status[r[0]], *r[13:])) for r in rows]


def _reclaim_all(conn: sqlite3.Connection, now_us: int) -> int:
    """Every lease is stale (no worker process is alive): due now. A reclaimed delivery
    keeps its Processing status, so the claim still sees it as reclaimed."""
    n = conn.execute(
        "UPDATE deliveries SET due_at_us = ? WHERE status = 'Processing' AND due_at_us > ?",
        (now_us, now_us),
    ).rowcount
    n += conn.execute(
        "UPDATE events SET fanout_due_at_us = ? WHERE fanout_lease_token IS NOT NULL "
        "AND fanout_due_at_us > ?",
        (now_us, now_us),
    ).rowcount
    n += conn.execute(
        "UPDATE batch_jobs SET due_at_us = ? WHERE status = 'running' AND due_at_us > ?",
        (now_us, now_us),
    ).rowcount
    return n
