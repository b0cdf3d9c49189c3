"""The hosted page: the add-on's stand-in for Stripe's hosted Checkout, at
``GET /checkout/{session_id}`` (the session's ``url``).

One small HTML form (``checkout.html``, autoescaped: item names and URLs are the caller's),
labelled fields, errors next to the field they are about and announced, no script. The card
is checked here for shape only (digits, Luhn, a date not past, a CVC), with Stripe's words;
whether it pays is localstripe's decision (``4242…`` pays, ``4000000000000341`` is declined).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import jinja2

from app.payments.amounts import stripe_exponent
from app.stripe_addon.checkout import Card
from app.stripe_addon.sessions import CheckoutSession, SessionStatus

_EXPIRY = re.compile(r"^\s*(\d{1,2})\s*/?\s*(\d{2}|\d{4})\s*$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def format_amount(amount: int, currency: str) -> str:
    """Stripe's ``amount`` for ``currency`` as people read it: ``USD 12.34``, ``JPY 500``."""
    places = stripe_exponent(currency)
    major, minor = divmod(amount, 10**places)
    text = f"{major:,}" if places == 0 else f"{major:,}.{minor:0{places}d}"
    return f"{currency.upper()} {text}"


def luhn_valid(number: str) -> bool:
    total = 0
    for position, digit in enumerate(reversed(number)):
        value = int(digit)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


@dataclass(frozen=True, slots=True)
class CardForm:
    """The form as typed (to show it again) and what is wrong with it, by field."""

    values: Mapping[str, str]
    errors: Mapping[str, str] = field(default_factory=dict)


def read_card(form: Mapping[str, str], *, today: date) -> Card | CardForm:
    """The card from the page's fields, or the fields with an error for each bad one."""
    values = {name: form.get(name, "").strip() for name in _FIELDS}
    errors: dict[str, str] = {}
    number = re.sub(r"[\s-]", "", values["card_number"])
    if not number:
        errors["card_number"] = "Enter your card number."
    elif not number.isdigit() or not 12 <= len(number) <= 19 or not luhn_valid(number):
        errors["card_number"] = "Your card number is invalid."
    month = year = 0
    expiry = _EXPIRY.match(values["card_expiry"])
    if not values["card_expiry"]:
        errors["card_expiry"] = "Enter your card's expiry date."
    elif expiry is None or not 1 <= int(expiry.group(1)) <= 12:
        errors["card_expiry"] = "Your card's expiration date is incomplete (MM / YY)."
    else:
        month, year = int(expiry.group(1)), int(expiry.group(2))
        year += 2000 if year < 100 else 0
        if (year, month) < (today.year, today.month):
            errors["card_expiry"] = "Your card's expiration date is in the past."
    cvc = values["card_cvc"]
    if not cvc:
        errors["card_cvc"] = "Enter your card's security code."
    elif not cvc.isdigit() or not 3 <= len(cvc) <= 4:
        errors["card_cvc"] = "Your card's security code is incomplete."
    if values["email"] and not _EMAIL.match(values["email"]):
        errors["email"] = "Your email address is invalid."
    if errors:
        return CardForm(values, errors)
    return Card(number=number, exp_month=month, exp_year=year, cvc=cvc)


_FIELDS = ("email", "card_number", "card_expiry", "card_cvc")


class HostedPage:
    """Renders the page for a session in each of its states."""

    def __init__(self) -> None:
        self._template = jinja2.Environment(
            loader=jinja2.FileSystemLoader(Path(__file__).parent),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        ).get_template("checkout.html")

    def render(
        self,
        session: CheckoutSession,
        *,
        form: CardForm | None = None,
        message: str | None = None,
    ) -> str:
        request = session.request
        total = format_amount(request.amount_total, request.currency)
        items = [
            {
                "name": item.name,
                "quantity": item.quantity,
                "amount": format_amount(item.amount_total, item.currency),
            }
            for item in request.line_items
        ]
        payable = session.status is SessionStatus.OPEN
        title = items[0]["name"] if len(items) == 1 else f"{len(items)} items"
        return_url: str | None = request.cancel_url
        return_label = "Cancel and go back"
        if session.status is SessionStatus.COMPLETE:
            title, message = "Payment complete", message or "This checkout is already paid."
            return_url, return_label = session.redirect_url(), "Return to the store"
        elif session.status is SessionStatus.EXPIRED:
            title = "Checkout expired"
            message = message or "This checkout session has expired; it can't be paid."
            return_label = "Go back"
        values = dict(form.values) if form else {"email": request.customer_email or ""}
        errors = form.errors if form else {}
        return self._template.render(
            title=title,
            session=session,
            total=total,
            items=items,
            message=message,
            payable=payable,
            action=f"/checkout/{session.id}",
            values={name: values.get(name, "") for name in _FIELDS},
            errors={name: errors.get(name, "") for name in _FIELDS},
            return_url=return_url,
            return_label=return_label,
        )

    def render_missing(self) -> str:
        return self._template.render(
            title="No such checkout",
            session=None,
            total="",
            items=[],
            message="This checkout session does not exist (the emulator forgets its sessions "
            "when it restarts).",
            payable=False,
            action="",
            values=dict.fromkeys(_FIELDS, ""),
            errors=dict.fromkeys(_FIELDS, ""),
            return_url=None,
            return_label="",
        )
