"""Payments: intents, Stripe event inbox, refunds

Revision ID: 0003_payments
Revises: 0002_teamcarts
Create Date: 2026-11-22 04:04:48.900802
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_payments"
down_revision = "0002_teamcarts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "refunds",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("payment_intent_id", sa.Text(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
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
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
    )
    op.create_index(
        op.f("ix_refunds_payment_intent_id"), "refunds", ["payment_intent_id"], unique=False
    )
    op.create_table(
        "stripe_events",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("payment_intent_id", sa.Text(), nullable=True),
        sa.Column("cart_id", sa.UUID(as_uuid=False), nullable=True),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stripe_events")),
    )
    op.create_table(
        "payment_intents",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("cart_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("user_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("quote_version", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("client_secret", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
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
        sa.ForeignKeyConstraint(
            ["cart_id"], ["teamcarts.id"], name=op.f("fk_payment_intents_cart_id_teamcarts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_intents")),
        sa.UniqueConstraint(
            "cart_id",
            "user_id",
            "quote_version",
            "attempt",
            name="uq_payment_intents_cart_id_user_id_quote_version_attempt",
        ),
    )
    op.create_index(
        "ix_payment_intents_cart_id_status", "payment_intents", ["cart_id", "status"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_payment_intents_cart_id_status", table_name="payment_intents")
    op.drop_table("payment_intents")
    op.drop_table("stripe_events")
    op.drop_index(op.f("ix_refunds_payment_intent_id"), table_name="refunds")
    op.drop_table("refunds")
