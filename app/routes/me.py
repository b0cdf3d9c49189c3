"""``PATCH /api/v1/me``: the caller changes the name and address their mail uses.

The row in ``users`` changes; the token does not (it keeps the name it was issued with, which
is what carts show), so the answer is the row, not the token's view of the caller.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from litestar import Controller, Request, patch
from litestar.params import JSONBody
from litestar.security.jwt import Token
from litestar.status_codes import HTTP_200_OK

from app.auth import Principal
from app.errors import ApiError
from app.mail.users import User, update_user
from app.resources import AppResources
from app.routes.fields import DisplayName, Text
from app.routes.sessions import checked_email, checked_name

AuthRequest = Request[Principal, Token, Any]


class MeUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Fields left out keep their value; ``email: null`` removes the address."""

    display_name: DisplayName | msgspec.UnsetType = msgspec.UNSET
    email: Text | msgspec.UnsetType | None = msgspec.UNSET


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


class MeController(Controller):
    path = "/api/v1/me"
    tags = ["identity"]  # noqa: RUF012

    @patch("/", status_code=HTTP_200_OK)
    async def update_me(
        self, request: AuthRequest, data: JSONBody[MeUpdate], resources: AppResources
    ) -> User:
        """Change the caller's display name or email (or both), as order mail uses them."""
        caller = request.user
        if not _is_uuid(caller.user_id):  # ``teamcart token --user-id`` takes any text
            raise ApiError(422, "validation_error", "this token's user id is not a UUID")
        name = None if data.display_name is msgspec.UNSET else checked_name(data.display_name)
        email_given = data.email is not msgspec.UNSET
        email = None if not isinstance(data.email, str) else checked_email(data.email)
        return await update_user(
            resources.engine,
            caller.user_id,
            token_name=caller.display_name,
            display_name=name,
            email=email,
            email_given=email_given,
        )
