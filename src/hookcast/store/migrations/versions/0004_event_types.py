"""the event catalog: ``event_types``

A project's event types (Convoy's ``event-types``): a name unique in the project, a
category, a description, an optional JSON Schema of the events' ``data`` and an example,
and when the type was deprecated. The same table on SQLite and PostgreSQL (it is small:
no partitions).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-12 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_types",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("project_id", sa.String(length=26), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=200), server_default="", nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("json_schema", sa.Text(), nullable=True),
        sa.Column("example", sa.Text(), nullable=True),
        sa.Column("deprecated_at_us", sa.BigInteger(), nullable=True),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_event_types_project_name", "event_types", ["project_id", "name"], unique=True
    )
    op.create_index("ix_event_types_project_id", "event_types", ["project_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_event_types_project_id", table_name="event_types")
    op.drop_index("ix_event_types_project_name", table_name="event_types")
    op.drop_table("event_types")
