"""The outbox writer for Django: the row is written through Django's database connection
(``django.db.connections[using]``, its PostgreSQL backend), so it is
part of the transaction Django has open there::

    from django.db import transaction
    from hookcast.outbox import OutboxEvent
    from hookcast.outbox.django import publish

    with transaction.atomic():
        order.save()
        publish(OutboxEvent("order.paid", {"id": order.pk}, owner_id=order.customer_id))

Outside ``transaction.atomic()`` Django is in autocommit mode: the row is then committed
on its own at once, as any other statement would be. The table is the same one
(``hookcast outbox install`` against the database Django uses).
"""

from __future__ import annotations

from typing import Any

from hookcast.domain.outbox import OutboxEvent
from hookcast.outbox.table import DEFAULT_TABLE, WRITTEN, OutboxTable, values


def publish(
    event: OutboxEvent, *, using: str = "default", table: OutboxTable = DEFAULT_TABLE
) -> str:
    """Write *event* through the Django connection *using*, in its current transaction;
    the new row's id."""
    from django.db import connections

    connection: Any = connections[using]
    if connection.vendor != "postgresql":
        raise TypeError(
            f"hookcast.outbox writes to PostgreSQL; Django's {using!r} database is "
            f"{connection.vendor}"
        )
    with connection.cursor() as cursor:
        cursor.execute(table.insert(["%s"] * len(WRITTEN)), values(event))
        row = cursor.fetchone()
    if row is None:  # pragma: no cover - INSERT ... RETURNING always returns the row
        raise RuntimeError("the outbox insert returned no row")
    return str(row[0])
