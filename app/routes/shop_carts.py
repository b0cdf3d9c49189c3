"""Single-payer cart routes (API.md § Single-payer checkout): a buyer's cart at a store, its
items, merging a guest session's carts, the checkout's steps, and paying.

Each route runs one handler of ``app.use_cases.checkout``; paying runs three (the checkout,
Stripe, the attempt noted on the order: no row locked while Stripe is asked).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, delete, get, patch, post, put
from litestar.exceptions import NotAuthorizedException
from litestar.params import FromPath, JSONBody
from litestar.security.jwt import Token
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from app.auth import Principal, principal_from_token
from app.referrals import attribution as referrals
from app.resources import AppResources
from app.routes.fields import END_OF_TEXT, MAX_OPTIONS_CHOSEN, Count, Name, invalid_field
from app.routes.payments import STRIPE_JS, ConfirmAnswer, ConfirmRequest
from app.routes.referrals import ReferralCodeIn
from app.routes.teamcarts import AddressIn
from app.use_cases import checkout as use
from domain.checkout import DeliveryMethod, ShopCart
from domain.order import DeliveryAddress

AuthRequest = Request[Principal, Token, Any]
CartId = FromPath[uuid.UUID]
Url = Annotated[
    str, msgspec.Meta(max_length=2000, pattern=rf"^https?://[^\s\x00-\x1f]+{END_OF_TEXT}")
]
GuestToken = Annotated[str, msgspec.Meta(min_length=10, max_length=4000, pattern=r"^[\w.-]+$")]


class ShopCartCreate(msgspec.Struct, forbid_unknown_fields=True):
    store_id: uuid.UUID
    referral_code: ReferralCodeIn | None = None


class ShopItemCreate(msgspec.Struct, forbid_unknown_fields=True):
    product_id: uuid.UUID
    quantity: Count
    options: Annotated[list[Name], msgspec.Meta(max_length=MAX_OPTIONS_CHOSEN)] = msgspec.field(
        default_factory=list
    )


class ShopItemUpdate(msgspec.Struct, forbid_unknown_fields=True):
    quantity: Count


class DeliveryChoice(msgspec.Struct, forbid_unknown_fields=True):
    method: Literal["delivery", "pickup"]


class MergeRequest(msgspec.Struct, forbid_unknown_fields=True):
    guest_token: GuestToken


class CheckoutRequest(msgspec.Struct, forbid_unknown_fields=True):
    mode: Literal["payment_intent", "checkout_session"] = "payment_intent"
    success_url: Url | None = None
    cancel_url: Url | None = None


class ShopItemView(msgspec.Struct):
    item_id: str
    product_id: str
    name: str
    options: list[str]
    unit_price_minor: int
    quantity: int
    line_total_minor: int


class ShopAddressView(msgspec.Struct):
    line1: str
    line2: str | None
    city: str
    postal_code: str
    country: str


class ShopCartView(msgspec.Struct):
    id: str
    store_id: str
    status: str
    state: str
    currency: str
    items: list[ShopItemView]
    subtotal_minor: int
    delivery_fee_minor: int
    tax_minor: int
    tip_minor: int
    discount_minor: int
    total_minor: int
    address: ShopAddressView | None
    delivery_method: str | None
    order_id: str | None
    created_at: datetime
    version: int


class PaymentStarted(msgspec.Struct, omit_defaults=True):
    order_id: str
    order_number: str
    payment_intent_id: str | None = None
    client_secret: str | None = None
    publishable_key: str | None = None
    stripe_js_url: str | None = None
    # True when Stripe.js can only tokenise the card (the emulator's): the page then sends
    # the card's id to …/checkout/confirm instead of calling confirmCardPayment.
    confirm_on_server: bool | None = None
    checkout_session_id: str | None = None
    checkout_url: str | None = None


def shop_cart_view(cart: ShopCart) -> ShopCartView:
    address = cart.address
    return ShopCartView(
        id=cart.id,
        store_id=cart.store.store_id,
        status=cart.status.value,
        state=cart.state.value,
        currency=cart.currency,
        items=[
            ShopItemView(
                item_id=item.item_id,
                product_id=item.product_id,
                name=item.name,
                options=list(item.options),
                unit_price_minor=item.unit_price_minor,
                quantity=item.quantity,
                line_total_minor=item.line_total_minor,
            )
            for item in cart.items.values()
        ],
        **cart.totals().as_dict(),
        address=None
        if address is None
        else ShopAddressView(
            address.line1, address.line2, address.city, address.postal_code, address.country
        ),
        delivery_method=None if cart.delivery_method is None else cart.delivery_method.value,
        order_id=cart.order_id,
        created_at=cart.created_at,
        version=cart.version,
    )


class ShopCartController(Controller):
    path = "/api/v1/carts"
    tags = ["single-payer checkout"]  # noqa: RUF012

    @post("/", status_code=HTTP_201_CREATED)
    async def open_cart(
        self, request: AuthRequest, data: JSONBody[ShopCartCreate], resources: AppResources
    ) -> ShopCartView:
        """The caller's open cart at the store (one per store: the same one again). A
        ``referral_code`` is fixed on a cart this creates (``app.referrals.attribution``)."""
        command = use.OpenShopCart(request.user.user_id, str(data.store_id))
        if data.referral_code is not None:
            referred = referrals.OpenReferredShopCart(command, data.referral_code)
            cart = await resources.runner.run(referrals.open_referred_shop_cart, referred)
            return shop_cart_view(cart)
        return shop_cart_view(await resources.runner.run(use.open_shop_cart, command))

    @get("/{shop_cart_id:uuid}")
    async def get_cart(
        self, request: AuthRequest, shop_cart_id: CartId, resources: AppResources
    ) -> ShopCartView:
        query = use.ReadShopCart(request.user.user_id, str(shop_cart_id))
        return shop_cart_view(await resources.runner.run(use.get_shop_cart, query))

    @post("/{shop_cart_id:uuid}/items", status_code=HTTP_201_CREATED)
    async def add_item(
        self,
        request: AuthRequest,
        shop_cart_id: CartId,
        data: JSONBody[ShopItemCreate],
        resources: AppResources,
    ) -> ShopCartView:
        command = use.AddShopItem(
            request.user.user_id,
            str(shop_cart_id),
            str(data.product_id),
            data.quantity,
            tuple(data.options),
        )
        return shop_cart_view(await resources.runner.run(use.add_shop_item, command))

    @patch("/{shop_cart_id:uuid}/items/{item_id:uuid}")
    async def change_item(
        self,
        request: AuthRequest,
        shop_cart_id: CartId,
        item_id: FromPath[uuid.UUID],
        data: JSONBody[ShopItemUpdate],
        resources: AppResources,
    ) -> ShopCartView:
        command = use.ChangeShopItem(
            request.user.user_id, str(shop_cart_id), str(item_id), data.quantity
        )
        return shop_cart_view(await resources.runner.run(use.change_shop_item, command))

    @delete("/{shop_cart_id:uuid}/items/{item_id:uuid}", status_code=HTTP_200_OK)
    async def remove_item(
        self,
        request: AuthRequest,
        shop_cart_id: CartId,
        item_id: FromPath[uuid.UUID],
        resources: AppResources,
    ) -> ShopCartView:
        command = use.RemoveShopItem(request.user.user_id, str(shop_cart_id), str(item_id))
        return shop_cart_view(await resources.runner.run(use.remove_shop_item, command))

    @put("/{shop_cart_id:uuid}/address")
    async def set_address(
        self,
        request: AuthRequest,
        shop_cart_id: CartId,
        data: JSONBody[AddressIn],
        resources: AppResources,
    ) -> ShopCartView:
        """The delivery address (the checkout's ``address`` step; again: back to it)."""
        address = DeliveryAddress(data.line1, data.line2, data.city, data.postal_code, data.country)
        command = use.SetAddress(request.user.user_id, str(shop_cart_id), address)
        return shop_cart_view(await resources.runner.run(use.set_address, command))

    @put("/{shop_cart_id:uuid}/delivery")
    async def set_delivery(
        self,
        request: AuthRequest,
        shop_cart_id: CartId,
        data: JSONBody[DeliveryChoice],
        resources: AppResources,
    ) -> ShopCartView:
        """Delivery (the store's fee) or pickup (none): the ``delivery`` step."""
        command = use.SetDelivery(
            request.user.user_id, str(shop_cart_id), DeliveryMethod(data.method)
        )
        return shop_cart_view(await resources.runner.run(use.set_delivery, command))

    @post("/merge", status_code=HTTP_200_OK)
    async def merge(
        self, request: AuthRequest, data: JSONBody[MergeRequest], resources: AppResources
    ) -> ShopCartView:
        """A guest session's open carts move into the caller's (quantities added within the
        stock; the guest's carts closed); the caller's cart."""
        try:
            guest = principal_from_token(
                Token.decode(data.guest_token, resources.jwt_secret, "HS256")
            )
        except NotAuthorizedException:
            raise invalid_field("guest_token", "is not a valid session token") from None
        command = use.MergeGuestCarts(request.user.user_id, guest.user_id)
        return shop_cart_view(await resources.runner.run(use.merge_guest_carts, command))

    @post("/{shop_cart_id:uuid}/checkout", status_code=HTTP_201_CREATED)
    async def checkout(
        self,
        request: AuthRequest,
        shop_cart_id: CartId,
        data: JSONBody[CheckoutRequest],
        resources: AppResources,
    ) -> PaymentStarted:
        """Reserve the stock, make the order (``awaiting_payment``) and start paying it: a
        PaymentIntent's client secret for Stripe.js, or a Checkout Session's hosted page.
        Again on the same cart: pay the same order again (after a failure)."""
        runner = resources.runner
        checked_out = await runner.run(
            use.check_out,
            use.CheckOut(request.user.user_id, request.user.display_name, str(shop_cart_id)),
        )
        order = checked_out.order
        base = (resources.settings.public_url or str(request.base_url)).rstrip("/")
        attempt = await use.ask_stripe(
            runner,
            checked_out,
            data.mode,
            success_url=data.success_url or f"{base}/#/orders/{order.id}",
            cancel_url=data.cancel_url or f"{base}/#/carts/{shop_cart_id}",
            payment_window=resources.settings.payment_window,
        )
        await runner.run(use.note_attempt, attempt)
        if data.mode == "payment_intent":
            api_base = resources.settings.stripe_api_base
            return PaymentStarted(
                order_id=order.id,
                order_number=order.number,
                payment_intent_id=attempt.payment_intent_id,
                client_secret=attempt.client_secret,
                publishable_key=resources.publishable_key,
                stripe_js_url=f"{api_base}/js.stripe.com/v3/" if api_base else STRIPE_JS,
                confirm_on_server=api_base is not None,
            )
        return PaymentStarted(
            order_id=order.id,
            order_number=order.number,
            checkout_session_id=attempt.checkout_session_id,
            checkout_url=attempt.checkout_url,
        )

    @post("/{shop_cart_id:uuid}/checkout/confirm", status_code=HTTP_200_OK)
    async def confirm_card(
        self,
        request: AuthRequest,
        shop_cart_id: CartId,
        data: JSONBody[ConfirmRequest],
        resources: AppResources,
    ) -> ConfirmAnswer:
        """Confirm the order's current PaymentIntent with a card tokenised by Stripe.js (as
        the group payment's confirm); 402 ``card_declined`` with Stripe's message."""
        command = use.ConfirmCard(
            request.user.user_id, str(shop_cart_id), data.payment_intent_id, data.payment_method
        )
        status = await use.confirm_card(command, resources.runner)
        return ConfirmAnswer(payment_intent_id=data.payment_intent_id, status=status)
