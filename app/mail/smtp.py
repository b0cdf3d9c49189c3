"""SMTP: ``TEAMCART_SMTP_URL`` read into its parts, a mail as a MIME message, and one session
with the server that sends a batch and says what became of each message.

What a failure means for a mail is decided here, once: a 5xx reply about that message (its
recipient refused, its content refused) is permanent, the mail is ``failed`` and the others go
on; a 4xx reply is transient; a connection that can't be opened, drops or times out is
transient too, and ends the session (the rest of the batch is tried again later, not now), as
does a refusal of the session rather than of a message (the greeting, EHLO, STARTTLS, AUTH,
or our From): a wrong password must not make every mail ``failed`` for good.
"""

from __future__ import annotations

import contextlib
import enum
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from types import MappingProxyType
from typing import Final
from urllib.parse import unquote, urlsplit

import aiosmtplib

DEFAULT_PORTS: Final = MappingProxyType({"smtp": 25, "smtps": 465})
DEFAULT_TIMEOUT_SECONDS: Final = 10.0
"""Every SMTP step (connect, each command, the data) gives up after this long."""


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    """Where mail goes: ``smtp://`` (STARTTLS when the server offers it) or ``smtps://``
    (TLS from the first byte), with credentials when the URL has them."""

    hostname: str
    port: int
    username: str | None = None
    password: str | None = None
    use_tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> SmtpTarget:
        """``smtp://user:pass@host:port`` → its parts; percent-escapes in the credentials are
        decoded (a password with ``@`` is written ``%40``). ``app.config`` has already
        refused a URL that isn't one; this raises ``ValueError`` for one that isn't."""
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"expected smtp://host[:port] or smtps://host[:port], got {url!r}")
        return cls(
            hostname=parts.hostname,
            port=parts.port or DEFAULT_PORTS[parts.scheme],
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            use_tls=parts.scheme == "smtps",
        )


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    """A planned mail as the mailer claimed it (one ``emails`` row)."""

    id: str
    kind: str
    to_address: str
    subject: str
    text: str
    html: str


def sender_address(mail_from: str) -> str:
    """The bare address of a ``From`` value (``TeamCart <orders@x>`` → ``orders@x``)."""
    return parseaddr(mail_from)[1]


def message_id(mail_id: str, mail_from: str) -> str:
    """``<mail id@sender's domain>``: the same mail always has the same Message-ID, so a copy
    sent twice (ADR 0013: the crash window) is recognisably the same message."""
    domain = sender_address(mail_from).rpartition("@")[2] or "teamcart.localhost"
    return f"<{mail_id}@{domain}>"


def compose(mail: OutgoingMail, mail_from: str) -> EmailMessage:
    """A multipart/alternative message, plain text first and HTML second (clients show the
    last part they can), with the mail's kind in ``X-TeamCart-Kind``."""
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = mail.to_address
    message["Subject"] = mail.subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id(mail.id, mail_from)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies, please
    message["X-TeamCart-Kind"] = mail.kind
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    return message


class Verdict(enum.Enum):
    SENT = "sent"
    FAILED = "failed"
    """Permanent: the server refused this message (5xx); it will never be sent."""
    DEFERRED = "deferred"
    """Transient: try again later."""


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    error: str | None = None


def _refusal(exc: aiosmtplib.SMTPResponseException) -> Outcome:
    verdict = Verdict.FAILED if exc.code >= 500 else Verdict.DEFERRED
    return Outcome(verdict, f"{exc.code} {exc.message}")


def _recipients_refused(exc: aiosmtplib.SMTPRecipientsRefused) -> Outcome:
    codes = [refusal.code for refusal in exc.recipients]
    verdict = Verdict.FAILED if codes and min(codes) >= 500 else Verdict.DEFERRED
    error = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
    return Outcome(verdict, error or "recipient refused")


def _describe(exc: Exception) -> str:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}"
    return repr(exc)


CONNECTION_FAILURES: Final = (ConnectionError, TimeoutError, OSError, aiosmtplib.SMTPConnectError)
"""Failures of the connection, not of one message: the session is over."""


class SmtpSession:
    """One connection to the server, opened on the first message and reused for the rest of
    a batch. After a connection failure it stays broken: every later message is deferred
    without being tried (``broken``), so a dead server costs one attempt, not one per mail."""

    def __init__(
        self, target: SmtpTarget, mail_from: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS
    ) -> None:
        self.target = target
        self.mail_from = mail_from
        self.timeout = timeout
        self.broken: str | None = None
        self._client: aiosmtplib.SMTP | None = None

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._client is None:
            client = aiosmtplib.SMTP(
                hostname=self.target.hostname,
                port=self.target.port,
                username=self.target.username,
                password=self.target.password,
                use_tls=self.target.use_tls,
                timeout=self.timeout,
            )
            await client.connect()  # also EHLO, STARTTLS if offered, AUTH if credentials
            self._client = client
        return self._client

    async def send(self, mail: OutgoingMail) -> Outcome:
        """Send one mail; what became of it. Never raises for the server's or the network's
        failures (each is an outcome); a bug still does."""
        if self.broken is not None:
            return Outcome(Verdict.DEFERRED, f"not tried: {self.broken}")
        try:
            client = await self._connected()
        except (*CONNECTION_FAILURES, aiosmtplib.SMTPException) as exc:
            # Greeting, EHLO, STARTTLS or AUTH refused, or no connection: the session's
            # failure, not this mail's (a wrong password must not fail every mail for good).
            return self._break(_describe(exc))
        try:
            await client.send_message(
                compose(mail, self.mail_from),
                sender=sender_address(self.mail_from),
                recipients=[mail.to_address],
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            return _recipients_refused(exc)
        except aiosmtplib.SMTPSenderRefused as exc:  # our From: every mail would be refused
            return self._break(_describe(exc))
        except aiosmtplib.SMTPResponseException as exc:
            return _refusal(exc)
        except (aiosmtplib.SMTPNotSupported, ValueError) as exc:
            # An address this server can't take (not ASCII, no SMTPUTF8), or not an address.
            return Outcome(Verdict.FAILED, repr(exc))
        except (*CONNECTION_FAILURES, aiosmtplib.SMTPException) as exc:
            return self._break(_describe(exc))
        return Outcome(Verdict.SENT)

    def _break(self, reason: str) -> Outcome:
        self.broken = reason
        self._drop()
        return Outcome(Verdict.DEFERRED, reason)

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def close(self) -> None:
        """QUIT politely when the connection still works; drop it otherwise."""
        client, self._client = self._client, None
        if client is None:
            return
        with contextlib.suppress(Exception):
            await client.quit(timeout=self.timeout)
        if client.is_connected:
            client.close()
