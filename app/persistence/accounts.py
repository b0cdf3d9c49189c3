"""Accounts: the rows of ``users`` that carry a password hash (migration 0015).

A guest's row (``app.mail.users``) has a name and maybe an address; an account's row has a
password hash too, and its address is how its owner signs in. Among accounts an address is
taken once whatever its case (the unique index on ``lower(email)`` over rows with a hash), so
the insert's ``ON CONFLICT`` on that index is the check, atomic under concurrent sign-ups, and
the lookup uses the same expression and condition. Each statement goes to the asyncpg
connection alone, as ``app.mail.users`` does: a sign-in is one round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine

from app.persistence import database


@dataclass(frozen=True, slots=True)
class StoredAccount:
    """An account as its row holds it; the hash never leaves the sign-in's handler."""

    user_id: str
    display_name: str
    email: str
    password_hash: str


_ADD: Final = """
INSERT INTO users (id, display_name, email, password_hash)
VALUES (CAST($1 AS uuid), $2, $3, $4)
ON CONFLICT (lower(email)) WHERE password_hash IS NOT NULL DO NOTHING
RETURNING id
"""

_BY_EMAIL: Final = """
SELECT id::text AS id, display_name, email, password_hash FROM users
WHERE lower(email) = lower($1) AND password_hash IS NOT NULL
"""

# Only if the row still has the hash the sign-in verified: a password changed meanwhile wins.
_REPLACE_HASH: Final = """
UPDATE users SET password_hash = $3, updated_at = now()
WHERE id = CAST($1 AS uuid) AND password_hash = $2
"""


class SqlAccounts:
    """The accounts on PostgreSQL (``app.use_cases.accounts.AccountRows``)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(self, *, user_id: str, display_name: str, email: str, password_hash: str) -> bool:
        async with self._engine.connect() as conn:
            row = await database.fetchrow(conn, _ADD, user_id, display_name, email, password_hash)
        return row is not None

    async def by_email(self, email: str) -> StoredAccount | None:
        async with self._engine.connect() as conn:
            row = await database.fetchrow(conn, _BY_EMAIL, email)
        if row is None:
            return None
        return StoredAccount(
            user_id=row["id"],
            display_name=row["display_name"],
            email=row["email"],
            password_hash=row["password_hash"],
        )

    async def replace_hash(self, user_id: str, *, old: str, new: str) -> None:
        async with self._engine.connect() as conn:
            await database.fetch(conn, _REPLACE_HASH, user_id, old, new)
