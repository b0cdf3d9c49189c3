"""The Stripe add-on's pure parts: reading the SDK's form bodies, checking create parameters
as Stripe does, the ``checkout.session`` and ``event`` shapes, the signature (checked with
the server's own verifier), the hosted page's card form, and the fake gateway's Checkout
methods matching the real ones."""

from __future__ import annotations

import inspect
import json
import time
import urllib.parse
from datetime import date
from typing import Any

import pytest

from app.payments.gateway import StripeGateway
from app.payments.signatures import InvalidSignature, verify_signature
from app.stripe_addon.checkout import Card
from app.stripe_addon.events import Webhook, event_body, event_envelope, signature_header
from app.stripe_addon.forms import FormError, encode_form, form_list, parse_form
from app.stripe_addon.hosted_page import CardForm, HostedPage, format_amount, read_card
from app.stripe_addon.sessions import (
    CheckoutSession,
    SessionNotOpen,
    SessionStatus,
    StripeApiError,
    read_create_params,
)
from tests.fakes import FakeGateway

NOW = 1_800_000_000


def sdk_body(params: dict[str, Any]) -> str:
    """What the stripe SDK sends for ``params``: its own encoder, brackets left unescaped as
    its requestor leaves them (``stripe._api_requestor``)."""
    from stripe._encode import _api_encode

    encoded = urllib.parse.urlencode(list(_api_encode(params)))
    return encoded.replace("%5B", "[").replace("%5D", "]")


def create_params(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {
                    "currency": "usd",
                    "unit_amount": 1250,
                    "product_data": {"name": "Pad thai"},
                },
                "quantity": 2,
            },
            {
                "price_data": {
                    "currency": "usd",
                    "unit_amount": 300,
                    "product_data": {"name": "Delivery"},
                },
                "quantity": 1,
            },
        ],
        "success_url": "https://shop.example/paid?session={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://shop.example/cart",
        "metadata": {"source": "order", "order_id": "o_1"},
        "payment_intent_data": {"metadata": {"source": "order", "order_id": "o_1"}},
        "expires_at": NOW + 1800,
        "client_reference_id": "cart_9",
        "customer_email": "ana@example.com",
    }
    params.update(overrides)
    return params


def read(params: dict[str, Any]) -> Any:
    return read_create_params(parse_form(sdk_body(params)), now=NOW)


# --- forms --------------------------------------------------------------------------------


def test_the_sdks_create_body_reads_back_as_it_was_built() -> None:
    form = parse_form(sdk_body(create_params()))
    items = form_list(form["line_items"])
    assert items is not None
    assert items[0] == {
        "price_data": {
            "currency": "usd",
            "unit_amount": "1250",
            "product_data": {"name": "Pad thai"},
        },
        "quantity": "2",
    }
    assert form["metadata"] == {"source": "order", "order_id": "o_1"}
    assert form["payment_intent_data"] == {"metadata": {"source": "order", "order_id": "o_1"}}
    assert form["success_url"] == "https://shop.example/paid?session={CHECKOUT_SESSION_ID}"


def test_lists_come_in_index_order_and_numbered_metadata_keys_stay_keys() -> None:
    form = parse_form("a[1]=second&a[0]=first&b[]=x&b[]=y&metadata[0]=zero")
    assert form_list(form["a"]) == ["first", "second"]
    assert form_list(form["b"]) == ["x", "y"]
    assert form["metadata"] == {"0": "zero"}  # a metadata key named "0", not a list
    assert form_list(form.get("missing")) is None
    assert form_list("text") is None


def test_blank_values_and_repeated_keys() -> None:
    assert parse_form("metadata[k]=&x=1&x=2") == {"metadata": {"k": ""}, "x": "2"}


@pytest.mark.parametrize("body", ["a=1&a[b]=2", "a[b]=2&a=1", "a]=1", "[a]=1"])
def test_a_key_that_is_both_a_value_and_an_object_or_malformed_is_refused(body: str) -> None:
    with pytest.raises(FormError):
        parse_form(body)


def test_encode_form_is_what_parse_form_reads() -> None:
    params = {
        "amount": 900,
        "metadata": {"order_id": "o_1", "note": "a&b=c"},
        "card": {"number": "4242424242424242", "exp_month": 12},
        "expand": ["latest_charge"],
        "confirm": True,
        "skipped": None,
    }
    encoded = encode_form(params)
    assert "skipped" not in encoded
    assert parse_form(encoded) == {
        "amount": "900",
        "metadata": {"order_id": "o_1", "note": "a&b=c"},
        "card": {"number": "4242424242424242", "exp_month": "12"},
        "expand": {"0": "latest_charge"},
        "confirm": "true",
    }
    assert (
        encode_form(params)
        .replace("%5B", "[")
        .replace("%5D", "]")
        .startswith("amount=900&metadata[order_id]=o_1")
    )


