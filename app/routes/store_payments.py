"""Stores get paid (API.md § Stores and payouts): Connect onboarding and where it stands,
the store's payouts page, its payment settings (admin), which payment methods its carts
offer, and the webhook endpoint of a store that takes payments on its own Stripe account.

Each route builds one query or command of ``app.connect`` and answers a struct of its own:
never a row, never a secret (the settings say ``set`` or ``unset`` for each).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.security.jwt import Token
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from app.auth import Principal, admin_only
from app.connect import onboarding, payouts, settings
from app.connect.charges import store_terms
from app.connect.service import StorePaymentsDependency
from app.connect.settings import SecretState
from app.failures import NotFoundError
from app.resources import AppResources
from app.routes.fields import END_OF_TEXT
from app.routes.webhooks import WebhookAnswer, take_in, utf8_body
from app.unit_of_work import UnitOfWork

Cursor = Annotated[
    str | None, QueryParameter(max_length=300, pattern=rf"^[A-Za-z0-9_-]+{END_OF_TEXT}")
]
Limit = Annotated[int, FromQuery[int]]
FeeBps = Annotated[int, msgspec.Meta(ge=0, le=10_000)]
StripeSecretKey = Annotated[
    str, msgspec.Meta(max_length=255, pattern=rf"^(sk|rk)_[A-Za-z0-9_]{{4,}}{END_OF_TEXT}")
]
"""A Stripe secret (``sk_…``) or restricted (``rk_…``) key."""
WebhookSecret = Annotated[
    str, msgspec.Meta(max_length=255, pattern=rf"^whsec_[A-Za-z0-9_+/=-]{{4,}}{END_OF_TEXT}")
]


class OnboardingLink(msgspec.Struct):
    account_id: str
    onboarding_url: str


class OnboardingView(msgspec.Struct):
    """Where the store's Connect onboarding stands, for its staff's page."""

    store_id: str
    account_id: str | None
    status: Literal["not_started", "pending", "restricted", "enabled"]
    charges_enabled: bool
    payouts_enabled: bool
    details_submitted: bool
    requirements_due: list[str]
    updated_at: datetime | None


class PaymentConfigRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The store's settings; a secret left out is kept, ``null`` removes it."""

    cod_enabled: bool
    online_enabled: bool
    platform_fee_bps: FeeBps
    stripe_secret_key: StripeSecretKey | msgspec.UnsetType | None = msgspec.UNSET
    stripe_webhook_secret: WebhookSecret | msgspec.UnsetType | None = msgspec.UNSET


class PaymentConfigView(msgspec.Struct):
    store_id: str
    cod_enabled: bool
    online_enabled: bool
    platform_fee_bps: int
    stripe_secret_key: SecretState
    stripe_webhook_secret: SecretState
    updated_at: datetime | None


class PaymentMethodsView(msgspec.Struct):
    """What the store's carts offer members (the page shows only these)."""

    store_id: str
    cod: bool
    online: bool


class MoneyItemView(msgspec.Struct, omit_defaults=True):
    kind: Literal["transfer", "payout"]
    id: str
    """Stripe's ``tr_…`` or ``po_…``; ``transfer-<order id>`` while Stripe hasn't made it."""
    amount_minor: int
    """A transfer: the store's part of the order (what the platform collected online less
    its fee); a payout: what left the account for the bank."""
    currency: str
    status: str
    """A transfer: ``pending``, ``paid``, ``partially_reversed``, ``reversed``; a payout:
    Stripe's (``paid``, ``failed``, …)."""
    created_at: datetime
    order_id: str | None = None
    fee_minor: int | None = None
    reversed_minor: int | None = None


class PayoutPage(msgspec.Struct):
    items: list[MoneyItemView]
    next_cursor: str | None


def _config_view(config: settings.PaymentConfig) -> PaymentConfigView:
    return PaymentConfigView(
        store_id=config.store_id,
        cod_enabled=config.cod_enabled,
        online_enabled=config.online_enabled,
        platform_fee_bps=config.platform_fee_bps,
        stripe_secret_key=config.stripe_secret_key,
        stripe_webhook_secret=config.stripe_webhook_secret,
        updated_at=config.updated_at,
    )


def _change(value: str | msgspec.UnsetType | None) -> settings.Change:
    return settings.KEEP if isinstance(value, msgspec.UnsetType) else value


def _public_base(request: Request[Any, Any, Any], resources: AppResources) -> str:
    return resources.settings.public_url or str(request.base_url).rstrip("/")


async def _payment_methods(store_id: str, uow: UnitOfWork) -> PaymentMethodsView:
    if await uow.catalog.store(store_id) is None:
        raise NotFoundError("store_not_found", f"no store with id {store_id}")
    terms = await store_terms(uow, store_id)
    return PaymentMethodsView(store_id, terms.cod_enabled, terms.online_enabled)


