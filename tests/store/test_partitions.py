"""PostgreSQL's daily partitions: made ahead, dropped whole by retention, rows that miss a
partition kept in the default one and moved when theirs is made, and the migration from
the unpartitioned schema keeping every row. Real PostgreSQL, never skipped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import psycopg
import pytest

from hookcast.delivery.retention import RetentionRunner
from hookcast.domain.ids import delivery_id, ulid_floor
from hookcast.store import migrate, open_store, partitions
from pg_support import downgrade, fresh_database

DAY = partitions.DAY_MS
US = 1000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _event_id(ms: int, n: int = 0) -> str:
    """A ULID of millisecond *ms* (its random part is *n*)."""
    floor = ulid_floor(ms)
    return floor[:-6] + f"{n:06d}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_database("hookcast_parts") as url:
        yield url


def _insert_event(conn: psycopg.Connection, event_id: str, project_id: str = "P1") -> None:
    conn.execute(
        "INSERT INTO events (id, project_id, kind, event_type, data, headers, endpoints,"
        " status, acknowledged_at_us, created_at_us, updated_at_us)"
        " VALUES (%s, %s, 'single', 't', '{}'::bytea, '{}', '[]', 'Success', 0, 0, 0)",
        (event_id, project_id),
    )


def _insert_delivery(
    conn: psycopg.Connection, event_id: str, endpoint_id: str, status: str = "Success"
) -> str:
    did = delivery_id(event_id, endpoint_id)
    conn.execute(
        "INSERT INTO deliveries (id, project_id, event_id, endpoint_id, subscription_id,"
        " event_type, status, delivery_mode, retry_limit, strategy, interval_seconds,"
        " max_retry_seconds, due_at_us, created_at_us, updated_at_us) VALUES"
        " (%s, 'P1', %s, %s, 'S1', 't', %s, 'at_least_once', 3, 'linear', 10, 60,"
        " 0, 0, 0)",
        (did, event_id, endpoint_id, status),
    )
    return did


def _insert_attempt(conn: psycopg.Connection, attempt_id: str, delivery: str) -> None:
    conn.execute(
        "INSERT INTO attempts (id, delivery_id, project_id, endpoint_id, url, method,"
        " request_headers, response_headers, http_status, success, requested_at_us,"
        " responded_at_us, created_at_us) VALUES"
        " (%s, %s, 'P1', 'E1', 'http://127.0.0.1/', 'POST', '{}', '{}', 200, TRUE, 0, 0, 0)",
        (attempt_id, delivery),
    )


def _where(conn: psycopg.Connection, table: str, row_id: str) -> str | None:
    found = conn.execute(
        f"SELECT tableoid::regclass::text FROM {table} WHERE id = %s", (row_id,)
    ).fetchone()
    return None if found is None else str(found[0])


def _partition_names(conn: psycopg.Connection, table: str) -> set[str]:
    """The day (and default and history) partitions of *table*."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = %s::regclass",
        (partitions.by_day(table),),
    ).fetchall()
    return {r[0] for r in rows}


def _maintain(url: str, now_ms: int, drop_before_ms: int | None) -> tuple[list[str], list[str]]:
    async def run() -> tuple[list[str], list[str]]:
        store = open_store(url)
        await store.open()
        try:
            drop = None if drop_before_ms is None else drop_before_ms * US
            return await store.records.maintain_partitions(now_ms * US, drop)
        finally:
            await store.close()

    return asyncio.run(run())


def test_a_migrated_database_has_today_and_the_days_ahead(pg_url: str) -> None:
    today = partitions.day_of(_now_ms())
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for table in partitions.TABLES:
            names = _partition_names(conn, table)
            for i in range(partitions.AHEAD_DAYS + 1):
                assert partitions.partition_name(table, today + i * DAY) in names
            assert f"{table}_default" in names
            # a row of now lands in today's partition, not the default
    with psycopg.connect(pg_url, autocommit=True) as conn:
        event = _event_id(_now_ms())
        _insert_event(conn, event)
        assert _where(conn, "events", event) == partitions.partition_name("events", today)
    # a second pass has nothing to make
    assert _maintain(pg_url, _now_ms(), None) == ([], [])