# --- create parameters --------------------------------------------------------------------


def test_a_create_request_is_read_with_its_total() -> None:
    request = read(create_params())
    assert request.amount_total == 2 * 1250 + 300
    assert request.currency == "usd"
    assert [item.name for item in request.line_items] == ["Pad thai", "Delivery"]
    assert request.metadata == {"source": "order", "order_id": "o_1"}
    assert request.payment_intent_metadata == {"source": "order", "order_id": "o_1"}
    assert request.expires_at == NOW + 1800
    assert (request.client_reference_id, request.customer_email) == ("cart_9", "ana@example.com")


def test_expiry_defaults_to_stripes_24_hours() -> None:
    params = create_params()
    del params["expires_at"]
    assert read(params).expires_at == NOW + 24 * 3600


def refusal(params: dict[str, Any]) -> StripeApiError:
    with pytest.raises(StripeApiError) as caught:
        read(params)
    return caught.value


@pytest.mark.parametrize(
    ("overrides", "param", "code"),
    [
        ({"mode": None}, "mode", "parameter_missing"),
        ({"success_url": None}, "success_url", "parameter_missing"),
        ({"line_items": None}, "line_items", "parameter_missing"),
        ({"success_url": "javascript:alert(1)"}, "success_url", "url_invalid"),
        ({"cancel_url": "/relative"}, "cancel_url", "url_invalid"),
        ({"expires_at": NOW - 1}, "expires_at", "parameter_invalid_empty"),
        ({"expires_at": NOW + 25 * 3600}, "expires_at", "parameter_invalid_empty"),
        ({"expires_at": "soon"}, "expires_at", "parameter_invalid_integer"),
        ({"discounts": [{"coupon": "X"}]}, "discounts", "parameter_unknown"),
        ({"payment_intent_data": {"capture_method": "manual"}}, None, "parameter_unknown"),
        ({"mode": "subscription"}, "mode", "parameter_invalid_empty"),
    ],
)
def test_what_stripe_refuses_is_refused_in_stripes_shape(
    overrides: dict[str, Any], param: str | None, code: str
) -> None:
    params = {k: v for k, v in create_params(**overrides).items() if v is not None}
    error = refusal(params)
    assert error.status == 400
    assert error.code == code
    if param is not None:
        assert error.param == param
    body = error.body()["error"]
    assert body["type"] == "invalid_request_error"
    assert body["message"]


def test_line_items_are_checked_one_by_one() -> None:
    price: dict[str, Any] = {"currency": "usd", "product_data": {"name": "Tea"}}
    item: dict[str, Any] = {"price_data": price, "quantity": 1}
    error = refusal(create_params(line_items=[item]))
    assert (error.code, error.param) == (
        "parameter_missing",
        "line_items[0][price_data][unit_amount]",
    )
    zero = {"price_data": {**price, "unit_amount": 100}, "quantity": 0}
    assert refusal(create_params(line_items=[zero])).param == "line_items[0][quantity]"
    priced = {"price": "price_123", "quantity": 1}
    assert refusal(create_params(line_items=[priced])).param == "line_items[0][price]"
    euro = {"price_data": {"currency": "eur", "unit_amount": 1, "product_data": {"name": "X"}}}
    mixed = create_params()["line_items"] + [{**euro, "quantity": 1}]
    assert refusal(create_params(line_items=mixed)).param == "line_items"


def test_metadata_follows_stripes_limits_and_drops_blank_values() -> None:
    assert read(create_params(metadata={"a": "1", "gone": ""})).metadata == {"a": "1"}
    too_many = {f"k{i}": "v" for i in range(51)}
    assert refusal(create_params(metadata=too_many)).param == "metadata"
    assert refusal(create_params(metadata={"k" * 41: "v"})).param == f"metadata[{'k' * 41}]"


# --- the session object -------------------------------------------------------------------


def a_session(**overrides: Any) -> CheckoutSession:
    fields: dict[str, Any] = {
        "id": "cs_test_abc",
        "request": read(create_params()),
        "payment_intent": "pi_123",
        "url": "http://127.0.0.1:9/checkout/cs_test_abc",
        "created": NOW,
        "api_key": "sk_test_x",
        "api_version": "2026-10-28.endive",
        "line_item_ids": ("li_1", "li_2"),
    }
    fields.update(overrides)
    return CheckoutSession(**fields)


