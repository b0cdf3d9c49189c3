"""Refund requests: refunds owed, carried out after commit

Revision ID: 0004_refund_requests
Revises: 0003_payments
Create Date: 2026-11-22 04:47:58.795355
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_refund_requests"
down_revision = "0003_payments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "refund_requests",
        sa.Column("payment_intent_id", sa.Text(), nullable=False),
        sa.Column("cart_id", sa.UUID(as_uuid=False), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "status", sa.String(length=16), server_default=sa.text("'pending'"), nullable=False
        ),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'done')", name=op.f("ck_refund_requests_status_known")
        ),
        sa.PrimaryKeyConstraint("payment_intent_id", name=op.f("pk_refund_requests")),
    )
    op.create_index(
        "ix_refund_requests_pending",
        "refund_requests",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_refund_requests_pending",
        table_name="refund_requests",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_table("refund_requests")
