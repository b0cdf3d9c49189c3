"""Coupon reservations: a use is held by the cart that applied the coupon until it confirms

Revision ID: 0010_coupon_reservations
Revises: 0009_removed_members
Create Date: 2026-12-01 10:45:00

A one-use coupon could be applied to several carts; every cart after the first to confirm
was stuck in ready_to_confirm holding its members' captured money (coupon_exhausted, and the
coupon could no longer be removed once anyone had paid). Now applying reserves a use, counted
against max_uses with the uses made; the reservation is released on removal, unlock, cancel
and expiry, and becomes a use on confirm.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_coupon_reservations"
down_revision = "0009_removed_members"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "coupon_reservations",
        sa.Column("cart_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("store_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["cart_id"], ["teamcarts.id"], name=op.f("fk_coupon_reservations_cart_id_teamcarts")
        ),
        sa.PrimaryKeyConstraint("cart_id", name=op.f("pk_coupon_reservations")),
    )
    op.create_index(
        "ix_coupon_reservations_store_id_code",
        "coupon_reservations",
        ["store_id", "code"],
        unique=False,
    )
    # Carts that applied a coupon before reservations existed hold their use from now on.
    op.execute(
        """
        INSERT INTO coupon_reservations (cart_id, store_id, code)
        SELECT id, store_id, coupon_code FROM teamcarts
         WHERE status IN ('locked', 'ready_to_confirm') AND coupon_code IS NOT NULL
        """
    )


def downgrade() -> None:
    op.drop_index("ix_coupon_reservations_store_id_code", table_name="coupon_reservations")
    op.drop_table("coupon_reservations")
