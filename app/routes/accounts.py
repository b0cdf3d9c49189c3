"""``POST /api/v1/accounts`` and ``POST /api/v1/sessions/password``: an account with an email
and a password, and signing in with them (API.md § Accounts and roles).

Both are public (no token needed, like ``POST /api/v1/sessions``) and both answer a session:
signing up signs in at once. The token is a guest's token in every way but where its id and
name come from: the account's row. A password is never echoed: refusals name the field and
the rule, not the value, and no log line carries a request body.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

import msgspec
from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.middleware.rate_limit import get_remote_address
from litestar.params import JSONBody

from app.auth import issue_token
from app.errors import ApiError
from app.resources import AppResources
from app.routes.fields import DisplayName, Text, invalid_field
from app.routes.sessions import SessionIssued, checked_email, checked_name
from app.use_cases import accounts as use
from app.use_cases.accounts import Accounts

MIN_PASSWORD: Final = 8
MAX_PASSWORD: Final = 256

Password = Annotated[str, msgspec.Meta(max_length=1000)]
"""Any characters (a password is only ever hashed); bounded like free text, so a megabyte
is a 400 before any hashing. Sign-up's own rule, :data:`MIN_PASSWORD` to
:data:`MAX_PASSWORD`, is a 422 naming ``password``."""

AppAccounts = NamedDependency[Accounts]


class AccountCreate(msgspec.Struct, forbid_unknown_fields=True):
    email: Text
    password: Password
    display_name: DisplayName


class AccountCreated(msgspec.Struct):
    """The account, and a session for it (the same fields ``POST /api/v1/sessions`` answers),
    so the page signs straight in."""

    user_id: str
    email: str
    display_name: str
    token: str
    expires_at: datetime


class PasswordSignIn(msgspec.Struct, forbid_unknown_fields=True):
    email: Text
    password: Password


def checked_password(value: str) -> str:
    """422 ``validation_error`` naming ``password`` (never quoting it) unless it has
    :data:`MIN_PASSWORD` to :data:`MAX_PASSWORD` characters."""
    if not MIN_PASSWORD <= len(value) <= MAX_PASSWORD:
        raise invalid_field("password", f"must have {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return value


class AccountController(Controller):
    path = "/api/v1"
    tags = ["identity"]  # noqa: RUF012
    opt = {"exclude_from_auth": True}  # noqa: RUF012  (public, as POST /api/v1/sessions is)

    @post("/accounts")
    async def create_account(
        self, data: JSONBody[AccountCreate], resources: AppResources, accounts: AppAccounts
    ) -> AccountCreated:
        """Sign up: an account with an email (one account per address, whatever its case)
        and a password of 8 to 256 characters, hashed with Argon2id; answers a session for
        it. 409 ``email_taken`` if an account has the address already."""
        command = use.CreateAccount(
            email=checked_email(data.email),
            password=checked_password(data.password),
            display_name=checked_name(data.display_name),
        )
        account = await use.create_account(command, accounts)
        issued = issue_token(
            resources.jwt_secret, display_name=account.display_name, user_id=account.user_id
        )
        return AccountCreated(
            user_id=account.user_id,
            email=account.email,
            display_name=account.display_name,
            token=issued.token,
            expires_at=issued.expires_at,
        )

    @post("/sessions/password")
    async def sign_in_with_password(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[PasswordSignIn],
        resources: AppResources,
        accounts: AppAccounts,
    ) -> SessionIssued:
        """Sign in with an account's email and password: a token like a guest's, named as
        the account is. 401 ``bad_credentials`` for an unknown email or a wrong password
        alike; 429 ``rate_limited`` (``Retry-After``) past 10 failed sign-ins for the email
        or 30 sign-ins from the address in a minute."""
        command = use.SignIn(
            email=data.email, password=data.password, address=get_remote_address(request)
        )
        try:
            account = await use.sign_in(command, accounts)
        except use.SignInsLimitedError as limited:
            raise ApiError(
                429,
                limited.code,
                limited.detail,
                headers={"Retry-After": str(limited.retry_after)},
            ) from None
        issued = issue_token(
            resources.jwt_secret, display_name=account.display_name, user_id=account.user_id
        )
        return SessionIssued(
            user_id=issued.user_id, token=issued.token, expires_at=issued.expires_at
        )
