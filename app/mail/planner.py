"""The outbox consumer that plans mail: an order event becomes one ``emails`` row per
(event, recipient, kind), rendered once, for the mailer to send.

It runs in the outbox dispatcher (``app.dispatcher``), at least once per committed event and
sometimes in the committing request's task, so it is cheap and idempotent: one query for the
recipients' addresses, one ``INSERT … ON CONFLICT DO NOTHING`` of the rendered mails, keyed by
``(outbox id, user, kind)``. A replay, or two processes handling the same row, plans nothing
new. Then it wakes this process's mailer; other processes' mailers find the rows by polling.

Who gets what (API.md § Email): an order's participants are its host and everyone on its
payments, and only those with an address in ``users`` get mail.

- ``order_placed``: ``order_placed`` to every participant (their own lines and share, and the
  total), and ``payment_receipt`` to each payer who paid online (their amount).
- ``order_refunded``: ``refund_issued`` to the refunded member (the host when the refund
  names nobody), with the amount refunded.
- ``order_shipped``, ``order_out_for_delivery``: a mail of that kind to every participant,
  with the carrier and tracking number; ``order_delivered`` likewise.
- Any other event: nothing.

A payload that can't be read or rendered is logged and skipped, never raised: a raising
consumer makes the dispatcher retry the row for ever and hold back the order's later events.
Only the database's failures (an outage: retried) propagate.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

import msgspec
import structlog
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine

from app.mail.rendering import Templates, format_amount
from app.persistence import database
from app.persistence.outbox import OutboxRecord

log = structlog.get_logger("teamcart.mail")

MAIL_PLANNED = Counter(
    "teamcart_mail_planned", "Mails planned from order events (new rows only), by kind.", ["kind"]
)
MAIL_UNPLANNABLE = Counter(
    "teamcart_mail_unplannable", "Order events whose payload could not be read or rendered."
)

MAIL_ID_NAMESPACE: Final = uuid.UUID("5d0b7a3e-8f0c-4d55-9a53-2b9c1e6f0a13")
"""A mail's id (and so its Message-ID) is derived from its key: the same mail planned twice
is the same row, and an id names one (event, recipient, kind) for ever."""


# --- the order outbox payload (the fields mail reads; the rest are ignored) ----------------


class Line(msgspec.Struct, frozen=True):
    name: str
    quantity: int
    line_total_minor: int
    user_id: str | None = None
    options: list[str] = msgspec.field(default_factory=list)
    unit_price_minor: int = 0


class Payment(msgspec.Struct, frozen=True):
    user_id: str
    method: str
    amount_minor: int
    display_name: str = ""
    refunded_minor: int = 0
    status: str = ""


class Tracking(msgspec.Struct, frozen=True):
    carrier: str
    tracking_number: str
    url: str | None = None


class OrderView(msgspec.Struct, frozen=True):
    id: str
    number: str
    currency: str
    total_minor: int
    host_user_id: str
    store_name: str = ""
    lines: list[Line] = msgspec.field(default_factory=list)
    payments: list[Payment] = msgspec.field(default_factory=list)
    tracking: Tracking | None = None


class Refund(msgspec.Struct, frozen=True):
    amount_minor: int
    user_id: str | None = None


class OrderEvent(msgspec.Struct, frozen=True):
    """``{"event", "version", "order": <order view>, "refund", "by_role"}``."""

    event: str
    order: OrderView
    refund: Refund | None = None


_decoder = msgspec.json.Decoder(OrderEvent)

Kind = Literal[
    "order_placed",
    "payment_receipt",
    "refund_issued",
    "order_shipped",
    "order_out_for_delivery",
    "order_delivered",
]


TO_EVERY_PARTICIPANT: Final[Mapping[str, Kind]] = MappingProxyType(
    {
        "order_shipped": "order_shipped",
        "order_out_for_delivery": "order_out_for_delivery",
        "order_delivered": "order_delivered",
    }
)
"""Events whose mail, of the same name, goes to every participant."""


@dataclass(frozen=True, slots=True)
class PlannedMail:
    """A mail an event means, before we know whether its recipient has an address."""

    user_id: str
    kind: Kind


def _is_uuid(text: str | None) -> bool:
    if not text:
        return False
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def participants(order: OrderView) -> list[str]:
    """The host, then everyone on the payments, each once (ids that aren't UUIDs dropped:
    no ``users`` row could have them)."""
    ids = [order.host_user_id, *(payment.user_id for payment in order.payments)]
    return [user_id for user_id in dict.fromkeys(ids) if _is_uuid(user_id)]


def plan(event: OrderEvent) -> list[PlannedMail]:
    """Which mails ``event`` means, for whom (see the module docstring)."""
    order = event.order
    name = event.event
    if name == "order_placed":
        placed = [PlannedMail(user_id, "order_placed") for user_id in participants(order)]
        receipts = [
            PlannedMail(payment.user_id, "payment_receipt")
            for payment in order.payments
            if payment.method == "online" and _is_uuid(payment.user_id)
        ]
        return placed + receipts
    if name == "order_refunded":
        if event.refund is None:
            return []
        refunded = event.refund.user_id or order.host_user_id
        return [PlannedMail(refunded, "refund_issued")] if _is_uuid(refunded) else []
    kind = TO_EVERY_PARTICIPANT.get(name)
    if kind is not None:
        return [PlannedMail(user_id, kind) for user_id in participants(order)]
    return []


def mail_context(event: OrderEvent, mail: PlannedMail, name: str) -> dict[str, object]:
    """What the templates of one mail see: the order, the recipient's own lines and payment,
    the refund and tracking, and ``money(minor)`` in the order's currency."""
    order = event.order
    mine = next((p for p in order.payments if p.user_id == mail.user_id), None)
    currency = order.currency

    def money(amount_minor: int) -> str:
        return format_amount(amount_minor, currency)

    return {
        "name": name,
        "order": order,
        "my_lines": [line for line in order.lines if line.user_id == mail.user_id],
        "my_amount_minor": None if mine is None else mine.amount_minor,
        "my_method": None if mine is None else mine.method,
        "refund_minor": None if event.refund is None else event.refund.amount_minor,
        "tracking": order.tracking,
        "money": money,
    }


