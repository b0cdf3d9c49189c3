"""Disputes: every dispute Stripe reports, by id, even one that arrives before its capture

Revision ID: 0007_disputes
Revises: 0006_outbox_reservations
Create Date: 2026-12-01 10:00:00

Stripe does not order its events: ``charge.dispute.created`` can arrive before the
``payment_intent.succeeded`` of the same PaymentIntent (whose delivery was answered 503 and
is retried later). The dispute is stored by intent here, so the capture, when it is reported,
goes to review instead of counting as paid.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_disputes"
down_revision = "0006_outbox_reservations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "disputes",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("payment_intent_id", sa.Text(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
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
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disputes")),
    )
    op.create_index(
        op.f("ix_disputes_payment_intent_id"), "disputes", ["payment_intent_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_disputes_payment_intent_id"), table_name="disputes")
    op.drop_table("disputes")
