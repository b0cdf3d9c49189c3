"""The Alembic migrations build the schema the code describes, and undo it completely."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from app.persistence import schema
from app.persistence.database import create_engine
from app.persistence.tables import metadata
from tests.services import fresh_database


def _schema_state(url: str) -> tuple[list[object], set[str]]:
    def read(connection: Connection) -> tuple[list[object], set[str]]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata)), set(inspect(connection).get_table_names())

    async def run() -> tuple[list[object], set[str]]:
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(read)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_upgrade_from_empty_matches_tables_then_downgrade_to_base(postgres_server_url: str) -> None:
    with fresh_database(postgres_server_url) as url:
        schema.upgrade(url)
        differences, tables = _schema_state(url)
        assert differences == []
        assert set(metadata.tables) <= tables

        schema.downgrade(url, "base")
        _, tables = _schema_state(url)
        assert tables <= {"alembic_version"}

        schema.upgrade(url)  # and back up again: downgrades leave nothing behind that blocks it
        assert _schema_state(url)[0] == []
