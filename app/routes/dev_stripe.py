"""``GET /dev/stripe``: the embedded Stripe emulator the server started (API.md § Command
line and configuration), so scripts and tests can confirm payments and sign events as Stripe
would.

Only with the emulator (no Stripe key set: ``teamcart serve`` runs localstripe and the
add-on in front of it, ``app.embedded``); otherwise the route is 404, as any unknown path. No
token: the emulator's keys and webhook secret exist only on a developer's machine.
"""

from __future__ import annotations

import msgspec
from litestar import Controller, get

from app.config import Settings
from app.embedded import EMULATOR_SECRET_KEY
from app.errors import ApiError
from app.resources import AppResources


class EmulatorView(msgspec.Struct):
    api_base: str
    publishable_key: str
    webhook_secret: str


def serves_emulator(settings: Settings) -> bool:
    """Whether this server talks to the embedded emulator (and so may say where it is)."""
    return (
        settings.stripe_secret_key == EMULATOR_SECRET_KEY and settings.stripe_api_base is not None
    )


class DevStripeController(Controller):
    path = "/dev/stripe"
    tags = ["development"]  # noqa: RUF012

    @get("/", opt={"exclude_from_auth": True})
    async def emulator(self, resources: AppResources) -> EmulatorView:
        """The emulator's API base (its Checkout add-on in front of localstripe), the
        publishable key the page uses, and the secret its webhooks are signed with."""
        settings = resources.settings
        if not serves_emulator(settings) or not settings.stripe_webhook_secrets:
            raise ApiError(404, "not_found", "this server talks to Stripe, not the emulator")
        assert settings.stripe_api_base is not None
        return EmulatorView(
            api_base=settings.stripe_api_base,
            publishable_key=settings.stripe_publishable_key or "",
            webhook_secret=settings.stripe_webhook_secrets[0],
        )
