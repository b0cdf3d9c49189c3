"""A store's money, for its staff: the transfers to it (one per order, with the fee kept and
what refunds took back) and its Connect account's payouts to its bank, newest first.

Payouts are recorded from ``payout.paid`` / ``payout.failed`` (``app.connect.events``). A
webhook can be lost, so the first page also asks Stripe for the account's newest payouts
(briefly: a Stripe that doesn't answer leaves the page as the database has it).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Final

import structlog

from app.auth import Principal
from app.connect.onboarding import StoreSide, account_of_store, connect_rows
from app.connect.rows import MoneyItem, decode_money_cursor, encode_money_cursor
from app.payments.amounts import from_stripe
from app.payments.gateway import GatewayError, PayoutInfo
from app.unit_of_work import UnitOfWork, UnitOfWorkRunner
from domain.errors import UnknownCurrency

log = structlog.get_logger("teamcart.connect")

SYNC_SECONDS: Final = 3.0
"""How long the first page waits for Stripe's list of payouts."""


@dataclass(frozen=True, slots=True)
class ListPayouts:
    principal: Principal
    store_id: str
    limit: int
    cursor: str | None


@dataclass(frozen=True, slots=True)
class PayoutPage:
    items: list[MoneyItem]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class _Seen:
    store_id: str
    account_id: str
    payouts: list[PayoutInfo]
    as_of: int


async def _note_payouts(seen: _Seen, uow: UnitOfWork) -> None:
    rows = connect_rows(uow)
    for payout in seen.payouts:
        try:
            amount = from_stripe(payout.amount, payout.currency)
        except UnknownCurrency:
            continue
        await rows.note_payout(
            payout_id=payout.id,
            store_id=seen.store_id,
            account_id=seen.account_id,
            amount_minor=amount,
            currency=payout.currency,
            status=payout.status,
            created=payout.created,
            arrival_date=payout.arrival_date,
            failure_code=payout.failure_code,
            as_of=seen.as_of,
        )


async def _page(query: ListPayouts, uow: UnitOfWork) -> PayoutPage:
    before = decode_money_cursor(query.cursor) if query.cursor else None
    items = await connect_rows(uow).money_page(query.store_id, limit=query.limit + 1, before=before)
    more = len(items) > query.limit
    items = items[: query.limit]
    return PayoutPage(items, encode_money_cursor(items[-1]) if more and items else None)


async def list_payouts(query: ListPayouts, runner: UnitOfWorkRunner) -> PayoutPage:
    """One page of the store's money (staff and admins), newest first."""
    if query.cursor:
        decode_money_cursor(query.cursor)  # a foreign cursor is a 400 before anything else
    account_id = await runner.run(account_of_store, StoreSide(query.principal, query.store_id))
    if account_id is not None and query.cursor is None:
        as_of = int(time.time())
        try:
            async with asyncio.timeout(SYNC_SECONDS):
                payouts = await runner.stripe.list_payouts(account_id)
        except (GatewayError, TimeoutError) as exc:
            log.warning("store_payouts_sync_failed", store_id=query.store_id, error=repr(exc))
        else:
            await runner.run(_note_payouts, _Seen(query.store_id, account_id, payouts, as_of))
    return await runner.run(_page, query)
