"""What paying a store's cart or order owes to its payment settings and to Connect: the small
hooks the payment use cases call (``payments.intents``, ``teamcarts.commit_cod``,
``checkout.ask_stripe``).

- A store whose settings turn online payments off answers ``payments/online`` (and a
  single-payer's checkout, which is always online) with 409 ``online_disabled``; one that
  turns cash on delivery off answers ``payments/cod`` with 409 ``cod_disabled``.
- A store whose Connect account may take charges is paid by Stripe itself: a single-payer
  order is a destination charge (``transfer_data[destination]`` the store's account,
  ``application_fee_amount`` the platform's fee on the total, ``app.connect.money``); a
  group's members' charges carry ``transfer_group`` = the cart's id, and the store's
  transfer is made when the order is placed (``app.connect.transfers``).
"""

from __future__ import annotations

from app.connect import money
from app.connect.rows import StoreTerms, rows_in
from app.failures import ConflictError
from app.payments.amounts import to_stripe
from app.payments.gateway import ConnectCharge
from app.unit_of_work import UnitOfWork
from domain.order import Order


async def store_terms(uow: UnitOfWork, store_id: str) -> StoreTerms:
    """The store's payment terms; the defaults (COD and online, no fee, no Connect) for a
    store without settings or a unit of work that keeps none (the in-memory one)."""
    rows = rows_in(uow)
    terms = None if rows is None else await rows.terms(store_id)
    return terms or StoreTerms(store_id=store_id, currency="")


def require_online(terms: StoreTerms) -> None:
    if not terms.online_enabled:
        raise ConflictError(
            "online_disabled", "This store takes no online payments; pay cash on delivery."
        )


def require_cod(terms: StoreTerms) -> None:
    if not terms.cod_enabled:
        raise ConflictError(
            "cod_disabled", "This store takes no cash on delivery; pay your share online."
        )


def group_charge(terms: StoreTerms, cart_id: str) -> ConnectCharge | None:
    """A member's charge of a store paid by transfer: in the cart's transfer group (the
    order does not exist yet; the transfer made at confirm names the same group)."""
    return ConnectCharge(transfer_group=cart_id) if terms.destination else None


async def order_charge(order: Order, uow: UnitOfWork) -> ConnectCharge | None:
    """A handler: the destination-charge terms of a single-payer order's payment, or
    ``None`` when its store isn't paid through Connect. Refuses (409 ``online_disabled``)
    for a store that takes no online payments."""
    terms = await store_terms(uow, order.store_id)
    require_online(terms)
    if terms.destination is None:
        return None
    fee = money.split(order.totals.total_minor, terms.platform_fee_bps, order.currency).fee_minor
    return ConnectCharge(
        destination=terms.destination,
        application_fee_amount=to_stripe(fee, order.currency) if fee else None,
    )
