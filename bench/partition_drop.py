"""How long retention takes to drop a day of deliveries on PostgreSQL, whatever its size.

``python -m bench.partition_drop [ROWS]`` (default 3,000,000): a fresh database
(``bench/pgdb.py``), the partitions of a day ten days ahead made by a maintenance pass,
*ROWS* finished deliveries written into that day's partition with ``generate_series``,
then one retention pass (``Records.maintain_partitions``) whose cutoff is the end of that
day: it drops that partition (and the earlier, empty ones) and makes the next days'. Prints
the partition's size and the pass's time. A one-off measurement, not a suite scenario.
"""

from __future__ import annotations

import asyncio
import sys
import time

import psycopg

from bench.pgdb import fresh_database
from hookcast.domain.ids import ulid_floor
from hookcast.store import open_store, partitions

DAY = partitions.DAY_MS


async def _pass(url: str, now_ms: int, drop_ms: int | None) -> tuple[list[str], float]:
    store = open_store(url)
    await store.open()
    try:
        started = time.perf_counter()
        _, dropped = await store.records.maintain_partitions(
            now_ms * 1000, None if drop_ms is None else drop_ms * 1000
        )
        return dropped, time.perf_counter() - started
    finally:
        await store.close()


def main(rows: int) -> None:
    day = partitions.day_of(time.time_ns() // 1_000_000) + 10 * DAY
    name = partitions.partition_name("deliveries", day)
    with fresh_database() as url:
        asyncio.run(_pass(url, day, None))
        with psycopg.connect(url, autocommit=True) as conn:
            started = time.perf_counter()
            conn.execute(
                "INSERT INTO deliveries (id, project_id, event_id, endpoint_id,"
                " subscription_id, event_type, status, delivery_mode, retry_limit, strategy,"
                " interval_seconds, max_retry_seconds, due_at_us, created_at_us, updated_at_us)"
                " SELECT %s || lpad(to_hex(i), 16, '0'), 'P', 'E', 'EP', 'S', 't', 'Success',"
                " 'at_least_once', 3, 'linear', 10, 60, 0, 0, 0 FROM generate_series(1, %s) i",
                (ulid_floor(day)[:10], rows),
            )
            conn.execute("VACUUM ANALYZE deliveries")
            size = conn.execute(
                "SELECT pg_size_pretty(pg_total_relation_size(%s::regclass))", (name,)
            ).fetchone()
        print(
            f"seeded {rows:,} deliveries into {name} ({size and size[0]}) in "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
        dropped, took = asyncio.run(_pass(url, day + DAY, day + DAY))
        assert name in dropped, dropped
        print(
            f"retention pass: dropped {len(dropped)} partitions, {name} among them, in {took:.3f} s"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3_000_000)
