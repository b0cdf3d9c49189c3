"""Stores get paid: Connect accounts, per-store payment settings, transfers, reversals, payouts

Revision ID: 0019_connect
Revises: 0018_referrals
Create Date: 2026-12-02 10:00:00

``store_payment_configs``: COD and online on or off, the platform's fee in basis points, and
a store's own Stripe secrets, sealed with AES-GCM (``app.secrets``; never in clear).
``store_accounts``: the store's Connect account and where its onboarding stands.
``store_transfers``: the store's money from an order, one row per order (the primary key
makes the transfer once, whoever handles the order's event); ``store_transfer_reversals``:
one per refund event; ``store_payouts``: the account's payouts as Stripe reports them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0019_connect"
down_revision = "0018_referrals"
branch_labels = None
depends_on = None

NOW = sa.text("now()")


def _created_at(name: str = "created_at") -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=NOW, nullable=False)


def upgrade() -> None:
    op.create_table(
        "store_payment_configs",
        sa.Column(
            "store_id",
            UUID(as_uuid=False),
            sa.ForeignKey("stores.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("cod_enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("online_enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("platform_fee_bps", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("stripe_secret_key_sealed", sa.Text(), nullable=True),
        sa.Column("stripe_webhook_secret_sealed", sa.Text(), nullable=True),
        _created_at("updated_at"),
        sa.CheckConstraint(
            "platform_fee_bps BETWEEN 0 AND 10000",
            name=op.f("ck_store_payment_configs_platform_fee_in_range"),
        ),
    )
    op.create_table(
        "store_accounts",
        sa.Column(
            "store_id",
            UUID(as_uuid=False),
            sa.ForeignKey("stores.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("charges_enabled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("payouts_enabled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "details_submitted", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column("requirements_due", JSONB(), server_default=sa.text("'[]'"), nullable=False),
        sa.Column("state_as_of", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        _created_at(),
        _created_at("updated_at"),
        sa.UniqueConstraint("account_id", name=op.f("uq_store_accounts_account_id")),
    )
    op.create_table(
        "store_transfers",
        sa.Column("order_id", UUID(as_uuid=False), sa.ForeignKey("orders.id"), primary_key=True),
        sa.Column("store_id", UUID(as_uuid=False), sa.ForeignKey("stores.id"), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("gross_minor", sa.BigInteger(), nullable=False),
        sa.Column("fee_minor", sa.BigInteger(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("transfer_group", sa.Text(), nullable=True),
        sa.Column("payment_intent_id", sa.Text(), nullable=True),
        sa.Column("stripe_transfer_id", sa.Text(), nullable=True),
        sa.Column("application_fee_id", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        _created_at("next_attempt_at"),
        _created_at(),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "kind IN ('transfer', 'destination')", name=op.f("ck_store_transfers_kind_known")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'paid', 'skipped')", name=op.f("ck_store_transfers_status_known")
        ),
        sa.CheckConstraint(
            "fee_minor >= 0 AND amount_minor >= 0 AND amount_minor = gross_minor - fee_minor",
            name=op.f("ck_store_transfers_amounts_add_up"),
        ),
        sa.UniqueConstraint(
            "stripe_transfer_id", name=op.f("uq_store_transfers_stripe_transfer_id")
        ),
    )
    op.create_index(
        "ix_store_transfers_store_id_created_at", "store_transfers", ["store_id", "created_at"]
    )
    op.create_index(
        "ix_store_transfers_pending",
        "store_transfers",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "store_transfer_reversals",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column(
            "order_id",
            UUID(as_uuid=False),
            sa.ForeignKey("store_transfers.order_id"),
            nullable=False,
        ),
        sa.Column("refunded_minor", sa.BigInteger(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("fee_minor", sa.BigInteger(), nullable=False),
        sa.Column("stripe_reversal_id", sa.Text(), nullable=True),
        sa.Column("application_fee_refund_id", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        _created_at("next_attempt_at"),
        _created_at(),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'done')", name=op.f("ck_store_transfer_reversals_status_known")
        ),
        sa.CheckConstraint(
            "amount_minor >= 0 AND fee_minor >= 0",
            name=op.f("ck_store_transfer_reversals_amounts_not_negative"),
        ),
    )
    op.create_index(
        "ix_store_transfer_reversals_order_id", "store_transfer_reversals", ["order_id"]
    )
    op.create_index(
        "ix_store_transfer_reversals_pending",
        "store_transfer_reversals",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "store_payouts",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("store_id", UUID(as_uuid=False), sa.ForeignKey("stores.id"), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("arrival_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failure_code", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state_as_of", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        _created_at("updated_at"),
    )
    op.create_index(
        "ix_store_payouts_store_id_created_at", "store_payouts", ["store_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_table("store_payouts")
    op.drop_table("store_transfer_reversals")
    op.drop_table("store_transfers")
    op.drop_table("store_accounts")
    op.drop_table("store_payment_configs")