def test_an_open_session_is_shaped_as_stripes() -> None:
    obj = a_session().to_stripe()
    assert {
        k: obj[k]
        for k in (
            "id",
            "object",
            "amount_total",
            "currency",
            "status",
            "payment_status",
            "payment_intent",
            "url",
            "mode",
            "livemode",
            "client_reference_id",
            "expires_at",
            "created",
            "metadata",
            "success_url",
            "cancel_url",
            "customer_details",
        )
    } == {
        "id": "cs_test_abc",
        "object": "checkout.session",
        "amount_total": 2800,
        "currency": "usd",
        "status": "open",
        "payment_status": "unpaid",
        "payment_intent": "pi_123",
        "url": "http://127.0.0.1:9/checkout/cs_test_abc",
        "mode": "payment",
        "livemode": False,
        "client_reference_id": "cart_9",
        "expires_at": NOW + 1800,
        "created": NOW,
        "metadata": {"source": "order", "order_id": "o_1"},
        "success_url": "https://shop.example/paid?session={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://shop.example/cart",
        "customer_details": None,
    }
    assert "line_items" not in obj  # only when expanded, as Stripe's
    json.dumps(obj)  # plain JSON all through


def test_a_paid_session_loses_its_url_and_names_the_payer() -> None:
    session = a_session()
    session.complete(email="ben@example.com")
    obj = session.to_stripe(expand=["line_items"])
    assert (obj["status"], obj["payment_status"], obj["url"]) == ("complete", "paid", None)
    assert obj["customer_details"]["email"] == "ben@example.com"
    assert [item["description"] for item in obj["line_items"]["data"]] == ["Pad thai", "Delivery"]
    assert obj["line_items"]["data"][0]["amount_total"] == 2500
    assert session.redirect_url() == "https://shop.example/paid?session=cs_test_abc"


def test_only_an_open_session_is_paid_or_expired() -> None:
    session = a_session()
    session.expire()
    assert session.to_stripe()["status"] == "expired"
    with pytest.raises(SessionNotOpen) as caught:
        session.complete(email=None)
    assert caught.value.status is SessionStatus.EXPIRED
    with pytest.raises(SessionNotOpen):
        session.expire()


# --- events -------------------------------------------------------------------------------


def test_an_event_is_shaped_as_stripes_and_its_signature_verifies() -> None:
    session = a_session()
    event = event_envelope(
        "checkout.session.completed", session.to_stripe(), api_version="2026-10-28.endive"
    )
    assert event["id"].startswith("evt_")
    assert {k: event[k] for k in ("object", "api_version", "type", "livemode")} == {
        "object": "event",
        "api_version": "2026-10-28.endive",
        "type": "checkout.session.completed",
        "livemode": False,
    }
    assert event["pending_webhooks"] == 1
    assert event["request"] == {"id": None, "idempotency_key": None}
    assert event["data"]["object"]["id"] == "cs_test_abc"
    assert abs(event["created"] - time.time()) < 5

    body = event_body(event)
    header = signature_header(body, "whsec_test", int(time.time()))
    verify_signature(body, header, ["whsec_other", "whsec_test"])  # rotation: any secret
    with pytest.raises(InvalidSignature):
        verify_signature(body, header, ["whsec_other"])
    with pytest.raises(InvalidSignature):
        verify_signature(body + b" ", header, ["whsec_test"])
    stale = signature_header(body, "whsec_test", int(time.time()) - 3600)
    with pytest.raises(InvalidSignature):
        verify_signature(body, stale, ["whsec_test"])


def test_an_api_caused_event_names_its_request() -> None:
    event = event_envelope(
        "checkout.session.expired",
        {"id": "cs_1"},
        api_version="v",
        request_id="req_1",
        idempotency_key="key-1",
    )
    assert event["request"] == {"id": "req_1", "idempotency_key": "key-1"}


def test_a_webhook_gets_what_it_asked_for() -> None:
    assert Webhook("http://x", "s").wants("checkout.session.completed")
    picky = Webhook("http://x", "s", frozenset({"payment_intent.succeeded"}))
    assert not picky.wants("checkout.session.completed")


# --- the hosted page ----------------------------------------------------------------------

TODAY = date(2026, 12, 1)


