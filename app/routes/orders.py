"""Order routes: the caller's orders, one order, its fulfilment moves, cancel and partial
refunds; a store's orders for its staff, and adding staff (admin).

Each route builds one command of ``app.use_cases.orders`` and runs it in a unit of work; the
answer is the order's view (``app.use_cases.order_views``), the shape its socket pushes.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.security.jwt import Token
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from app.auth import Principal, admin_only
from app.failures import ConflictError
from app.resources import AppResources
from app.routes.fields import END_OF_TEXT, MAX_MINOR, Text, invalid_field
from app.use_cases import orders as use
from app.use_cases.order_views import OrderView, order_view
from domain.order import OrderStatus

# What encode_cursor issues: URL-safe base64 of "<created_at>|<order id>", unpadded.
Cursor = Annotated[
    str | None, QueryParameter(max_length=200, pattern=rf"^[A-Za-z0-9_-]+{END_OF_TEXT}")
]
StatusFilter = Annotated[
    str | None,
    QueryParameter(
        max_length=200,
        pattern=rf"^[a-z_]+(,[a-z_]+)*{END_OF_TEXT}",
        description="Statuses to list, comma-separated (any when absent).",
    ),
]
Limit = Annotated[int, FromQuery[int]]

Move = Literal[
    "accepted", "rejected", "preparing", "out_for_delivery", "shipped", "delivered", "cancelled"
]
Carrier = Annotated[str, msgspec.Meta(min_length=1, max_length=60, pattern=r"^[^\x00-\x1f\x7f]*$")]
TrackingNumber = Annotated[
    str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$")
]
RefundAmount = Annotated[int, msgspec.Meta(ge=1, le=MAX_MINOR)]


class OrderPage(msgspec.Struct):
    items: list[OrderView]
    next_cursor: str | None


class TransitionRequest(msgspec.Struct, forbid_unknown_fields=True):
    to: Move
    carrier: Carrier | None = None
    tracking_number: TrackingNumber | None = None
    reason: Text | None = None


class CancelRequest(msgspec.Struct, forbid_unknown_fields=True):
    reason: Text | None = None


class RefundRequest(msgspec.Struct, forbid_unknown_fields=True):
    amount_minor: RefundAmount
    user_id: uuid.UUID | None = None
    reason: Text | None = None


class RefundCreated(msgspec.Struct):
    refund_id: str
    """Stripe's refund id once Stripe made it (at once, usually); until then, ours."""
    amount_minor: int
    status: str
    """``succeeded`` (or Stripe's own status), or ``pending`` while Stripe is to be asked."""
    order: OrderView


class StaffAdd(msgspec.Struct, forbid_unknown_fields=True):
    user_id: uuid.UUID


class StaffAdded(msgspec.Struct):
    store_id: str
    user_id: str


def _page(page: use.OrderPage, reader_id: str | None) -> OrderPage:
    return OrderPage(
        items=[order_view(order, reader_id) for order in page.orders],
        next_cursor=page.next_cursor,
    )


def _statuses(status: str | None) -> tuple[OrderStatus, ...]:
    if not status:
        return ()
    try:
        return tuple(OrderStatus(name) for name in status.split(","))
    except ValueError:
        raise invalid_field(
            "status",
            f"each must be one of: {', '.join(s.value for s in OrderStatus)}",
            source="query",
        ) from None


