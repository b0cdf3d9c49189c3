"""TeamCarts, orders, stock reservations, outbox, idempotency keys

Revision ID: 0002_teamcarts
Revises: 0001_catalog
Create Date: 2026-11-22 03:54:14.907813
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002_teamcarts"
down_revision = "0001_catalog"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sa.schema.CreateSequence(sa.Sequence("order_number_seq")))
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("request_hash", sa.Text(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("content_type", sa.Text(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("user_id", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(
        "ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"], unique=False
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("aggregate_type", sa.String(length=16), nullable=False),
        sa.Column("aggregate_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint(
            "aggregate_type",
            "aggregate_id",
            "version",
            name="uq_outbox_aggregate_type_aggregate_id_version",
        ),
    )
    op.create_index(
        "ix_outbox_undispatched",
        "outbox",
        ["id"],
        unique=False,
        postgresql_where=sa.text("dispatched_at IS NULL"),
    )
    op.create_table(
        "teamcarts",
        sa.Column("id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("store_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("delivery_fee_minor", sa.BigInteger(), nullable=False),
        sa.Column("tax_rate_bps", sa.Integer(), nullable=False),
        sa.Column("host_user_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("invite_code", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("quote_version", sa.Integer(), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tip_minor", sa.BigInteger(), nullable=False),
        sa.Column("coupon_code", sa.Text(), nullable=True),
        sa.Column("subtotal_minor", sa.BigInteger(), nullable=True),
        sa.Column("quote_delivery_fee_minor", sa.BigInteger(), nullable=True),
        sa.Column("tax_minor", sa.BigInteger(), nullable=True),
        sa.Column("quote_tip_minor", sa.BigInteger(), nullable=True),
        sa.Column("discount_minor", sa.BigInteger(), nullable=True),
        sa.Column("total_minor", sa.BigInteger(), nullable=True),
        sa.Column("order_id", sa.UUID(as_uuid=False), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('open', 'locked', 'ready_to_confirm', 'converted', 'expired', 'cancelled')",
            name=op.f("ck_teamcarts_status_known"),
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_teamcarts_version_positive")),
        sa.ForeignKeyConstraint(
            ["store_id"], ["stores.id"], name=op.f("fk_teamcarts_store_id_stores")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teamcarts")),
        sa.UniqueConstraint("invite_code", name=op.f("uq_teamcarts_invite_code")),
    )
    op.create_index(
        "ix_teamcarts_status_deadline", "teamcarts", ["status", "deadline"], unique=False
    )
    op.create_table(
        "orders",
        sa.Column("id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("number", sa.Text(), nullable=False),
        sa.Column("cart_id", sa.UUID(as_uuid=False), nullable=True),
        sa.Column("store_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("host_user_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("subtotal_minor", sa.BigInteger(), nullable=False),
        sa.Column("delivery_fee_minor", sa.BigInteger(), nullable=False),
        sa.Column("tax_minor", sa.BigInteger(), nullable=False),
        sa.Column("tip_minor", sa.BigInteger(), nullable=False),
        sa.Column("discount_minor", sa.BigInteger(), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("coupon_code", sa.Text(), nullable=True),
        sa.Column("delivery_address", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["cart_id"], ["teamcarts.id"], name=op.f("fk_orders_cart_id_teamcarts")
        ),
        sa.ForeignKeyConstraint(
            ["store_id"], ["stores.id"], name=op.f("fk_orders_store_id_stores")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("cart_id", name=op.f("uq_orders_cart_id")),
        sa.UniqueConstraint("number", name=op.f("uq_orders_number")),
    )
    op.create_index("ix_orders_created_at_id", "orders", ["created_at", "id"], unique=False)
    op.create_index(op.f("ix_orders_host_user_id"), "orders", ["host_user_id"], unique=False)
    op.create_table(
        "stock_reservations",
        sa.Column("cart_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("product_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_stock_reservations_quantity_positive")),
        sa.ForeignKeyConstraint(
            ["cart_id"],
            ["teamcarts.id"],
            name=op.f("fk_stock_reservations_cart_id_teamcarts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_stock_reservations_product_id_products")
        ),
        sa.PrimaryKeyConstraint("cart_id", "product_id", name=op.f("pk_stock_reservations")),
    )
    op.create_table(
        "teamcart_items",
        sa.Column("id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("cart_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("product_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("unit_price_minor", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("options", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.CheckConstraint(
            "quantity BETWEEN 1 AND 99", name=op.f("ck_teamcart_items_quantity_in_range")
        ),
        sa.ForeignKeyConstraint(
            ["cart_id"],
            ["teamcarts.id"],
            name=op.f("fk_teamcart_items_cart_id_teamcarts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_teamcart_items_product_id_products")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teamcart_items")),
    )
    op.create_index(op.f("ix_teamcart_items_cart_id"), "teamcart_items", ["cart_id"], unique=False)
    op.create_table(
        "teamcart_members",
        sa.Column("cart_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("user_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.Column("ready", sa.Boolean(), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("share_minor", sa.BigInteger(), nullable=True),
        sa.Column("payment_status", sa.String(length=16), nullable=False),
        sa.Column("payment_method", sa.String(length=8), nullable=True),
        sa.Column("payment_amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("payment_reference", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "share_minor IS NULL OR share_minor >= 0",
            name=op.f("ck_teamcart_members_share_not_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["cart_id"],
            ["teamcarts.id"],
            name=op.f("fk_teamcart_members_cart_id_teamcarts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("cart_id", "user_id", name=op.f("pk_teamcart_members")),
    )
    op.create_index("ix_teamcart_members_user_id", "teamcart_members", ["user_id"], unique=False)
    op.create_table(
        "order_lines",
        sa.Column("order_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("product_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("options", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("unit_price_minor", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("line_total_minor", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_order_lines_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_order_lines_product_id_products")
        ),
        sa.PrimaryKeyConstraint("order_id", "position", name=op.f("pk_order_lines")),
    )
    op.create_table(
        "order_payments",
        sa.Column("order_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("user_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_order_payments_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("order_id", "user_id", name=op.f("pk_order_payments")),
    )
    op.create_index("ix_order_payments_user_id", "order_payments", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_order_payments_user_id", table_name="order_payments")
    op.drop_table("order_payments")
    op.drop_table("order_lines")
    op.drop_index("ix_teamcart_members_user_id", table_name="teamcart_members")
    op.drop_table("teamcart_members")
    op.drop_index(op.f("ix_teamcart_items_cart_id"), table_name="teamcart_items")
    op.drop_table("teamcart_items")
    op.drop_table("stock_reservations")
    op.drop_index(op.f("ix_orders_host_user_id"), table_name="orders")
    op.drop_index("ix_orders_created_at_id", table_name="orders")
    op.drop_table("orders")
    op.drop_index("ix_teamcarts_status_deadline", table_name="teamcarts")
    op.drop_table("teamcarts")
    op.drop_index(
        "ix_outbox_undispatched",
        table_name="outbox",
        postgresql_where=sa.text("dispatched_at IS NULL"),
    )
    op.drop_table("outbox")
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.execute(sa.schema.DropSequence(sa.Sequence("order_number_seq")))
