"""events, deliveries and attempts partitioned by day of id (PostgreSQL)

On PostgreSQL each of the three tables is rebuilt as a table partitioned by range of id
(ids are ULIDs: a range of ids is a range of time): a default partition, one partition
for every row older than today (``<table>_before_pYYYYMMDD``), and one a day from today
on; every row is copied across in the migration's transaction. A delivery's id is derived
from its event and endpoint, so the primary key keeps one delivery per endpoint and event
and ``ix_deliveries_event`` no longer needs to be unique (on SQLite too).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05 05:30:00
"""

from __future__ import annotations

import time

from alembic import op

from hookcast.store import partitions

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_LIVE = "status IN ('Scheduled', 'Retry', 'Processing')"

#: the indexes of each table, as 0001 made them (the unique one is made plain here)
_INDEXES = {
    "events": [
        "CREATE INDEX ix_events_project_id ON events (project_id, id)",
        "CREATE INDEX ix_events_project_idempotency ON events (project_id, idempotency_key)",
        "CREATE INDEX ix_events_fanout_due ON events (fanout_due_at_us)"
        " WHERE fanout_due_at_us IS NOT NULL",
    ],
    "deliveries": [
        f"CREATE INDEX ix_deliveries_due ON deliveries (due_at_us) WHERE {_LIVE}",
        "CREATE INDEX ix_deliveries_project_id ON deliveries (project_id, id)",
        "CREATE INDEX ix_deliveries_event ON deliveries (event_id, endpoint_id)",
        "CREATE INDEX ix_deliveries_endpoint ON deliveries (endpoint_id, id)",
    ],
    "attempts": ["CREATE INDEX ix_attempts_delivery ON attempts (delivery_id, id)"],
}


def _names(table: str) -> list[str]:
    return [statement.split()[2] for statement in _INDEXES[table]]


def _rebuild(table: str, *, partitioned: bool) -> None:
    """Move *table* aside, make it again (partitioned or not), copy every row, drop the
    old one."""
    old = f"{table}_{'unpartitioned' if partitioned else 'partitioned'}"
    for index in _names(table):
        op.execute(f"DROP INDEX {index}")
    op.execute(f"ALTER TABLE {table} RENAME TO {old}")
    op.execute(f"ALTER TABLE {old} RENAME CONSTRAINT {table}_pkey TO {old}_pkey")
    by = " PARTITION BY RANGE (id)" if partitioned else ""
    op.execute(f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS){by}")
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY (id)")
    for statement in _INDEXES[table]:
        if not partitioned and statement.split()[2] == "ix_deliveries_event":
            statement = statement.replace("CREATE INDEX", "CREATE UNIQUE INDEX")
        op.execute(statement)
    if partitioned:
        now_ms = time.time_ns() // 1_000_000
        today = partitions.day_of(now_ms)
        op.execute(partitions.default_statement(table, parent=table))
        op.execute(partitions.history_statement(table, today, parent=table))
        for i in range(partitions.AHEAD_DAYS + 1):
            day = today + i * partitions.DAY_MS
            for statement in partitions.create_statements(table, day, parent=table):
                op.execute(statement)
    op.execute(f"INSERT INTO {table} SELECT * FROM {old}")
    op.execute(f"DROP TABLE {old} CASCADE")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        with op.batch_alter_table("deliveries", schema=None) as batch_op:
            batch_op.drop_index("ix_deliveries_event")
            batch_op.create_index("ix_deliveries_event", ["event_id", "endpoint_id"])
        return
    for table in _INDEXES:
        _rebuild(table, partitioned=True)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        with op.batch_alter_table("deliveries", schema=None) as batch_op:
            batch_op.drop_index("ix_deliveries_event")
            batch_op.create_index("ix_deliveries_event", ["event_id", "endpoint_id"], unique=True)
        return
    for table in _INDEXES:
        _rebuild(table, partitioned=False)
