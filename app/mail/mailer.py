"""The mailer: every server process sends the mail planned in ``emails``.

It wakes when this process's planner has planned mail (``wake``) and every ``poll_interval``
seconds (mail planned in another process, mail due again after a failure). Each pass claims
due rows a batch at a time in a transaction (``FOR UPDATE SKIP LOCKED``: processes share the
work and never take the same row), sends them over one SMTP session, and, before that
transaction commits, records each one's outcome:

- sent: ``status = 'sent'``, ``sent_at``;
- refused for good (5xx), or tried ``max_attempts`` times: ``status = 'failed'``, the error
  kept in ``last_error``; the batch goes on;
- transient (connection refused or lost, timeout, 4xx): still pending, ``attempts + 1``,
  due again after a backoff doubling from ``BACKOFF_START_SECONDS`` up to
  ``BACKOFF_CAP_SECONDS``.

So a mail is marked sent in the transaction that claimed it, and no process sends it again
once that commits. What is left is the window between the server's 250 and that commit: a
crash there sends the mail again, with the same Message-ID (ADR 0013).

Shutdown waits for the batch in flight (up to ``SHUTDOWN_GRACE_SECONDS``): what it sent is
committed as sent; mail not yet tried stays pending, untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Final

import structlog
from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.failures import causes, is_unavailable
from app.mail.smtp import (
    DEFAULT_TIMEOUT_SECONDS,
    Outcome,
    OutgoingMail,
    SmtpSession,
    SmtpTarget,
    Verdict,
)

log = structlog.get_logger("teamcart.mail")

POLL_SECONDS: Final = 1.0
BATCH: Final = 10
"""Mails claimed per transaction: also the most a crash can send twice (see above)."""
MAX_ATTEMPTS: Final = 20
"""Transient failures before a mail is given up (about an hour of retries, at the cap)."""
BACKOFF_START_SECONDS: Final = 1.0
BACKOFF_CAP_SECONDS: Final = 300.0
SHUTDOWN_GRACE_SECONDS: Final = 5.0

MAIL_SENT = Counter("teamcart_mail_sent", "Mails the SMTP server accepted, by kind.", ["kind"])
MAIL_FAILED = Counter(
    "teamcart_mail_failed",
    "Mails given up: refused for good (5xx) or out of attempts, by kind.",
    ["kind"],
)
MAIL_DEFERRED = Counter(
    "teamcart_mail_deferred", "Sending attempts that failed transiently (retried later)."
)

_CLAIM = text(
    """
    SELECT id::text AS id, kind, to_address, subject, text_body, html_body, attempts
      FROM emails
     WHERE status = 'pending' AND next_attempt_at <= now()
     ORDER BY next_attempt_at, id
     LIMIT :n
       FOR UPDATE SKIP LOCKED
    """
)

_RECORD = text(
    """
    UPDATE emails AS e
       SET status = o.status,
           attempts = e.attempts + 1,
           last_error = o.error,
           sent_at = CASE WHEN o.status = 'sent' THEN now() END,
           next_attempt_at = CASE WHEN o.status = 'pending'
                                  THEN now() + o.delay * interval '1 second'
                                  ELSE e.next_attempt_at END
      FROM unnest(CAST(:ids AS text[]), CAST(:statuses AS text[]), CAST(:errors AS text[]),
                  CAST(:delays AS float8[])) AS o(id, status, error, delay)
     WHERE e.id = CAST(o.id AS uuid)
    """
)


def backoff_seconds(attempts_before: int) -> float:
    """How long after its ``attempts_before + 1``-th failed attempt a mail is due again:
    1 s, 2 s, 4 s… up to the cap."""
    doubled = BACKOFF_START_SECONDS * float(2 ** min(attempts_before, 30))
    return min(doubled, BACKOFF_CAP_SECONDS)


@dataclass(frozen=True, slots=True)
class Claimed:
    mail: OutgoingMail
    attempts: int


@dataclass(slots=True)
class PassResult:
    sent: int = 0
    failed: int = 0
    deferred: int = 0


class Mailer:
    """Sends planned mail through ``target`` (built once in ``app.wiring``; one per process).

    ``running()`` is the app's lifespan part; :meth:`send_due` is one pass (tests call it)."""

    def __init__(
        self,
        engine: AsyncEngine,
        target: SmtpTarget,
        mail_from: str,
        *,
        poll_interval: float = POLL_SECONDS,
        batch_size: int = BATCH,
        max_attempts: int = MAX_ATTEMPTS,
        smtp_timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.engine = engine
        self.target = target
        self.mail_from = mail_from
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.smtp_timeout = smtp_timeout
        self._wake = asyncio.Event()
        self._stopping = False

    @property
    def stopping(self) -> bool:
        return self._stopping

    def wake(self) -> None:
        """Mail was planned: send it now rather than at the next poll."""
        self._wake.set()

    async def send_due(self) -> PassResult:
        """Send every mail due now, a batch per transaction, until none is left or the SMTP
        server stops answering (the rest waits for its backoff)."""
        result = PassResult()
        session = SmtpSession(self.target, self.mail_from, timeout=self.smtp_timeout)
        try:
            while not self._stopping and session.broken is None:
                if await self._send_batch(session, result) < self.batch_size:
                    break
        finally:
            await session.close()
        return result

    async def _send_batch(self, session: SmtpSession, result: PassResult) -> int:
        async with self.engine.begin() as conn:
            claimed = await self._claim(conn)
            outcomes: list[tuple[Claimed, Outcome]] = []
            for item in claimed:
                if self._stopping:
                    break  # not tried: stays pending as it was
                outcomes.append((item, await session.send(item.mail)))
            await self._record(conn, outcomes, result)
        if session.broken is not None:
            log.warning("mail_smtp_unavailable", error=session.broken, deferred=result.deferred)
        return len(claimed)

    async def _claim(self, conn: AsyncConnection) -> list[Claimed]:
        rows = (await conn.execute(_CLAIM, {"n": self.batch_size})).mappings().all()
        return [
            Claimed(
                OutgoingMail(
                    id=row["id"],
                    kind=row["kind"],
                    to_address=row["to_address"],
                    subject=row["subject"],
                    text=row["text_body"],
                    html=row["html_body"],
                ),
                row["attempts"],
            )
            for row in rows
        ]

    async def _record(
        self,
        conn: AsyncConnection,
        outcomes: Sequence[tuple[Claimed, Outcome]],
        result: PassResult,
    ) -> None:
        """Each claimed mail's outcome, in one statement of the claim's transaction."""
        if not outcomes:
            return
        ids, statuses, errors, delays = [], [], [], []
        for item, outcome in outcomes:
            status, error = self._status(item, outcome)
            ids.append(item.mail.id)
            statuses.append(status)
            errors.append(error)
            delays.append(backoff_seconds(item.attempts))
            self._count(item, status, error, result)
        await conn.execute(
            _RECORD, {"ids": ids, "statuses": statuses, "errors": errors, "delays": delays}
        )

    def _status(self, item: Claimed, outcome: Outcome) -> tuple[str, str | None]:
        if outcome.verdict is Verdict.SENT:
            return "sent", None
        if outcome.verdict is Verdict.FAILED:
            return "failed", outcome.error
        if item.attempts + 1 >= self.max_attempts:
            return "failed", f"gave up after {item.attempts + 1} attempts: {outcome.error}"
        return "pending", outcome.error

    @staticmethod
    def _count(item: Claimed, status: str, error: str | None, result: PassResult) -> None:
        kind = item.mail.kind
        if status == "sent":
            MAIL_SENT.labels(kind).inc()
            result.sent += 1
        elif status == "failed":
            MAIL_FAILED.labels(kind).inc()
            result.failed += 1
            log.warning("mail_failed", mail_id=item.mail.id, kind=kind, error=error)
        else:
            MAIL_DEFERRED.inc()
            result.deferred += 1

    async def _send_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()
            self._wake.clear()
            if self.stopping:
                return
            try:
                await self.send_due()
            except Exception as exc:  # PostgreSQL away: the next poll tries again
                if any(is_unavailable(cause) for cause in causes(exc)):
                    log.warning("mail_pass_failed", error=repr(exc))
                else:
                    log.exception("mail_pass_failed")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Send mail while the context is open (the app's lifespan); on the way out, let the
        batch in flight finish (bounded), then stop."""
        self._stopping = False
        task = asyncio.create_task(self._send_forever(), name="mailer")
        try:
            yield
        finally:
            self._stopping = True
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), SHUTDOWN_GRACE_SECONDS)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
