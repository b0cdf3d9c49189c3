"""Alembic migrations: the only way the database schema changes.

Run them with ``teamcart migrate`` (``teamcart serve`` does so before accepting traffic). New
revisions go in ``versions/`` with a short descriptive slug and an explicit downgrade.
"""
