"""Every Connect statement: per-store payment settings, Connect accounts, the store's
transfers and their reversals, payouts, and the staff's list of money to the store.

``ConnectRows`` works on one connection, in whatever transaction is open on it: a webhook's
(:func:`rows_in` gives the unit of work's own, so the inbox row and the account it updates
commit together), or one of the outbox consumer's own.

Transfers and reversals are claimed the way owed refunds are (``FOR UPDATE SKIP LOCKED``):
the row stays locked while Stripe is asked, so two processes never ask for the same one at
once, and the Stripe idempotency key (per order, per reversal) covers a crash between
Stripe's answer and the commit.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import RowMapping, Text, func, literal, select, union_all, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from app.connect.money import Split
from app.failures import InvalidFieldError
from app.persistence.tables import (
    store_accounts,
    store_payment_configs,
    store_payouts,
    store_transfer_reversals,
    store_transfers,
    stores,
)
from app.unit_of_work import SqlUnitOfWork, UnitOfWork

_ITEM_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,255}")
"""What a payouts page's item id is made of (Stripe's ids, ``transfer-<order id>``)."""

RETRY_BACKOFF_SECONDS: Final = (2, 3600)
"""A transfer or reversal Stripe did not take is tried again after 2 s, doubling, at most an
hour apart (as owed refunds are)."""


def rows_in(uow: UnitOfWork) -> ConnectRows | None:
    """The Connect statements on the unit of work's own transaction; ``None`` for a unit of
    work that is not PostgreSQL's (the in-memory one of the handlers' unit tests, where no
    store has Connect settings: every hook then leaves payments as they were).

    Why reach for the connection: the unit of work's protocol has no Connect repository (it
    is shared with the fake every handler test runs on), and a webhook's Connect effect must
    commit with its inbox row, on the same connection."""
    if isinstance(uow, SqlUnitOfWork):
        return ConnectRows(uow._conn)  # the transaction's own (see the docstring)
    return None


@dataclass(frozen=True, slots=True)
class StoreTerms:
    """How a store takes money: the methods it accepts, the platform's fee, and its Connect
    account when it may take charges (``account_id`` with ``charges_enabled``)."""

    store_id: str
    currency: str
    cod_enabled: bool = True
    online_enabled: bool = True
    platform_fee_bps: int = 0
    account_id: str | None = None
    charges_enabled: bool = False

    @property
    def destination(self) -> str | None:
        """The account charges may pay into: onboarded, or none."""
        return self.account_id if self.charges_enabled else None


@dataclass(frozen=True, slots=True)
class AccountState:
    """Where a store's onboarding stands, as ``account.updated`` (or Stripe) says."""

    charges_enabled: bool
    payouts_enabled: bool
    details_submitted: bool
    requirements_due: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TransferRow:
    order_id: str
    store_id: str
    account_id: str
    kind: str  # transfer | destination
    currency: str
    split: Split
    transfer_group: str | None
    payment_intent_id: str | None
    stripe_transfer_id: str | None
    application_fee_id: str | None
    status: str
    attempts: int


@dataclass(frozen=True, slots=True)
class ReversalRow:
    id: str
    order_id: str
    refunded_minor: int
    part: Split  # the refund's store part (amount) and fee part (fee)
    attempts: int


@dataclass(frozen=True, slots=True)
class MoneyItem:
    """One line of a store's payouts page: a transfer to it, or its account's payout."""

    kind: str  # transfer | payout
    id: str
    amount_minor: int
    currency: str
    status: str
    created_at: datetime
    order_id: str | None
    fee_minor: int | None
    reversed_minor: int | None


Sealed = str | None
"""A sealed secret (``app.secrets``), or ``None`` for none."""


def _transfer(row: RowMapping) -> TransferRow:
    return TransferRow(
        order_id=row["order_id"],
        store_id=row["store_id"],
        account_id=row["account_id"],
        kind=row["kind"],
        currency=row["currency"],
        split=Split(row["gross_minor"], row["fee_minor"], row["amount_minor"]),
        transfer_group=row["transfer_group"],
        payment_intent_id=row["payment_intent_id"],
        stripe_transfer_id=row["stripe_transfer_id"],
        application_fee_id=row["application_fee_id"],
        status=row["status"],
        attempts=row["attempts"],
    )


