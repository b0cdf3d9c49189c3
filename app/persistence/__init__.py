"""PostgreSQL persistence: the engine, the table definitions and the repositories.

Repositories translate rows to domain objects by hand; domain classes are never ORM-mapped.
The schema itself changes only through the Alembic migrations in ``migrations/``; the tables
here describe it for queries, and a test checks the two agree.
"""
