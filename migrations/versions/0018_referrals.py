"""Referrals: codes, attributions, commissions and their reversals, and an append-only audit

Revision ID: 0018_referrals
Revises: 0017_group_payment_options
Create Date: 2026-12-02 12:00:00

A user's referral code (``referral_codes``); the code a cart was created with, by cart id
(``referral_attributions``: a TeamCart's or a shop cart's, fixed at creation); one commission
per order at most (``commissions``, unique on the order) and a row per reversal by a refund
(``commission_reversals``); the card fingerprints each user's payments were made with
(``referral_fingerprints``); the outbox records the accrual consumed (``referral_consumed``:
a replay finds its id there and does nothing). ``audit`` is the decision log: one accrual
decision per order (a partial unique index), and a trigger refuses every UPDATE, DELETE and
TRUNCATE, so what was decided stays as it was written (ADR 0017).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0018_referrals"
down_revision = "0017_group_payment_options"
branch_labels = None
depends_on = None

DECISIONS = (
    "'accrued', 'no_code', 'self_referral', 'below_minimum', 'velocity', 'duplicate', "
    "'reversed', 'voided'"
)
ACCRUAL_DECISIONS = "'accrued', 'no_code', 'self_referral', 'below_minimum', 'velocity'"


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "referral_codes",
        sa.Column("user_id", UUID(as_uuid=False), primary_key=True),
        sa.Column("code", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.UniqueConstraint("code", name=op.f("uq_referral_codes_code")),
    )
    op.create_table(
        "referral_attributions",
        sa.Column("cart_id", UUID(as_uuid=False), primary_key=True),
        sa.Column("cart_kind", sa.String(16), nullable=False),
        sa.Column("referrer_user_id", UUID(as_uuid=False), nullable=False),
        sa.Column("referred_user_id", UUID(as_uuid=False), nullable=False),
        sa.Column("code", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.CheckConstraint(
            "cart_kind IN ('teamcart', 'shop')",
            name=op.f("ck_referral_attributions_cart_kind_known"),
        ),
    )
    op.create_index(
        "ix_referral_attributions_referrer_user_id", "referral_attributions", ["referrer_user_id"]
    )
    op.create_table(
        "commissions",
        sa.Column("id", UUID(as_uuid=False), primary_key=True),
        sa.Column("order_id", UUID(as_uuid=False), sa.ForeignKey("orders.id"), nullable=False),
        sa.Column("referrer_user_id", UUID(as_uuid=False), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("reversed_minor", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("order_version", sa.Integer(), nullable=False),
        sa.Column("order_placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paid_by", UUID(as_uuid=False), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'paid', 'void')",
            name=op.f("ck_commissions_status_known"),
        ),
        sa.UniqueConstraint("order_id", name=op.f("uq_commissions_order_id")),
        sa.CheckConstraint("amount_minor >= 0", name=op.f("ck_commissions_amount_not_negative")),
        sa.CheckConstraint(
            "reversed_minor BETWEEN 0 AND amount_minor",
            name=op.f("ck_commissions_reversed_in_range"),
        ),
    )
    op.create_index(
        "ix_commissions_referrer_user_id", "commissions", ["referrer_user_id", "order_placed_at"]
    )
    op.create_index("ix_commissions_created_at", "commissions", ["created_at"])
    op.create_table(
        "commission_reversals",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), primary_key=True),
        sa.Column(
            "commission_id", UUID(as_uuid=False), sa.ForeignKey("commissions.id"), nullable=False
        ),
        sa.Column("outbox_id", sa.BigInteger(), nullable=False),
        sa.Column("order_version", sa.Integer(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("refunded_minor", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.UniqueConstraint(
            "commission_id",
            "order_version",
            name=op.f("uq_commission_reversals_commission_id_order_version"),
        ),
    )
    op.create_table(
        "referral_fingerprints",
        sa.Column("user_id", UUID(as_uuid=False), primary_key=True),
        sa.Column("fingerprint", sa.Text(), primary_key=True),
        sa.Column("order_id", UUID(as_uuid=False), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    )
    op.create_index(
        "ix_referral_fingerprints_fingerprint", "referral_fingerprints", ["fingerprint"]
    )
    op.create_table(
        "referral_consumed",
        sa.Column("outbox_id", sa.BigInteger(), primary_key=True),
        sa.Column("order_id", UUID(as_uuid=False), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("consumed_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    )
    _create_audit()


def _create_audit() -> None:
    op.create_table(
        "audit",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), primary_key=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("referrer_user_id", UUID(as_uuid=False), nullable=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("commission_id", UUID(as_uuid=False), nullable=True),
        sa.Column("outbox_id", sa.BigInteger(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.CheckConstraint(f"decision IN ({DECISIONS})", name=op.f("ck_audit_decision_known")),
    )
    op.create_index("ix_audit_subject", "audit", ["subject"])
    op.create_index("ix_audit_referrer_user_id", "audit", ["referrer_user_id"])
    op.create_index(
        "ix_audit_one_accrual_decision",
        "audit",
        ["subject"],
        unique=True,
        postgresql_where=sa.text(f"decision IN ({ACCRUAL_DECISIONS})"),
    )
    op.execute(
        """
        CREATE FUNCTION teamcart_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit is append-only: % refused', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
        FOR EACH ROW EXECUTE FUNCTION teamcart_audit_append_only()
        """
    )
    op.execute(
        """
        CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
        FOR EACH STATEMENT EXECUTE FUNCTION teamcart_audit_append_only()
        """
    )


def downgrade() -> None:
    op.drop_table("audit")  # its triggers go with it
    op.execute("DROP FUNCTION teamcart_audit_append_only()")
    op.drop_table("referral_consumed")
    op.drop_index("ix_referral_fingerprints_fingerprint", "referral_fingerprints")
    op.drop_table("referral_fingerprints")
    op.drop_table("commission_reversals")
    op.drop_index("ix_commissions_created_at", "commissions")
    op.drop_index("ix_commissions_referrer_user_id", "commissions")
    op.drop_table("commissions")
    op.drop_index("ix_referral_attributions_referrer_user_id", "referral_attributions")
    op.drop_table("referral_attributions")
    op.drop_table("referral_codes")
