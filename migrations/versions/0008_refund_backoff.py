"""Refund retries: backoff, ordering, and another round when Stripe reports a refund failed

Revision ID: 0008_refund_backoff
Revises: 0007_disputes
Create Date: 2026-12-01 10:10:00

A refund request that failed was retried on every sweep, ahead of the others (oldest first),
and one that Stripe accepted and later reported ``failed`` was never retried. Now each
request has ``next_attempt_at`` (pushed back exponentially after each failure, capped) and a
``round``: a refund Stripe reports failed opens the next round, with a new idempotency key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_refund_backoff"
down_revision = "0007_disputes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "refund_requests",
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.add_column(
        "refund_requests",
        sa.Column("round", sa.Integer(), server_default=sa.text("1"), nullable=False),
    )
    op.drop_index(
        "ix_refund_requests_pending",
        table_name="refund_requests",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_refund_requests_pending",
        "refund_requests",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_refund_requests_pending",
        table_name="refund_requests",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_refund_requests_pending",
        "refund_requests",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_column("refund_requests", "round")
    op.drop_column("refund_requests", "next_attempt_at")
