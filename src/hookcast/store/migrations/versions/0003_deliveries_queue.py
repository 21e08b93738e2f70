"""deliveries split by status into the queue and the history (PostgreSQL)

``deliveries`` becomes a table partitioned by list of status: ``deliveries_queue`` holds
the deliveries that are Scheduled, Retry or Processing, and ``deliveries_history`` (the
table 0002 partitioned by day, renamed) every other status. The queue's statements name
the live statuses, so they plan and lock the queue alone, however many days of history
there are. The primary key becomes (id, status), as PostgreSQL requires of a partitioned
table's keys; a delivery's id still names one delivery (it is derived from its event and
endpoint, and a delivery is inserted once).

The upgrade renames the table and its indexes instead of copying it: only the live rows
move, and PostgreSQL scans the history once to check that none is left there. The one
index built over the history is the new primary key. SQLite keeps its one table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 08:45:00
"""

from __future__ import annotations

from alembic import op

from hookcast.store.partitions import HISTORY, LIVE_SQL, QUEUE

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

#: the indexes of ``deliveries`` (as 0002 made them), by name
_INDEXES = {
    "ix_deliveries_due": f"(due_at_us) WHERE {LIVE_SQL}",
    "ix_deliveries_project_id": "(project_id, id)",
    "ix_deliveries_event": "(event_id, endpoint_id)",
    "ix_deliveries_endpoint": "(endpoint_id, id)",
}


def _renamed(index: str) -> str:
    return index.replace("ix_deliveries_", "ix_deliveries_history_")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE deliveries RENAME TO {HISTORY}")
    op.execute(f"ALTER TABLE {HISTORY} DROP CONSTRAINT deliveries_pkey")
    for index in _INDEXES:
        op.execute(f"ALTER INDEX {index} RENAME TO {_renamed(index)}")
    op.execute(
        f"CREATE TABLE deliveries (LIKE {HISTORY} INCLUDING DEFAULTS) PARTITION BY LIST (status)"
    )
    op.execute(
        f"CREATE TABLE {QUEUE} PARTITION OF deliveries"
        " FOR VALUES IN ('Scheduled', 'Retry', 'Processing')"
    )
    op.execute(
        f"WITH moved AS (DELETE FROM {HISTORY} WHERE {LIVE_SQL} RETURNING *)"
        f" INSERT INTO {QUEUE} SELECT * FROM moved"
    )
    op.execute(f"ALTER TABLE deliveries ATTACH PARTITION {HISTORY} DEFAULT")
    op.execute("ALTER TABLE deliveries ADD CONSTRAINT deliveries_pkey PRIMARY KEY (id, status)")
    for index, definition in _INDEXES.items():
        # the history's equal index is attached to it, not built again
        op.execute(f"CREATE INDEX {index} ON deliveries {definition}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for index in _INDEXES:
        op.execute(f"DROP INDEX {index}")
    op.execute("ALTER TABLE deliveries DROP CONSTRAINT deliveries_pkey")
    op.execute(f"ALTER TABLE deliveries DETACH PARTITION {HISTORY}")
    op.execute(f"INSERT INTO {HISTORY} SELECT * FROM {QUEUE}")
    op.execute("DROP TABLE deliveries")
    op.execute(f"ALTER TABLE {HISTORY} RENAME TO deliveries")
    op.execute("ALTER TABLE deliveries ADD CONSTRAINT deliveries_pkey PRIMARY KEY (id)")
    for index, definition in _INDEXES.items():
        op.execute(f"CREATE INDEX {index} ON deliveries {definition}")
