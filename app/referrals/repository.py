"""The referral tables' SQL (migration 0018) on one connection: a unit of work's (attributing a
new cart), the accrual consumer's (judging and following an order) or a report's.

Rows become domain values here by hand (``domain.referrals``); nothing is ORM-mapped. Every
write the consumer makes for one outbox record is in the one transaction that also enters the
record in ``referral_consumed``, so a record is consumed entirely or not at all.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from sqlalchemy import exists, func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from app.persistence.tables import (
    audit,
    commission_reversals,
    commissions,
    outbox,
    referral_attributions,
    referral_codes,
    referral_consumed,
    referral_fingerprints,
    shop_carts,
    users,
)
from domain.referrals import (
    ACCRUAL_DECISIONS,
    CODE_ALPHABET,
    CODE_LENGTH,
    Attribution,
    Commission,
    CommissionStatus,
    Decision,
    OrderFacts,
    Outcome,
    Standing,
    normalized_email,
)

ORDER_LOCK_CLASS: Final = 0x7EF_E22A
"""The advisory-lock namespace of an order's referral: one consumer at a time per order."""
_ACCRUAL_DECISIONS: Final = tuple(sorted(d.value for d in ACCRUAL_DECISIONS))


def new_code() -> str:
    """A fresh code: eight random characters of Crockford's base 32 (40 bits)."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


@dataclass(frozen=True, slots=True)
class CommissionRow:
    """A commission as reports and admins see it."""

    id: str
    referrer_user_id: str
    order_id: str
    currency: str
    amount_minor: int
    reversed_minor: int
    status: str
    created_at: datetime
    paid_at: datetime | None


@dataclass(frozen=True, slots=True)
class AuditRow:
    subject: str
    decision: str
    reason: str
    at: datetime
    amount_minor: int | None
    referrer_user_id: str | None


def _commission_row(row: Any) -> CommissionRow:
    return CommissionRow(
        id=str(row.id),
        referrer_user_id=str(row.referrer_user_id),
        order_id=str(row.order_id),
        currency=row.currency,
        amount_minor=int(row.amount_minor),
        reversed_minor=int(row.reversed_minor),
        status=row.status,
        created_at=row.created_at,
        paid_at=row.paid_at,
    )


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


class SqlReferrals:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    # --- codes and attributions -----------------------------------------------------------

    async def code_of(self, user_id: str) -> str | None:
        found = await self.conn.execute(
            select(referral_codes.c.code).where(referral_codes.c.user_id == user_id)
        )
        code = found.scalar_one_or_none()
        return None if code is None else str(code)

    async def add_code(self, user_id: str, code: str) -> None:
        """Give the user ``code`` unless they have one, or someone has that code (then the
        caller reads, and tries another)."""
        await self.conn.execute(
            insert(referral_codes).values(user_id=user_id, code=code).on_conflict_do_nothing()
        )

    async def referrer_of(self, code: str) -> str | None:
        found = await self.conn.execute(
            select(referral_codes.c.user_id).where(referral_codes.c.code == code)
        )
        user_id = found.scalar_one_or_none()
        return None if user_id is None else str(user_id)

    async def attribute(
        self, *, cart_id: str, kind: str, referrer_user_id: str, referred_user_id: str, code: str
    ) -> None:
        """Fix the code on the cart; a cart attributed already keeps its first code."""
        await self.conn.execute(
            insert(referral_attributions)
            .values(
                cart_id=cart_id,
                cart_kind=kind,
                referrer_user_id=referrer_user_id,
                referred_user_id=referred_user_id,
                code=code,
            )
            .on_conflict_do_nothing()
        )

    async def attribution_of(self, cart_id: str) -> Attribution | None:
        found = await self.conn.execute(
            select(referral_attributions.c.referrer_user_id, referral_attributions.c.code).where(
                referral_attributions.c.cart_id == cart_id
            )
        )
        row = found.one_or_none()
        return None if row is None else Attribution(str(row.referrer_user_id), row.code)

    async def shop_cart_of(self, order_id: str) -> str | None:
        """The single-payer cart the order was checked out from."""
        found = await self.conn.execute(
            select(shop_carts.c.id).where(shop_carts.c.order_id == order_id)
        )
        cart_id = found.scalars().first()
        return None if cart_id is None else str(cart_id)

    # --- consuming an order event ---------------------------------------------------------

    async def was_consumed(self, outbox_id: int) -> bool:
        found = await self.conn.execute(
            select(exists().where(referral_consumed.c.outbox_id == outbox_id))
        )
        return bool(found.scalar())

    async def enter_consumed(self, outbox_id: int, order_id: str, event_type: str) -> bool:
        """Enter the record as consumed by this transaction; ``False`` when another one did
        (a second process waits here until the first commits or rolls back)."""
        entered = await self.conn.execute(
            insert(referral_consumed)
            .values(outbox_id=outbox_id, order_id=order_id, event_type=event_type)
            .on_conflict_do_nothing()
            .returning(referral_consumed.c.outbox_id)
        )
        return entered.first() is not None

    async def lock_order(self, order_id: str) -> None:
        """Until the end of the transaction, no other consumer handles this order's events."""
        await self.conn.execute(
            text("SELECT pg_advisory_xact_lock(CAST(:lock AS int), hashtext(CAST(:id AS text)))"),
            {"lock": ORDER_LOCK_CLASS, "id": order_id},
        )

    async def decision_of(self, order_id: str) -> Decision | None:
        """The order's accrual decision, once made."""
        decided = await self.conn.execute(
            select(audit.c.decision).where(
                audit.c.subject == order_id, audit.c.decision.in_(_ACCRUAL_DECISIONS)
            )
        )
        decision = decided.scalar_one_or_none()
        return None if decision is None else Decision(decision)

    async def standing(self, order_id: str) -> Standing:
        """The order's accrual decision and its commission (locked until the end)."""
        decision = await self.decision_of(order_id)
        found = await self.conn.execute(
            select(commissions).where(commissions.c.order_id == order_id).with_for_update()
        )
        row = found.one_or_none()
        commission = None
        if row is not None:
            commission = Commission(
                id=str(row.id),
                order_id=str(row.order_id),
                referrer_user_id=str(row.referrer_user_id),
                currency=row.currency,
                amount_minor=int(row.amount_minor),
                status=CommissionStatus(row.status),
                reversed_minor=int(row.reversed_minor),
                order_version=int(row.order_version),
                placed_at=row.order_placed_at,
            )
        return Standing(decision, commission)

    async def earlier_pending(self, order_id: str, version: int, events: Sequence[str]) -> bool:
        """Whether an earlier record of the order, of one of ``events``, is still to be
        consumed here (undispatched, and not in ``referral_consumed``)."""
        found = await self.conn.execute(
            select(
                exists().where(
                    outbox.c.aggregate_type == "order",
                    outbox.c.aggregate_id == order_id,
                    outbox.c.version < version,
                    outbox.c.event_type.in_(list(events)),
                    outbox.c.dispatched_at.is_(None),
                    ~exists().where(referral_consumed.c.outbox_id == outbox.c.id),
                )
            )
        )
        return bool(found.scalar())

    async def lock_referrer(self, user_id: str) -> None:
        """Judge one order of a referrer at a time: their count of the day stays true."""
        await self.conn.execute(
            select(referral_codes.c.user_id)
            .where(referral_codes.c.user_id == user_id)
            .with_for_update()
        )

    async def emails_of(self, user_ids: Iterable[str]) -> frozenset[str]:
        ids = sorted(set(user_ids))
        if not ids:
            return frozenset()
        found = await self.conn.execute(
            select(users.c.email).where(users.c.id.in_(ids), users.c.email.is_not(None))
        )
        return frozenset(normalized_email(email) for email in found.scalars())

    async def fingerprints_of(self, user_id: str) -> frozenset[str]:
        found = await self.conn.execute(
            select(referral_fingerprints.c.fingerprint).where(
                referral_fingerprints.c.user_id == user_id
            )
        )
        return frozenset(found.scalars())

    async def commissions_on(self, referrer_user_id: str, day: date) -> int:
        """The referrer's commissions from orders placed on ``day`` (UTC), whatever became
        of them since."""
        start, end = _day_bounds(day)
        found = await self.conn.execute(
            select(func.count()).where(
                commissions.c.referrer_user_id == referrer_user_id,
                commissions.c.order_placed_at >= start,
                commissions.c.order_placed_at < end,
            )
        )
        return int(found.scalar_one())

    async def record_fingerprints(self, order_id: str, cards: Sequence[tuple[str, str]]) -> None:
        """Who paid this order with which card (``(user id, fingerprint)``)."""
        if cards:
            await self.conn.execute(
                insert(referral_fingerprints)
                .values(
                    [
                        {"user_id": user_id, "fingerprint": fingerprint, "order_id": order_id}
                        for user_id, fingerprint in cards
                    ]
                )
                .on_conflict_do_nothing()
            )

    async def store(
        self, outcome: Outcome, *, outbox_id: int, order: OrderFacts, referrer_user_id: str | None
    ) -> None:
        """What consuming the record decided: the commission, its reversal, the log lines."""
        commission = outcome.commission
        if commission is not None and outcome.created:
            await self.conn.execute(
                commissions.insert().values(
                    id=commission.id,
                    order_id=commission.order_id,
                    referrer_user_id=commission.referrer_user_id,
                    currency=commission.currency,
                    amount_minor=commission.amount_minor,
                    reversed_minor=commission.reversed_minor,
                    status=commission.status.value,
                    order_version=commission.order_version,
                    order_placed_at=commission.placed_at,
                )
            )
        elif commission is not None:
            await self.conn.execute(
                update(commissions)
                .where(commissions.c.id == commission.id)
                .values(
                    status=commission.status.value,
                    reversed_minor=commission.reversed_minor,
                    order_version=commission.order_version,
                    updated_at=func.now(),
                )
            )
        if commission is not None and outcome.reversal_minor:
            await self.conn.execute(
                commission_reversals.insert().values(
                    commission_id=commission.id,
                    outbox_id=outbox_id,
                    order_version=order.version,
                    amount_minor=outcome.reversal_minor,
                    refunded_minor=order.refunded_minor,
                )
            )
        if outcome.entries:
            await self.conn.execute(
                audit.insert().values(
                    [
                        {
                            "subject": order.order_id,
                            "referrer_user_id": referrer_user_id,
                            "decision": entry.decision.value,
                            "reason": entry.reason,
                            "amount_minor": entry.amount_minor,
                            "commission_id": None if commission is None else commission.id,
                            "outbox_id": outbox_id,
                        }
                        for entry in outcome.entries
                    ]
                )
            )

    # --- admins and reports ---------------------------------------------------------------

    async def commission(self, commission_id: str) -> CommissionRow | None:
        found = await self.conn.execute(
            select(commissions).where(commissions.c.id == commission_id)
        )
        row = found.one_or_none()
        return None if row is None else _commission_row(row)

    async def mark_paid(self, commission_id: str, by_user_id: str) -> CommissionRow | None:
        """An approved commission becomes paid; ``None`` if it isn't approved (or missing)."""
        paid = await self.conn.execute(
            update(commissions)
            .where(
                commissions.c.id == commission_id,
                commissions.c.status == CommissionStatus.APPROVED.value,
            )
            .values(
                status=CommissionStatus.PAID.value,
                paid_at=func.now(),
                paid_by=by_user_id,
                updated_at=func.now(),
            )
            .returning(*commissions.c)
        )
        row = paid.one_or_none()
        return None if row is None else _commission_row(row)

    async def audit_of(self, subject: str | None, limit: int) -> list[AuditRow]:
        """The log about an order, or about a referrer's orders, oldest first; without a
        subject, the newest ``limit`` lines (oldest first)."""
        query = select(audit).order_by(audit.c.id.desc()).limit(limit)
        if subject is not None:
            query = query.where(
                (audit.c.subject == subject) | (audit.c.referrer_user_id == subject)
            )
        found = await self.conn.execute(query)
        rows = [
            AuditRow(
                subject=row.subject,
                decision=row.decision,
                reason=row.reason,
                at=row.at,
                amount_minor=row.amount_minor,
                referrer_user_id=None
                if row.referrer_user_id is None
                else str(row.referrer_user_id),
            )
            for row in found
        ]
        return rows[::-1]

    async def commission_rows(
        self,
        *,
        referrer_user_id: str | None,
        start: datetime | None,
        end: datetime | None,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[CommissionRow]:
        """Commissions created in ``[start, end)``, oldest first, after the ``(created_at,
        id)`` cursor: one batch of a report."""
        query = select(commissions).order_by(commissions.c.created_at, commissions.c.id)
        if referrer_user_id is not None:
            query = query.where(commissions.c.referrer_user_id == referrer_user_id)
        if start is not None:
            query = query.where(commissions.c.created_at >= start)
        if end is not None:
            query = query.where(commissions.c.created_at < end)
        if after is not None:
            query = query.where(tuple_(commissions.c.created_at, commissions.c.id) > after)
        found = await self.conn.execute(query.limit(limit))
        return [_commission_row(row) for row in found]

    async def count_commissions(
        self, *, referrer_user_id: str | None, start: datetime | None, end: datetime | None
    ) -> int:
        query = select(func.count()).select_from(commissions)
        if referrer_user_id is not None:
            query = query.where(commissions.c.referrer_user_id == referrer_user_id)
        if start is not None:
            query = query.where(commissions.c.created_at >= start)
        if end is not None:
            query = query.where(commissions.c.created_at < end)
        found = await self.conn.execute(query)
        return int(found.scalar_one())
