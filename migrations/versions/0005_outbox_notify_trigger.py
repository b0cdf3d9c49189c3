"""Outbox inserts wake the dispatchers: NOTIFY from a statement-level trigger

Revision ID: 0005_outbox_notify_trigger
Revises: 0004_refund_requests
Create Date: 2026-11-29 21:50:00

Before this, ``append_events`` sent ``SELECT pg_notify(...)`` itself: one more round trip for
every command. A trigger sends it inside the INSERT statement, and for any writer of the
outbox. PostgreSQL delivers it at commit (only if the transaction commits) and folds
identical notifications of one transaction into one.
"""

from __future__ import annotations

from alembic import op

revision = "0005_outbox_notify_trigger"
down_revision = "0004_refund_requests"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION teamcart_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('teamcart_outbox', '');
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
        FOR EACH STATEMENT EXECUTE FUNCTION teamcart_outbox_notify()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER outbox_notify ON outbox")
    op.execute("DROP FUNCTION teamcart_outbox_notify()")
