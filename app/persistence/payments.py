"""Payments repository: PaymentIntents, refunds owed and made, disputes, the Stripe event
inbox, and the order's copy of each payment — every payment statement, on one connection.

Amounts named ``amount`` are Stripe's units (``app.payments.amounts``); ``amount_minor`` on
``payment_intents`` is ours. A PaymentIntent's ``status`` only ever moves up
:data:`INTENT_STATUS_RANK`: Stripe does not order its events, and a late success must never
undo a refund.

Why one module of this length: it is every statement on the seven payment tables, so the
SQL a payment touches is read in one place (the use cases hold none).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

from sqlalchemy import RowMapping, bindparam, case, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from app.persistence.tables import (
    disputes,
    order_payments,
    payment_intents,
    refund_requests,
    refunds,
    stripe_events,
    teamcart_members,
)
from domain.payments import PaymentStatus


class IntentStatus(StrEnum):
    """Where a PaymentIntent we created stands, as far as we know."""

    OPEN = "open"  # created; the member may still pay it
    FAILED = "failed"  # the attempt failed: the member may start another
    CANCELED = "canceled"
    SUCCEEDED = "succeeded"  # captured
    REFUNDED = "refunded"  # the capture went back in full


INTENT_STATUS_RANK: Final = MappingProxyType(
    {
        IntentStatus.OPEN: 0,
        IntentStatus.FAILED: 1,
        IntentStatus.CANCELED: 1,
        IntentStatus.SUCCEEDED: 2,
        IntentStatus.REFUNDED: 3,
    }
)
"""An intent's status only moves up this order (open → failed | canceled → succeeded →
refunded)."""


class RefundRequestStatus(StrEnum):
    PENDING = "pending"  # owed; Stripe not (successfully) asked yet
    DONE = "done"


DISPUTE_CLOSED_STATUSES: Final = ("won", "lost", "warning_closed")
"""A dispute in one of these is over."""

PROCESSING: Final = "processing"
"""An inbox row's outcome until its transaction records the real one."""


@dataclass(frozen=True, slots=True)
class IntentOwner:
    """Whose share a PaymentIntent we created pays."""

    cart_id: str
    user_id: str
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class IntentFacts:
    """What Stripe has told us happened to a PaymentIntent's capture, in whatever order."""

    refunded: int  # Stripe's units, refunds that succeeded
    disputed: bool  # a dispute that was not won


@dataclass(frozen=True, slots=True)
class RefundOwed:
    request_id: str  # the intent's id for its full refund, ``partial-<uuid>`` for a part
    payment_intent_id: str
    cart_id: str | None
    amount: int  # Stripe's units: the capture (full), or the part to give back
    currency: str
    reason: str
    attempts: int
    round: int
    partial: bool = False

    @property
    def idempotency_key(self) -> str:
        """One Stripe refund per request and round: a retry can't refund twice."""
        base = f"refund-{self.request_id}"
        return base if self.round == 1 else f"{base}-r{self.round}"


@dataclass(frozen=True, slots=True)
class RefundedSoFar:
    """What is given back on an intent, or on its way back: Stripe's refunds that did not
    fail, by whoever started them, and our requests Stripe hasn't taken yet."""

    amount: int  # Stripe's units
    in_full: bool  # a full refund is owed: the whole capture is on its way back


def partial_request_id(unique: str) -> str:
    return f"partial-{unique}"


RETRY_BACKOFF_SECONDS: Final = (2, 3600)
"""A failed refund is tried again after 2 s, doubling each time, at most an hour apart."""


_SET_INTENT_STATUS = (
    update(payment_intents)
    .where(
        payment_intents.c.id == bindparam("_id"),
        case(
            {str(k): v for k, v in INTENT_STATUS_RANK.items()},
            value=payment_intents.c.status,
            else_=0,
        )
        < bindparam("rank"),
    )
    .values(status=bindparam("status"), updated_at=func.now())
)
_FROM_OPEN = (
    update(payment_intents)
    .where(payment_intents.c.id == bindparam("_id"), payment_intents.c.status == IntentStatus.OPEN)
    .values(status=bindparam("status"), updated_at=func.now())
)
_INTENT_FACTS = select(
    select(func.coalesce(func.sum(refunds.c.amount_minor), 0))
    .where(refunds.c.payment_intent_id == bindparam("intent"), refunds.c.status == "succeeded")
    .scalar_subquery(),
    exists().where(
        disputes.c.payment_intent_id == bindparam("intent"),
        disputes.c.status.not_in(["won", "warning_closed"]),
    ),
)
_CLAIM_EVENT = insert(stripe_events).on_conflict_do_nothing().returning(stripe_events.c.id)
_RECORD_OUTCOME = update(stripe_events).where(stripe_events.c.id == bindparam("_id"))


