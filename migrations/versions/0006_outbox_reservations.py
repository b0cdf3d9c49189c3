"""Outbox reservations: the committing process projects its own events at once

Revision ID: 0006_outbox_reservations
Revises: 0005_outbox_notify_trigger
Create Date: 2026-11-29 23:40:00

A command's events are now handed to the projection by the process that committed them,
right after the commit (``app.dispatcher.OutboxDispatcher.relay``), which spares them the
wake-up and the claim. Such a row is inserted with ``reserved_until`` (a couple of seconds
ahead): no dispatcher claims it before then, and it sends no ``NOTIFY``. If the committing
process marks it dispatched, that is the end of it; if the process died or Redis failed, the
reservation runs out and the next sweep of any process dispatches it, as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_outbox_reservations"
down_revision = "0005_outbox_notify_trigger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("reserved_until", sa.DateTime(timezone=True)))
    op.execute("DROP TRIGGER outbox_notify ON outbox")
    op.execute(
        """
        CREATE OR REPLACE FUNCTION teamcart_outbox_notify() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (SELECT 1 FROM inserted WHERE reserved_until IS NULL) THEN
                PERFORM pg_notify('teamcart_outbox', '');
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
        REFERENCING NEW TABLE AS inserted
        FOR EACH STATEMENT EXECUTE FUNCTION teamcart_outbox_notify()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER outbox_notify ON outbox")
    op.execute(
        """
        CREATE OR REPLACE FUNCTION teamcart_outbox_notify() RETURNS trigger
        LANGUAGE plpgsql AS $$
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
    op.drop_column("outbox", "reserved_until")
