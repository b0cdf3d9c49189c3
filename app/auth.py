"""Identity: signed JWT bearer tokens for guests and admins (Litestar's JWT auth).

A guest identity is stateless: ``POST /api/v1/sessions`` mints a token whose subject is a new
user id and which carries the display name. Admin tokens carry the ``admin`` role and come
only from the command line (``teamcart token --admin``). Every ``/api/v1`` route except the
session endpoint and the Stripe webhook requires a token.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.authentication import AuthenticationResult
from litestar.security.jwt import JWTAuth, JWTAuthenticationMiddleware, Token

from app.errors import ApiError

ADMIN_ROLE = "admin"
STAFF_ROLE = "staff"
TOKEN_LIFETIME = timedelta(days=7)
MAX_DISPLAY_NAME = 60
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# Paths reachable without a token (regular expressions matched against the path).
PUBLIC_PATHS = (
    "^/$",
    "^/join/",
    "^/static/",
    "^/health/",
    "^/metrics",
    "^/schema",
    "^/favicon",
    "^/api/v1/sessions$",
    "^/api/v1/webhooks/",
    "^/ws/",  # WebSockets authenticate in their own handshake (token parameter or message)
)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user id, the name they chose, and their roles."""

    user_id: str
    display_name: str
    roles: frozenset[str] = frozenset()
    staff_of: frozenset[str] = frozenset()
    """Stores whose staff the token says the caller is (``teamcart token --staff``); staff
    added through the API are found in ``store_staff`` instead."""

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles


def principal_from_token(token: Token) -> Principal:
    """The caller a verified token names. Its display name goes into every cart they open or
    join, so control characters are dropped: tokens issued before the sessions route refused
    them (or by ``teamcart token --name``) carry them for their whole life."""
    extras = token.extras or {}
    roles = extras.get("roles") or []
    name = _CONTROL_CHARACTERS.sub("", str(extras.get("name") or "")).strip()
    return Principal(
        user_id=token.sub,
        display_name=name or "Guest",
        roles=frozenset(str(role) for role in roles),
        staff_of=frozenset(str(store) for store in extras.get("staff_of") or []),
    )


async def _retrieve_principal(token: Token, _: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    return principal_from_token(token)


REMEMBERED_TOKENS = 10_000
"""Verified tokens an app keeps (the oldest is forgotten first)."""


class VerifiedTokens:
    """Tokens verified so far by one app, by their exact text, each until it expires."""

    def __init__(self, capacity: int = REMEMBERED_TOKENS) -> None:
        self.capacity = capacity
        self._results: dict[str, tuple[AuthenticationResult, float]] = {}

    def get(self, encoded_token: str) -> AuthenticationResult | None:
        remembered = self._results.get(encoded_token)
        if remembered is None or time.time() >= remembered[1]:
            return None
        return remembered[0]

    def remember(self, encoded_token: str, result: AuthenticationResult) -> None:
        if len(self._results) >= self.capacity:
            del self._results[next(iter(self._results))]
        self._results[encoded_token] = (result, result.auth.exp.timestamp())


class RememberingJWTMiddleware(JWTAuthenticationMiddleware):
    """Litestar's JWT middleware, verifying each distinct token once per app.

    A member's browser sends the same token with every request; verifying it (base64,
    JSON, HMAC, claims) cost about half a millisecond of CPU each time, an eighth of a whole
    cart command (ADR 0012). A token verified once is remembered by its exact text until it
    expires: the text is signed, so the same text can only be the same verified token, and
    an expired one is verified again (and refused). Litestar builds one middleware per
    route, so the tokens live on the class :func:`build_jwt_auth` makes for its app. Nothing
    here revokes tokens; a revocation check, if one is added, must run on every request.
    """

    verified: VerifiedTokens

    async def authenticate_token(
        self, encoded_token: str, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        remembered = self.verified.get(encoded_token)
        if remembered is not None:
            return remembered
        result = await super().authenticate_token(encoded_token, connection)
        self.verified.remember(encoded_token, result)
        return result


def build_jwt_auth(secret: str) -> JWTAuth[Principal, Token]:
    """The Litestar JWT config that turns ``Authorization: Bearer`` into ``request.user``."""

    class AppJWTMiddleware(RememberingJWTMiddleware):
        verified = VerifiedTokens()  # this app's, shared by its routes

    return JWTAuth[Principal, Token](
        token_secret=secret,
        retrieve_user_handler=_retrieve_principal,
        exclude=list(PUBLIC_PATHS),
        default_token_expiration=TOKEN_LIFETIME,
        authentication_middleware_class=AppJWTMiddleware,
    )


@dataclass(frozen=True, slots=True)
class IssuedToken:
    user_id: str
    token: str
    expires_at: datetime


def issue_token(
    secret: str,
    *,
    display_name: str,
    user_id: str | None = None,
    admin: bool = False,
    staff_of: str | None = None,
    lifetime: timedelta = TOKEN_LIFETIME,
) -> IssuedToken:
    """Mint a signed token; used by the sessions route and ``teamcart token`` (``staff_of``:
    the store whose orders it reads and moves)."""
    subject = user_id or str(uuid.uuid4())
    expires_at = (datetime.now(UTC) + lifetime).replace(microsecond=0)
    extras: dict[str, Any] = {"name": display_name}
    if admin:
        extras["roles"] = [ADMIN_ROLE]
    if staff_of is not None:
        extras["roles"] = [*extras.get("roles", []), STAFF_ROLE]
        extras["staff_of"] = [str(uuid.UUID(staff_of))]
    token = Token(sub=subject, exp=expires_at, extras=extras)
    return IssuedToken(user_id=subject, token=token.encode(secret, "HS256"), expires_at=expires_at)


def admin_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Route guard: 403 ``admin_only`` unless the token carries the admin role."""
    user = connection.user
    if not isinstance(user, Principal) or not user.is_admin:
        raise ApiError(403, "admin_only", "this action needs an admin token")
