"""Tip cap: how large a tip a store's carts may carry, as a share of the subtotal

Revision ID: 0012_tip_cap
Revises: 0011_confirm_reminders
Create Date: 2026-12-01 12:45:00

A host who types 100000 for a $20 lunch would ask every member for a share of it. Each store
caps the tip at ``max_tip_bps`` of the cart's subtotal (basis points; 10000, the whole
subtotal, unless the store says otherwise).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_tip_cap"
down_revision = "0011_confirm_reminders"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "stores",
        sa.Column("max_tip_bps", sa.Integer(), server_default=sa.text("10000"), nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_stores_max_tip_in_range"), "stores", "max_tip_bps BETWEEN 0 AND 10000"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_stores_max_tip_in_range"), "stores", type_="check")
    op.drop_column("stores", "max_tip_bps")
