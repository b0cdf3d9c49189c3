"""The onboarding page an account link opens (``GET /connect/onboarding/{token}``): the
add-on's stand-in for Stripe's hosted Connect onboarding.

One labelled field and a submit button (``onboarding.html``, autoescaped, no script):
submitting it is the whole of onboarding here, after which the account may take charges and
receive payouts (``Connect.complete_onboarding``). Stripe's own flow asks for identity and a
bank account; nothing is verified in the emulator.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

from app.stripe_addon.connect import AccountLink


class OnboardingPage:
    def __init__(self) -> None:
        self._template = jinja2.Environment(
            loader=jinja2.FileSystemLoader(Path(__file__).parent),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        ).get_template("onboarding.html")

    def render(self, link: AccountLink, *, error: str | None = None) -> str:
        return self._template.render(
            title="Set up payouts",
            message=None,
            action=f"/connect/onboarding/{link.token}",
            account_id=link.account_id,
            business_name="",
            error=error,
        )

    def render_missing(self) -> str:
        return self._template.render(
            title="No such onboarding link",
            message="This link does not exist (the emulator forgets its links when it "
            "restarts). Ask the platform for a new one.",
            action=None,
            account_id="",
            business_name="",
            error=None,
        )