def test_retention_drops_whole_days_and_keeps_rows_across_the_boundary(pg_url: str) -> None:
    later = _now_ms() + 40 * DAY  # a pass 40 days from now makes those days' partitions
    day = partitions.day_of(later)
    created, dropped = _maintain(pg_url, later, None)
    assert partitions.partition_name("deliveries", day) in created
    assert dropped == []
    last_of_yesterday = _event_id(day - 1, 7)
    first_of_today = _event_id(day, 8)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for event in (last_of_yesterday, first_of_today):
            _insert_event(conn, event)
            did = _insert_delivery(conn, event, "E1")
            _insert_attempt(conn, event, did)  # an attempt of the same instant
        assert _where(conn, "events", last_of_yesterday) == partitions.partition_name(
            "events", day - DAY
        )
    # retention up to the start of *day*: yesterday's partitions go, today's stay
    created, dropped = _maintain(pg_url, later, day)
    assert created == []
    for table in partitions.TABLES:
        assert partitions.partition_name(table, day - DAY) in dropped
        assert partitions.partition_name(table, day) not in dropped
        assert f"{table}_default" not in dropped
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for table in partitions.TABLES:
            assert partitions.partition_name(table, day - DAY) not in _partition_names(conn, table)
        assert _where(conn, "events", last_of_yesterday) is None
        assert _where(conn, "events", first_of_today) is not None
        assert _where(conn, "deliveries", delivery_id(first_of_today, "E1")) is not None
        assert _where(conn, "deliveries", delivery_id(last_of_yesterday, "E1")) is None
        assert _where(conn, "attempts", first_of_today) is not None
        assert _where(conn, "attempts", last_of_yesterday) is None


def test_a_delivery_lives_in_the_queue_until_it_ends_and_outlives_its_days_partition(
    pg_url: str,
) -> None:
    """Live deliveries are in ``deliveries_queue``, the rest in the history's day
    partitions; a status change moves the row, and dropping a day of history leaves a
    delivery of that day that is still due in the queue (retention's row purge, per
    project, is what ends it)."""
    later = _now_ms() + 40 * DAY
    day = partitions.day_of(later)
    _maintain(pg_url, later, None)
    event = _event_id(day - DAY, 1)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        _insert_event(conn, event)
        live = _insert_delivery(conn, event, "E1", "Retry")
        ended = _insert_delivery(conn, event, "E2", "Failure")
        assert _where(conn, "deliveries", live) == partitions.QUEUE
        assert _where(conn, "deliveries", ended) == partitions.partition_name(
            "deliveries", day - DAY
        )
        conn.execute("UPDATE deliveries SET status = 'Scheduled' WHERE id = %s", (ended,))
        assert _where(conn, "deliveries", ended) == partitions.QUEUE
        conn.execute("UPDATE deliveries SET status = 'Success' WHERE id = %s", (ended,))
        assert _where(conn, "deliveries", ended) != partitions.QUEUE
    _, dropped = _maintain(pg_url, later, day)
    assert partitions.partition_name("deliveries", day - DAY) in dropped
    assert partitions.QUEUE not in dropped and partitions.HISTORY not in dropped
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert _where(conn, "deliveries", ended) is None
        assert _where(conn, "deliveries", live) == partitions.QUEUE
        # one id, one delivery, whatever its status
        count = conn.execute("SELECT count(*) FROM deliveries WHERE id = %s", (live,)).fetchone()
        assert count == (1,)


