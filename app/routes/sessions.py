"""``POST /api/v1/sessions``: a guest identity for a browser, as a signed bearer token."""

from __future__ import annotations

from datetime import datetime

import msgspec
from litestar import Controller, post
from litestar.params import JSONBody

from app.auth import issue_token
from app.resources import AppResources
from app.routes.fields import DisplayName, invalid_field


class SessionCreate(msgspec.Struct, forbid_unknown_fields=True):
    display_name: DisplayName


class SessionIssued(msgspec.Struct):
    user_id: str
    token: str
    expires_at: datetime


class SessionController(Controller):
    path = "/api/v1/sessions"
    tags = ["identity"]  # noqa: RUF012

    @post("/", sync_to_thread=False)
    def create_session(
        self, data: JSONBody[SessionCreate], resources: AppResources
    ) -> SessionIssued:
        """Start a guest identity with a display name; the token goes in ``Authorization``."""
        name = " ".join(data.display_name.split())
        if not name:
            raise invalid_field("display_name", "must not be blank")
        issued = issue_token(resources.jwt_secret, display_name=name)
        return SessionIssued(
            user_id=issued.user_id, token=issued.token, expires_at=issued.expires_at
        )
