"""Confirm reminders: when the host of a ready cart was reminded to confirm it

Revision ID: 0011_confirm_reminders
Revises: 0010_coupon_reservations
Create Date: 2026-12-01 11:15:00

A ready cart expires, with refunds, once its confirm window is over; a while before, the
host's sockets get a reminder. The column records that it went out, so processes sweeping at
the same time send it once.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_confirm_reminders"
down_revision = "0010_coupon_reservations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "teamcarts", sa.Column("confirm_reminded_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("teamcarts", "confirm_reminded_at")
