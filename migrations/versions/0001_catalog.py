"""Catalog: stores, products with option groups and stock, coupons.

Revision ID: 0001_catalog
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0001_catalog"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stores",
        sa.Column("id", UUID(as_uuid=False), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("delivery_fee_minor", sa.BigInteger, nullable=False),
        sa.Column("tax_rate_bps", sa.Integer, nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.PrimaryKeyConstraint("id", name="pk_stores"),
        sa.CheckConstraint("delivery_fee_minor >= 0", name="ck_stores_delivery_fee_not_negative"),
        sa.CheckConstraint("tax_rate_bps BETWEEN 0 AND 10000", name="ck_stores_tax_rate_in_range"),
    )
    op.create_table(
        "products",
        sa.Column("id", UUID(as_uuid=False), primary_key=True),
        sa.Column("store_id", UUID(as_uuid=False), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("price_minor", sa.BigInteger, nullable=False),
        sa.Column("stock", sa.Integer, nullable=True),
        sa.Column("option_groups", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.PrimaryKeyConstraint("id", name="pk_products"),
        sa.ForeignKeyConstraint(["store_id"], ["stores.id"], name="fk_products_store_id_stores"),
        sa.CheckConstraint("price_minor >= 0", name="ck_products_price_not_negative"),
        sa.CheckConstraint("stock IS NULL OR stock >= 0", name="ck_products_stock_not_negative"),
    )
    op.create_index("ix_products_store_id", "products", ["store_id"])
    op.create_table(
        "coupons",
        sa.Column("id", UUID(as_uuid=False), primary_key=True),
        sa.Column("store_id", UUID(as_uuid=False), nullable=False),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("value", sa.BigInteger, nullable=False),
        sa.Column("min_subtotal_minor", sa.BigInteger, nullable=False),
        sa.Column("max_uses", sa.Integer, nullable=True),
        sa.Column("times_used", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.PrimaryKeyConstraint("id", name="pk_coupons"),
        sa.ForeignKeyConstraint(["store_id"], ["stores.id"], name="fk_coupons_store_id_stores"),
        sa.UniqueConstraint("store_id", "code", name="uq_coupons_store_id_code"),
        sa.CheckConstraint("kind IN ('percent', 'fixed')", name="ck_coupons_kind_known"),
        sa.CheckConstraint("value > 0", name="ck_coupons_value_positive"),
        sa.CheckConstraint(
            "max_uses IS NULL OR times_used <= max_uses", name="ck_coupons_uses_within_limit"
        ),
    )


def downgrade() -> None:
    op.drop_table("coupons")
    op.drop_index("ix_products_store_id", table_name="products")
    op.drop_table("products")
    op.drop_table("stores")
