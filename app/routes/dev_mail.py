"""``GET /dev/mail``: what the embedded SMTP catcher caught, newest first (``app.mail.catcher``).

Only while the catcher runs (``teamcart serve`` with no ``TEAMCART_SMTP_URL``); otherwise the
route is 404, as any unknown path. No token: like the catcher itself, it is for a developer's
own machine, and a server that sends real mail never serves it.
"""

from __future__ import annotations

import anyio
import msgspec
from litestar import Controller, get

from app.errors import ApiError
from app.mail.catcher import CaughtMail, caught_mail
from app.resources import AppResources


class CaughtMailList(msgspec.Struct):
    items: list[CaughtMail]


class DevMailController(Controller):
    path = "/dev/mail"
    tags = ["development"]  # noqa: RUF012

    @get("/", opt={"exclude_from_auth": True})
    async def list_caught_mail(self, resources: AppResources) -> CaughtMailList:
        """The last 100 mails the embedded catcher received, newest first; 404 unless it
        runs. Each item is one recipient's copy: ``to``, ``subject``, ``kind``, ``text``,
        ``sent_at`` (when the catcher received it), and its ``message_id`` and ``html``."""
        folder = resources.settings.mail_catcher_dir
        if folder is None:
            raise ApiError(404, "not_found", "no mail catcher runs: mail goes to TEAMCART_SMTP_URL")
        return CaughtMailList(items=await anyio.to_thread.run_sync(caught_mail, folder))
