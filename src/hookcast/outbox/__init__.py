"""Publish webhooks if and only if the application's transaction commits.

Write an :class:`OutboxEvent` into the outbox table of the application's own PostgreSQL
database, on the connection (or session) of the transaction that changes the data it
announces; ``hookcast relay`` publishes it into hookcast once that transaction has
committed, exactly once, and never if it rolled back::

    from hookcast.outbox import OutboxEvent
    from hookcast.outbox.sqlalchemy import publish

    with Session(engine) as session, session.begin():
        session.add(order)
        publish(session, OutboxEvent("order.created", {"id": order.id}, owner_id="acme"))

One adapter per driver, imported only when used (nothing here needs SQLAlchemy or
psycopg): :mod:`hookcast.outbox.sqlalchemy` (``Session``, ``AsyncSession``),
:mod:`hookcast.outbox.psycopg` (``Connection``, ``AsyncConnection``),
:mod:`hookcast.outbox.asyncpg` and :mod:`hookcast.outbox.django` (Django's connection, in
``transaction.atomic()``). :func:`publish` and :func:`publish_async` pick the
adapter from the connection's type. The table: ``hookcast outbox install``.
"""

from __future__ import annotations

from typing import Any

from hookcast.domain.errors import ValidationError
from hookcast.domain.outbox import OutboxEvent
from hookcast.outbox.table import DEFAULT_SCHEMA, DEFAULT_TABLE, OutboxTable

__all__ = [
    "DEFAULT_SCHEMA",
    "OutboxEvent",
    "OutboxTable",
    "ValidationError",
    "publish",
    "publish_async",
]


def _family(conn: object) -> str:
    module = type(conn).__module__
    for family in ("sqlalchemy", "psycopg", "asyncpg"):
        if module == family or module.startswith(family + "."):
            return family
    raise TypeError(
        f"hookcast.outbox cannot write through a {type(conn).__module__}."
        f"{type(conn).__qualname__}: give a SQLAlchemy Session/AsyncSession/Connection, a "
        "psycopg 3 (Async)Connection or an asyncpg Connection"
    )


def publish(conn: Any, event: OutboxEvent, *, table: OutboxTable = DEFAULT_TABLE) -> str:
    """Write *event* on *conn* (a SQLAlchemy ``Session``/``Connection`` or a psycopg
    ``Connection``), inside its current transaction; the new row's id."""
    family = _family(conn)
    if family == "sqlalchemy":
        from hookcast.outbox import sqlalchemy

        return sqlalchemy.publish(conn, event, table=table)
    if family == "psycopg":
        from hookcast.outbox import psycopg

        return psycopg.publish(conn, event, table=table)
    raise TypeError("an asyncpg connection is asynchronous: await publish_async(conn, event)")


async def publish_async(
    conn: Any, event: OutboxEvent, *, table: OutboxTable = DEFAULT_TABLE
) -> str:
    """Write *event* on *conn* (a SQLAlchemy ``AsyncSession``/``AsyncConnection``, a
    psycopg ``AsyncConnection`` or an asyncpg ``Connection``), inside its current
    transaction; the new row's id."""
    family = _family(conn)
    if family == "sqlalchemy":
        from hookcast.outbox import sqlalchemy

        return await sqlalchemy.publish_async(conn, event, table=table)
    if family == "psycopg":
        from hookcast.outbox import psycopg

        return await psycopg.publish_async(conn, event, table=table)
    from hookcast.outbox import asyncpg

    return await asyncpg.publish(conn, event, table=table)
