"""Alembic environment: runs with the connection handed over by :mod:`hookcast.store.migrate`."""

from __future__ import annotations

from alembic import context

from hookcast.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only hookcast.store.migrate drives Alembic
    raise RuntimeError("run migrations through `hookcast migrate`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
