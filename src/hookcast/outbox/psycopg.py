"""The outbox writer for psycopg 3 connections, sync and async. The row is written in
the connection's current transaction (psycopg opens one on the first statement unless
the connection is in autocommit mode, where ``with conn.transaction():`` makes one)::

    with psycopg.connect(url) as conn:  # commits on leaving the block
        conn.execute("UPDATE orders SET paid = true WHERE id = %s", [order_id])
        publish(conn, OutboxEvent("order.paid", {"id": order_id}, owner_id="acme"))
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection, Connection

from hookcast.domain.outbox import OutboxEvent
from hookcast.outbox.table import DEFAULT_TABLE, WRITTEN, OutboxTable, values


def _sql(table: OutboxTable) -> str:
    return table.insert(["%s"] * len(WRITTEN))


def publish(
    conn: Connection[Any], event: OutboxEvent, *, table: OutboxTable = DEFAULT_TABLE
) -> str:
    """Write *event* in *conn*'s transaction; the new row's id."""
    row = conn.execute(_sql(table), values(event)).fetchone()
    if row is None:  # pragma: no cover - INSERT ... RETURNING always returns the row
        raise RuntimeError("the outbox insert returned no row")
    return str(row[0])


async def publish_async(
    conn: AsyncConnection[Any], event: OutboxEvent, *, table: OutboxTable = DEFAULT_TABLE
) -> str:
    """Write *event* in *conn*'s transaction; the new row's id."""
    cursor = await conn.execute(_sql(table), values(event))
    row = await cursor.fetchone()
    if row is None:  # pragma: no cover - INSERT ... RETURNING always returns the row
        raise RuntimeError("the outbox insert returned no row")
    return str(row[0])
