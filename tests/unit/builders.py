"""Small builders of domain objects for the unit tests.

Each builder returns a valid object with fresh random ids, so tests stay independent; keyword
arguments override what a test cares about.
"""

import secrets
import uuid
from datetime import UTC, datetime, timedelta

from domain.catalog import (
    CouponKind,
    CouponTerms,
    Option,
    OptionGroup,
    ProductSnapshot,
    StoreTerms,
)
from domain.order import DeliveryAddress
from domain.teamcart import CartStatus, TeamCart

NOW = datetime(2030, 1, 15, 12, 0, tzinfo=UTC)


def an_id() -> str:
    return str(uuid.uuid4())


def an_invite_code() -> str:
    return secrets.token_urlsafe(16)


def a_store(
    *,
    currency: str = "USD",
    delivery_fee_minor: int = 500,
    tax_rate_bps: int = 825,
    store_id: str | None = None,
) -> StoreTerms:
    return StoreTerms(
        store_id=store_id or an_id(),
        currency=currency,
        delivery_fee_minor=delivery_fee_minor,
        tax_rate_bps=tax_rate_bps,
    )


def a_product(
    store: StoreTerms,
    *,
    name: str = "Margherita",
    price_minor: int = 1000,
    option_groups: tuple[OptionGroup, ...] = (),
) -> ProductSnapshot:
    return ProductSnapshot(
        product_id=an_id(),
        store_id=store.store_id,
        name=name,
        price_minor=price_minor,
        option_groups=option_groups,
    )


def a_pizza_with_options(store: StoreTerms) -> ProductSnapshot:
    """A product with a required single choice (size) and optional extras (up to 2)."""
    return a_product(
        store,
        name="Pizza",
        price_minor=1000,
        option_groups=(
            OptionGroup(
                name="Size",
                min=1,
                max=1,
                options=(Option("Small", 0), Option("Large", 300)),
            ),
            OptionGroup(
                name="Extras",
                min=0,
                max=2,
                options=(Option("Olives", 50), Option("Basil", 25), Option("Chili", 10)),
            ),
        ),
    )


def a_coupon(
    *,
    kind: CouponKind = CouponKind.PERCENT,
    value: int = 10,
    min_subtotal_minor: int = 0,
    max_uses: int | None = None,
    times_used: int = 0,
    code: str | None = None,
) -> CouponTerms:
    return CouponTerms(
        code=code or f"SAVE-{secrets.token_hex(3).upper()}",
        kind=kind,
        value=value,
        min_subtotal_minor=min_subtotal_minor,
        max_uses=max_uses,
        times_used=times_used,
    )


def an_address() -> DeliveryAddress:
    return DeliveryAddress(
        line1="1 Main Street", line2=None, city="Springfield", postal_code="12345", country="US"
    )


def an_open_cart(
    *,
    store: StoreTerms | None = None,
    host: str | None = None,
    deadline: datetime | None = None,
    now: datetime = NOW,
) -> TeamCart:
    """A freshly opened cart (version 1) whose events have already been pulled."""
    cart = TeamCart.open(
        an_id(),
        store or a_store(),
        host or an_id(),
        "Hana",
        an_invite_code(),
        deadline,
        now,
    )
    cart.pull_events()
    return cart


def a_guest(cart: TeamCart, name: str = "Gus") -> str:
    """Join a new guest to the cart and return their user id."""
    user_id = an_id()
    cart.join(user_id, name, NOW)
    return user_id


def add(
    cart: TeamCart,
    actor: str,
    *,
    price_minor: int = 1000,
    quantity: int = 1,
) -> str:
    """Add a plain product to the cart for ``actor``; returns the item id."""
    item_id = an_id()
    cart.add_item(actor, item_id, a_product(cart.store, price_minor=price_minor), quantity, [], NOW)
    return item_id


def a_locked_cart(*, store: StoreTerms | None = None) -> tuple[TeamCart, str, str]:
    """A locked cart with a host and a guest who both have items; events already pulled.

    Returns (cart, host_id, guest_id).
    """
    cart = an_open_cart(store=store)
    host = cart.host_user_id
    guest = a_guest(cart)
    add(cart, host, price_minor=1000)
    add(cart, guest, price_minor=3000)
    cart.lock(host, NOW + timedelta(minutes=1))
    cart.pull_events()
    return cart, host, guest


def a_ready_cart() -> tuple[TeamCart, str, str]:
    """A ready-to-confirm cart: both members committed to COD; events already pulled."""
    cart, host, guest = a_locked_cart()
    cart.commit_cod(host)
    cart.commit_cod(guest)
    cart.pull_events()
    return cart, host, guest


def status_of(cart: TeamCart) -> CartStatus:
    """The cart's status, read through a call so type checkers do not keep an old narrowing."""
    return cart.status
