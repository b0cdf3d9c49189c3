"""``POST /api/v1/teamcarts/{id}/payments/online``: a member starts paying their own share.

The server computes the amount from the cart; the browser confirms the returned
PaymentIntent with Stripe.js, and the result arrives by webhook (``app.routes.webhooks``).
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from litestar import Controller, Request, post
from litestar.params import FromPath
from litestar.security.jwt import Token
from litestar.status_codes import HTTP_200_OK

from app.auth import Principal
from app.resources import AppResources
from app.use_cases import payments as use


class OnlinePaymentView(msgspec.Struct):
    payment_intent_id: str
    client_secret: str
    amount_minor: int
    currency: str
    publishable_key: str
    stripe_js_url: str


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
            resources.engine, resources.gateway, request.user, str(cart_id)
        )
        api_base = resources.settings.stripe_api_base
        return OnlinePaymentView(
            payment_intent_id=payment.payment_intent_id,
            client_secret=payment.client_secret,
            amount_minor=payment.amount_minor,
            currency=payment.currency,
            publishable_key=resources.publishable_key,
            stripe_js_url=f"{api_base}/js.stripe.com/v3/"
            if api_base
            else "https://js.stripe.com/v3/",
        )