class SqlPayments:
    """The payment statements of one unit of work's transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    # --- PaymentIntents ----------------------------------------------------------------

    async def latest_intent(
        self, cart_id: str, user_id: str, quote_version: int
    ) -> RowMapping | None:
        """The member's newest attempt at paying this quote."""
        found = await self._conn.execute(
            select(payment_intents)
            .where(
                payment_intents.c.cart_id == cart_id,
                payment_intents.c.user_id == user_id,
                payment_intents.c.quote_version == quote_version,
            )
            .order_by(payment_intents.c.attempt.desc())
            .limit(1)
        )
        return found.mappings().one_or_none()

    async def add_intent(self, **values: Any) -> RowMapping:
        """Insert a new attempt; when a concurrent call inserted the same attempt first,
        that one (whose ``id`` then differs)."""
        inserted = await self._conn.execute(
            insert(payment_intents)
            .values(status=IntentStatus.OPEN.value, **values)
            .on_conflict_do_nothing()
            .returning(*payment_intents.c)
        )
        row = inserted.mappings().one_or_none()
        if row is not None:
            return row
        existing = await self._conn.execute(
            select(payment_intents).where(
                payment_intents.c.cart_id == values["cart_id"],
                payment_intents.c.user_id == values["user_id"],
                payment_intents.c.quote_version == values["quote_version"],
                payment_intents.c.attempt == values["attempt"],
            )
        )
        return existing.mappings().one()

    async def member_intent_status(
        self, intent_id: str, cart_id: str, user_id: str
    ) -> IntentStatus | None:
        row = await self._conn.execute(
            select(payment_intents.c.status).where(
                payment_intents.c.id == intent_id,
                payment_intents.c.cart_id == cart_id,
                payment_intents.c.user_id == user_id,
            )
        )
        status = row.scalar_one_or_none()
        return None if status is None else IntentStatus(status)

    async def has_open_intents(self, cart_id: str) -> bool:
        found = await self._conn.execute(
            select(payment_intents.c.id)
            .where(
                payment_intents.c.cart_id == cart_id, payment_intents.c.status == IntentStatus.OPEN
            )
            .limit(1)
        )
        return found.first() is not None

    async def set_intent_status(self, intent_id: str, status: IntentStatus) -> None:
        """Move the intent's status up to ``status`` (never down: see the module docstring)."""
        await self._conn.execute(
            _SET_INTENT_STATUS,
            {"_id": intent_id, "status": status.value, "rank": INTENT_STATUS_RANK[status]},
        )

    async def unpaid_intents(self, cart_id: str) -> list[str]:
        """The cart's intents still open or failed: Stripe would let either be paid."""
        found = await self._conn.execute(
            select(payment_intents.c.id).where(
                payment_intents.c.cart_id == cart_id,
                payment_intents.c.status.in_([IntentStatus.OPEN, IntentStatus.FAILED]),
            )
        )
        return [str(intent_id) for intent_id in found.scalars()]

    async def cancel_unpaid_intent(self, intent_id: str) -> None:
        """Stripe canceled an open or failed intent; one paid meanwhile keeps its status."""
        await self._conn.execute(
            update(payment_intents)
            .where(
                payment_intents.c.id == intent_id,
                payment_intents.c.status.in_([IntentStatus.OPEN, IntentStatus.FAILED]),
            )
            .values(status=IntentStatus.CANCELED.value, updated_at=func.now())
        )

    async def close_open_intent(self, intent_id: str, status: IntentStatus) -> None:
        """An open attempt failed or was canceled; a late notice never overwrites more."""
        await self._conn.execute(_FROM_OPEN, {"_id": intent_id, "status": status.value})

    async def intent_owner(self, intent_id: str) -> IntentOwner | None:
        row = (
            await self._conn.execute(
                select(
                    payment_intents.c.cart_id,
                    payment_intents.c.user_id,
                    payment_intents.c.amount_minor,
                    payment_intents.c.currency,
                ).where(payment_intents.c.id == intent_id)
            )
        ).one_or_none()
        if row is None:
            return None
        return IntentOwner(str(row.cart_id), str(row.user_id), row.amount_minor, row.currency)

    async def intent_facts(self, intent_id: str) -> IntentFacts:
        refunded, disputed = (await self._conn.execute(_INTENT_FACTS, {"intent": intent_id})).one()
        return IntentFacts(int(refunded), bool(disputed))

    # --- refunds -----------------------------------------------------------------------

    async def request_refund(
        self,
        payment_intent_id: str,
        *,
        amount: int,
        currency: str,
        reason: str,
        cart_id: str | None,
        request_id: str | None = None,
    ) -> None:
        """Owe a refund: in full (once per intent, however often it is decided), or, with a
        ``request_id`` (``partial_request_id``), ``amount`` of it."""
        await self._conn.execute(
            insert(refund_requests)
            .values(
                id=request_id or payment_intent_id,
                payment_intent_id=payment_intent_id,
                partial=request_id is not None,
                cart_id=cart_id,
                amount=amount,
                currency=currency,
                reason=reason,
            )
            .on_conflict_do_nothing()
        )

    async def pending_refunds(
        self, *, payment_intent_ids: Sequence[str] | None, cart_id: str | None, limit: int
    ) -> list[str]:
        query = (
            select(refund_requests.c.id)
            .where(
                refund_requests.c.status == RefundRequestStatus.PENDING,
                refund_requests.c.next_attempt_at <= func.now(),
            )
            .order_by(refund_requests.c.next_attempt_at)
        )
        if payment_intent_ids is not None:
            query = query.where(refund_requests.c.payment_intent_id.in_(list(payment_intent_ids)))
        if cart_id is not None:
            query = query.where(refund_requests.c.cart_id == cart_id)
        return [str(i) for i in (await self._conn.execute(query.limit(limit))).scalars()]

    async def claim_refund(self, request_id: str) -> RefundOwed | None:
        """The pending refund, locked until this transaction ends; ``None`` when it is done
        or another process has it."""
        row = (
            (
                await self._conn.execute(
                    select(refund_requests)
                    .where(
                        refund_requests.c.id == request_id,
                        refund_requests.c.status == RefundRequestStatus.PENDING,
                    )
                    .with_for_update(skip_locked=True)
                )
            )
            .mappings()
            .one_or_none()
        )
        if row is None:
            return None
        return RefundOwed(
            request_id=request_id,
            payment_intent_id=row["payment_intent_id"],
            partial=row["partial"],
            cart_id=None if row["cart_id"] is None else str(row["cart_id"]),
            amount=row["amount"],
            currency=row["currency"],
            reason=row["reason"],
            attempts=row["attempts"],
            round=row["round"],
        )

    async def note_refund_failed(self, request_id: str, attempts: int, error: str) -> None:
        """Stripe did not take it: try again later, each time later (``RETRY_BACKOFF_SECONDS``),
        so a refund that keeps failing doesn't go ahead of the others on every sweep."""
        first, cap = RETRY_BACKOFF_SECONDS
        delay = min(cap, first * 2 ** min(attempts - 1, 20))
        await self._conn.execute(
            update(refund_requests)
            .where(refund_requests.c.id == request_id)
            .values(
                attempts=attempts,
                last_error=error[:500],
                next_attempt_at=func.now() + timedelta(seconds=delay),
                updated_at=func.now(),
            )
        )

    async def reopen_refund(self, payment_intent_id: str, error: str) -> bool:
        """Stripe reports the refund we asked for failed: owe it again, in a new round.
        ``False`` when we never asked for one (a refund made in the dashboard, or a partial
        one: the order then shows that part as not given back, and the store may ask again)."""
        reopened = await self._conn.execute(
            update(refund_requests)
            .where(
                refund_requests.c.id == payment_intent_id,
                refund_requests.c.status == RefundRequestStatus.DONE,
            )
            .values(
                status=RefundRequestStatus.PENDING.value,
                round=refund_requests.c.round + 1,
                last_error=error[:500],
                next_attempt_at=func.now(),
                updated_at=func.now(),
            )
        )
        return bool(reopened.rowcount)

    async def mark_refund_done(
        self, request_id: str, attempts: int, refund_id: str | None = None
    ) -> None:
        await self._conn.execute(
            update(refund_requests)
            .where(refund_requests.c.id == request_id)
            .values(
                status=RefundRequestStatus.DONE.value,
                attempts=attempts,
                refund_id=refund_id,
                updated_at=func.now(),
            )
        )

    async def refund_request_state(self, request_id: str) -> tuple[str, str | None] | None:
        """The request's status (``pending`` or ``done``) and Stripe's refund id, if made."""
        row = (
            await self._conn.execute(
                select(refund_requests.c.status, refund_requests.c.refund_id).where(
                    refund_requests.c.id == request_id
                )
            )
        ).one_or_none()
        return None if row is None else (row.status, row.refund_id)

    async def record_refund(
        self,
        refund_id: str,
        payment_intent_id: str,
        *,
        amount: int,
        currency: str,
        status: str,
        reason: str,
    ) -> None:
        """A refund Stripe made or told us of, by its id; a later notice updates its status."""
        await self._conn.execute(
            insert(refunds)
            .values(
                id=refund_id,
                payment_intent_id=payment_intent_id,
                amount_minor=amount,
                currency=currency,
                status=status,
                reason=reason,
            )
            .on_conflict_do_update(
                index_elements=[refunds.c.id], set_={"status": status, "updated_at": func.now()}
            )
        )

    async def refunded_total(self, payment_intent_id: str) -> int:
        """Stripe's units refunded so far (succeeded refunds)."""
        total = await self._conn.execute(
            select(func.coalesce(func.sum(refunds.c.amount_minor), 0)).where(
                refunds.c.payment_intent_id == payment_intent_id, refunds.c.status == "succeeded"
            )
        )
        return int(total.scalar_one())

    async def refunded_so_far(self, payment_intent_id: str) -> RefundedSoFar:
        """Refunds that did not fail (succeeded or pending at Stripe), plus the partial
        requests Stripe hasn't taken yet; ``in_full`` when a full refund is owed."""
        not_failed = (
            select(func.coalesce(func.sum(refunds.c.amount_minor), 0))
            .where(
                refunds.c.payment_intent_id == payment_intent_id,
                refunds.c.status.in_(["succeeded", "pending"]),
            )
            .scalar_subquery()
        )
        waiting = (
            select(func.coalesce(func.sum(refund_requests.c.amount), 0))
            .where(
                refund_requests.c.payment_intent_id == payment_intent_id,
                refund_requests.c.partial,
                refund_requests.c.status == RefundRequestStatus.PENDING,
            )
            .scalar_subquery()
        )
        in_full = exists().where(
            refund_requests.c.payment_intent_id == payment_intent_id,
            refund_requests.c.partial.is_(False),
            refund_requests.c.status == RefundRequestStatus.PENDING,
        )
        amount, full = (await self._conn.execute(select(not_failed + waiting, in_full))).one()
        return RefundedSoFar(int(amount), bool(full))

    # --- disputes ----------------------------------------------------------------------

    async def record_dispute(
        self,
        dispute_id: str,
        payment_intent_id: str,
        *,
        amount: int,
        currency: str,
        reason: str,
        status: str,
    ) -> None:
        """Stored by intent whatever it concerns, even before its capture is reported."""
        await self._conn.execute(
            insert(disputes)
            .values(
                id=dispute_id,
                payment_intent_id=payment_intent_id,
                amount=amount,
                currency=currency,
                reason=reason,
                status=status,
            )
            .on_conflict_do_update(
                index_elements=[disputes.c.id],
                set_={"status": status, "updated_at": func.now()},
                # Stripe doesn't order its events: a late ``created`` never reopens it.
                where=disputes.c.status.not_in(DISPUTE_CLOSED_STATUSES),
            )
        )

    # --- the Stripe event inbox ----------------------------------------------------------

    async def claim_event(self, event_id: str, event_type: str) -> bool:
        """Enter the event in the inbox; ``False`` when it is there already (a duplicate)."""
        claimed = await self._conn.execute(
            _CLAIM_EVENT, {"id": event_id, "type": event_type, "outcome": PROCESSING}
        )
        return claimed.first() is not None

    async def record_outcome(
        self,
        event_id: str,
        outcome: str,
        reason: str | None,
        payment_intent_id: str | None,
        cart_id: str | None,
    ) -> None:
        await self._conn.execute(
            _RECORD_OUTCOME,
            {
                "_id": event_id,
                "outcome": outcome,
                "reason": reason,
                "payment_intent_id": payment_intent_id,
                "cart_id": cart_id,
            },
        )

    # --- reconciliation ------------------------------------------------------------------

    async def is_accounted_for(self, payment_intent_id: str) -> bool:
        """Recorded as a member's payment (paid, under review or refunded), on an order, or
        owed back. A failed attempt's id on a member does not count: that money was never
        recorded."""
        settled = (PaymentStatus.PAID_ONLINE, PaymentStatus.REVIEW, PaymentStatus.REFUNDED)
        for query in (
            select(teamcart_members.c.user_id).where(
                teamcart_members.c.payment_reference == payment_intent_id,
                teamcart_members.c.payment_status.in_(settled),
            ),
            select(order_payments.c.user_id).where(order_payments.c.reference == payment_intent_id),
            select(refund_requests.c.payment_intent_id).where(
                refund_requests.c.payment_intent_id == payment_intent_id
            ),
            select(refunds.c.id).where(
                refunds.c.payment_intent_id == payment_intent_id, refunds.c.status == "succeeded"
            ),
        ):
            if (await self._conn.execute(query.limit(1))).first() is not None:
                return True
        return False
