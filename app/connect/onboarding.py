"""A store's Connect account: made once, onboarded through Stripe's account links, and
where that stands for the store's staff.

Starting onboarding takes three steps so no transaction is open while Stripe is asked: a
read (may the caller, and has the store an account already?), the account made at Stripe
(idempotency key per store, so two first calls make one account) and kept, then a fresh
account link, which Stripe makes single-use and short-lived: every call answers a new one
for the same account. Whether onboarding is done is Stripe's to say, by ``account.updated``
(``app.connect.events``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import structlog

from app.auth import Principal
from app.connect.rows import AccountState, ConnectRows, rows_in
from app.failures import ForbiddenError, NotFoundError, ProviderUnavailableError
from app.payments.gateway import ConnectAccountInfo, GatewayError
from app.unit_of_work import UnitOfWork, UnitOfWorkRunner
from app.use_cases.orders import is_store_staff

log = structlog.get_logger("teamcart.connect")


def connect_rows(uow: UnitOfWork) -> ConnectRows:
    rows = rows_in(uow)
    if rows is None:
        raise RuntimeError("stores' payment settings are kept in PostgreSQL only")
    return rows


async def check_store_side(uow: UnitOfWork, principal: Principal, store_id: str) -> None:
    """404 for no such store; 403 ``staff_only`` for anyone but its staff and admins."""
    if await uow.catalog.store(store_id) is None:
        raise NotFoundError("store_not_found", f"no store with id {store_id}")
    if not principal.is_admin and not await is_store_staff(uow, principal, store_id):
        raise ForbiddenError("staff_only", "only the store's staff (or an admin) may do this")


@dataclass(frozen=True, slots=True)
class StoreSide:
    """A question about a store asked by someone who must be its staff (or an admin)."""

    principal: Principal
    store_id: str


async def account_of_store(query: StoreSide, uow: UnitOfWork) -> str | None:
    """The store's Connect account, for its staff and admins; ``None`` before onboarding."""
    await check_store_side(uow, query.principal, query.store_id)
    row = await connect_rows(uow).account(query.store_id)
    return None if row is None else str(row["account_id"])


OnboardingStatus = Literal["not_started", "pending", "restricted", "enabled"]


@dataclass(frozen=True, slots=True)
class Onboarding:
    """Where the store's onboarding stands (``status``: ``not_started`` without an account,
    ``pending`` until Stripe has the details, ``restricted`` when it has them but holds
    charges or payouts back, ``enabled``)."""

    store_id: str
    account_id: str | None
    status: OnboardingStatus
    charges_enabled: bool
    payouts_enabled: bool
    details_submitted: bool
    requirements_due: tuple[str, ...]
    updated_at: datetime | None


def _status(state: AccountState | None) -> OnboardingStatus:
    if state is None:
        return "not_started"
    if state.charges_enabled and state.payouts_enabled:
        return "enabled"
    return "restricted" if state.details_submitted else "pending"


async def read_onboarding(query: StoreSide, uow: UnitOfWork) -> Onboarding:
    await check_store_side(uow, query.principal, query.store_id)
    row = await connect_rows(uow).account(query.store_id)
    if row is None:
        return Onboarding(query.store_id, None, "not_started", False, False, False, (), None)
    state = AccountState(
        charges_enabled=row["charges_enabled"],
        payouts_enabled=row["payouts_enabled"],
        details_submitted=row["details_submitted"],
        requirements_due=tuple(row["requirements_due"] or ()),
    )
    return Onboarding(
        store_id=query.store_id,
        account_id=row["account_id"],
        status=_status(state),
        charges_enabled=state.charges_enabled,
        payouts_enabled=state.payouts_enabled,
        details_submitted=state.details_submitted,
        requirements_due=state.requirements_due,
        updated_at=row["updated_at"],
    )


@dataclass(frozen=True, slots=True)
class StartOnboarding:
    principal: Principal
    store_id: str
    refresh_url: str
    """Where Stripe sends a browser whose link expired or was used: the page asks again."""
    return_url: str


@dataclass(frozen=True, slots=True)
class OnboardingLink:
    account_id: str
    onboarding_url: str


@dataclass(frozen=True, slots=True)
class _KeepAccount:
    store_id: str
    account: ConnectAccountInfo


async def _keep_account(command: _KeepAccount, uow: UnitOfWork) -> str:
    account = command.account
    state = AccountState(
        account.charges_enabled,
        account.payouts_enabled,
        account.details_submitted,
        account.requirements_due,
    )
    row = await connect_rows(uow).add_account(command.store_id, account.id, state)
    return str(row["account_id"])


async def start_onboarding(command: StartOnboarding, runner: UnitOfWorkRunner) -> OnboardingLink:
    """The store's account (made the first time) and a fresh onboarding link to it."""
    account_id = await runner.run(account_of_store, StoreSide(command.principal, command.store_id))
    try:
        if account_id is None:
            made = await runner.stripe.create_connect_account(
                store_id=command.store_id,
                idempotency_key=f"store-{command.store_id}-connect-account",
            )
            account_id = await runner.run(_keep_account, _KeepAccount(command.store_id, made))
            log.info("connect_account_made", store_id=command.store_id, account_id=account_id)
        url = await runner.stripe.create_account_link(
            account_id, refresh_url=command.refresh_url, return_url=command.return_url
        )
    except GatewayError as exc:
        log.warning("connect_onboarding_failed", store_id=command.store_id, error=str(exc))
        raise ProviderUnavailableError(
            "payment_provider_unavailable", "Stripe did not answer; try again"
        ) from exc
    return OnboardingLink(account_id, url)
