"""portal links: ``portal_links``

A project's portal links (Convoy's ``portal-links``): a name, the endpoints' ``owner_id``
the link's token sees, whether it may manage those endpoints, the auth type
(``static_token`` or ``refresh_token``), the deprecated ``endpoints`` list (JSON text),
and the current token: its mask (unique, how a token finds its row), a SHA-256 of it and
when it expires. The same table on SQLite and PostgreSQL (it is small: no partitions).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-19 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "portal_links",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("project_id", sa.String(length=26), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("owner_id", sa.String(length=200), nullable=False),
        sa.Column(
            "can_manage_endpoint", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column("auth_type", sa.String(length=20), nullable=False),
        sa.Column("endpoints", sa.Text(), server_default="[]", nullable=False),
        sa.Column("token_mask", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=128), nullable=False),
        sa.Column("token_expires_at_us", sa.BigInteger(), nullable=True),
        sa.Column("revoked_at_us", sa.BigInteger(), nullable=True),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_portal_links_token_mask", "portal_links", ["token_mask"], unique=True)
    op.create_index("ix_portal_links_project_id", "portal_links", ["project_id", "id"])
    op.create_index(
        "ix_portal_links_project_owner", "portal_links", ["project_id", "owner_id", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_portal_links_project_owner", table_name="portal_links")
    op.drop_index("ix_portal_links_project_id", table_name="portal_links")
    op.drop_index("ix_portal_links_token_mask", table_name="portal_links")
    op.drop_table("portal_links")
