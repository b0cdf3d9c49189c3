"""Group payment options: who pays (split or the host), an allowance, a spending limit,
members the host covers, capture on confirm, reminders

Revision ID: 0017_group_payment_options
Revises: 0016_shop_carts
Create Date: 2026-12-01 17:30:00

Each member's ``owes_minor`` is what they pay (their share, less the allowance or all of it
when the host pays or covers them; the host absorbs the rest); ``share_minor`` stays the raw
share by subtotal. ``capture`` is ``automatic`` (today) or ``on_confirm`` (cards authorised,
captured when the host confirms). ``reminder_minutes`` is how long before a deadline members
are reminded, and ``cart_reminders`` remembers each reminder sent, once per member.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0017_group_payment_options"
down_revision = "0016_shop_carts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "teamcarts",
        sa.Column("payment_mode", sa.String(16), server_default=sa.text("'split'"), nullable=False),
    )
    op.add_column("teamcarts", sa.Column("allowance_minor", sa.BigInteger(), nullable=True))
    op.add_column("teamcarts", sa.Column("spending_limit_minor", sa.BigInteger(), nullable=True))
    op.add_column(
        "teamcarts",
        sa.Column("capture", sa.String(16), server_default=sa.text("'automatic'"), nullable=False),
    )
    op.add_column(
        "teamcarts",
        sa.Column("reminder_minutes", sa.Integer(), server_default=sa.text("15"), nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_teamcarts_payment_mode_known"),
        "teamcarts",
        "payment_mode IN ('split', 'host_pays')",
    )
    op.add_column("teamcart_members", sa.Column("owes_minor", sa.BigInteger(), nullable=True))
    op.add_column(
        "teamcart_members",
        sa.Column("covered", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.execute("UPDATE teamcart_members SET owes_minor = share_minor")
    op.create_check_constraint(
        op.f("ck_teamcart_members_owes_not_negative"),
        "teamcart_members",
        "owes_minor IS NULL OR owes_minor >= 0",
    )
    op.create_table(
        "cart_reminders",
        sa.Column(
            "cart_id",
            UUID(as_uuid=False),
            sa.ForeignKey("teamcarts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("user_id", UUID(as_uuid=False), primary_key=True),
        sa.Column("what", sa.String(16), primary_key=True),
        sa.Column("deadline", sa.DateTime(timezone=True), primary_key=True),
        sa.Column(
            "sent_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )


def downgrade() -> None:
    op.drop_table("cart_reminders")
    op.drop_constraint(
        op.f("ck_teamcart_members_owes_not_negative"), "teamcart_members", type_="check"
    )
    op.drop_column("teamcart_members", "covered")
    op.drop_column("teamcart_members", "owes_minor")
    op.drop_constraint(op.f("ck_teamcarts_payment_mode_known"), "teamcarts", type_="check")
    for column in ("reminder_minutes", "capture", "spending_limit_minor", "allowance_minor"):
        op.drop_column("teamcarts", column)
    op.drop_column("teamcarts", "payment_mode")