class OrderController(Controller):
    path = "/api/v1/orders"
    tags = ["orders"]  # noqa: RUF012

    @get("/")
    async def list_orders(
        self,
        request: Request[Principal, Token, Any],
        resources: AppResources,
        cursor: Cursor = None,
        limit: Limit = 20,
    ) -> OrderPage:
        """The caller's orders (as host or paying member), newest first, each with what the
        caller paid or committed on it (``my_amount_minor``) and got back."""
        page = await resources.runner.run(
            use.list_orders, use.ListOrders(request.user.user_id, max(1, min(limit, 100)), cursor)
        )
        return _page(page, request.user.user_id)

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
        return order_view(order, request.user.user_id)

    @post("/{order_id:uuid}/transitions", status_code=HTTP_200_OK)
    async def move_order(
        self,
        request: Request[Principal, Token, Any],
        order_id: FromPath[uuid.UUID],
        data: JSONBody[TransitionRequest],
        resources: AppResources,
    ) -> OrderView:
        """A fulfilment step by the store's staff (or an admin); ``shipped`` needs a carrier
        and a tracking number. An illegal move is a 409 naming the allowed ones."""
        if data.to == "cancelled":
            raise ConflictError(
                "illegal_transition", "cancel with POST /api/v1/orders/{id}/cancel: it refunds"
            )
        command = use.MoveOrder(
            request.user,
            str(order_id),
            OrderStatus(data.to),
            carrier=data.carrier,
            tracking_number=data.tracking_number,
            reason=data.reason,
        )
        return order_view(await resources.runner.run(use.move_order, command), request.user.user_id)

    @post("/{order_id:uuid}/cancel", status_code=HTTP_200_OK)
    async def cancel_order(
        self,
        request: Request[Principal, Token, Any],
        order_id: FromPath[uuid.UUID],
        data: JSONBody[CancelRequest],
        resources: AppResources,
    ) -> OrderView:
        """Cancel: the host while placed, the store's staff until it leaves the kitchen;
        every online payment is refunded in full and the stock returned."""
        command = use.CancelOrder(request.user, str(order_id), data.reason)
        order = await resources.runner.run(use.cancel_order, command)
        return order_view(order, request.user.user_id)

    @post("/{order_id:uuid}/refunds", status_code=HTTP_201_CREATED)
    async def refund_order(
        self,
        request: Request[Principal, Token, Any],
        order_id: FromPath[uuid.UUID],
        data: JSONBody[RefundRequest],
        resources: AppResources,
    ) -> RefundCreated:
        """Give part of one payment back (the store's staff or an admin): never more than was
        paid less earlier refunds (422 ``refund_exceeds_paid``). Stripe is asked once this
        has committed; the answer says whether it has made the refund yet."""
        command = use.RefundPart(
            request.user,
            str(order_id),
            None if data.user_id is None else str(data.user_id),
            data.amount_minor,
            data.reason,
        )
        asked = await resources.runner.run(use.refund_part, command)
        state = await resources.runner.run(use.refund_state, asked.request_id)
        status, refund_id = state if state is not None else ("pending", None)
        return RefundCreated(
            refund_id=refund_id or asked.request_id,
            amount_minor=data.amount_minor,
            status="succeeded" if status == "done" else "pending",
            order=order_view(asked.order, request.user.user_id),
        )


class StoreOrderController(Controller):
    path = "/api/v1/stores/{store_id:uuid}"
    tags = ["orders"]  # noqa: RUF012

    @get("/orders")
    async def list_store_orders(
        self,
        request: Request[Principal, Token, Any],
        store_id: FromPath[uuid.UUID],
        resources: AppResources,
        status: StatusFilter = None,
        cursor: Cursor = None,
        limit: Limit = 20,
    ) -> OrderPage:
        """The store's orders, newest first, for its staff and admins; ``status`` filters
        (``placed,accepted``)."""
        query = use.ListStoreOrders(
            request.user, str(store_id), _statuses(status), max(1, min(limit, 100)), cursor
        )
        return _page(await resources.runner.run(use.list_store_orders, query), None)

    @post("/staff", guards=[admin_only], status_code=HTTP_201_CREATED)
    async def add_staff(
        self, store_id: FromPath[uuid.UUID], data: JSONBody[StaffAdd], resources: AppResources
    ) -> StaffAdded:
        """The user becomes staff of the store: they read and move its orders (admin)."""
        command = use.AddStaff(str(store_id), str(data.user_id))
        await resources.runner.run(use.add_staff, command)
        return StaffAdded(store_id=command.store_id, user_id=command.user_id)
