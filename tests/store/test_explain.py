"""The claim stays on its index, whatever the history: the plan of each dialect's claim,
with many finished deliveries in the table, reads the partial index of pending rows (and
on PostgreSQL, the queue's partition alone)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from hookcast.store import migrate
from hookcast.store.queue import postgres as pg_queue
from hookcast.store.queue import sqlite as sqlite_queue
from pg_support import fresh_database

NOW = 1_800_000_000_000_000
HISTORY = 20_000
BACKLOG = 5_000

_SEED = (
    "INSERT INTO deliveries (id, project_id, event_id, endpoint_id, subscription_id, "
    "event_type, status, delivery_mode, idempotency_key, attempts, retry_limit, strategy, "
    "interval_seconds, max_retry_seconds, due_at_us, created_at_us, updated_at_us) "
)


def test_sqlite_claim_reads_the_pending_index(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'explain.db'}"
    migrate.upgrade(url)
    conn = sqlite3.connect(tmp_path / "explain.db")
    with conn:
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            + _SEED
            + "SELECT printf('%026d', i), 'p', 'e' || i, 'ep', 's', 't', "
            "CASE WHEN i % 200 = 0 THEN 'Scheduled' ELSE 'Success' END, 'at_least_once', '', "
            "1, 10, 'linear', 10, 100, ?, ?, ? FROM n",
            (HISTORY, NOW, NOW, NOW),
        )
        conn.execute("ANALYZE")
    plan = " ".join(
        str(r[-1]) for r in conn.execute("EXPLAIN QUERY PLAN " + sqlite_queue._PICK, (NOW, 100))
    )
    assert "ix_deliveries_due" in plan, plan
    ids = orjson.dumps(["x"]).decode()
    lease = " ".join(
        str(r[-1])
        for r in conn.execute("EXPLAIN QUERY PLAN " + sqlite_queue._LEASE, ("t", NOW, NOW, ids))
    )
    assert "SCAN deliveries" not in lease, lease  # leased by primary key, never a scan
    conn.close()


async def test_postgres_claim_reads_the_pending_index() -> None:
    with fresh_database("hookcast_explain") as url:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                _SEED + "SELECT lpad(i::text, 26, '0'), 'p', 'e' || i, 'ep', 's', 't', "
                "CASE WHEN i % 200 = 0 THEN 'Scheduled' ELSE 'Success' END, 'at_least_once', "
                "'', 1, 10, 'linear', 10, 100, $2, $2, $2 FROM generate_series(1, $1) AS i",
                HISTORY,
                NOW,
            )
            # and a backlog not yet due (a rate-limited broadcast): the queue is read
            # through its index, not scanned
            await conn.execute(
                _SEED + "SELECT lpad(i::text, 26, 'Z'), 'p', 'b', 'ep' || i, 's', 't',"
                " 'Scheduled', 'at_least_once', '', 0, 10, 'linear', 10, 100,"
                " $2::bigint + i * 1000, $2, $2 FROM generate_series(1, $1) AS i",
                BACKLOG,
                NOW,
            )
            await conn.execute("ANALYZE deliveries")
            # on a partitioned table the finished rows live in one partition: which one
            holder = await conn.fetchval(
                "SELECT tableoid::regclass::text FROM deliveries WHERE status = 'Success' LIMIT 1"
            )
            empty: list[object] = []
            args = [empty, empty, empty, empty, empty, empty, NOW, 100, "t", NOW + 1]
            args += [empty] * 16
            rows = await conn.fetch("EXPLAIN (FORMAT JSON) " + pg_queue._TICK, *args)
            plan = rows[0][0]
        finally:
            await conn.close()
    nodes = list(_nodes(orjson.loads(plan)[0]["Plan"]))
    # the pending rows are found through the partial index (on a partition, its index is
    # named after the column), and the partition of history is never read whole
    indexes = [n.get("Index Name", "") for n in nodes]
    assert any(i == "ix_deliveries_due" or i.endswith("_due_at_us_idx") for i in indexes), plan
    scans = [n for n in nodes if n["Node Type"] == "Seq Scan"]
    assert all(n.get("Relation Name") not in (holder, "deliveries") for n in scans), plan
    # and the tick plans the queue alone: no partition of the history is in it, however
    # many days it holds (pruned when the statement is planned, so never locked either)
    assert holder.startswith("deliveries_") and holder != "deliveries_queue", holder
    touched = {n["Relation Name"] for n in nodes if "Relation Name" in n}
    # ("deliveries" is named by the UPDATEs; the rows they change are the queue's)
    assert {r for r in touched if r.startswith("deliveries_")} == {"deliveries_queue"}, plan


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)
