"""Checkout Sessions as Stripe has them: the create parameters read and checked, the session's
states, and the ``checkout.session`` object it answers with.

No I/O here. The server (``server.py``) creates the PaymentIntent at localstripe and keeps
the sessions; this module decides what a request means, what Stripe would refuse (with
Stripe's own error shape) and what the object looks like, so unit tests can hold it to
Stripe's shapes.

What is emulated: ``mode=payment`` with ``price_data`` line items (no Price objects), the
session's metadata, ``payment_intent_data[metadata]`` (and its Connect terms:
``application_fee_amount``, ``transfer_data``, ``transfer_group``), ``expires_at``,
``client_reference_id``, ``customer_email``. Anything else in the body is refused as Stripe
refuses an unknown parameter, so product code can't come to rely on something the emulator
silently ignores.
"""

from __future__ import annotations

import enum
import secrets
import string
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.stripe_addon.forms import FormValue, form_list

MAX_LIFETIME_SECONDS = 24 * 3600
"""Stripe's longest (and default) session lifetime."""

METADATA_KEYS = 50
METADATA_KEY_LENGTH = 40
METADATA_VALUE_LENGTH = 500

_TOP_LEVEL = frozenset(
    {
        "mode",
        "line_items",
        "success_url",
        "cancel_url",
        "metadata",
        "payment_intent_data",
        "expires_at",
        "client_reference_id",
        "customer_email",
        "payment_method_types",
        "expand",
        "locale",
        "submit_type",
        "ui_mode",
    }
)
_PAYMENT_INTENT_DATA = frozenset(
    {"metadata", "application_fee_amount", "transfer_data", "transfer_group"}
)
"""The intent's metadata, and Connect's destination-charge terms (``connect.py`` checks
those, as it does on a PaymentIntent)."""
_ALPHANUMERIC = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 24) -> str:
    """A Stripe-looking id: its prefix, then random letters and digits."""
    return prefix + "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


class StripeApiError(Exception):
    """A refusal as Stripe's API words it: an HTTP status and the ``error`` object's fields
    (``type``, ``message``, and ``code`` / ``param`` where Stripe gives them)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        error_type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.error_type = error_type

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.error_type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
        if self.param is not None:
            error["param"] = self.param
        return {"error": error}


def missing(param: str) -> StripeApiError:
    return StripeApiError(
        400, f"Missing required param: {param}.", code="parameter_missing", param=param
    )


def invalid(param: str, message: str, code: str = "parameter_invalid_empty") -> StripeApiError:
    return StripeApiError(400, message, code=code, param=param)


def no_such_session(session_id: str) -> StripeApiError:
    return StripeApiError(
        404,
        f"No such checkout.session: '{session_id}'",
        code="resource_missing",
        param="session",
    )


@dataclass(frozen=True, slots=True)
class LineItem:
    """One ``line_items[n]`` with inline ``price_data``."""

    name: str
    currency: str  # lower case, as Stripe writes it
    unit_amount: int
    quantity: int

    @property
    def amount_total(self) -> int:
        return self.unit_amount * self.quantity


@dataclass(frozen=True, slots=True)
class SessionRequest:
    """What a valid ``POST /v1/checkout/sessions`` asks for."""

    line_items: tuple[LineItem, ...]
    success_url: str
    cancel_url: str | None
    metadata: Mapping[str, str]
    payment_intent_metadata: Mapping[str, str]
    expires_at: int
    client_reference_id: str | None
    customer_email: str | None
    payment_intent_connect: Mapping[str, FormValue] = field(default_factory=dict)
    """``payment_intent_data``'s Connect parameters, as given (``Connect.read_charge``)."""

    @property
    def currency(self) -> str:
        return self.line_items[0].currency

    @property
    def amount_total(self) -> int:
        return sum(item.amount_total for item in self.line_items)


def read_create_params(params: Mapping[str, FormValue], *, now: int) -> SessionRequest:
    """Check a create body as Stripe would, and read it; raises ``StripeApiError``."""
    for name in params:
        if name not in _TOP_LEVEL:
            raise invalid(name, f"Received unknown parameter: {name}", "parameter_unknown")
    mode = _required_text(params, "mode", "mode")
    if mode != "payment":
        raise invalid(
            "mode",
            f"The Stripe emulator's Checkout supports mode=payment only, not {mode!r}.",
            "parameter_invalid_empty",
        )
    if params.get("ui_mode", "hosted") != "hosted":
        raise invalid("ui_mode", "The Stripe emulator's Checkout supports ui_mode=hosted only.")
    methods = params.get("payment_method_types")
    if methods is not None and form_list(methods) != ["card"]:
        raise invalid("payment_method_types", "The Stripe emulator's Checkout takes cards only.")
    items = _line_items(params.get("line_items"))
    currencies = {item.currency for item in items}
    if len(currencies) > 1:
        raise invalid("line_items", "All line items must have the same currency.")
    intent_data = _object(params, "payment_intent_data")
    for name in intent_data:
        if name not in _PAYMENT_INTENT_DATA:
            param = f"payment_intent_data[{name}]"
            raise invalid(param, f"Received unknown parameter: {param}", "parameter_unknown")
    return SessionRequest(
        line_items=items,
        success_url=_required_url(params, "success_url"),
        cancel_url=_url(params, "cancel_url"),
        metadata=_metadata(params.get("metadata"), "metadata"),
        payment_intent_metadata=_metadata(
            intent_data.get("metadata"), "payment_intent_data[metadata]"
        ),
        expires_at=_expires_at(params, now),
        client_reference_id=_text(params, "client_reference_id"),
        customer_email=_text(params, "customer_email"),
        payment_intent_connect={k: v for k, v in intent_data.items() if k != "metadata"},
    )


