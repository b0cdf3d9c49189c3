"""Mail: users with an email, and the emails planned from the order outbox

Revision ID: 0013_mail
Revises: 0012_tip_cap
Create Date: 2026-12-02 09:00:00

Identities were guest tokens only; ``users`` keeps the name and (optional) address a person
gave, so mail has somewhere to go. ``emails`` holds one row per (outbox event, recipient,
kind), planned by the outbox consumer and sent by the mailer (ADR 0013): the unique key makes
a replayed event plan nothing new, and the row's status makes a sent mail go once.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_mail"
down_revision = "0012_tip_cap"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
    )
    op.create_table(
        "emails",
        sa.Column("id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("outbox_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("order_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("to_address", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("text_body", sa.Text(), nullable=False),
        sa.Column("html_body", sa.Text(), nullable=False),
        sa.Column(
            "status", sa.String(length=16), server_default=sa.text("'pending'"), nullable=False
        ),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'failed')", name=op.f("ck_emails_status_known")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_emails")),
        sa.UniqueConstraint(
            "outbox_id", "user_id", "kind", name="uq_emails_outbox_id_user_id_kind"
        ),
    )
    op.create_index(
        "ix_emails_pending",
        "emails",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index("ix_emails_order_id", "emails", ["order_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_emails_order_id", table_name="emails")
    op.drop_index("ix_emails_pending", table_name="emails")
    op.drop_table("emails")
    op.drop_table("users")