class StorePaymentsController(Controller):
    path = "/api/v1/stores/{store_id:uuid}"
    tags = ["stores and payouts"]  # noqa: RUF012

    @post("/connect", status_code=HTTP_201_CREATED)
    async def start_onboarding(
        self,
        request: Request[Principal, Token, Any],
        store_id: FromPath[uuid.UUID],
        resources: AppResources,
    ) -> OnboardingLink:
        """The store's Connect account (made on the first call) and a fresh onboarding link
        to it (staff of the store, or an admin). Stripe sends the browser back to the store's
        staff page when onboarding ends, or when the link has expired."""
        page = f"{_public_base(request, resources)}/#/store/{store_id}"
        command = onboarding.StartOnboarding(
            request.user,
            str(store_id),
            refresh_url=f"{page}?onboarding=refresh",
            return_url=f"{page}?onboarding=return",
        )
        link = await onboarding.start_onboarding(command, resources.runner)
        return OnboardingLink(account_id=link.account_id, onboarding_url=link.onboarding_url)

    @get("/connect")
    async def read_onboarding(
        self,
        request: Request[Principal, Token, Any],
        store_id: FromPath[uuid.UUID],
        resources: AppResources,
    ) -> OnboardingView:
        """Where the store's onboarding stands (staff of the store, or an admin)."""
        state = await resources.runner.run(
            onboarding.read_onboarding, onboarding.StoreSide(request.user, str(store_id))
        )
        return OnboardingView(
            store_id=state.store_id,
            account_id=state.account_id,
            status=state.status,
            charges_enabled=state.charges_enabled,
            payouts_enabled=state.payouts_enabled,
            details_submitted=state.details_submitted,
            requirements_due=list(state.requirements_due),
            updated_at=state.updated_at,
        )

    @get("/payouts")
    async def list_payouts(
        self,
        request: Request[Principal, Token, Any],
        store_id: FromPath[uuid.UUID],
        resources: AppResources,
        cursor: Cursor = None,
        limit: Limit = 20,
    ) -> PayoutPage:
        """Transfers to the store and its account's payouts, newest first (staff, admins)."""
        query = payouts.ListPayouts(request.user, str(store_id), max(1, min(limit, 100)), cursor)
        page = await payouts.list_payouts(query, resources.runner)
        return PayoutPage(
            items=[
                MoneyItemView(
                    kind="transfer" if item.kind == "transfer" else "payout",
                    id=item.id,
                    amount_minor=item.amount_minor,
                    currency=item.currency,
                    status=item.status,
                    created_at=item.created_at,
                    order_id=item.order_id,
                    fee_minor=item.fee_minor,
                    reversed_minor=item.reversed_minor,
                )
                for item in page.items
            ],
            next_cursor=page.next_cursor,
        )

    @get("/payment-config", guards=[admin_only])
    async def read_payment_config(
        self, store_id: FromPath[uuid.UUID], resources: AppResources
    ) -> PaymentConfigView:
        """The store's payment settings (admin); each secret only ``set`` or ``unset``."""
        config = await resources.runner.run(settings.read_payment_config, str(store_id))
        return _config_view(config)

    @put("/payment-config", guards=[admin_only], status_code=HTTP_200_OK)
    async def set_payment_config(
        self,
        store_id: FromPath[uuid.UUID],
        data: JSONBody[PaymentConfigRequest],
        resources: AppResources,
        store_payments: StorePaymentsDependency,
    ) -> PaymentConfigView:
        """Replace the store's payment settings (admin). The secrets are sealed at once
        and never answered; one left out is kept, ``null`` removes it."""
        command = settings.SetPaymentConfig(
            store_id=str(store_id),
            cod_enabled=data.cod_enabled,
            online_enabled=data.online_enabled,
            platform_fee_bps=data.platform_fee_bps,
            stripe_secret_key=_change(data.stripe_secret_key),
            stripe_webhook_secret=_change(data.stripe_webhook_secret),
            keyring=store_payments.keyring,
        )
        return _config_view(await resources.runner.run(settings.set_payment_config, command))

    @get("/payment-methods")
    async def read_payment_methods(
        self, store_id: FromPath[uuid.UUID], resources: AppResources
    ) -> PaymentMethodsView:
        """Whether the store's carts take cash on delivery and online payments (anyone
        signed in: the cart page offers only these)."""
        return await resources.runner.run(_payment_methods, str(store_id))


class StoreWebhookController(Controller):
    path = "/api/v1/webhooks/stripe/stores"
    tags = ["webhooks"]  # noqa: RUF012

    @post("/{store_id:uuid}", status_code=HTTP_200_OK)
    async def store_stripe_event(
        self,
        request: Request[Any, Any, Any],
        store_id: FromPath[uuid.UUID],
        resources: AppResources,
        store_payments: StorePaymentsDependency,
    ) -> WebhookAnswer:
        """Events of a store's own Stripe account, verified with the store's webhook secret,
        then taken in exactly as ``POST /api/v1/webhooks/stripe``'s: the same inbox, the
        same answers (400 ``invalid_signature`` also for a store with no secret set)."""
        payload = utf8_body(await request.body())
        secret = await resources.runner.run(
            settings.store_webhook_secret,
            settings.StoreWebhookSecret(str(store_id), store_payments.keyring),
        )
        signature = request.headers.get("stripe-signature")
        return await take_in(payload, signature, [secret] if secret else [], resources)