def _text(params: Mapping[str, FormValue], name: str, *, param: str | None = None) -> str | None:
    """A string parameter; ``None`` when absent or empty (Stripe's "unset")."""
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise invalid(param or name, f"Invalid string: {param or name} must be a string.")
    return value


def _required_text(params: Mapping[str, FormValue], name: str, param: str) -> str:
    value = _text(params, name, param=param)
    if value is None:
        raise missing(param)
    return value


def _integer(value: FormValue | None, param: str, *, minimum: int) -> int:
    if value is None or value == "":
        raise missing(param)
    if not isinstance(value, str) or not value.lstrip("-").isdigit():
        raise invalid(param, f"Invalid integer: {value}", "parameter_invalid_integer")
    number = int(value)
    if number < minimum:
        raise invalid(
            param,
            f"This value must be greater than or equal to {minimum}.",
            "parameter_invalid_integer",
        )
    return number


def _object(params: Mapping[str, FormValue], name: str) -> Mapping[str, FormValue]:
    value = params.get(name)
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise invalid(name, f"Invalid object: {name} must be an object.")
    return value


def _line_items(value: FormValue | None) -> tuple[LineItem, ...]:
    if value is None or value == "":
        raise missing("line_items")
    entries = form_list(value)
    if entries is None:
        raise invalid("line_items", "Invalid array: line_items must be an array.")
    return tuple(_line_item(entry, f"line_items[{index}]") for index, entry in enumerate(entries))


def _line_item(entry: FormValue, param: str) -> LineItem:
    if not isinstance(entry, dict):
        raise invalid(param, f"Invalid object: {param} must be an object.")
    if "price" in entry:
        raise invalid(
            f"{param}[price]",
            "The Stripe emulator's Checkout takes price_data, not Price objects.",
            "parameter_unknown",
        )
    for name in entry:
        if name not in {"price_data", "quantity"}:
            raise invalid(
                f"{param}[{name}]",
                f"Received unknown parameter: {param}[{name}]",
                "parameter_unknown",
            )
    price = _object(entry, "price_data")
    if not price:
        raise missing(f"{param}[price_data]")
    product = _object(price, "product_data")
    name = _required_text(product, "name", f"{param}[price_data][product_data][name]")
    currency = _required_text(price, "currency", f"{param}[price_data][currency]")
    if len(currency) != 3 or not currency.isalpha():
        raise invalid(f"{param}[price_data][currency]", f"Invalid currency: {currency}")
    return LineItem(
        name=name,
        currency=currency.lower(),
        unit_amount=_integer(
            price.get("unit_amount"), f"{param}[price_data][unit_amount]", minimum=0
        ),
        quantity=_integer(entry.get("quantity"), f"{param}[quantity]", minimum=1),
    )


def _required_url(params: Mapping[str, FormValue], name: str) -> str:
    url = _url(params, name)
    if url is None:
        raise missing(name)
    return url


def _url(params: Mapping[str, FormValue], name: str) -> str | None:
    """An absolute http(s) URL, as Stripe insists (the hosted page links to it: no
    ``javascript:`` URL may get there)."""
    value = _text(params, name)
    if value is None:
        return None
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in {"http", "https"} or not parsed.netloc:
        raise invalid(name, "Not a valid URL", "url_invalid")
    return value


def _metadata(value: FormValue | None, param: str) -> dict[str, str]:
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise invalid(param, f"Invalid object: {param} must be an object.")
    if len(value) > METADATA_KEYS:
        raise invalid(param, f"You can specify up to {METADATA_KEYS} metadata keys.")
    metadata: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(item, str):
            raise invalid(f"{param}[{key}]", "Metadata values must be strings.")
        if len(key) > METADATA_KEY_LENGTH or len(item) > METADATA_VALUE_LENGTH:
            raise invalid(
                f"{param}[{key}]",
                f"Metadata keys are at most {METADATA_KEY_LENGTH} characters and values "
                f"at most {METADATA_VALUE_LENGTH}.",
            )
        if item != "":  # Stripe reads an empty value as "no such key"
            metadata[key] = item
    return metadata


def _expires_at(params: Mapping[str, FormValue], now: int) -> int:
    """Stripe's window is 30 minutes to 24 hours after creation; the emulator takes any
    time in the future up to 24 hours, so a test can watch a session expire on its own."""
    value = params.get("expires_at")
    if value is None or value == "":
        return now + MAX_LIFETIME_SECONDS
    expires_at = _integer(value, "expires_at", minimum=0)
    if expires_at <= now:
        raise invalid("expires_at", "The `expires_at` timestamp must be in the future.")
    if expires_at > now + MAX_LIFETIME_SECONDS:
        raise invalid(
            "expires_at",
            "The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.",
        )
    return expires_at


