"""``POST /api/v1/teamcarts/{id}/payments/online``: a member starts paying their own share.

The server computes the amount from the cart; the browser confirms the returned
PaymentIntent with Stripe.js, and the result arrives by webhook (``app.routes.webhooks``).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, post
from litestar.params import FromPath, JSONBody
from litestar.security.jwt import Token
from litestar.status_codes import HTTP_200_OK

from app.auth import Principal
from app.resources import AppResources
from app.routes.fields import END_OF_TEXT
from app.use_cases.payments import intents as use

STRIPE_JS = "https://js.stripe.com/v3/"


class OnlinePaymentView(msgspec.Struct):
    payment_intent_id: str
    client_secret: str
    amount_minor: int
    currency: str
    publishable_key: str
    stripe_js_url: str
    # True when Stripe.js can only tokenise the card (the emulator's): the page then sends
    # the card's id to …/payments/online/confirm instead of calling confirmCardPayment.
    confirm_on_server: bool


class ConfirmRequest(msgspec.Struct, forbid_unknown_fields=True):
    payment_intent_id: Annotated[
        str, msgspec.Meta(max_length=255, pattern=rf"^pi_[A-Za-z0-9_]+{END_OF_TEXT}")
    ]
    payment_method: Annotated[
        str, msgspec.Meta(max_length=255, pattern=rf"^(pm|card|src)_[A-Za-z0-9_]+{END_OF_TEXT}")
    ]


class ConfirmAnswer(msgspec.Struct):
    payment_intent_id: str
    status: str


class PaymentController(Controller):
    path = "/api/v1/teamcarts"
    tags = ["payments"]  # noqa: RUF012

    @post("/{cart_id:uuid}/payments/online", status_code=HTTP_200_OK)
    async def start_online_payment(
        self,
        request: Request[Principal, Token, Any],
        cart_id: FromPath[uuid.UUID],
        resources: AppResources,
    ) -> OnlinePaymentView:
        """Create or reuse the caller's PaymentIntent for their share; never takes an amount."""
        payment = await use.start_online_payment(
            use.StartOnlinePayment(request.user.user_id, str(cart_id)), resources.runner
        )
        api_base = resources.settings.stripe_api_base
        return OnlinePaymentView(
            payment_intent_id=payment.payment_intent_id,
            client_secret=payment.client_secret,
            amount_minor=payment.amount_minor,
            currency=payment.currency,
            publishable_key=resources.publishable_key,
            stripe_js_url=f"{api_base}/js.stripe.com/v3/" if api_base else STRIPE_JS,
            confirm_on_server=api_base is not None,
        )

    @post("/{cart_id:uuid}/payments/online/confirm", status_code=HTTP_200_OK)
    async def confirm_online_payment(
        self,
        request: Request[Principal, Token, Any],
        cart_id: FromPath[uuid.UUID],
        data: JSONBody[ConfirmRequest],
        resources: AppResources,
    ) -> ConfirmAnswer:
        """Confirm the caller's own open PaymentIntent with a card tokenised by Stripe.js.

        402 ``card_declined`` carries Stripe's message for the card holder.
        """
        command = use.ConfirmOnlinePayment(
            request.user.user_id, str(cart_id), data.payment_intent_id, data.payment_method
        )
        status = await use.confirm_online_payment(command, resources.runner)
        return ConfirmAnswer(payment_intent_id=data.payment_intent_id, status=status)
