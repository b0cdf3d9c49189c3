"""Members reminded before a deadline (API.md § Group payment options, "Reminders").

``reminder_minutes`` (the cart's, 15 unless its host chose 0 to 1440) before an open cart's
deadline, every member not ready yet is told ``ready``; as long before a locked cart's
payment window ends, every member who owes something and hasn't settled is told ``pay``.
Each reminder goes once per (cart, member, what, deadline), however many processes sweep:

1. in one transaction, claim the due reminders in ``cart_reminders`` (``INSERT … ON CONFLICT
   DO NOTHING RETURNING``: whoever inserts a key sends it; ``app.persistence.reminders``) and
   insert, for each claimed member with an address, the rendered ``reminder`` mail into
   ``emails``; commit. The mailer sends it (within its poll, a second), retried like any
   mail and sent once;
2. then tell each claimed member's sockets, in every process (``Remind``: a hub frame naming
   just that member). That is best-effort: with Redis away the socket message is lost, the
   mail and the claim stand, and the sweep goes on.

Why not through the unit of work like the carts' commands: nothing about the cart changes
(no version, no event), and the claim and the mail are two statements that only need to
commit together, so this takes the engine's transaction directly, like the sweeper's purges.
Rendering happens in the transaction, before commit, so a claimed reminder's mail is never
lost to a crash in between; a mail that can't be rendered is logged and skipped (the
reminder still goes to the sockets), never raised into a claim that would then be retried
for ever.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

import structlog
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine

from app.mail.planner import MAIL_PLANNED
from app.mail.reminders import KIND, ReminderMail, What, reminder_mail_id, render_reminder
from app.mail.rendering import Templates
from app.persistence.reminders import (
    MAX_REMINDER_MINUTES,
    ClaimedReminder,
    ReminderMailRow,
    claim_member_reminders,
    plan_reminder_mail,
)
from app.use_cases.teamcarts import Remind
from domain.payments import SETTLED_STATUSES, PaymentStatus

__all__ = ["MAX_REMINDER_MINUTES", "NOTHING_TO_PAY", "remind_members"]

log = structlog.get_logger("teamcart.reminders")

REMINDERS_SENT = Counter(
    "teamcart_reminders", "Member reminders claimed and sent, by what they ask.", ["what"]
)

NOTHING_TO_PAY: Final = frozenset(
    status.value for status in (*SETTLED_STATUSES, PaymentStatus.REVIEW)
)
"""Members whose payment is in one of these aren't asked to pay: they paid or committed to
cash (settled), or their captured payment is disputed and with an operator (``review``)."""


async def remind_members(
    engine: AsyncEngine,
    payment_window: timedelta,
    remind: Remind,
    *,
    templates: Templates | None = None,
) -> int:
    """Claim, mail and send every due member reminder (see the module docstring); how many
    this call claimed. Called by each sweep (``app.workers.sweep_once``)."""
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        claimed = await claim_member_reminders(conn, payment_window, NOTHING_TO_PAY)
        mails = _mails(claimed, templates, now)
        planned = await plan_reminder_mail(conn, KIND, mails)
    if planned:
        MAIL_PLANNED.labels(KIND).inc(planned)
    for reminder in claimed:
        REMINDERS_SENT.labels(reminder.what).inc()
        try:
            await remind(reminder.cart_id, reminder.user_id, reminder.deadline, reminder.what)
        except Exception as exc:  # Redis away: the mail still goes
            log.warning(
                "member_reminder_failed",
                teamcart_id=reminder.cart_id,
                what=reminder.what,
                error=repr(exc),
            )
    if claimed:
        log.info("members_reminded", reminders=len(claimed), mails=planned)
    return len(claimed)


def _what(reminder: ClaimedReminder) -> What:
    return "ready" if reminder.what == "ready" else "pay"


def _mails(
    claimed: Sequence[ClaimedReminder], templates: Templates | None, now: datetime
) -> list[ReminderMailRow]:
    """The mail of each claimed reminder whose member has an address, rendered. Templates
    are loaded here unless given: reminders are rare, and a module-level cache would be
    state that no wiring passes in."""
    addressed = [(reminder, reminder.email) for reminder in claimed if reminder.email]
    if not addressed:
        return []  # no address: the sockets only
    templates = templates or Templates.load()
    rows = []
    for reminder, email in addressed:
        mail = ReminderMail(
            what=_what(reminder),
            name=reminder.display_name,
            store_name=reminder.store_name,
            deadline=reminder.deadline,
            amount_minor=reminder.owes_minor,
            currency=reminder.currency,
        )
        try:
            rendered = render_reminder(templates, mail, now)
        except Exception:
            log.exception("reminder_render_failed", teamcart_id=reminder.cart_id)
            continue
        key = (reminder.cart_id, reminder.user_id, reminder.what, reminder.deadline)
        rows.append(
            ReminderMailRow(
                id=reminder_mail_id(*key),
                user_id=reminder.user_id,
                cart_id=reminder.cart_id,
                to_address=email,
                subject=rendered.subject,
                text=rendered.text,
                html=rendered.html,
            )
        )
    return rows
