"""``POST /api/v1/sessions``: a guest identity for a browser, as a signed bearer token, and
the user's row (name, and the address their mail goes to, if they gave one)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Final

import msgspec
from litestar import Controller, post
from litestar.params import JSONBody

from app.auth import issue_token
from app.mail.users import MAX_EMAIL, create_user
from app.resources import AppResources
from app.routes.fields import END_OF_TEXT, DisplayName, Text, invalid_field

_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PLAUSIBLE_EMAIL: Final = re.compile(
    rf"^[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~-]+)*"
    rf"@{_LABEL}(?:\.{_LABEL})+{END_OF_TEXT}"
)
"""An address mail can be sent to without SMTPUTF8: a dot-atom local part, then a domain of
two or more labels (an international domain in its ``xn--`` form). Not every address RFC
5322 allows (quoted local parts are refused), but every one a person types in practice."""

MAX_LOCAL_PART: Final = 64


def checked_email(value: str) -> str:
    """The address as stored (surrounding spaces dropped); 422 ``validation_error`` naming
    ``email`` if it isn't a plausible one. The field's type has already refused control
    characters and anything past 1,000 characters (400)."""
    address = value.strip()
    local, _, _ = address.partition("@")
    if len(address) > MAX_EMAIL or len(local) > MAX_LOCAL_PART:
        raise invalid_field("email", f"must be at most {MAX_EMAIL} characters")
    if not _PLAUSIBLE_EMAIL.match(address):
        raise invalid_field("email", "must be an email address like ana@example.com")
    return address


def checked_name(value: str) -> str:
    """Inner runs of spaces folded; 422 naming ``display_name`` if nothing is left."""
    name = " ".join(value.split())
    if not name:
        raise invalid_field("display_name", "must not be blank")
    return name


class SessionCreate(msgspec.Struct, forbid_unknown_fields=True):
    display_name: DisplayName
    email: Text | None = None


class SessionIssued(msgspec.Struct):
    user_id: str
    token: str
    expires_at: datetime


class SessionController(Controller):
    path = "/api/v1/sessions"
    tags = ["identity"]  # noqa: RUF012

    @post("/")
    async def create_session(
        self, data: JSONBody[SessionCreate], resources: AppResources
    ) -> SessionIssued:
        """Start a guest identity with a display name (and, optionally, the email address
        order mail goes to); the token goes in ``Authorization``."""
        name = checked_name(data.display_name)
        email = None if data.email is None else checked_email(data.email)
        issued = issue_token(resources.jwt_secret, display_name=name)
        await create_user(resources.engine, issued.user_id, name, email)
        return SessionIssued(
            user_id=issued.user_id, token=issued.token, expires_at=issued.expires_at
        )
