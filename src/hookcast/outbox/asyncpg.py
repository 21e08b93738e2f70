"""The outbox writer for asyncpg connections (or a pool's connection). The row is
written in the connection's current transaction::

    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("UPDATE orders SET paid = true WHERE id = $1", order_id)
        await publish(conn, OutboxEvent("order.paid", {"id": order_id}, owner_id="acme"))

Outside ``conn.transaction()`` the row commits on its own (asyncpg's autocommit).
"""

from __future__ import annotations

from typing import Any

from asyncpg import Connection
from asyncpg.pool import PoolConnectionProxy

from hookcast.domain.outbox import OutboxEvent
from hookcast.outbox.table import DEFAULT_TABLE, WRITTEN, OutboxTable, values


def _sql(table: OutboxTable) -> str:
    return table.insert([f"${i}" for i in range(1, len(WRITTEN) + 1)])


async def publish(
    conn: Connection[Any] | PoolConnectionProxy[Any],
    event: OutboxEvent,
    *,
    table: OutboxTable = DEFAULT_TABLE,
) -> str:
    """Write *event* in *conn*'s transaction; the new row's id."""
    row = await conn.fetchrow(_sql(table), *values(event))
    if row is None:  # pragma: no cover - INSERT ... RETURNING always returns the row
        raise RuntimeError("the outbox insert returned no row")
    return str(row[0])
