"""Accounts: a user with an email and a password

Revision ID: 0015_accounts
Revises: 0014_order_lifecycle
Create Date: 2026-12-01 17:00:00

A row of ``users`` is an account when it has a ``password_hash`` (an Argon2id hash in
argon2-cffi's encoded form, parameters and salt included); every other row is a guest's, who
may have given an address for mail. Among accounts an address is taken once, whatever its
case: the unique index is on ``lower(email)`` and only over accounts, so a guest who gave the
same address, or two guests who did, never stop anyone from signing up. The same expression
and condition serve the sign-in's lookup.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_accounts"
down_revision = "0014_order_lifecycle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("password_hash", sa.Text(), nullable=True))
    op.create_index(
        "ix_users_account_email",
        "users",
        [sa.text("lower(email)")],
        unique=True,
        postgresql_where=sa.text("password_hash IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_users_account_email", table_name="users")
    op.drop_column("users", "password_hash")
