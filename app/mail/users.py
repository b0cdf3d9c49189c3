"""The ``users`` table: the name and, if given, the address a person chose (migration 0013).

A guest's identity is still their token (``app.auth``); this row is what mail reads, written
when the session is created and changed by ``PATCH /api/v1/me``. The token keeps the name it
was issued with. Each write is one statement on the asyncpg driver, sent alone (no BEGIN or
COMMIT): creating a session stays one round trip more than it was.
"""

from __future__ import annotations

from typing import Final

import asyncpg
import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine

from app.failures import ConflictError
from app.persistence import database

MAX_EMAIL: Final = 254
"""The longest address SMTP carries (RFC 5321's path limit, less the angle brackets)."""


ACCOUNT_EMAIL_INDEX: Final = "ix_users_account_email"
"""One account per address, whatever its case (``app.persistence.accounts``)."""


class User(msgspec.Struct, frozen=True):
    """``PATCH /api/v1/me``'s answer, as the row is after the change."""

    user_id: str
    display_name: str
    email: str | None


_CREATE: Final = """
INSERT INTO users (id, display_name, email) VALUES (CAST($1 AS uuid), $2, $3)
ON CONFLICT (id) DO NOTHING
"""

# An upsert: fields not given keep the row's value (or, for a new row, the token's name and
# no address). $4 and $5 say whether the name and the address were given.
_UPDATE: Final = """
INSERT INTO users AS u (id, display_name, email) VALUES (CAST($1 AS uuid), $2, $3)
ON CONFLICT (id) DO UPDATE SET
    display_name = CASE WHEN CAST($4 AS boolean) THEN EXCLUDED.display_name
                        ELSE u.display_name END,
    email = CASE WHEN CAST($5 AS boolean) THEN EXCLUDED.email ELSE u.email END,
    updated_at = now()
RETURNING id::text AS id, display_name, email
"""


async def create_user(
    engine: AsyncEngine, user_id: str, display_name: str, email: str | None
) -> None:
    """The row of a new session's user (a new id: an existing row is left as it is)."""
    async with engine.connect() as conn:
        await database.fetch(conn, _CREATE, user_id, display_name, email)


async def update_user(
    engine: AsyncEngine,
    user_id: str,
    *,
    token_name: str,
    display_name: str | None,
    email: str | None,
    email_given: bool,
) -> User:
    """Change the caller's name (``display_name`` not None) and address (``email_given``:
    ``email`` None clears it), creating the row, named as the token is, if there is none.
    An account can't take the address of another account (409 ``email_taken``, migration
    0015's index); a guest may give any."""
    async with engine.connect() as conn:
        try:
            row = await database.fetchrow(
                conn,
                _UPDATE,
                user_id,
                display_name if display_name is not None else token_name,
                email,
                display_name is not None,
                email_given,
            )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != ACCOUNT_EMAIL_INDEX:
                raise
            raise ConflictError(
                "email_taken", "an account with this email exists already"
            ) from None
    assert row is not None  # an upsert returns its row
    return User(user_id=row["id"], display_name=row["display_name"], email=row["email"])
