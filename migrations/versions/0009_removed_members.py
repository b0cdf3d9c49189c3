"""Removed members: a guest the host removed can't rejoin with the same invite link

Revision ID: 0009_removed_members
Revises: 0008_refund_backoff
Create Date: 2026-12-01 10:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009_removed_members"
down_revision = "0008_refund_backoff"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "teamcarts",
        sa.Column(
            "removed_user_ids",
            postgresql.ARRAY(postgresql.UUID(as_uuid=False)),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("teamcarts", "removed_user_ids")