class SessionStatus(enum.StrEnum):
    OPEN = "open"
    COMPLETE = "complete"
    EXPIRED = "expired"


class SessionNotOpen(Exception):
    """A move only an open session makes (pay, expire) asked of one that is not."""

    def __init__(self, status: SessionStatus) -> None:
        super().__init__(f"the Checkout Session is {status}")
        self.status = status


@dataclass(slots=True)
class CheckoutSession:
    """One session's state. ``url`` is the hosted page; Stripe drops it (``null``) once the
    session is no longer open, and so does ``to_stripe``."""

    id: str
    request: SessionRequest
    payment_intent: str
    url: str
    created: int
    api_key: str
    """The key that created it: the hosted page acts at localstripe with the same account."""
    api_version: str
    """The API version its events are written for (the creating request's
    ``Stripe-Version``, else the SDK's)."""
    status: SessionStatus = SessionStatus.OPEN
    payment_status: str = "unpaid"
    customer_email: str | None = None
    line_item_ids: tuple[str, ...] = field(default=())

    def complete(self, *, email: str | None) -> None:
        self._must_be_open()
        self.status = SessionStatus.COMPLETE
        self.payment_status = "paid"
        self.customer_email = email or self.request.customer_email

    def expire(self) -> None:
        self._must_be_open()
        self.status = SessionStatus.EXPIRED

    def _must_be_open(self) -> None:
        if self.status is not SessionStatus.OPEN:
            raise SessionNotOpen(self.status)

    def redirect_url(self) -> str:
        """``success_url`` with ``{CHECKOUT_SESSION_ID}`` replaced, as Stripe does."""
        return self.request.success_url.replace("{CHECKOUT_SESSION_ID}", self.id)

    def to_stripe(self, *, expand: Sequence[str] = ()) -> dict[str, Any]:
        """The ``checkout.session`` object, with Stripe's field names and types."""
        request = self.request
        details: dict[str, Any] | None = None
        if self.status is SessionStatus.COMPLETE:
            details = {
                "address": None,
                "email": self.customer_email,
                "name": None,
                "phone": None,
                "tax_exempt": "none",
                "tax_ids": [],
            }
        session: dict[str, Any] = {
            "id": self.id,
            "object": "checkout.session",
            "after_expiration": None,
            "allow_promotion_codes": None,
            "amount_subtotal": request.amount_total,
            "amount_total": request.amount_total,
            "automatic_tax": {"enabled": False, "liability": None, "status": None},
            "billing_address_collection": None,
            "cancel_url": request.cancel_url,
            "client_reference_id": request.client_reference_id,
            "client_secret": None,
            "consent": None,
            "consent_collection": None,
            "created": self.created,
            "currency": request.currency,
            "custom_fields": [],
            "customer": None,
            "customer_creation": "if_required",
            "customer_details": details,
            "customer_email": request.customer_email,
            "expires_at": request.expires_at,
            "invoice": None,
            "livemode": False,
            "locale": None,
            "metadata": dict(request.metadata),
            "mode": "payment",
            "payment_intent": self.payment_intent,
            "payment_link": None,
            "payment_method_collection": "if_required",
            "payment_method_options": {},
            "payment_method_types": ["card"],
            "payment_status": self.payment_status,
            "phone_number_collection": {"enabled": False},
            "recovered_from": None,
            "setup_intent": None,
            "shipping_address_collection": None,
            "shipping_cost": None,
            "shipping_details": None,
            "shipping_options": [],
            "status": str(self.status),
            "submit_type": None,
            "subscription": None,
            "success_url": request.success_url,
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": "hosted",
            "url": self.url if self.status is SessionStatus.OPEN else None,
        }
        if "line_items" in expand:
            session["line_items"] = self.line_items()
        return session

    def line_items(self) -> dict[str, Any]:
        """``GET /v1/checkout/sessions/{id}/line_items``: a list of ``item`` objects."""
        data = []
        for item_id, item in zip(self.line_item_ids, self.request.line_items, strict=True):
            data.append(
                {
                    "id": item_id,
                    "object": "item",
                    "amount_discount": 0,
                    "amount_subtotal": item.amount_total,
                    "amount_tax": 0,
                    "amount_total": item.amount_total,
                    "currency": item.currency,
                    "description": item.name,
                    "price": {
                        "id": item_id.replace("li_", "price_", 1),
                        "object": "price",
                        "active": False,
                        "currency": item.currency,
                        "livemode": False,
                        "product": item_id.replace("li_", "prod_", 1),
                        "type": "one_time",
                        "unit_amount": item.unit_amount,
                    },
                    "quantity": item.quantity,
                }
            )
        return {
            "object": "list",
            "data": data,
            "has_more": False,
            "url": f"/v1/checkout/sessions/{self.id}/line_items",
        }
