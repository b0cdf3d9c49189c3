"""Fixing a referral code on a cart when it is created, in the cart's own unit of work.

``POST /api/v1/teamcarts`` and ``POST /api/v1/carts`` take an optional ``referral_code``; with
one, their routes run these handlers instead of the plain openers. Each looks the code up (422
``unknown_referral_code`` for a code nobody has), opens the cart exactly as the plain handler
does, and writes the attribution in the same transaction: the cart and its attribution commit
together or not at all, and a version-conflict retry runs both again.

"Fixed at creation": a shop cart that existed already (``POST /api/v1/carts`` answers the
caller's open cart at the store) keeps the attribution it was created with, or none; a code
given then changes nothing. A group order is attributed by its host's cart; a single-payer
order by its buyer's. Whether the referrer may earn on it is decided later, once, when the
order is paid (``app.referrals.accrual``): a code of the caller's own is attributed like any
other and refused there, with its reason in the decision log.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.failures import UnprocessableError
from app.referrals.repository import SqlReferrals, new_code
from app.unit_of_work import SqlUnitOfWork, UnitOfWork
from app.use_cases.checkout import OpenShopCart, open_shop_cart
from app.use_cases.teamcarts import OpenCart, open_cart
from domain.checkout import ShopCart
from domain.referrals import normalized_code
from domain.teamcart import TeamCart


def joining(uow: UnitOfWork) -> SqlReferrals:
    """The referral rows on the unit's own connection, so what they write joins its
    transaction. The unit of work has no referral repository of its own: its protocol is
    the carts' and orders' (``app.unit_of_work``), and every unit a route runs is on
    PostgreSQL."""
    if not isinstance(uow, SqlUnitOfWork):
        raise TypeError(f"attributing a cart needs a unit of work on PostgreSQL, not {uow!r}")
    conn: AsyncConnection = uow._conn
    return SqlReferrals(conn)


async def _referrer(referrals: SqlReferrals, referral_code: str) -> tuple[str, str]:
    """The code as stored and whose it is, or 422 ``unknown_referral_code``."""
    code = normalized_code(referral_code)
    referrer = await referrals.referrer_of(code)
    if referrer is None:
        raise UnprocessableError(
            "unknown_referral_code", f"referral_code: nobody has the referral code {code!r}"
        )
    return code, referrer


@dataclass(frozen=True, slots=True)
class OpenReferredCart:
    opening: OpenCart
    referral_code: str


async def open_referred_cart(command: OpenReferredCart, uow: UnitOfWork) -> TeamCart:
    """``open_cart``, with the host's cart attributed to the code's owner."""
    referrals = joining(uow)
    code, referrer = await _referrer(referrals, command.referral_code)
    cart = await open_cart(command.opening, uow)
    await referrals.attribute(
        cart_id=cart.id,
        kind="teamcart",
        referrer_user_id=referrer,
        referred_user_id=cart.host_user_id,
        code=code,
    )
    return cart


@dataclass(frozen=True, slots=True)
class OpenReferredShopCart:
    opening: OpenShopCart
    referral_code: str


async def open_referred_shop_cart(command: OpenReferredShopCart, uow: UnitOfWork) -> ShopCart:
    """``open_shop_cart``; a cart it creates is attributed to the code's owner."""
    referrals = joining(uow)
    code, referrer = await _referrer(referrals, command.referral_code)
    opening = command.opening
    existing = await uow.shop_carts.open_ids(opening.user_id, opening.store_id)
    cart = await open_shop_cart(opening, uow)
    if cart.id not in existing:
        await referrals.attribute(
            cart_id=cart.id,
            kind="shop",
            referrer_user_id=referrer,
            referred_user_id=cart.user_id,
            code=code,
        )
    return cart


CODE_ATTEMPTS = 5
"""A new code colliding with someone's is a one-in-a-trillion event; five tries are plenty."""


async def referral_code_for(engine: AsyncEngine, user_id: str) -> str:
    """The user's referral code, made on first asking: the same one every time after, even
    when two requests ask at once (the second waits on the first's row, then reads it)."""
    async with engine.begin() as conn:
        referrals = SqlReferrals(conn)
        for _ in range(CODE_ATTEMPTS):
            code = await referrals.code_of(user_id)
            if code is not None:
                return code
            await referrals.add_code(user_id, new_code())
    raise RuntimeError(f"no free referral code in {CODE_ATTEMPTS} tries")
