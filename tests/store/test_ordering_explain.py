"""The tick with ordered keys still plans the queue alone on PostgreSQL: the head-of-key
test names the live statuses, so no partition of the history is in the plan, however
many finished ordered deliveries there are; and SQLite's claim still starts from the
pending index."""

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
LIVE = 2_000

_SEED = (
    "INSERT INTO deliveries (id, project_id, event_id, endpoint_id, subscription_id, "
    "event_type, status, delivery_mode, idempotency_key, attempts, retry_limit, strategy, "
    "interval_seconds, max_retry_seconds, due_at_us, created_at_us, updated_at_us, "
    "ordering_key) "
)


async def test_postgres_ordered_tick_never_plans_the_history() -> None:
    with fresh_database("hookcast_ordering_explain") as url:
        conn = await asyncpg.connect(url)
        try:
            # finished ordered deliveries (history) and live ones on 50 keys (the queue)
            await conn.execute(
                _SEED + "SELECT lpad(i::text, 26, '0'), 'p', lpad(i::text, 26, '0'), 'ep', 's',"
                " 't', CASE WHEN i > $1::int THEN 'Scheduled' ELSE 'Success' END, 'at_least_once',"
                " '', 1, 10, 'linear', 10, 100, $2, $2, $2, 'k' || (i % 50)"
                " FROM generate_series(1, $1::int + $3::int) AS i",
                HISTORY,
                NOW,
                LIVE,
            )
            await conn.execute(
                "INSERT INTO ordering_blocks VALUES ('ep', 'k7', 'p', 'x', $1)",
                NOW,
            )
            await conn.execute("ANALYZE deliveries")
            await conn.execute("ANALYZE ordering_blocks")
            empty: list[object] = []
            args = [empty, empty, empty, empty, empty, empty, NOW, 100, "t", NOW + 1]
            args += [empty] * 16
            plan = (await conn.fetch("EXPLAIN (FORMAT JSON) " + pg_queue._TICK, *args))[0][0]
            # and the tick's answer: one head per key, none of the blocked key
            rows = await conn.fetch(pg_queue._TICK, *args)
        finally:
            await conn.close()
    nodes = list(_nodes(orjson.loads(plan)[0]["Plan"]))
    touched = {n["Relation Name"] for n in nodes if "Relation Name" in n}
    assert {r for r in touched if r.startswith("deliveries_")} == {"deliveries_queue"}, plan
    assert len(rows) == 49  # 50 keys, one blocked


def test_sqlite_ordered_claim_reads_the_pending_index(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'explain.db'}"
    migrate.upgrade(url)
    conn = sqlite3.connect(tmp_path / "explain.db")
    with conn:
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            + _SEED
            + "SELECT printf('%026d', i), 'p', printf('%026d', i), 'ep', 's', 't', "
            "CASE WHEN i % 200 = 0 THEN 'Scheduled' ELSE 'Success' END, 'at_least_once', '', "
            "1, 10, 'linear', 10, 100, ?, ?, ?, 'k' || (i % 7) FROM n",
            (HISTORY, NOW, NOW, NOW),
        )
        conn.execute("ANALYZE")
    plan = " ".join(
        str(r[-1]) for r in conn.execute("EXPLAIN QUERY PLAN " + sqlite_queue._PICK, (NOW, 100))
    )
    assert "ix_deliveries_due" in plan, plan
    assert "ix_deliveries_ordering" in plan, plan  # each head found through its index
    conn.close()


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)
