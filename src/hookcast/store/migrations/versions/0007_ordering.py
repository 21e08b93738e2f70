"""ordered delivery: ``endpoints.ordering/ordering_on_failure``, ``events.ordering_key``,
``deliveries.ordering_key`` (with the index of each key's head), ``ordering_blocks``

An endpoint whose ``ordering`` is ``per_key`` gets its deliveries one at a time per
ordering key, in their events' order (docs/ordering.md). A delivery keeps its key (NULL: unordered);
a broadcast's event keeps the publish's key for its chunks. A key whose head failed for
good under ``ordering_on_failure = 'block'`` has a row in ``ordering_blocks`` until an
operator requeues or skips that delivery. The same on SQLite and PostgreSQL (on
PostgreSQL the columns and the partial index reach every partition: they are added to the
partitioned parents; the index's rows are all in ``deliveries_queue``).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-27 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ORDERED_LIVE = "ordering_key IS NOT NULL AND status IN ('Scheduled', 'Retry', 'Processing')"


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(
            sa.Column("ordering", sa.String(length=20), server_default="none", nullable=False)
        )
        batch.add_column(
            sa.Column(
                "ordering_on_failure", sa.String(length=20), server_default="block", nullable=False
            )
        )
    op.add_column("events", sa.Column("ordering_key", sa.String(length=200), nullable=True))
    op.add_column("deliveries", sa.Column("ordering_key", sa.String(length=200), nullable=True))
    op.create_index(
        "ix_deliveries_ordering",
        "deliveries",
        ["endpoint_id", "ordering_key", "event_id"],
        sqlite_where=sa.text(_ORDERED_LIVE),
        postgresql_where=sa.text(_ORDERED_LIVE),
    )
    op.create_table(
        "ordering_blocks",
        sa.Column("endpoint_id", sa.String(length=26), nullable=False),
        sa.Column("ordering_key", sa.String(length=200), nullable=False),
        sa.Column("project_id", sa.String(length=26), nullable=False),
        sa.Column("delivery_id", sa.String(length=26), nullable=False),
        sa.Column("blocked_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("endpoint_id", "ordering_key"),
    )
    op.create_index("ix_ordering_blocks_delivery", "ordering_blocks", ["delivery_id"])
    op.create_index("ix_ordering_blocks_project", "ordering_blocks", ["project_id", "endpoint_id"])


def downgrade() -> None:
    op.drop_index("ix_ordering_blocks_project", table_name="ordering_blocks")
    op.drop_index("ix_ordering_blocks_delivery", table_name="ordering_blocks")
    op.drop_table("ordering_blocks")
    op.drop_index("ix_deliveries_ordering", table_name="deliveries")
    op.drop_column("deliveries", "ordering_key")
    op.drop_column("events", "ordering_key")
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("ordering_on_failure")
        batch.drop_column("ordering")
