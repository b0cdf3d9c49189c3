"""TeamCart routes: open, join, items, lobby, lock and quote, COD, confirm, cancel.

Each route builds one command of ``app.use_cases.teamcarts`` and runs its handler in a unit of
work (``resources.runner``), then answers with the cart view (``realtime.cart_view``), the
same shape the WebSocket pushes. Rules and refusals live in the domain; this module only
translates HTTP to commands and back.
"""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
import segno
from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.security.jwt import Token
from litestar.status_codes import HTTP_200_OK, HTTP_304_NOT_MODIFIED

from app.auth import Principal
from app.persistence.cart_summaries import CartSummary, list_carts_of
from app.referrals import attribution as referrals
from app.resources import AppResources
from app.routes.fields import (
    MAX_MINOR,
    MAX_OPTIONS_CHOSEN,
    Code,
    Count,
    Deadline,
    MinorAmount,
    Name,
    Text,
    WholeNumber,
    check_deadline,
    invalid_field,
)
from app.routes.referrals import ReferralCodeIn
from app.use_cases import teamcarts as use
from app.use_cases.reminders import MAX_REMINDER_MINUTES
from app.use_cases.views import member_version, read_cart_view
from domain.order import DeliveryAddress
from domain.teamcart import DEFAULT_REMINDER_MINUTES, Capture, PaymentMode
from realtime.cart_view import CartView, ItemView, cart_view

AuthRequest = Request[Principal, Token, Any]

ReminderMinutes = Annotated[int, msgspec.Meta(ge=0, le=MAX_REMINDER_MINUTES)]
"""How long before the deadline, and the payment window's end, members are reminded (0:
never; at most a day)."""


def invite_svg(link: str) -> bytes:
    """A QR code of ``link`` as an SVG document (segno), titled for screen readers."""
    out = io.BytesIO()
    segno.make(link, error="m").save(
        out, kind="svg", scale=6, border=2, title="Invite link to this TeamCart", xmldecl=False
    )
    return out.getvalue()


class OrderCreated(msgspec.Struct):
    order_id: str
    number: str


class CartCreate(msgspec.Struct, forbid_unknown_fields=True):
    store_id: uuid.UUID
    deadline: Deadline | None = None
    referral_code: ReferralCodeIn | None = None
    capture: Literal["automatic", "on_confirm"] = "automatic"
    reminder_minutes: ReminderMinutes = DEFAULT_REMINDER_MINUTES


class JoinRequest(msgspec.Struct, forbid_unknown_fields=True):
    invite_code: Code


class ItemCreate(msgspec.Struct, forbid_unknown_fields=True):
    product_id: uuid.UUID
    quantity: Count  # 1 to 99 is the domain's rule (422 invalid_quantity)
    options: Annotated[list[Name], msgspec.Meta(max_length=MAX_OPTIONS_CHOSEN)] = msgspec.field(
        default_factory=list
    )


class ItemUpdate(msgspec.Struct, forbid_unknown_fields=True):
    quantity: Count


class ItemAdded(ItemView):
    cart: CartView


class ReadyUpdate(msgspec.Struct, forbid_unknown_fields=True):
    ready: bool


class TipUpdate(msgspec.Struct, forbid_unknown_fields=True):
    # Negative is the domain's 422 invalid_tip; above MAX_MINOR the route's 422.
    amount_minor: WholeNumber


class PaymentModeUpdate(msgspec.Struct, forbid_unknown_fields=True):
    mode: Literal["split", "host_pays"]


class AmountOrNone(msgspec.Struct, forbid_unknown_fields=True):
    amount_minor: MinorAmount | None


class CouponRequest(msgspec.Struct, forbid_unknown_fields=True):
    code: Code


class AddressIn(msgspec.Struct, forbid_unknown_fields=True):
    # Required, trimmed and at most 200 characters: the domain's rules (422 invalid_address).
    line1: Text
    city: Text
    postal_code: Text
    country: Text
    line2: Text | None = None


class ConfirmRequest(msgspec.Struct, forbid_unknown_fields=True):
    delivery_address: AddressIn


class CartList(msgspec.Struct):
    items: list[CartSummary]


