"""Order lifecycle: kinds, history, tracking, store staff, partial refunds

Revision ID: 0014_order_lifecycle
Revises: 0013_mail
Create Date: 2026-12-01 16:00:00

An order now moves through fulfilment (``domain.order.TRANSITIONS``): it keeps its
``history`` (each status, when, by whom) and, once shipped, its ``tracking``. It is a
``group`` order (a confirmed TeamCart) or, later, a ``single`` one; it names its store as it
was called when ordered. Each payment on it shows who made it and how much of it went back
(``refunded_minor``). Staff of a store (``store_staff``) read and move its orders.

Refund requests were one per PaymentIntent (the full refund of a cancel or an expiry); a
store may now give part of a payment back, more than once, so each request has an ``id`` of
its own: the intent's id for the full refund (so every existing request keeps its key and
its Stripe idempotency key), ``partial-<uuid>`` for a partial one, which carries its amount.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0014_order_lifecycle"
down_revision = "0013_mail"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "orders", sa.Column("kind", sa.String(8), server_default=sa.text("'group'"), nullable=False)
    )
    op.add_column(
        "orders", sa.Column("store_name", sa.Text(), server_default=sa.text("''"), nullable=False)
    )
    op.add_column(
        "orders", sa.Column("history", JSONB(), server_default=sa.text("'[]'"), nullable=False)
    )
    op.add_column("orders", sa.Column("tracking", JSONB(), nullable=True))
    op.execute(
        """
        UPDATE orders SET
          store_name = stores.name,
          history = jsonb_build_array(jsonb_build_object(
            'status', 'placed', 'at', to_char(orders.created_at AT TIME ZONE 'UTC',
                                              'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
            'by_role', 'host', 'reason', NULL))
        FROM stores WHERE stores.id = orders.store_id
        """
    )
    op.create_index("ix_orders_store_created_at_id", "orders", ["store_id", "created_at", "id"])
    op.add_column(
        "order_payments",
        sa.Column("display_name", sa.Text(), server_default=sa.text("''"), nullable=False),
    )
    op.add_column(
        "order_payments",
        sa.Column("refunded_minor", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.execute(
        """
        UPDATE order_payments SET display_name = teamcart_members.display_name
        FROM orders, teamcart_members
        WHERE orders.id = order_payments.order_id
          AND teamcart_members.cart_id = orders.cart_id
          AND teamcart_members.user_id = order_payments.user_id
        """
    )
    op.create_index("ix_order_payments_reference", "order_payments", ["reference"])
    op.create_table(
        "store_staff",
        sa.Column("store_id", UUID(as_uuid=False), sa.ForeignKey("stores.id"), primary_key=True),
        sa.Column("user_id", UUID(as_uuid=False), primary_key=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )
    op.create_index("ix_store_staff_user_id", "store_staff", ["user_id"])
    op.add_column("refund_requests", sa.Column("id", sa.Text(), nullable=True))
    op.add_column(
        "refund_requests",
        sa.Column("partial", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column("refund_requests", sa.Column("refund_id", sa.Text(), nullable=True))
    op.execute("UPDATE refund_requests SET id = payment_intent_id")
    op.alter_column("refund_requests", "id", nullable=False)
    op.drop_constraint("pk_refund_requests", "refund_requests", type_="primary")
    op.create_primary_key("pk_refund_requests", "refund_requests", ["id"])
    op.create_index(
        "ix_refund_requests_payment_intent_id", "refund_requests", ["payment_intent_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_refund_requests_payment_intent_id", "refund_requests")
    op.execute("DELETE FROM refund_requests WHERE partial")
    op.drop_constraint("pk_refund_requests", "refund_requests", type_="primary")
    op.create_primary_key("pk_refund_requests", "refund_requests", ["payment_intent_id"])
    op.drop_column("refund_requests", "refund_id")
    op.drop_column("refund_requests", "partial")
    op.drop_column("refund_requests", "id")
    op.drop_index("ix_store_staff_user_id", "store_staff")
    op.drop_table("store_staff")
    op.drop_index("ix_order_payments_reference", "order_payments")
    op.drop_column("order_payments", "refunded_minor")
    op.drop_column("order_payments", "display_name")
    op.drop_index("ix_orders_store_created_at_id", "orders")
    op.drop_column("orders", "tracking")
    op.drop_column("orders", "history")
    op.drop_column("orders", "store_name")
    op.drop_column("orders", "kind")
