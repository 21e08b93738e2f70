"""The outbox writer for SQLAlchemy 2: ``Session``/``Connection`` and their asyncio
twins, on any PostgreSQL driver (psycopg, asyncpg, ...). The row is written in the
session's transaction: it is published when that transaction commits, and never if it
rolls back::

    with Session(engine) as session, session.begin():
        session.add(order)
        publish(session, OutboxEvent("order.created", {"id": 1}, endpoint_id="ep_1"))
"""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import TextClause, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

from hookcast.domain.outbox import OutboxEvent
from hookcast.outbox.table import DEFAULT_TABLE, WRITTEN, OutboxTable, values


@lru_cache(maxsize=16)
def _statement(table: OutboxTable) -> TextClause:
    return text(table.insert([f":{c}" for c in WRITTEN]))


def _params(event: OutboxEvent) -> dict[str, object]:
    return dict(zip(WRITTEN, values(event), strict=True))


def publish(
    session: Session | Connection, event: OutboxEvent, *, table: OutboxTable = DEFAULT_TABLE
) -> str:
    """Write *event* in *session*'s transaction (begun if none is); the new row's id."""
    row = session.execute(_statement(table), _params(event)).one()
    return str(row[0])


async def publish_async(
    session: AsyncSession | AsyncConnection,
    event: OutboxEvent,
    *,
    table: OutboxTable = DEFAULT_TABLE,
) -> str:
    """Write *event* in *session*'s transaction (begun if none is); the new row's id."""
    result = await session.execute(_statement(table), _params(event))
    return str(result.one()[0])
