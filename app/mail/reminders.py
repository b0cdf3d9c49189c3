"""The ``reminder`` mail (API.md § Email's seventh kind): a member of a cart is told what to do
before a deadline, ``ready`` (the cart closes) or ``pay`` (the payment window ends).

Unlike order mail it is not planned from the outbox: there is no order yet, and no event
says "the deadline is near". The sweeper claims each reminder once (``cart_reminders``,
``app.use_cases.reminders``) and inserts the mail rendered here in the claim's transaction,
so a reminder claimed is a mail planned, and the mailer sends it like any other row.

The templates are ``templates/reminder.txt`` and ``.html``, standalone: the order layout
names an order number a cart doesn't have yet. Times are in UTC, labelled so (we don't know
a member's time zone), with the date when it isn't today's.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from app.mail.planner import MAIL_ID_NAMESPACE
from app.mail.rendering import RenderedMail, Templates, format_amount

KIND: Final = "reminder"

What = Literal["ready", "pay"]


@dataclass(frozen=True, slots=True)
class ReminderMail:
    """What one reminder says: to whom (their name), about which store's cart, what to do
    before ``deadline``, and (``pay``) what they owe in the cart's currency."""

    what: What
    name: str
    store_name: str
    deadline: datetime
    amount_minor: int
    currency: str


def when(deadline: datetime, now: datetime) -> str:
    """``"12:30 UTC"``; ``"12:30 UTC on 2026-12-03"`` when that is not today (in UTC): a
    reminder may come up to a day ahead."""
    at = deadline.astimezone(UTC)
    text = f"{at:%H:%M} UTC"
    return text if at.date() == now.astimezone(UTC).date() else f"{text} on {at:%Y-%m-%d}"


def subject_of(mail: ReminderMail, now: datetime) -> str:
    """``"The cart closes at 12:30 UTC — mark yourself ready"`` or ``"Pay your share of
    12.34 USD before 12:30 UTC"``."""
    at = when(mail.deadline, now)
    if mail.what == "ready":
        return f"The cart closes at {at} — mark yourself ready"
    return f"Pay your share of {format_amount(mail.amount_minor, mail.currency)} before {at}"


def render_reminder(templates: Templates, mail: ReminderMail, now: datetime) -> RenderedMail:
    """The subject, text and HTML of one reminder (``UnknownCurrency`` or a template error
    raises: the caller logs it and skips the mail)."""
    context = {
        "what": mail.what,
        "name": mail.name,
        "store_name": mail.store_name,
        "at": when(mail.deadline, now),
        "amount": format_amount(mail.amount_minor, mail.currency),
        "subject": subject_of(mail, now),
    }
    return RenderedMail(
        subject=" ".join(str(context["subject"]).split()),
        text=templates.text.get_template(f"{KIND}.txt").render(context),
        html=templates.html.get_template(f"{KIND}.html").render(context),
    )


def reminder_mail_id(cart_id: str, user_id: str, what: str, deadline: datetime) -> str:
    """The row's id (and Message-ID) from the reminder's claim key: planning the same
    reminder twice would be the same row."""
    key = f"{KIND}:{cart_id}:{user_id}:{what}:{deadline.astimezone(UTC).isoformat()}"
    return str(uuid.uuid5(MAIL_ID_NAMESPACE, key))