def mail_id(outbox_id: int, user_id: str, kind: str) -> str:
    return str(uuid.uuid5(MAIL_ID_NAMESPACE, f"{outbox_id}:{user_id}:{kind}"))


# --- the statements ------------------------------------------------------------------------

_ADDRESSES: Final = """
SELECT id::text AS id, display_name, email
  FROM users
 WHERE id = ANY(CAST($1 AS uuid[])) AND email IS NOT NULL
"""

_PLAN: Final = """
INSERT INTO emails (id, outbox_id, user_id, kind, order_id, to_address, subject, text_body,
                    html_body)
SELECT CAST(i AS uuid), $1, CAST(u AS uuid), k, CAST($2 AS uuid), a, s, t, h
  FROM unnest(CAST($3 AS text[]), CAST($4 AS text[]), CAST($5 AS text[]), CAST($6 AS text[]),
              CAST($7 AS text[]), CAST($8 AS text[]), CAST($9 AS text[]))
       AS m(i, u, k, a, s, t, h)
ON CONFLICT DO NOTHING
RETURNING kind
"""


@dataclass(frozen=True, slots=True)
class Recipient:
    display_name: str
    email: str


def _no_nul(text: str) -> str:
    return text.replace("\x00", "")  # PostgreSQL text can't hold NUL, whatever a payload says


class MailPlanner:
    """The outbox consumer (``async (record) -> None``) that plans order mail; built once in
    ``app.wiring`` and passed to the dispatcher's consumers. ``wake`` tells this process's
    mailer that new rows are due; ``templates`` are loaded here unless given."""

    def __init__(
        self,
        engine: AsyncEngine,
        wake: Callable[[], None] = lambda: None,
        templates: Templates | None = None,
    ) -> None:
        self.engine = engine
        self.wake = wake
        self.templates = templates or Templates.load()

    async def __call__(self, record: OutboxRecord) -> None:
        if record.aggregate_type != "order":
            return
        try:
            event = _decoder.decode(record.payload)
            if not _is_uuid(event.order.id):
                raise msgspec.ValidationError(f"the order id {event.order.id!r} is not a UUID")
            planned = plan(event)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            MAIL_UNPLANNABLE.inc()
            log.error("mail_payload_unreadable", outbox_id=record.id, error=str(exc))
            return
        if not planned:
            return
        async with self.engine.connect() as conn:
            ids = sorted({mail.user_id for mail in planned})
            rows = await database.fetch(conn, _ADDRESSES, ids)
            recipients = {row["id"]: Recipient(row["display_name"], row["email"]) for row in rows}
            columns = self._rendered(record, event, planned, recipients)
            if columns is None or not columns[0]:
                return
            inserted = await database.fetch(conn, _PLAN, record.id, event.order.id, *columns)
        for row in inserted:
            MAIL_PLANNED.labels(row["kind"]).inc()
        if inserted:
            log.info(
                "mail_planned", outbox_id=record.id, order_id=event.order.id, mails=len(inserted)
            )
            self.wake()

    def _rendered(
        self,
        record: OutboxRecord,
        event: OrderEvent,
        planned: Sequence[PlannedMail],
        recipients: dict[str, Recipient],
    ) -> tuple[list[str], ...] | None:
        """The rows to insert, as columns (ids, users, kinds, addresses, subjects, texts,
        HTMLs), for the planned mails whose recipient has an address; ``None`` (logged) if a
        template or an amount can't be rendered."""
        columns: tuple[list[str], ...] = ([], [], [], [], [], [], [])
        try:
            for mail in planned:
                recipient = recipients.get(mail.user_id)
                if recipient is None:
                    continue  # no address: no mail
                context = mail_context(event, mail, recipient.display_name)
                rendered = self.templates.render(
                    mail.kind, event.order.number, event.order.store_name, context
                )
                values = (
                    mail_id(record.id, mail.user_id, mail.kind),
                    mail.user_id,
                    mail.kind,
                    recipient.email,
                    rendered.subject,
                    rendered.text,
                    rendered.html,
                )
                for column, value in zip(columns, values, strict=True):
                    column.append(_no_nul(value))
        except Exception:
            MAIL_UNPLANNABLE.inc()
            log.exception("mail_render_failed", outbox_id=record.id, order_id=event.order.id)
            return None
        return columns
