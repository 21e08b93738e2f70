"""sources: ``sources``, ``subscriptions.source_id``, ``events.source_id/url_path/url_query_params``

An incoming project's sources (Convoy's ``sources``): an ``http`` source is an ingest URL
(``/ingest/{mask_id}``, the mask unique) guarded by its verifier; a ``pub_sub`` source is a
broker consumer whose config is kept as JSON text. Subscriptions of an incoming project
name the source they route; incoming events keep their source and the request's path and
query string. The same on SQLite and PostgreSQL (on PostgreSQL the new ``events`` columns
reach every partition: they are added to the partitioned parent).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-26 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sources",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("project_id", sa.String(length=26), nullable=False),
        sa.Column("mask_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("provider", sa.String(length=40), server_default="", nullable=False),
        sa.Column("is_disabled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("verifier", sa.Text(), nullable=False),
        sa.Column("custom_response", sa.Text(), nullable=True),
        sa.Column("idempotency_keys", sa.Text(), server_default="[]", nullable=False),
        sa.Column("forward_headers", sa.Text(), server_default="[]", nullable=False),
        sa.Column("body_function", sa.Text(), server_default="", nullable=False),
        sa.Column("header_function", sa.Text(), server_default="", nullable=False),
        sa.Column("event_type_location", sa.Text(), server_default="", nullable=False),
        sa.Column("pub_sub", sa.Text(), nullable=True),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_sources_mask_id", "sources", ["mask_id"], unique=True)
    op.create_index("ix_sources_project_id", "sources", ["project_id", "id"])
    op.create_index("ix_sources_type", "sources", ["type", "is_disabled"])
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(
            sa.Column("source_id", sa.String(length=26), server_default="", nullable=False)
        )
    op.create_index("ix_subscriptions_source", "subscriptions", ["source_id", "endpoint_id"])
    for column in (
        sa.Column("source_id", sa.String(length=26), server_default="", nullable=False),
        sa.Column("url_path", sa.Text(), server_default="", nullable=False),
        sa.Column("url_query_params", sa.Text(), server_default="", nullable=False),
    ):
        op.add_column("events", column)


def downgrade() -> None:
    for name in ("url_query_params", "url_path", "source_id"):
        op.drop_column("events", name)
    op.drop_index("ix_subscriptions_source", table_name="subscriptions")
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("source_id")
    op.drop_index("ix_sources_type", table_name="sources")
    op.drop_index("ix_sources_project_id", table_name="sources")
    op.drop_index("ix_sources_mask_id", table_name="sources")
    op.drop_table("sources")
