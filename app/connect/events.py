"""Stripe's Connect events, taken in through the one webhook inbox (``payments.webhooks``
routes them here): ``account.updated`` keeps where a store's onboarding stands, and
``payout.paid`` / ``payout.failed`` of a connected account record its payouts.

Stripe does not order its events, so each row keeps the ``created`` time of the event it
was last written from, and an older event never overwrites a newer one. An event about an
account that is no store's, or a payout of the platform's own account (no ``account`` on
the event), is ignored, as any event that concerns nothing of ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import structlog

from app.connect.rows import AccountState, rows_in
from app.payments.amounts import from_stripe
from app.unit_of_work import UnitOfWork
from domain.errors import UnknownCurrency

log = structlog.get_logger("teamcart.connect")

ACCOUNT_EVENTS: Final = frozenset({"account.updated"})
PAYOUT_EVENTS: Final = frozenset({"payout.paid", "payout.failed"})
CONNECT_EVENTS: Final = ACCOUNT_EVENTS | PAYOUT_EVENTS


@dataclass(frozen=True, slots=True)
class ConnectOutcome:
    """What the event did (``applied`` or ``ignored``, the inbox's words) and why."""

    outcome: str
    reason: str | None = None


def _flag(obj: Mapping[str, Any], name: str) -> str | None:
    value = obj.get(name, False)
    return None if isinstance(value, bool) else f"{name} is not true or false"


def _words(value: object, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return f"{name} is not a list of strings"
    return None


def _amount(obj: Mapping[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**15:
        return None
    return f"{name} is not a whole non-negative amount"


def _text(obj: Mapping[str, Any], name: str) -> str | None:
    value = obj.get(name)
    return None if isinstance(value, str) and value else f"{name} is not a non-empty string"


def malformed_connect(
    event_type: str, obj: Mapping[str, Any], event: Mapping[str, Any]
) -> str | None:
    """Why a signed Connect event can't be what Stripe sends, or ``None``."""
    created = event.get("created")
    if not isinstance(created, int) or isinstance(created, bool):
        return "created is not a time"
    account = event.get("account")
    if account is not None and not isinstance(account, str):
        return "account is not a string"
    if event_type in ACCOUNT_EVENTS:
        requirements = obj.get("requirements") or {}
        if not isinstance(requirements, Mapping):
            return "requirements is not an object"
        for problem in (
            _text(obj, "id"),
            _flag(obj, "charges_enabled"),
            _flag(obj, "payouts_enabled"),
            _flag(obj, "details_submitted"),
            _words(requirements.get("currently_due"), "requirements.currently_due"),
            _words(requirements.get("past_due"), "requirements.past_due"),
        ):
            if problem:
                return problem
        return None
    for problem in (
        _text(obj, "id"),
        _amount(obj, "amount"),
        _text(obj, "currency"),
        _text(obj, "status"),
        None if isinstance(obj.get("created"), int) else "the payout's created is not a time",
    ):
        if problem:
            return problem
    arrival = obj.get("arrival_date")
    if arrival is not None and not isinstance(arrival, int):
        return "arrival_date is not a time"
    return None


async def apply_connect_event(uow: UnitOfWork, event: Mapping[str, Any]) -> ConnectOutcome:
    """One verified Connect event, in the inbox's transaction."""
    rows = rows_in(uow)
    if rows is None:
        return ConnectOutcome("ignored", "Connect is kept in PostgreSQL only")
    event_type = str(event["type"])
    obj: Mapping[str, Any] = event["data"]["object"]
    as_of = int(event["created"])
    if event_type in ACCOUNT_EVENTS:
        account_id = str(obj["id"])
        requirements = obj.get("requirements") or {}
        due = [*(requirements.get("currently_due") or []), *(requirements.get("past_due") or [])]
        state = AccountState(
            charges_enabled=bool(obj.get("charges_enabled")),
            payouts_enabled=bool(obj.get("payouts_enabled")),
            details_submitted=bool(obj.get("details_submitted")),
            requirements_due=tuple(dict.fromkeys(due)),
        )
        if await rows.note_account_state(account_id, state, as_of):
            log.info(
                "connect_account_updated",
                account_id=account_id,
                charges_enabled=state.charges_enabled,
                payouts_enabled=state.payouts_enabled,
            )
            return ConnectOutcome("applied")
        if await rows.store_of_account(account_id) is None:
            return ConnectOutcome("ignored", "not a store's account")
        return ConnectOutcome("ignored", "older than the account's state kept")
    account = event.get("account")
    if not account:
        return ConnectOutcome("ignored", "a payout of the platform's own account")
    store_id = await rows.store_of_account(str(account))
    if store_id is None:
        return ConnectOutcome("ignored", "not a store's account")
    currency = str(obj["currency"]).upper()
    try:
        amount = from_stripe(int(obj["amount"]), currency)
    except UnknownCurrency:
        return ConnectOutcome("ignored", f"a payout in {currency}, which we don't price in")
    arrival = obj.get("arrival_date")
    kept = await rows.note_payout(
        payout_id=str(obj["id"]),
        store_id=store_id,
        account_id=str(account),
        amount_minor=amount,
        currency=currency,
        status=str(obj["status"]),
        created=int(obj["created"]),
        arrival_date=None if arrival is None else int(arrival),
        failure_code=obj.get("failure_code") if isinstance(obj.get("failure_code"), str) else None,
        as_of=as_of,
    )
    if not kept:
        return ConnectOutcome("ignored", "older than the payout's state kept")
    log.info("store_payout", store_id=store_id, payout_id=obj["id"], status=obj["status"])
    return ConnectOutcome("applied")