def test_a_row_no_partition_covers_waits_in_the_default_and_moves_in_later(
    pg_url: str,
) -> None:
    far = _now_ms() + 100 * DAY  # beyond the partitions made ahead
    event = _event_id(far, 3)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        _insert_event(conn, event)
        assert _where(conn, "events", event) == "events_default"
    created, _ = _maintain(pg_url, far, None)
    name = partitions.partition_name("events", partitions.day_of(far))
    assert name in created
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert _where(conn, "events", event) == name
        assert conn.execute("SELECT count(*) FROM events_default").fetchone() == (0,)


def test_the_retention_pass_drops_partitions_only_past_every_projects_retention(
    pg_url: str,
) -> None:
    async def run() -> tuple[list[str], list[str]]:
        store = open_store(pg_url)
        await store.open()
        try:
            runner = RetentionRunner(store.records, 60)
            # no project: nothing may be dropped whatever the date
            await runner.pass_once(now_us=(_now_ms() + 400 * DAY) * US)
            names_after_first = await store.db.read(partitions.partitions)
            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO projects (id, name, config, created_at_us, updated_at_us)"
                    " VALUES ('P1', 'p', '{\"retention_hours\": 24}', 0, 0),"
                    " ('P2', 'q', '{\"retention_hours\": 48}', 0, 0)"
                )
            await runner.pass_once(now_us=(_now_ms() + 400 * DAY) * US)
            names_after_second = await store.db.read(partitions.partitions)
            return [p.name for p in names_after_first], [p.name for p in names_after_second]
        finally:
            await store.close()

    first, second = asyncio.run(run())
    today = partitions.day_of(_now_ms())
    assert partitions.partition_name("events", today) in first
    # 400 days on, with 48 h the longest retention, today's partitions are past it
    assert partitions.partition_name("events", today) not in second
    assert "events_default" in second


def test_the_migration_to_partitions_keeps_every_row() -> None:
    """From 0001 (one table each) to head and back, with rows of last month, today and a
    date no partition covers."""
    now = _now_ms()
    times = [now - 40 * DAY, now - DAY, now, now + 200 * DAY]
    with fresh_database("hookcast_parts_mig", migrated=False) as url:
        migrate.upgrade(url, "0001")
        with psycopg.connect(url, autocommit=True) as conn:
            for i, ms in enumerate(times):
                event = _event_id(ms, i)
                _insert_event(conn, event)
                first = _insert_delivery(conn, event, "E1")
                _insert_delivery(conn, event, "E2", "Retry" if i % 2 else "Scheduled")
                _insert_attempt(conn, _event_id(ms, 100 + i), first)

        def snapshot() -> dict[str, list[tuple[object, ...]]]:
            with psycopg.connect(url, autocommit=True) as conn:
                return {
                    t: conn.execute(f"SELECT * FROM {t} ORDER BY id").fetchall()
                    for t in partitions.TABLES
                }

        before = snapshot()
        assert [len(before[t]) for t in partitions.TABLES] == [4, 8, 4]

        def upgraded() -> dict[str, list[tuple[object, ...]]]:
            """The rows with the columns 0001 had only (later revisions add columns)."""
            return {t: [r[: len(before[t][0])] for r in rows] for t, rows in snapshot().items()}

        migrate.upgrade(url)
        assert upgraded() == before
        with psycopg.connect(url, autocommit=True) as conn:
            today = partitions.day_of(now)
            assert _where(conn, "events", _event_id(now, 2)) == partitions.partition_name(
                "events", today
            )
            assert _where(conn, "events", _event_id(times[0], 0)) == partitions.history_name(
                "events", today
            )
            assert _where(conn, "events", _event_id(times[3], 3)) == "events_default"
            live = conn.execute("SELECT count(*) FROM deliveries_queue").fetchone()
            assert live == (4,)  # the live deliveries are in the queue, whatever their day
        downgrade(url, "0001")
        assert snapshot() == before
        with psycopg.connect(url, autocommit=True) as conn:
            assert _partition_names(conn, "events") == set()
        migrate.upgrade(url)
        assert upgraded() == before
