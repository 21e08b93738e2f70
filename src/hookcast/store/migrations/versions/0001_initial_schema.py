"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26 16:00:14.010921
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batch_jobs",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("project_id", sa.String(length=26), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("filter", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("cursor", sa.String(length=26), nullable=True),
        sa.Column("total", sa.Integer(), server_default="0", nullable=False),
        sa.Column("processed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("requeued", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error", sa.Text(), server_default="", nullable=False),
        sa.Column("lease_token", sa.String(length=40), nullable=True),
        sa.Column("due_at_us", sa.BigInteger(), nullable=True),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.Column("finished_at_us", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("batch_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_batch_jobs_project", ["project_id", "id"], unique=False)
        batch_op.create_index(
            "ix_batch_jobs_due",
            ["due_at_us"],
            unique=False,
            sqlite_where=sa.text("due_at_us IS NOT NULL"),
            postgresql_where=sa.text("due_at_us IS NOT NULL"),
        )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("mask", sa.String(length=32), nullable=False),
        sa.Column("key_hash", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=200), server_default="", nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("project_id", sa.String(length=26), nullable=True),
        sa.Column("can_broadcast", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("expires_at_us", sa.BigInteger(), nullable=True),
        sa.Column("revoked_at_us", sa.BigInteger(), nullable=True),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("mask"),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_keys_project_id"), ["project_id"], unique=False)

    op.create_table(
        "attempts",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("delivery_id", sa.String(length=26), nullable=False),
        sa.Column("project_id", sa.String(length=26), nullable=False),
        sa.Column("endpoint_id", sa.String(length=26), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("ip_address", sa.String(length=64), server_default="", nullable=False),
        sa.Column("request_headers", sa.Text(), nullable=False),
        sa.Column("response_headers", sa.Text(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=False),
        sa.Column("response_data", sa.Text(), server_default="", nullable=False),
        sa.Column("error", sa.Text(), server_default="", nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("requested_at_us", sa.BigInteger(), nullable=False),
        sa.Column("responded_at_us", sa.BigInteger(), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.create_index("ix_attempts_delivery", ["delivery_id", "id"], unique=False)

    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("project_id", sa.String(length=26), nullable=False),
        sa.Column("event_id", sa.String(length=26), nullable=False),
        sa.Column("endpoint_id", sa.String(length=26), nullable=False),
        sa.Column("subscription_id", sa.String(length=26), nullable=False),
        sa.Column("event_type", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("delivery_mode", sa.String(length=20), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), server_default="", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("retry_limit", sa.Integer(), nullable=False),
        sa.Column("strategy", sa.String(length=20), nullable=False),
        sa.Column("interval_seconds", sa.Integer(), nullable=False),
        sa.Column("max_retry_seconds", sa.Integer(), nullable=False),
        sa.Column("due_at_us", sa.BigInteger(), nullable=False),
        sa.Column("lease_token", sa.String(length=40), nullable=True),
        sa.Column("latency_us", sa.BigInteger(), nullable=True),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_deliveries_due",
            ["due_at_us"],
            unique=False,
            sqlite_where=sa.text("status IN ('Scheduled', 'Retry', 'Processing')"),
            postgresql_where=sa.text("status IN ('Scheduled', 'Retry', 'Processing')"),
        )
        batch_op.create_index("ix_deliveries_endpoint", ["endpoint_id", "id"], unique=False)
        batch_op.create_index("ix_deliveries_event", ["event_id", "endpoint_id"], unique=True)
        batch_op.create_index("ix_deliveries_project_id", ["project_id", "id"], unique=False)

    op.create_table(
        "endpoints",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("project_id", sa.String(length=26), nullable=False),
        sa.Column("owner_id", sa.String(length=200), server_default="", nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("secrets", sa.Text(), nullable=False),
        sa.Column("advanced_signatures", sa.Boolean(), nullable=False),
        sa.Column("http_timeout", sa.Integer(), nullable=False),
        sa.Column("rate_limit", sa.Integer(), server_default="0", nullable=False),
        sa.Column("rate_limit_duration", sa.Integer(), server_default="0", nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("authentication", sa.Text(), nullable=True),
        sa.Column("support_email", sa.String(length=320), server_default="", nullable=False),
        sa.Column("slack_webhook_url", sa.Text(), server_default="", nullable=False),
        sa.Column("teams_webhook_url", sa.Text(), server_default="", nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.Column("max_in_flight", sa.Integer(), server_default="0", nullable=False),
        sa.Column("breaker", sa.Text(), nullable=True),
        sa.Column("disabled_reason", sa.String(length=40), server_default="", nullable=False),
        sa.Column("probe_at_us", sa.BigInteger(), nullable=True),
        sa.Column("probe_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.create_index(
            "ix_endpoints_probe",
            ["probe_at_us"],
            unique=False,
            sqlite_where=sa.text("probe_at_us IS NOT NULL"),
            postgresql_where=sa.text("probe_at_us IS NOT NULL"),
        )
        batch_op.create_index("ix_endpoints_project_id", ["project_id", "id"], unique=False)
        batch_op.create_index(
            "ix_endpoints_project_owner", ["project_id", "owner_id", "id"], unique=False
        )

    op.create_table(
        "events",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("project_id", sa.String(length=26), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("event_type", sa.String(length=200), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), server_default="", nullable=False),
        sa.Column(
            "is_duplicate_event", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column("endpoints", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("failure_reason", sa.Text(), server_default="", nullable=False),
        sa.Column("api_key_id", sa.String(length=26), nullable=True),
        sa.Column("owner_id", sa.String(length=200), server_default="", nullable=False),
        sa.Column("fanout_cursor", sa.String(length=26), nullable=True),
        sa.Column("fanout_lease_token", sa.String(length=40), nullable=True),
        sa.Column("fanout_due_at_us", sa.BigInteger(), nullable=True),
        sa.Column("fanout_matched", sa.Integer(), server_default="0", nullable=False),
        sa.Column("fanout_skipped", sa.Integer(), server_default="0", nullable=False),
        sa.Column("fanout_done_at_us", sa.BigInteger(), nullable=True),
        sa.Column("acknowledged_at_us", sa.BigInteger(), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_events_fanout_due",
            ["fanout_due_at_us"],
            unique=False,
            sqlite_where=sa.text("fanout_due_at_us IS NOT NULL"),
            postgresql_where=sa.text("fanout_due_at_us IS NOT NULL"),
        )
        batch_op.create_index("ix_events_project_id", ["project_id", "id"], unique=False)
        batch_op.create_index(
            "ix_events_project_idempotency", ["project_id", "idempotency_key"], unique=False
        )

    op.create_table(
        "projects",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=20), server_default="outgoing", nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("broadcast_release_at_us", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("project_id", sa.String(length=26), nullable=False),
        sa.Column("endpoint_id", sa.String(length=26), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=20), server_default="api", nullable=False),
        sa.Column("filter_config", sa.Text(), nullable=False),
        sa.Column("alert_config", sa.Text(), nullable=True),
        sa.Column("retry_config", sa.Text(), nullable=True),
        sa.Column("rate_limit_config", sa.Text(), nullable=True),
        sa.Column("delivery_mode", sa.String(length=20), nullable=False),
        sa.Column("function", sa.Text(), server_default="", nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="active", nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.create_index("ix_subscriptions_endpoint", ["endpoint_id", "id"], unique=False)
        batch_op.create_index("ix_subscriptions_project_id", ["project_id", "id"], unique=False)
        batch_op.create_index(
            "ix_subscriptions_project_endpoint", ["project_id", "endpoint_id", "id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("batch_jobs")
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_index("ix_subscriptions_project_endpoint")
        batch_op.drop_index("ix_subscriptions_project_id")
        batch_op.drop_index("ix_subscriptions_endpoint")

    op.drop_table("subscriptions")
    op.drop_table("projects")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_project_idempotency")
        batch_op.drop_index("ix_events_project_id")
        batch_op.drop_index(
            "ix_events_fanout_due",
            sqlite_where=sa.text("fanout_due_at_us IS NOT NULL"),
            postgresql_where=sa.text("fanout_due_at_us IS NOT NULL"),
        )

    op.drop_table("events")
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.drop_index("ix_endpoints_probe")
        batch_op.drop_index("ix_endpoints_project_owner")
        batch_op.drop_index("ix_endpoints_project_id")

    op.drop_table("endpoints")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_project_id")
        batch_op.drop_index("ix_deliveries_event")
        batch_op.drop_index("ix_deliveries_endpoint")
        batch_op.drop_index(
            "ix_deliveries_due",
            sqlite_where=sa.text("status IN ('Scheduled', 'Retry', 'Processing')"),
            postgresql_where=sa.text("status IN ('Scheduled', 'Retry', 'Processing')"),
        )

    op.drop_table("deliveries")
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_attempts_delivery")

    op.drop_table("attempts")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_project_id"))

    op.drop_table("api_keys")
