"""Shop carts: one buyer's cart at one store, and its checkout

Revision ID: 0016_shop_carts
Revises: 0015_accounts
Create Date: 2026-12-01 17:00:00

A single-payer's cart (``domain.checkout.ShopCart``): its items (priced when added, as a
TeamCart's), the checkout's state, the address and delivery method, and, once checked out,
its order. One open cart per user and store. A single-payer order has no TeamCart: its
``cart_id`` is null, and its stock is taken at checkout from the products themselves (given
back if it is never paid).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0016_shop_carts"
down_revision = "0015_accounts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shop_carts",
        sa.Column("id", UUID(as_uuid=False), primary_key=True),
        sa.Column("user_id", UUID(as_uuid=False), nullable=False),
        sa.Column("store_id", UUID(as_uuid=False), sa.ForeignKey("stores.id"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("address", JSONB(), nullable=True),
        sa.Column("delivery_method", sa.String(16), nullable=True),
        sa.Column("order_id", UUID(as_uuid=False), sa.ForeignKey("orders.id"), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "status IN ('open', 'checked_out', 'merged')", name=op.f("ck_shop_carts_status_known")
        ),
    )
    op.create_index(
        "ix_shop_carts_open_per_user_store",
        "shop_carts",
        ["user_id", "store_id"],
        unique=True,
        postgresql_where=sa.text("status = 'open'"),
    )
    op.create_index("ix_shop_carts_order_id", "shop_carts", ["order_id"])
    op.create_table(
        "shop_cart_items",
        sa.Column(
            "cart_id",
            UUID(as_uuid=False),
            sa.ForeignKey("shop_carts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("item_id", UUID(as_uuid=False), primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("product_id", UUID(as_uuid=False), sa.ForeignKey("products.id"), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("options", JSONB(), nullable=False),
        sa.Column("unit_price_minor", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
    )
    op.add_column("order_payments", sa.Column("checkout_session_id", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("order_payments", "checkout_session_id")
    op.drop_table("shop_cart_items")
    op.drop_index("ix_shop_carts_order_id", "shop_carts")
    op.drop_index("ix_shop_carts_open_per_user_store", "shop_carts")
    op.drop_table("shop_carts")
