"""Order routes: the caller's orders, newest first, and one order in full."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.security.jwt import Token

from app.auth import Principal
from app.resources import AppResources
from app.routes.fields import END_OF_TEXT
from app.use_cases import orders as use
from domain.order import Order

# What encode_cursor issues: URL-safe base64 of "<created_at>|<order id>", unpadded.
Cursor = Annotated[
    str | None, QueryParameter(max_length=200, pattern=rf"^[A-Za-z0-9_-]+{END_OF_TEXT}")
]


class OrderCreated(msgspec.Struct):
    order_id: str
    number: str


class OrderLineView(msgspec.Struct):
    product_id: str
    user_id: str
    name: str
    options: list[str]
    unit_price_minor: int
    quantity: int
    line_total_minor: int


class OrderPaymentView(msgspec.Struct):
    user_id: str
    method: str
    amount_minor: int
    status: str
    reference: str | None


class AddressView(msgspec.Struct):
    line1: str
    line2: str | None
    city: str
    postal_code: str
    country: str


class OrderView(msgspec.Struct):
    id: str
    number: str
    status: str
    cart_id: str
    store_id: str
    host_user_id: str
    currency: str
    subtotal_minor: int
    delivery_fee_minor: int
    tax_minor: int
    tip_minor: int
    discount_minor: int
    total_minor: int
    coupon_code: str | None
    delivery_address: AddressView
    lines: list[OrderLineView]
    payments: list[OrderPaymentView]
    created_at: datetime


class OrderPage(msgspec.Struct):
    items: list[OrderView]
    next_cursor: str | None


def order_view(order: Order) -> OrderView:
    address = order.delivery_address
    return OrderView(
        id=order.id,
        number=order.number,
        status=order.status.value,
        cart_id=order.cart_id,
        store_id=order.store_id,
        host_user_id=order.host_user_id,
        currency=order.currency,
        **order.totals.as_dict(),
        coupon_code=order.coupon_code,
        delivery_address=AddressView(
            line1=address.line1,
            line2=address.line2,
            city=address.city,
            postal_code=address.postal_code,
            country=address.country,
        ),
        lines=[
            OrderLineView(
                product_id=line.product_id,
                user_id=line.user_id,
                name=line.name,
                options=list(line.options),
                unit_price_minor=line.unit_price_minor,
                quantity=line.quantity,
                line_total_minor=line.line_total_minor,
            )
            for line in order.lines
        ],
        payments=[
            OrderPaymentView(
                user_id=payment.user_id,
                method=payment.method.value,
                amount_minor=payment.amount_minor,
                status=payment.status.value,
                reference=payment.reference,
            )
            for payment in order.payments
        ],
        created_at=order.created_at,
    )


class OrderController(Controller):
    path = "/api/v1/orders"
    tags = ["orders"]  # noqa: RUF012

    @get("/")
    async def list_orders(
        self,
        request: Request[Principal, Token, Any],
        resources: AppResources,
        cursor: Cursor = None,
        limit: Annotated[int, FromQuery[int]] = 20,
    ) -> OrderPage:
        """The caller's orders (as host or paying member), newest first."""
        limit = max(1, min(limit, 100))
        page = await resources.runner.run(
            use.list_orders, use.ListOrders(request.user.user_id, limit, cursor)
        )
        return OrderPage(
            items=[order_view(order) for order in page.orders], next_cursor=page.next_cursor
        )

    @get("/{order_id:uuid}")
    async def get_order(
        self,
        request: Request[Principal, Token, Any],
        order_id: FromPath[uuid.UUID],
        resources: AppResources,
    ) -> OrderView:
        order = await resources.runner.run(
            use.get_order, use.ReadOrder(request.user, str(order_id))
        )
        return order_view(order)
