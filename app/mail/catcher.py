"""The embedded SMTP catcher: with no ``TEAMCART_SMTP_URL``, ``teamcart serve`` runs an SMTP
server (aiosmtpd, in a thread of its own process) that accepts every message and keeps it,
one JSON file per recipient, in a folder under the data folder. ``GET /dev/mail`` lists that
folder, newest first, so every worker process sees every mail whichever one sent it, and a
restart keeps what was caught. Nothing is delivered anywhere: it is for trying the server
out and for tests (``tests/conftest.py`` runs one for the app it builds).

Each file is written whole under a temporary name and renamed into place, so a listing never
reads half a mail. Names start with the time received in nanoseconds: sorting them sorts
the mail.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import logging
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Final

import msgspec
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

LIST_LIMIT: Final = 100
"""The most ``GET /dev/mail`` lists (the newest)."""


class CaughtMail(msgspec.Struct, frozen=True):
    """One message as one recipient received it (``GET /dev/mail``'s items)."""

    to: str
    subject: str
    kind: str | None
    text: str
    sent_at: datetime
    message_id: str | None = None
    html: str | None = None


def _parts(message: EmailMessage) -> tuple[str, str | None]:
    """The plain-text and HTML bodies, with the wire's CRLF line ends back to ``\n``."""
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    text = text_part.get_content() if isinstance(text_part, EmailMessage) else ""
    html = html_part.get_content() if isinstance(html_part, EmailMessage) else None
    return text.replace("\r\n", "\n"), None if html is None else html.replace("\r\n", "\n")


def _header(message: EmailMessage, name: str) -> str | None:
    value = message.get(name)
    return None if value is None else str(value)


class CatchingHandler:
    """aiosmtpd's handler: every message accepted, and kept in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        raw = content if isinstance(content, bytes) else content.encode()
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)  # what policy.default builds
        text, html = _parts(message)
        received = datetime.now(UTC)
        for recipient in envelope.rcpt_tos:
            self.keep(
                CaughtMail(
                    to=recipient,
                    subject=str(message.get("Subject", "")),
                    kind=_header(message, "X-TeamCart-Kind"),
                    text=text,
                    sent_at=received,
                    message_id=_header(message, "Message-ID"),
                    html=html,
                )
            )
        return "250 Message accepted for delivery"

    def keep(self, mail: CaughtMail) -> None:
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
        temporary = self.folder / f".{name}"
        temporary.write_bytes(msgspec.json.encode(mail))
        os.replace(temporary, self.folder / name)


def caught_mail(folder: Path, *, limit: int = LIST_LIMIT) -> list[CaughtMail]:
    """The newest ``limit`` mails kept in ``folder``, newest first (none if it is absent)."""
    try:
        names = sorted(
            (entry.name for entry in os.scandir(folder) if entry.name.endswith(".json")),
            reverse=True,
        )
    except FileNotFoundError:
        return []
    found = []
    for name in names[:limit]:
        with contextlib.suppress(OSError, msgspec.DecodeError, msgspec.ValidationError):
            found.append(msgspec.json.decode((folder / name).read_bytes(), type=CaughtMail))
    return found


class MailCatcher:
    """A running catcher: its SMTP URL and its folder."""

    def __init__(self, controller: Controller, folder: Path) -> None:
        self.controller = controller
        self.folder = folder
        self._stopped = False

    @property
    def url(self) -> str:
        return f"smtp://{self.controller.hostname}:{self.controller.port}"

    def caught(self, *, limit: int = LIST_LIMIT) -> list[CaughtMail]:
        return caught_mail(self.folder, limit=limit)

    def stop(self) -> None:
        """Stop serving (connections in progress are cut); stopping again does nothing."""
        if not self._stopped:
            self._stopped = True
            self.controller.stop()


@contextlib.contextmanager
def running_catcher(
    folder: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    handler: CatchingHandler | None = None,
) -> Iterator[MailCatcher]:
    """Run a catcher on ``port`` (a free one by default) in a thread; stop it on exit."""
    # aiosmtpd logs every command of every connection at INFO; the server's own line says
    # where the catcher listens, which is what an operator needs.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    if port is None:
        from app.embedded import free_port  # not at import: app.embedded imports this module

        port = free_port(host)
    controller = Controller(handler or CatchingHandler(folder), hostname=host, port=port)
    controller.start()
    catcher = MailCatcher(controller, folder)
    try:
        yield catcher
    finally:
        catcher.stop()
