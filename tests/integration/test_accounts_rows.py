"""The accounts' rows on PostgreSQL keep the contract the unit tests' fake keeps."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.persistence.accounts import SqlAccounts
from app.use_cases.accounts import AccountRows
from tests.unit.test_accounts import AccountRowsContract


class TestSqlAccountRows(AccountRowsContract):
    @pytest.fixture
    def rows(self, engine: AsyncEngine) -> AccountRows:
        return SqlAccounts(engine)