def _backoff(attempts: int) -> timedelta:
    first, cap = RETRY_BACKOFF_SECONDS
    return timedelta(seconds=min(cap, first * 2 ** min(attempts - 1, 20)))


def encode_money_cursor(item: MoneyItem) -> str:
    raw = f"{item.created_at.isoformat()}|{item.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_money_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, item_id = raw.split("|", 1)
        moment = datetime.fromisoformat(created_at)
        if moment.tzinfo is None or not _ITEM_ID.fullmatch(item_id):
            raise ValueError("not ours")
        return moment.astimezone(UTC), item_id
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidFieldError("cursor", "query", "not a cursor this server issued") from exc


class ConnectRows:
    """The Connect statements of one connection's transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    # --- how a store takes money --------------------------------------------------------

    async def terms(self, store_id: str) -> StoreTerms | None:
        """The store's payment terms (defaults where it has no settings); ``None`` for no
        such store. One statement: every payment of the store reads it."""
        c, a = store_payment_configs.c, store_accounts.c
        query = (
            select(
                stores.c.id,
                stores.c.currency,
                c.cod_enabled,
                c.online_enabled,
                c.platform_fee_bps,
                a.account_id,
                a.charges_enabled,
            )
            .select_from(
                stores.outerjoin(store_payment_configs, c.store_id == stores.c.id).outerjoin(
                    store_accounts, a.store_id == stores.c.id
                )
            )
            .where(stores.c.id == store_id)
        )
        row = (await self._conn.execute(query)).mappings().one_or_none()
        if row is None:
            return None
        return StoreTerms(
            store_id=row["id"],
            currency=row["currency"],
            cod_enabled=True if row["cod_enabled"] is None else row["cod_enabled"],
            online_enabled=True if row["online_enabled"] is None else row["online_enabled"],
            platform_fee_bps=row["platform_fee_bps"] or 0,
            account_id=row["account_id"],
            charges_enabled=bool(row["charges_enabled"]),
        )

    async def config(self, store_id: str, *, lock: bool = False) -> RowMapping | None:
        query = select(store_payment_configs).where(store_payment_configs.c.store_id == store_id)
        if lock:
            query = query.with_for_update()
        return (await self._conn.execute(query)).mappings().one_or_none()

    async def put_config(
        self,
        store_id: str,
        *,
        cod_enabled: bool,
        online_enabled: bool,
        platform_fee_bps: int,
        secret_key: Sealed,
        webhook_secret: Sealed,
    ) -> RowMapping:
        """The store's settings, as given (sealed secrets included: the caller kept or
        changed them)."""
        values: dict[str, Any] = {
            "cod_enabled": cod_enabled,
            "online_enabled": online_enabled,
            "platform_fee_bps": platform_fee_bps,
            "stripe_secret_key_sealed": secret_key,
            "stripe_webhook_secret_sealed": webhook_secret,
        }
        statement = (
            insert(store_payment_configs)
            .values(store_id=store_id, **values)
            .on_conflict_do_update(
                index_elements=[store_payment_configs.c.store_id],
                set_={**values, "updated_at": func.now()},
            )
            .returning(*store_payment_configs.c)
        )
        return (await self._conn.execute(statement)).mappings().one()

    async def sealed_configs(self) -> Sequence[RowMapping]:
        """Every store's settings holding a secret, locked (``teamcart secrets rotate``)."""
        c = store_payment_configs.c
        query = (
            select(store_payment_configs)
            .where(
                c.stripe_secret_key_sealed.is_not(None)
                | c.stripe_webhook_secret_sealed.is_not(None)
            )
            .order_by(c.store_id)
            .with_for_update()
        )
        return (await self._conn.execute(query)).mappings().all()

    async def reseal(self, store_id: str, *, secret_key: Sealed, webhook_secret: Sealed) -> None:
        await self._conn.execute(
            update(store_payment_configs)
            .where(store_payment_configs.c.store_id == store_id)
            .values(
                stripe_secret_key_sealed=secret_key,
                stripe_webhook_secret_sealed=webhook_secret,
                updated_at=func.now(),
            )
        )

    # --- Connect accounts ---------------------------------------------------------------

    async def account(self, store_id: str) -> RowMapping | None:
        query = select(store_accounts).where(store_accounts.c.store_id == store_id)
        return (await self._conn.execute(query)).mappings().one_or_none()

    async def add_account(self, store_id: str, account: str, state: AccountState) -> RowMapping:
        """The store's account; if another request made one first, that one (the Stripe
        idempotency key made them the same account)."""
        await self._conn.execute(
            insert(store_accounts)
            .values(
                store_id=store_id,
                account_id=account,
                charges_enabled=state.charges_enabled,
                payouts_enabled=state.payouts_enabled,
                details_submitted=state.details_submitted,
                requirements_due=list(state.requirements_due),
            )
            .on_conflict_do_nothing(index_elements=[store_accounts.c.store_id])
        )
        row = await self.account(store_id)
        assert row is not None
        return row

    async def store_of_account(self, account: str) -> str | None:
        query = select(store_accounts.c.store_id).where(store_accounts.c.account_id == account)
        found: str | None = (await self._conn.execute(query)).scalar_one_or_none()
        return found

    async def note_account_state(self, account: str, state: AccountState, as_of: int) -> bool:
        """The account's state as of Stripe's event time ``as_of``; ``False`` when a newer
        one was kept already (Stripe does not order its events), or the account is not ours."""
        a = store_accounts.c
        changed = await self._conn.execute(
            update(store_accounts)
            .where(a.account_id == account, a.state_as_of <= as_of)
            .values(
                charges_enabled=state.charges_enabled,
                payouts_enabled=state.payouts_enabled,
                details_submitted=state.details_submitted,
                requirements_due=list(state.requirements_due),
                state_as_of=as_of,
                updated_at=func.now(),
            )
        )
        return bool(changed.rowcount)

    # --- the store's transfers ----------------------------------------------------------

    async def add_transfer(
        self,
        *,
        order_id: str,
        store_id: str,
        account_id: str,
        kind: str,
        currency: str,
        split: Split,
        transfer_group: str | None = None,
        payment_intent_id: str | None = None,
    ) -> bool:
        """The store's transfer for the order, pending; ``False`` when the order has one
        already (however many times, and by whichever process, its event is handled)."""
        inserted = await self._conn.execute(
            insert(store_transfers)
            .values(
                order_id=order_id,
                store_id=store_id,
                account_id=account_id,
                kind=kind,
                currency=currency,
                gross_minor=split.gross_minor,
                fee_minor=split.fee_minor,
                amount_minor=split.amount_minor,
                transfer_group=transfer_group,
                payment_intent_id=payment_intent_id,
            )
            .on_conflict_do_nothing(index_elements=[store_transfers.c.order_id])
            .returning(store_transfers.c.order_id)
        )
        return inserted.first() is not None

    async def transfer(self, order_id: str, *, lock: bool = False) -> TransferRow | None:
        query = select(store_transfers).where(store_transfers.c.order_id == order_id)
        if lock:
            query = query.with_for_update()
        row = (await self._conn.execute(query)).mappings().one_or_none()
        return None if row is None else _transfer(row)

    async def claim_transfer(self, order_id: str) -> TransferRow | None:
        """The order's pending transfer, locked until the end; ``None`` when made, skipped,
        or being made by another process right now."""
        query = (
            select(store_transfers)
            .where(store_transfers.c.order_id == order_id, store_transfers.c.status == "pending")
            .with_for_update(skip_locked=True)
        )
        row = (await self._conn.execute(query)).mappings().one_or_none()
        return None if row is None else _transfer(row)

    async def due_transfers(self, limit: int) -> list[str]:
        t = store_transfers.c
        query = (
            select(t.order_id)
            .where(t.status == "pending", t.next_attempt_at <= func.now())
            .order_by(t.next_attempt_at)
            .limit(limit)
        )
        return [str(order_id) for order_id in (await self._conn.execute(query)).scalars()]

    async def transfer_paid(
        self,
        order_id: str,
        *,
        stripe_transfer_id: str,
        attempts: int,
        application_fee_id: str | None = None,
        split: Split | None = None,
    ) -> None:
        """Stripe made it (``split``: the amounts as Stripe has them, for a destination
        charge whose fee Stripe kept)."""
        values: dict[str, Any] = {
            "status": "paid",
            "stripe_transfer_id": stripe_transfer_id,
            "application_fee_id": application_fee_id,
            "attempts": attempts,
            "last_error": None,
            "paid_at": func.now(),
        }
        if split is not None:
            values |= {
                "gross_minor": split.gross_minor,
                "fee_minor": split.fee_minor,
                "amount_minor": split.amount_minor,
            }
        await self._conn.execute(
            update(store_transfers).where(store_transfers.c.order_id == order_id).values(**values)
        )

    async def transfer_skipped(self, order_id: str, reason: str) -> None:
        """Nothing is owed to the store through Connect for the order (said why)."""
        await self._conn.execute(
            update(store_transfers)
            .where(store_transfers.c.order_id == order_id)
            .values(status="skipped", last_error=reason[:500])
        )

    async def transfer_failed(self, order_id: str, attempts: int, error: str) -> None:
        await self._conn.execute(
            update(store_transfers)
            .where(store_transfers.c.order_id == order_id)
            .values(
                attempts=attempts,
                last_error=error[:500],
                next_attempt_at=func.now() + _backoff(attempts),
            )
        )

    # --- reversals ----------------------------------------------------------------------

    async def reversed_so_far(self, order_id: str) -> Split:
        """What earlier refund events of the order took back, together."""
        r = store_transfer_reversals.c
        query = select(
            func.coalesce(func.sum(r.fee_minor), 0), func.coalesce(func.sum(r.amount_minor), 0)
        ).where(r.order_id == order_id)
        fee, amount = (await self._conn.execute(query)).one()
        return Split(int(fee) + int(amount), int(fee), int(amount))

    async def add_reversal(
        self, reversal_id: str, order_id: str, refunded_minor: int, part: Split
    ) -> bool:
        """One refund event's part, pending; ``False`` when that event was handled before."""
        inserted = await self._conn.execute(
            insert(store_transfer_reversals)
            .values(
                id=reversal_id,
                order_id=order_id,
                refunded_minor=refunded_minor,
                amount_minor=part.amount_minor,
                fee_minor=part.fee_minor,
            )
            .on_conflict_do_nothing(index_elements=[store_transfer_reversals.c.id])
            .returning(store_transfer_reversals.c.id)
        )
        return inserted.first() is not None

    async def pending_reversals(self, order_id: str) -> list[str]:
        r = store_transfer_reversals.c
        query = (
            select(r.id)
            .where(r.order_id == order_id, r.status == "pending")
            .order_by(r.created_at, r.id)
        )
        return [str(i) for i in (await self._conn.execute(query)).scalars()]

    async def due_reversals(self, limit: int) -> list[str]:
        r = store_transfer_reversals.c
        query = (
            select(r.id)
            .where(r.status == "pending", r.next_attempt_at <= func.now())
            .order_by(r.next_attempt_at)
            .limit(limit)
        )
        return [str(i) for i in (await self._conn.execute(query)).scalars()]

    async def claim_reversal(self, reversal_id: str) -> ReversalRow | None:
        r = store_transfer_reversals.c
        query = (
            select(store_transfer_reversals)
            .where(r.id == reversal_id, r.status == "pending")
            .with_for_update(skip_locked=True)
        )
        row = (await self._conn.execute(query)).mappings().one_or_none()
        if row is None:
            return None
        return ReversalRow(
            id=row["id"],
            order_id=row["order_id"],
            refunded_minor=row["refunded_minor"],
            part=Split(
                row["amount_minor"] + row["fee_minor"], row["fee_minor"], row["amount_minor"]
            ),
            attempts=row["attempts"],
        )

    async def reversal_done(
        self,
        reversal_id: str,
        *,
        attempts: int,
        stripe_reversal_id: str | None,
        application_fee_refund_id: str | None,
    ) -> None:
        await self._conn.execute(
            update(store_transfer_reversals)
            .where(store_transfer_reversals.c.id == reversal_id)
            .values(
                status="done",
                attempts=attempts,
                last_error=None,
                stripe_reversal_id=stripe_reversal_id,
                application_fee_refund_id=application_fee_refund_id,
                done_at=func.now(),
            )
        )

    async def reversal_failed(self, reversal_id: str, attempts: int, error: str) -> None:
        await self._conn.execute(
            update(store_transfer_reversals)
            .where(store_transfer_reversals.c.id == reversal_id)
            .values(
                attempts=attempts,
                last_error=error[:500],
                next_attempt_at=func.now() + _backoff(attempts),
            )
        )

    # --- payouts ------------------------------------------------------------------------

    async def note_payout(
        self,
        *,
        payout_id: str,
        store_id: str,
        account_id: str,
        amount_minor: int,
        currency: str,
        status: str,
        created: int,
        arrival_date: int | None,
        failure_code: str | None,
        as_of: int,
    ) -> bool:
        """The payout as of ``as_of`` (Stripe's event time): kept unless a newer notice of
        it was (a payout may go ``paid`` then ``failed``, when the bank sends it back)."""
        values: dict[str, Any] = {
            "amount_minor": amount_minor,
            "currency": currency,
            "status": status,
            "arrival_date": None
            if arrival_date is None
            else datetime.fromtimestamp(arrival_date, UTC),
            "failure_code": failure_code,
            "state_as_of": as_of,
        }
        statement = (
            insert(store_payouts)
            .values(
                id=payout_id,
                store_id=store_id,
                account_id=account_id,
                created_at=datetime.fromtimestamp(created, UTC),
                **values,
            )
            .on_conflict_do_update(
                index_elements=[store_payouts.c.id],
                set_={**values, "updated_at": func.now()},
                where=store_payouts.c.state_as_of <= as_of,
            )
            .returning(store_payouts.c.id)
        )
        return (await self._conn.execute(statement)).first() is not None

    # --- the staff's page ---------------------------------------------------------------

    async def money_page(
        self, store_id: str, *, limit: int, before: tuple[datetime, str] | None
    ) -> list[MoneyItem]:
        """Transfers to the store (made or pending, not skipped) and its payouts, newest
        first, after the ``(created_at, id)`` cursor ``before``; ``limit`` of them."""
        t, r, p = store_transfers.c, store_transfer_reversals.c, store_payouts.c
        reversed_minor = (
            select(func.coalesce(func.sum(r.amount_minor), 0))
            .where(r.order_id == t.order_id)
            .scalar_subquery()
        )
        transfers = select(
            literal("transfer").label("kind"),
            func.coalesce(
                t.stripe_transfer_id, literal("transfer-") + t.order_id.cast(Text())
            ).label("id"),
            t.amount_minor.label("amount_minor"),
            t.currency.label("currency"),
            t.status.label("status"),
            t.created_at.label("created_at"),
            t.order_id.cast(Text()).label("order_id"),
            t.fee_minor.label("fee_minor"),
            reversed_minor.label("reversed_minor"),
        ).where(t.store_id == store_id, t.status != "skipped")
        payouts = select(
            literal("payout").label("kind"),
            p.id.label("id"),
            p.amount_minor.label("amount_minor"),
            p.currency.label("currency"),
            p.status.label("status"),
            p.created_at.label("created_at"),
            literal(None, type_=Text()).label("order_id"),
            literal(None, type_=p.amount_minor.type).label("fee_minor"),
            literal(None, type_=p.amount_minor.type).label("reversed_minor"),
        ).where(p.store_id == store_id)
        both = union_all(transfers, payouts).subquery()
        query = select(both).order_by(both.c.created_at.desc(), both.c.id.desc()).limit(limit)
        if before is not None:
            moment, item_id = before
            query = query.where(
                (both.c.created_at < moment)
                | ((both.c.created_at == moment) & (both.c.id < item_id))
            )
        rows = (await self._conn.execute(query)).mappings().all()
        return [_money_item(row) for row in rows]


def _money_item(row: RowMapping) -> MoneyItem:
    reversed_minor = row["reversed_minor"]
    status = row["status"]
    if row["kind"] == "transfer" and status == "paid" and reversed_minor:
        status = "reversed" if reversed_minor >= row["amount_minor"] else "partially_reversed"
    return MoneyItem(
        kind=row["kind"],
        id=row["id"],
        amount_minor=row["amount_minor"],
        currency=row["currency"],
        status=status,
        created_at=row["created_at"],
        order_id=row["order_id"],
        fee_minor=row["fee_minor"],
        reversed_minor=None if reversed_minor is None else int(reversed_minor),
    )
