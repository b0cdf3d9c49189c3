"""The member reminders' rows: which reminders are due, claimed once in ``cart_reminders``,
and their mail planned into ``emails`` (migration 0017's table, 0020's columns).

A reminder is due for a member of

- an open cart, not ready, from ``reminder_minutes`` before its ``deadline`` until it
  (``what = 'ready'``, the deadline as key);
- a locked cart who owes something (``owes_minor > 0``: what the domain's ``share_of``
  says, stored with each member) and hasn't settled, from ``reminder_minutes`` before
  ``locked_at + payment_window`` until then (``what = 'pay'``, that end as key).

``reminder_minutes = 0`` means no reminders. Claiming is one statement, ``INSERT … ON
CONFLICT DO NOTHING RETURNING`` into ``cart_reminders``, whose primary key is (cart, member,
what, deadline): two sweepers claiming at once, in separate transactions, contend on that
key, the second waits for the first to commit and then inserts nothing, so only one of them
ever sends a given reminder. A new deadline (an unlock and a new lock, another deadline) is
a new key, reminded again. Rows are claimed in key order, so two claimers take their locks in
the same order and never deadlock; already-claimed reminders are skipped before the limit,
so a backlog larger than one batch drains over successive sweeps.

Both statements go through SQLAlchemy, not straight to the driver as the cart commands'
statements do: SQLAlchemy opens the transaction with the first statement it sends itself,
so one sent to the driver first would run alone (autocommit, ``app.unit_of_work``), and the
claim and its mail must commit together, in the transaction the caller holds on ``conn``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.teamcart import hold_window

MAX_REMINDER_MINUTES: Final = 1440
"""The longest lead a cart may ask for (a day): bounds the scan of open carts' deadlines."""

_CLAIM: Final = text(
    """
WITH due AS (
    SELECT t.id AS cart_id, m.user_id, 'ready' AS what, t.deadline AS deadline
      FROM teamcarts AS t
      JOIN teamcart_members AS m ON m.cart_id = t.id
     WHERE t.status = 'open'
       AND t.deadline > now()
       AND t.deadline <= now() + CAST(:longest AS interval)
       AND t.deadline - t.reminder_minutes * interval '1 minute' <= now()
       AND NOT m.ready
    UNION ALL
    SELECT t.id, m.user_id, 'pay', t.locked_at + w.span
      FROM teamcarts AS t
      JOIN teamcart_members AS m ON m.cart_id = t.id
     CROSS JOIN LATERAL (
           -- a capture-on-confirm cart's window is shorter: its holds lapse (hold_window)
           SELECT CASE WHEN t.capture = 'on_confirm' THEN CAST(:held AS interval)
                       ELSE CAST(:window AS interval) END AS span
          ) AS w
     WHERE t.status = 'locked'
       AND t.locked_at + w.span > now()
       AND t.locked_at + w.span - t.reminder_minutes * interval '1 minute' <= now()
       AND m.owes_minor > 0
       AND m.payment_status <> ALL(CAST(:settled AS text[]))
), unclaimed AS (
    SELECT d.*
      FROM due AS d
     WHERE NOT EXISTS (
               SELECT 1 FROM cart_reminders AS r
                WHERE (r.cart_id, r.user_id, r.what, r.deadline)
                    = (d.cart_id, d.user_id, d.what, d.deadline))
     ORDER BY d.cart_id, d.user_id, d.what, d.deadline
     LIMIT :lim
), claimed AS (
    INSERT INTO cart_reminders (cart_id, user_id, what, deadline)
    SELECT cart_id, user_id, what, deadline FROM unclaimed
        ON CONFLICT DO NOTHING
    RETURNING cart_id, user_id, what, deadline
)
SELECT c.cart_id::text AS cart_id, c.user_id::text AS user_id, c.what, c.deadline,
       coalesce(u.display_name, m.display_name) AS display_name, u.email,
       coalesce(m.owes_minor, 0) AS owes_minor, t.currency, s.name AS store_name
  FROM claimed AS c
  JOIN teamcarts AS t ON t.id = c.cart_id
  JOIN stores AS s ON s.id = t.store_id
  JOIN teamcart_members AS m ON m.cart_id = c.cart_id AND m.user_id = c.user_id
  LEFT JOIN users AS u ON u.id = c.user_id AND u.email IS NOT NULL
 ORDER BY c.cart_id, c.user_id, c.what
"""
)

_PLAN: Final = text(
    """
    INSERT INTO emails (id, user_id, kind, cart_id, to_address, subject, text_body, html_body)
    SELECT CAST(i AS uuid), CAST(u AS uuid), :kind, CAST(c AS uuid), a, s, t, h
      FROM unnest(CAST(:ids AS text[]), CAST(:users AS text[]), CAST(:carts AS text[]),
                  CAST(:addresses AS text[]), CAST(:subjects AS text[]),
                  CAST(:texts AS text[]), CAST(:htmls AS text[]))
           AS m(i, u, c, a, s, t, h)
    ON CONFLICT DO NOTHING
    RETURNING id
    """
)


@dataclass(frozen=True, slots=True)
class ClaimedReminder:
    """A reminder this transaction claimed, with what its mail needs (``email`` ``None``: the
    member gave no address)."""

    cart_id: str
    user_id: str
    what: str  # ready | pay
    deadline: datetime
    display_name: str
    email: str | None
    owes_minor: int
    currency: str
    store_name: str


@dataclass(frozen=True, slots=True)
class ReminderMailRow:
    """One rendered reminder mail to insert."""

    id: str
    user_id: str
    cart_id: str
    to_address: str
    subject: str
    text: str
    html: str


async def claim_member_reminders(
    conn: AsyncConnection,
    payment_window: timedelta,
    settled: Iterable[str],
    *,
    limit: int = 500,
) -> list[ClaimedReminder]:
    """Claim up to ``limit`` due reminders nobody claimed yet (see the module docstring);
    ``settled``: the payment statuses of members with nothing left to pay. Only this
    transaction may send what it returns, once it commits."""
    longest = timedelta(minutes=MAX_REMINDER_MINUTES)  # only these deadlines can be due
    result = await conn.execute(
        _CLAIM,
        {
            "window": payment_window,
            "held": hold_window(payment_window),
            "settled": sorted(settled),
            "lim": limit,
            "longest": longest,
        },
    )
    rows = result.mappings().all()
    return [
        ClaimedReminder(
            cart_id=row["cart_id"],
            user_id=row["user_id"],
            what=row["what"],
            deadline=row["deadline"],
            display_name=row["display_name"],
            email=row["email"],
            owes_minor=row["owes_minor"],
            currency=row["currency"],
            store_name=row["store_name"],
        )
        for row in rows
    ]


async def plan_reminder_mail(
    conn: AsyncConnection, kind: str, mails: Sequence[ReminderMailRow]
) -> int:
    """Insert the rendered mails in one statement (a row whose id exists is left alone);
    how many were new. The mailer finds them by polling."""
    if not mails:
        return 0
    columns: tuple[list[str], ...] = ([], [], [], [], [], [], [])
    for mail in mails:
        values = (
            mail.id,
            mail.user_id,
            mail.cart_id,
            mail.to_address,
            mail.subject,
            mail.text,
            mail.html,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value.replace("\x00", ""))  # PostgreSQL text holds no NUL
    names = ("ids", "users", "carts", "addresses", "subjects", "texts", "htmls")
    inserted = await conn.execute(_PLAN, {"kind": kind, **dict(zip(names, columns, strict=True))})
    return len(inserted.all())
