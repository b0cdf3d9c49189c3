"""Reminder mail: ``emails`` rows about a cart rather than an order event

Revision ID: 0020_reminder_mail
Revises: 0019_connect
Create Date: 2026-12-03 09:00:00

Until now every mail was planned from an order's outbox record, so ``outbox_id`` and
``order_id`` were required. A reminder (API.md § Group payment options) is planned by the
sweeper for a cart that has no order yet, once per (cart, member, what, deadline) claimed in
``cart_reminders``: it has neither. Such rows name their cart in ``cart_id`` instead, and the
check keeps every row about something. Order mail keeps its unique key; NULL ``outbox_id``s
never collide there, and a reminder's id (UUIDv5 of its claim) is its idempotency key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_reminder_mail"
down_revision = "0019_connect"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("emails", "outbox_id", existing_type=sa.BigInteger(), nullable=True)
    op.alter_column("emails", "order_id", existing_type=sa.UUID(as_uuid=False), nullable=True)
    op.add_column("emails", sa.Column("cart_id", sa.UUID(as_uuid=False), nullable=True))
    op.create_check_constraint(
        op.f("ck_emails_about_an_order_or_a_cart"),
        "emails",
        "(outbox_id IS NOT NULL AND order_id IS NOT NULL) OR cart_id IS NOT NULL",
    )


def downgrade() -> None:
    op.execute("DELETE FROM emails WHERE order_id IS NULL OR outbox_id IS NULL")
    op.drop_constraint(op.f("ck_emails_about_an_order_or_a_cart"), "emails", type_="check")
    op.drop_column("emails", "cart_id")
    op.alter_column("emails", "order_id", existing_type=sa.UUID(as_uuid=False), nullable=False)
    op.alter_column("emails", "outbox_id", existing_type=sa.BigInteger(), nullable=False)
