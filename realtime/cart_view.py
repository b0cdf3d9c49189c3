"""The cart view of API.md, built from a ``TeamCart``: what HTTP answers and WebSockets push.

One function makes it, so the HTTP response, the Redis view model and every WebSocket update
are the same shape. Presence (who is connected) is not part of the aggregate; callers pass
the set of online user ids.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import msgspec

from domain.pricing import Totals
from domain.teamcart import TeamCart


class PaymentView(msgspec.Struct):
    status: str
    method: str | None
    amount_minor: int


class MemberView(msgspec.Struct):
    user_id: str
    display_name: str
    role: str
    ready: bool
    online: bool
    subtotal_minor: int
    share_minor: int
    payment: PaymentView
    owes_minor: int = 0
    """What they pay: the share, unless the host pays it all, covers it or an allowance.
    (Defaults: a view stored before payment options decodes, and is rebuilt on its next
    event.)"""
    covered: bool = False


class ItemView(msgspec.Struct):
    item_id: str
    user_id: str
    product_id: str
    name: str
    unit_price_minor: int
    quantity: int
    options: list[str]
    line_total_minor: int


class CartView(msgspec.Struct):
    id: str
    store_id: str
    status: str
    version: int
    quote_version: int
    currency: str
    invite_code: str
    deadline: datetime | None
    host_user_id: str
    subtotal_minor: int
    delivery_fee_minor: int
    tax_minor: int
    tip_minor: int
    discount_minor: int
    total_minor: int
    order_id: str | None
    members: list[MemberView]
    items: list[ItemView]
    payment_mode: str = "split"
    allowance_minor: int | None = None
    spending_limit_minor: int | None = None
    capture: str = "automatic"


def cart_view(cart: TeamCart, online: Collection[str] = ()) -> CartView:
    """The view of ``cart`` for its members. Amounts are the quote's once locked; while open,
    the running subtotal with the store's delivery fee (no tax or share yet)."""
    subtotals = cart.member_subtotals
    quote = cart.quote
    totals = (
        quote.totals
        if quote is not None
        else Totals.before_quote(cart.subtotal_minor, cart.store.delivery_fee_minor)
    )
    return CartView(
        id=cart.id,
        store_id=cart.store.store_id,
        status=cart.status.value,
        version=cart.version,
        quote_version=cart.quote_version,
        currency=cart.currency,
        invite_code=cart.invite_code,
        deadline=cart.deadline,
        host_user_id=cart.host_user_id,
        **totals.as_dict(),
        order_id=cart.order_id,
        members=[
            MemberView(
                user_id=member.user_id,
                display_name=member.display_name,
                role=member.role.value,
                ready=member.ready,
                online=member.user_id in online,
                subtotal_minor=subtotals.get(member.user_id, 0),
                share_minor=quote.share_of(member.user_id) if quote is not None else 0,
                owes_minor=quote.owed_by(member.user_id) if quote is not None else 0,
                covered=member.covered,
                payment=PaymentView(
                    status=member.payment.status.value,
                    method=member.payment.method.value if member.payment.method else None,
                    amount_minor=member.payment.amount_minor,
                ),
            )
            for member in cart.members.values()
        ],
        items=[
            ItemView(
                item_id=item.item_id,
                user_id=item.user_id,
                product_id=item.product_id,
                name=item.name,
                unit_price_minor=item.unit_price_minor,
                quantity=item.quantity,
                options=list(item.options),
                line_total_minor=item.line_total_minor,
            )
            for item in cart.items.values()
        ],
        payment_mode=cart.payment_mode.value,
        allowance_minor=cart.allowance_minor,
        spending_limit_minor=cart.spending_limit_minor,
        capture=cart.capture.value,
    )