def test_a_good_card_is_read() -> None:
    card = read_card(
        {"card_number": "4242 4242 4242 4242", "card_expiry": "12 / 30", "card_cvc": "123"},
        today=TODAY,
    )
    assert card == Card(number="4242424242424242", exp_month=12, exp_year=2030, cvc="123")


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"card_number": ""}, "card_number", "Enter your card number"),
        ({"card_number": "4242424242424241"}, "card_number", "invalid"),  # Luhn
        ({"card_expiry": "13/30"}, "card_expiry", "incomplete"),
        ({"card_expiry": "11/26"}, "card_expiry", "in the past"),
        ({"card_cvc": "12"}, "card_cvc", "incomplete"),
        ({"email": "not-an-address"}, "email", "invalid"),
    ],
)
def test_a_bad_field_is_named(fields: dict[str, str], field: str, words: str) -> None:
    form = {"card_number": "4242424242424242", "card_expiry": "12/30", "card_cvc": "123"}
    result = read_card({**form, **fields}, today=TODAY)
    assert isinstance(result, CardForm)
    assert list(result.errors) == [field]
    assert words in result.errors[field]


def test_amounts_read_as_people_read_them() -> None:
    assert format_amount(2800, "usd") == "USD 28.00"
    assert format_amount(500, "JPY") == "JPY 500"
    assert format_amount(1234560, "KWD") == "KWD 1,234.560"


def test_the_page_is_labelled_escaped_and_says_what_went_wrong() -> None:
    page = HostedPage()
    item = {
        "price_data": {
            "currency": "usd",
            "unit_amount": 999,
            "product_data": {"name": "<script>alert(1)</script> Soup"},
        },
        "quantity": 1,
    }
    session = a_session(request=read(create_params(line_items=[item])))
    html = page.render(session)
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Soup" in html
    assert "USD 9.99" in html
    for field in ("card_number", "card_expiry", "card_cvc", "email"):
        assert f'<label for="{field}">' in html
        assert f'id="{field}" name="{field}"' in html
    assert "Pay USD 9.99</button>" in html
    assert 'href="https://shop.example/cart"' in html

    declined = page.render(session, message="Your card was declined.")
    assert 'role="alert"' in declined
    assert "Your card was declined." in declined
    wrong = read_card({"card_number": "1234"}, today=TODAY)
    assert isinstance(wrong, CardForm)
    marked = page.render(session, form=wrong)
    assert 'aria-invalid="true" aria-describedby="card_number-error"' in marked

    session.expire()
    expired = page.render(session)
    assert "has expired" in expired
    assert "<form" not in expired


# --- the fake gateway ---------------------------------------------------------------------

CHECKOUT_METHODS = (
    "create_checkout_session",
    "retrieve_checkout_session",
    "expire_checkout_session",
)


@pytest.mark.parametrize("name", CHECKOUT_METHODS)
def test_the_fake_gateways_checkout_methods_are_the_real_ones(name: str) -> None:
    real = inspect.signature(getattr(StripeGateway, name))
    fake = inspect.signature(getattr(FakeGateway, name))
    assert str(fake) == str(real)


async def test_the_fake_gateway_keeps_checkout_sessions_as_stripe_does() -> None:
    gateway = FakeGateway()
    asked: dict[str, Any] = {
        "amount": 2800,
        "currency": "usd",
        "name": "Order TC-1",
        "metadata": {"order_id": "o_1"},
        "success_url": "https://shop.example/ok",
        "cancel_url": "https://shop.example/no",
        "idempotency_key": "order-o_1-a1",
    }
    session = await gateway.create_checkout_session(**asked)
    assert session == await gateway.create_checkout_session(**asked)  # same key, same session
    assert (session.status, session.payment_status, session.currency) == ("open", "unpaid", "USD")
    assert session.payment_intent_id in gateway.intents
    assert gateway.intents[session.payment_intent_id].metadata == {"order_id": "o_1"}

    paid = gateway.complete_checkout(session.id)
    assert (paid.status, paid.payment_status, paid.url) == ("complete", "paid", None)
    assert gateway.intents[session.payment_intent_id].status == "succeeded"
    with pytest.raises(Exception, match="complete"):
        await gateway.expire_checkout_session(session.id)

    other = await gateway.create_checkout_session(**{**asked, "idempotency_key": "k2"})
    await gateway.expire_checkout_session(other.id)
    await gateway.expire_checkout_session(other.id)  # expired already: done
    assert (await gateway.retrieve_checkout_session(other.id)).status == "expired"
    assert other.payment_intent_id is not None
    assert gateway.intents[other.payment_intent_id].status == "canceled"