MY_CARTS_LIMIT = 50

CartId = FromPath[uuid.UUID]


def _view_headers(version: int) -> dict[str, str]:
    return {"ETag": f'"{version}"', "Cache-Control": "private, no-cache"}


class TeamCartController(Controller):
    path = "/api/v1/teamcarts"
    tags = ["teamcart"]  # noqa: RUF012

    @post("/")
    async def open_cart(
        self, request: AuthRequest, data: JSONBody[CartCreate], resources: AppResources
    ) -> CartView:
        """Open a cart for a store; the caller is its host. A ``referral_code`` is fixed on
        the cart with it (``app.referrals.attribution``)."""
        check_deadline(data.deadline, datetime.now(UTC))
        actor = request.user
        command = use.OpenCart(
            actor.user_id,
            actor.display_name,
            str(data.store_id),
            data.deadline,
            capture=Capture(data.capture),
            reminder_minutes=data.reminder_minutes,
        )
        if data.referral_code is not None:
            referred = referrals.OpenReferredCart(command, data.referral_code)
            return cart_view(await resources.runner.run(referrals.open_referred_cart, referred))
        return cart_view(await resources.runner.run(use.open_cart, command))

    @get("/")
    async def list_my_carts(
        self,
        request: AuthRequest,
        resources: AppResources,
        include_closed: FromQuery[bool] = False,
    ) -> CartList:
        """The carts the caller is a member of (at most 50), those still open, locked or ready
        first, most recently changed first; converted, expired and cancelled ones too with
        ``?include_closed=true``. Not in API.md: the home page's "My carts"."""
        async with resources.engine.connect() as conn:
            summaries = await list_carts_of(
                conn, request.user.user_id, limit=MY_CARTS_LIMIT, include_closed=include_closed
            )
        return CartList(items=summaries)

    @post("/join", status_code=HTTP_200_OK)
    async def join(
        self, request: AuthRequest, data: JSONBody[JoinRequest], resources: AppResources
    ) -> CartView:
        """Join by invite code; joining again is harmless."""
        actor = request.user
        command = use.JoinCart(actor.user_id, actor.display_name, data.invite_code)
        return cart_view(await resources.runner.run(use.join_cart, command))

    @get("/{cart_id:uuid}")
    async def get_cart(
        self,
        request: AuthRequest,
        cart_id: CartId,
        resources: AppResources,
    ) -> Response[CartView | None]:
        """The cart view, with ``ETag: "<version>"``; ``If-None-Match`` → 304 when unchanged.

        Served from the Redis view model, with who is online now (ADR 0004). A client
        polling with its version is answered from the version alone (ADR 0012)."""
        user_id = request.user.user_id
        if_none_match = request.headers.get("if-none-match", "")
        if if_none_match:
            version = await member_version(resources.runner, str(cart_id), user_id)
            if f'"{version}"' in {tag.strip() for tag in if_none_match.split(",")}:
                return Response(
                    None, status_code=HTTP_304_NOT_MODIFIED, headers=_view_headers(version)
                )
        view = await read_cart_view(
            resources.runner, resources.live.projection, user_id, str(cart_id)
        )
        return Response(view, headers=_view_headers(view.version))

    @post("/{cart_id:uuid}/invite/rotate", status_code=HTTP_200_OK)
    async def rotate_invite(
        self, request: AuthRequest, cart_id: CartId, resources: AppResources
    ) -> CartView:
        """A new invite code (host): the old link answers 404 from now on."""
        command = use.RotateInvite(request.user.user_id, str(cart_id))
        return cart_view(await resources.runner.run(use.rotate_invite, command))

    @get("/{cart_id:uuid}/invite.svg", media_type="image/svg+xml")
    async def invite_qr(
        self, request: AuthRequest, cart_id: CartId, resources: AppResources
    ) -> Response[bytes]:
        """The invite link as a QR code (SVG), for members to show the others."""
        view = await read_cart_view(
            resources.runner, resources.live.projection, request.user.user_id, str(cart_id)
        )
        base = (resources.settings.public_url or str(request.base_url)).rstrip("/")
        svg = invite_svg(f"{base}/join/{view.invite_code}")
        return Response(
            svg, media_type="image/svg+xml", headers={"Cache-Control": "private, no-store"}
        )

    @post("/{cart_id:uuid}/items")
    async def add_item(
        self,
        request: AuthRequest,
        cart_id: CartId,
        data: JSONBody[ItemCreate],
        resources: AppResources,
    ) -> ItemAdded:
        """Add one of the caller's own items (while open)."""
        command = use.AddItem(
            request.user.user_id,
            str(cart_id),
            str(data.product_id),
            data.quantity,
            tuple(data.options),
        )
        added = await resources.runner.run(use.add_item, command)
        view = cart_view(added.cart)
        item = next(item for item in view.items if item.item_id == added.item_id)
        return ItemAdded(**msgspec.structs.asdict(item), cart=view)

    @patch("/{cart_id:uuid}/items/{item_id:uuid}")
    async def change_item(
        self,
        request: AuthRequest,
        cart_id: CartId,
        item_id: FromPath[uuid.UUID],
        data: JSONBody[ItemUpdate],
        resources: AppResources,
    ) -> CartView:
        command = use.ChangeItemQuantity(
            request.user.user_id, str(cart_id), str(item_id), data.quantity
        )
        return cart_view(await resources.runner.run(use.change_item_quantity, command))

    @delete("/{cart_id:uuid}/items/{item_id:uuid}")
    async def remove_item(
        self,
        request: AuthRequest,
        cart_id: CartId,
        item_id: FromPath[uuid.UUID],
        resources: AppResources,
    ) -> None:
        command = use.RemoveItem(request.user.user_id, str(cart_id), str(item_id))
        await resources.runner.run(use.remove_item, command)

    @delete("/{cart_id:uuid}/members/{user_id:uuid}")
    async def remove_member(
        self,
        request: AuthRequest,
        cart_id: CartId,
        user_id: FromPath[uuid.UUID],
        resources: AppResources,
    ) -> None:
        """The host removes a guest, or a guest leaves; their items go with them. After lock
        the host may still remove a guest who hasn't paid or committed: their stock goes back
        and the cart is priced again, nobody who paid owing a different amount."""
        command = use.RemoveMember(request.user.user_id, str(cart_id), str(user_id))
        await resources.runner.run(use.remove_member, command)

    @put("/{cart_id:uuid}/ready")
    async def set_ready(
        self,
        request: AuthRequest,
        cart_id: CartId,
        data: JSONBody[ReadyUpdate],
        resources: AppResources,
    ) -> CartView:
        command = use.SetReady(request.user.user_id, str(cart_id), data.ready)
        return cart_view(await resources.runner.run(use.set_ready, command))

    @post("/{cart_id:uuid}/lock", status_code=HTTP_200_OK)
    async def lock(
        self, request: AuthRequest, cart_id: CartId, resources: AppResources
    ) -> CartView:
        """Host only: freeze items, reserve stock, compute every member's share."""
        command = use.LockCart(request.user.user_id, str(cart_id))
        return cart_view(await resources.runner.run(use.lock_cart, command))

    @post("/{cart_id:uuid}/unlock", status_code=HTTP_200_OK)
    async def unlock(
        self, request: AuthRequest, cart_id: CartId, resources: AppResources
    ) -> CartView:
        command = use.UnlockCart(request.user.user_id, str(cart_id))
        return cart_view(await resources.runner.run(use.unlock_cart, command))

    @put("/{cart_id:uuid}/tip")
    async def set_tip(
        self,
        request: AuthRequest,
        cart_id: CartId,
        data: JSONBody[TipUpdate],
        resources: AppResources,
    ) -> CartView:
        if data.amount_minor > MAX_MINOR:
            raise invalid_field("amount_minor", f"must be at most {MAX_MINOR}")
        command = use.SetTip(request.user.user_id, str(cart_id), data.amount_minor)
        return cart_view(await resources.runner.run(use.set_tip, command))

    @put("/{cart_id:uuid}/payment-mode")
    async def set_payment_mode(
        self,
        request: AuthRequest,
        cart_id: CartId,
        data: JSONBody[PaymentModeUpdate],
        resources: AppResources,
    ) -> CartView:
        """Split (each pays their share) or the host pays for everyone (host; open, or locked
        before any payment)."""
        command = use.SetPaymentMode(request.user.user_id, str(cart_id), PaymentMode(data.mode))
        return cart_view(await resources.runner.run(use.set_payment_mode, command))

    @put("/{cart_id:uuid}/allowance")
    async def set_allowance(
        self,
        request: AuthRequest,
        cart_id: CartId,
        data: JSONBody[AmountOrNone],
        resources: AppResources,
    ) -> CartView:
        """The host covers up to this much of each guest's share (``null``: no allowance)."""
        command = use.SetAllowance(request.user.user_id, str(cart_id), data.amount_minor)
        return cart_view(await resources.runner.run(use.set_allowance, command))

    @put("/{cart_id:uuid}/spending-limit")
    async def set_spending_limit(
        self,
        request: AuthRequest,
        cart_id: CartId,
        data: JSONBody[AmountOrNone],
        resources: AppResources,
    ) -> CartView:
        """The most a guest's items may come to while the cart is open (``null``: none)."""
        command = use.SetSpendingLimit(request.user.user_id, str(cart_id), data.amount_minor)
        return cart_view(await resources.runner.run(use.set_spending_limit, command))

    @post("/{cart_id:uuid}/members/{user_id:uuid}/cover", status_code=HTTP_200_OK)
    async def cover_member(
        self,
        request: AuthRequest,
        cart_id: CartId,
        user_id: FromPath[uuid.UUID],
        resources: AppResources,
    ) -> CartView:
        """The host takes over a guest who hasn't paid (locked): the guest owes nothing."""
        command = use.CoverMember(request.user.user_id, str(cart_id), str(user_id))
        return cart_view(await resources.runner.run(use.cover_member, command))

    @put("/{cart_id:uuid}/coupon")
    async def apply_coupon(
        self,
        request: AuthRequest,
        cart_id: CartId,
        data: JSONBody[CouponRequest],
        resources: AppResources,
    ) -> CartView:
        command = use.ApplyCoupon(request.user.user_id, str(cart_id), data.code)
        return cart_view(await resources.runner.run(use.apply_coupon, command))

    @delete("/{cart_id:uuid}/coupon", status_code=HTTP_200_OK)
    async def remove_coupon(
        self, request: AuthRequest, cart_id: CartId, resources: AppResources
    ) -> CartView:
        command = use.RemoveCoupon(request.user.user_id, str(cart_id))
        return cart_view(await resources.runner.run(use.remove_coupon, command))

    @post("/{cart_id:uuid}/payments/cod", status_code=HTTP_200_OK)
    async def commit_cod(
        self, request: AuthRequest, cart_id: CartId, resources: AppResources
    ) -> CartView:
        """The caller will pay their own share in cash; the server computes the amount."""
        command = use.CommitCod(request.user.user_id, str(cart_id))
        return cart_view(await resources.runner.run(use.commit_cod, command))

    @post("/{cart_id:uuid}/confirm")
    async def confirm(
        self,
        request: AuthRequest,
        cart_id: CartId,
        data: JSONBody[ConfirmRequest],
        resources: AppResources,
    ) -> OrderCreated:
        """Host only, on a ready_to_confirm cart: it becomes an Order."""
        address = data.delivery_address
        command = use.ConfirmCart(
            request.user.user_id,
            str(cart_id),
            DeliveryAddress(
                line1=address.line1,
                line2=address.line2,
                city=address.city,
                postal_code=address.postal_code,
                country=address.country,
            ),
        )
        order = await resources.runner.run(use.confirm_cart, command)
        return OrderCreated(order_id=order.id, number=order.number)

    @post("/{cart_id:uuid}/cancel", status_code=HTTP_200_OK)
    async def cancel(
        self, request: AuthRequest, cart_id: CartId, resources: AppResources
    ) -> CartView:
        """Host only: gives stock back and refunds every captured online payment."""
        command = use.CancelCart(request.user.user_id, str(cart_id))
        return cart_view(await resources.runner.run(use.cancel_cart, command))
