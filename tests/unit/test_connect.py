"""Stores get paid, the pure parts: the fee and the store's part to the minor unit (half to
even, adding up however refunds come), sealed secrets (AES-GCM, bound to their place, keys
rotated), ``TEAMCART_SECRETS_KEY``, the add-on's Connect objects and checks as Stripe's, and
the fake gateway's Connect methods matching the real ones."""

from __future__ import annotations

import base64
import inspect
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.config import Settings, SettingsError, settings_to_env
from app.connect.money import Split, platform_fee, reversal_due, split
from app.connect.rows import MoneyItem, decode_money_cursor, encode_money_cursor
from app.failures import InvalidFieldError
from app.payments.gateway import ConnectCharge, GatewayError, StripeGateway
from app.secrets import KEY_FILE, Keyring, SecretsError, generate_key, keyring_for
from app.stripe_addon.connect import Connect
from app.stripe_addon.events import WebhookSender
from app.stripe_addon.forms import FormValue, parse_form
from app.stripe_addon.sessions import StripeApiError, read_create_params
from tests.fakes import FakeGateway

# --- the fee and the store's part ------------------------------------------------------------


def test_the_fee_is_rounded_half_to_even_and_the_parts_add_up() -> None:
    assert platform_fee(1000, 875) == 88  # 87.5 → 88
    assert platform_fee(1000, 125) == 12  # 12.5 → 12
    assert platform_fee(7494, 875) == 656  # 655.725
    assert split(7494, 875, "USD") == Split(7494, 656, 6838)
    assert split(500, 0, "USD") == Split(500, 0, 500)
    assert split(500, 10_000, "JPY") == Split(500, 500, 0)
    with pytest.raises(ValueError, match="basis points"):
        platform_fee(100, 10_001)


def test_in_a_three_decimal_currency_the_store_gets_what_stripe_can_move() -> None:
    parts = split(12_340, 333, "KWD")  # 410.922 fils of fee
    assert parts.amount_minor % 10 == 0
    assert parts.fee_minor + parts.amount_minor == 12_340


def test_a_refund_takes_back_its_part_of_the_store_and_of_the_fee() -> None:
    whole = split(7494, 875, "USD")
    assert reversal_due(777, whole, "USD") == Split(777, 68, 709)  # 708.98… → 709
    assert reversal_due(7494, whole, "USD") == whole
    assert reversal_due(0, whole, "USD") == Split(0, 0, 0)
    assert reversal_due(10**9, whole, "USD") == whole  # never more than there was


@given(
    gross=st.integers(min_value=1, max_value=10**9),
    bps=st.integers(min_value=0, max_value=10_000),
    cuts=st.lists(st.floats(min_value=0, max_value=1, allow_nan=False), max_size=8),
)
def test_partial_refunds_in_any_number_take_back_exactly_the_whole(
    gross: int, bps: int, cuts: list[float]
) -> None:
    """Each refund takes back what the running total owes less what came back before: every
    step is non-negative, and a full refund ends with the whole part and the whole fee."""
    whole = split(gross, bps, "USD")
    totals = sorted({int(gross * cut) for cut in cuts} | {gross})
    taken = Split(0, 0, 0)
    for refunded in totals:
        due = reversal_due(refunded, whole, "USD")
        step_amount, step_fee = (
            due.amount_minor - taken.amount_minor,
            due.fee_minor - taken.fee_minor,
        )
        assert step_amount >= 0
        assert step_fee >= 0
        assert due.amount_minor + due.fee_minor == refunded
        taken = due
    assert taken == whole


# --- sealed secrets ----------------------------------------------------------------------------


def test_a_sealed_secret_opens_only_in_its_place_and_never_shows() -> None:
    keyring = Keyring.of([generate_key()])
    token = keyring.seal("sk_live_secret", context="store/1/key")
    assert "sk_live_secret" not in token
    assert token.split(".")[:2] == ["tcs1", keyring.primary_id]
    assert keyring.seal("sk_live_secret", context="store/1/key") != token  # a fresh nonce
    assert keyring.open(token, context="store/1/key") == "sk_live_secret"
    with pytest.raises(SecretsError):
        keyring.open(token, context="store/2/key")
    version, kid, nonce, sealed = token.split(".")
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    for broken in (f"{version}.{kid}.{nonce}.{flipped}", "tcs1.x", "v9.a.b.c", "tcs1.a.!!.b"):
        with pytest.raises(SecretsError) as caught:
            keyring.open(broken, context="store/1/key")
        assert "sk_live_secret" not in str(caught.value)


def test_new_seals_use_the_first_key_and_every_key_opens() -> None:
    old, new = generate_key(), generate_key()
    before = Keyring.of([old]).seal("whsec_abc", context="c")
    during = Keyring.of([new, old])
    assert not during.is_current(before)
    assert during.open(before, context="c") == "whsec_abc"
    resealed = during.seal(during.open(before, context="c"), context="c")
    assert during.is_current(resealed)
    assert Keyring.of([new]).open(resealed, context="c") == "whsec_abc"
    with pytest.raises(SecretsError, match="no configured key"):
        Keyring.of([new]).open(before, context="c")


def test_without_a_configured_key_one_is_made_once_in_the_data_folder(tmp_path: Path) -> None:
    first = keyring_for((), tmp_path / "data")
    path = tmp_path / "data" / KEY_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert keyring_for((), tmp_path / "data").keys == first.keys  # the same key next time
    assert [p.name for p in (tmp_path / "data").iterdir()] == [KEY_FILE]  # no drafts left
    configured = generate_key()
    assert keyring_for((configured,), tmp_path / "data").keys != first.keys
    path.write_text("garbage")
    with pytest.raises(SecretsError, match="usable key"):
        keyring_for((), tmp_path / "data")


def test_teamcart_secrets_key_is_checked_and_named() -> None:
    one, two = generate_key(), generate_key()
    settings = Settings.from_env({"TEAMCART_SECRETS_KEY": f" {one} , {two} "})
    assert settings.secrets_keys == (one, two)
    assert settings_to_env(settings)["TEAMCART_SECRETS_KEY"] == f"{one},{two}"
    assert Settings.from_env({}).secrets_keys == ()
    for value, problem in (
        ("c2hvcnQ", "32 bytes"),  # "short"
        ("@@@@", "base64url"),
        (f"{one},{one}", "twice"),
        (",", "one or more"),
    ):
        with pytest.raises(SettingsError) as caught:
            Settings.from_env({"TEAMCART_SECRETS_KEY": value})
        assert caught.value.variable == "TEAMCART_SECRETS_KEY"
        assert problem in str(caught.value)
        assert one not in str(caught.value)


# --- the add-on's Connect ----------------------------------------------------------------------


class Recorded(WebhookSender):
    """The events the add-on would deliver, kept instead."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, event: Any) -> None:
        self.sent.append(dict(event))


NOW = 1_800_000_000


def connect(clock: list[int] | None = None) -> tuple[Connect, Recorded]:
    sender = Recorded()
    times = clock or [NOW]
    store = Connect(
        sender, public_base="http://127.0.0.1:9", api_version="2026-10-28", clock=lambda: times[0]
    )
    return store, sender


def form(body: str) -> dict[str, FormValue]:
    return parse_form(body)


def test_an_account_is_made_restricted_and_onboarding_enables_it_once() -> None:
    store, sender = connect()
    account = store.create_account(
        form(
            "type=express&capabilities[card_payments][requested]=true"
            "&capabilities[transfers][requested]=true&metadata[store_id]=s1"
        )
    )
    shown = account.to_stripe()
    assert shown["object"] == "account"
    assert (shown["charges_enabled"], shown["payouts_enabled"]) == (False, False)
    assert "external_account" in shown["requirements"]["currently_due"]
    assert shown["capabilities"] == {"card_payments": "inactive", "transfers": "inactive"}
    assert shown["metadata"] == {"store_id": "s1"}
    link = store.create_link(
        form(
            f"account={account.id}&type=account_onboarding"
            "&refresh_url=https://x/refresh&return_url=https://x/return"
        )
    )
    assert link["object"] == "account_link"
    assert link["expires_at"] == NOW + 300
    token = link["url"].rsplit("/", 1)[1]
    assert store.complete_onboarding(token, business_name="Noodles") == "https://x/return"
    [updated] = sender.sent
    assert (updated["type"], updated["account"]) == ("account.updated", account.id)
    assert updated["data"]["object"]["charges_enabled"] is True
    assert updated["data"]["object"]["capabilities"]["transfers"] == "active"
    assert updated["data"]["previous_attributes"]["charges_enabled"] is False
    assert store.complete_onboarding(token, business_name="Again") == "https://x/refresh"
    assert len(sender.sent) == 1  # a used link changes nothing


def test_an_expired_link_sends_the_browser_to_its_refresh_url() -> None:
    clock = [NOW]
    store, sender = connect(clock)
    account = store.create_account({})
    link = store.create_link(
        form(
            f"account={account.id}&type=account_onboarding"
            "&refresh_url=https://x/refresh&return_url=https://x/return"
        )
    )
    token = link["url"].rsplit("/", 1)[1]
    clock[0] = NOW + 301
    assert store.usable_link(token) is None
    assert store.complete_onboarding(token, business_name="Late") == "https://x/refresh"
    assert sender.sent == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("transfer_data[destination]=acct_nobody", "resource_missing"),
        ("transfer_data[destination]={restricted}", "insufficient_capabilities_for_transfer"),
        ("application_fee_amount=10", None),  # a fee needs a destination
        ("transfer_data[destination]={onboarded}&application_fee_amount=2001", None),
        ("transfer_data[destination]={onboarded}&transfer_data[color]=red", "parameter_unknown"),
        ("on_behalf_of={onboarded}", "parameter_unknown"),
    ],
)
def test_destination_charges_are_checked_as_stripe_checks_them(body: str, code: str | None) -> None:
    store, _ = connect()
    restricted = store.create_account({})
    onboarded = store.create_account({})
    onboarded.onboarded = True
    params = form(body.format(restricted=restricted.id, onboarded=onboarded.id))
    with pytest.raises(StripeApiError) as caught:
        store.read_charge(params, amount=2000)
    assert caught.value.status == 400
    assert caught.value.code == code


def test_a_destination_charge_is_settled_once_with_its_transfer_and_fee() -> None:
    store, sender = connect()
    account = store.create_account({})
    account.onboarded = True
    terms = store.read_charge(
        form(f"transfer_data[destination]={account.id}&application_fee_amount=175"), amount=2000
    )
    assert terms is not None
    store.record_charge("pi_1", terms)
    unpaid = store.decorate_intent({"id": "pi_1", "status": "requires_payment_method"})
    assert unpaid["transfer_data"] == {"destination": account.id}
    assert unpaid["application_fee_amount"] == 175
    assert store.settled == {}
    paid = {"id": "pi_1", "status": "succeeded", "amount": 2000, "currency": "usd"}
    for _ in range(3):
        store.decorate_intent({**paid, "latest_charge": {"id": "ch_1", "payment_intent": "pi_1"}})
    [transfer] = store.transfers.values()
    assert (transfer.amount, transfer.destination, transfer.source_transaction) == (
        2000,
        account.id,
        "ch_1",
    )
    [fee] = store.fees.values()
    assert (fee.amount, fee.account, fee.charge) == (175, account.id, "ch_1")
    charge = store.decorate_charge({"id": "ch_1", "object": "charge"})
    assert (charge["transfer"], charge["application_fee"]) == (transfer.id, fee.id)
    assert [e["type"] for e in sender.sent] == ["transfer.created", "application_fee.created"]
    assert store.decorate_intent({"id": "pi_other"}) == {"id": "pi_other"}  # not ours: as is


def test_transfers_and_reversals_refuse_what_stripe_refuses() -> None:
    store, sender = connect()
    account = store.create_account({})
    with pytest.raises(StripeApiError, match="capabilities"):
        store.create_transfer(
            form(f"amount=100&currency=usd&destination={account.id}"), request_id="req_1"
        )
    account.onboarded = True
    transfer = store.create_transfer(
        form(f"amount=1000&currency=usd&destination={account.id}&transfer_group=g1"),
        request_id="req_2",
    )
    assert store.list_transfers(form("transfer_group=g1"))["data"][0]["id"] == transfer.id
    assert store.list_transfers(form("transfer_group=g2"))["data"] == []
    store.create_reversal(transfer.id, form("amount=400"), request_id="req_3")
    with pytest.raises(StripeApiError, match="only 600 left"):
        store.create_reversal(transfer.id, form("amount=601"), request_id="req_4")
    rest = store.create_reversal(transfer.id, {}, request_id="req_5")  # all that is left
    assert rest["amount"] == 600
    assert transfer.to_stripe()["reversed"] is True
    with pytest.raises(StripeApiError, match="fully reversed"):
        store.create_reversal(transfer.id, {}, request_id="req_6")
    assert [e["type"] for e in sender.sent] == [
        "transfer.created",
        "transfer.reversed",
        "transfer.reversed",
    ]


def test_a_connected_accounts_payout_events_name_the_account() -> None:
    store, sender = connect()
    account = store.create_account({})
    store.pay_out(account.id, amount=900, currency="usd", status="failed", failure_code=None)
    assert [(e["type"], e["account"]) for e in sender.sent] == [
        ("payout.created", account.id),
        ("payout.failed", account.id),
    ]
    failed = sender.sent[1]["data"]["object"]
    assert (failed["status"], failed["failure_code"]) == ("failed", "account_closed")
    assert store.list_payouts(account.id, {})["data"][0]["id"] == failed["id"]
    with pytest.raises(StripeApiError):
        store.pay_out(account.id, amount=1, currency="usd", status="pending", failure_code=None)


def test_a_checkout_session_takes_destination_charge_terms() -> None:
    request = read_create_params(
        form(
            "mode=payment&success_url=https://x/ok&line_items[0][quantity]=1"
            "&line_items[0][price_data][currency]=usd&line_items[0][price_data][unit_amount]=900"
            "&line_items[0][price_data][product_data][name]=Soup"
            "&payment_intent_data[application_fee_amount]=50"
            "&payment_intent_data[transfer_data][destination]=acct_1"
        ),
        now=NOW,
    )
    assert request.payment_intent_connect == {
        "application_fee_amount": "50",
        "transfer_data": {"destination": "acct_1"},
    }


# --- the fake gateway ----------------------------------------------------------------------

CONNECT_METHODS = (
    "create_payment_intent",
    "create_checkout_session",
    "create_connect_account",
    "retrieve_connect_account",
    "create_account_link",
    "create_transfer",
    "create_transfer_reversal",
    "retrieve_destination_charge",
    "refund_application_fee",
    "list_payouts",
    "list_transfers",
)


@pytest.mark.parametrize("name", CONNECT_METHODS)
def test_the_fake_gateways_connect_methods_are_the_real_ones(name: str) -> None:
    real = inspect.signature(getattr(StripeGateway, name))
    fake = inspect.signature(getattr(FakeGateway, name))
    assert str(fake) == str(real)


async def test_the_fake_gateway_keeps_connect_as_stripe_does() -> None:
    gateway = FakeGateway()
    account = await gateway.create_connect_account(store_id="s1", idempotency_key="k1")
    assert (await gateway.create_connect_account(store_id="s1", idempotency_key="k1")) == account
    with pytest.raises(GatewayError):
        await gateway.create_transfer(
            amount=1,
            currency="usd",
            destination=account.id,
            transfer_group=None,
            metadata={},
            idempotency_key="t0",
        )
    gateway.complete_onboarding(account.id)
    made = [
        await gateway.create_transfer(
            amount=900,
            currency="usd",
            destination=account.id,
            transfer_group="g",
            metadata={},
            idempotency_key="t1",
        )
        for _ in range(2)
    ]
    assert made[0] == made[1]
    assert [t.id for t in await gateway.list_transfers(transfer_group="g")] == [made[0].id]
    await gateway.create_transfer_reversal(made[0].id, amount=300, metadata={}, idempotency_key="r")
    with pytest.raises(GatewayError):
        await gateway.create_transfer_reversal(
            made[0].id, amount=601, metadata={}, idempotency_key="r2"
        )
    intent = await gateway.create_payment_intent(
        amount=2000,
        currency="usd",
        metadata={},
        idempotency_key="pi",
        connect=ConnectCharge(destination=account.id, application_fee_amount=100),
    )
    assert (await gateway.retrieve_destination_charge(intent.id)).transfer_id is None
    gateway.capture(intent.id)
    charge = await gateway.retrieve_destination_charge(intent.id)
    assert charge.transfer_id is not None
    assert charge.application_fee_amount == 100
    assert await gateway.retrieve_destination_charge(intent.id) == charge


def test_a_payouts_cursor_is_only_one_the_server_issued() -> None:
    item = MoneyItem(
        kind="transfer",
        id="tr_abc",
        amount_minor=100,
        currency="USD",
        status="paid",
        created_at=datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
        order_id=None,
        fee_minor=None,
        reversed_minor=None,
    )
    assert decode_money_cursor(encode_money_cursor(item)) == (item.created_at, "tr_abc")
    for raw in ("2026-12-01T12:00:00|tr_abc", "2026-12-01T12:00:00+00:00|a\x00b", "x|y", ""):
        forged = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
        with pytest.raises(InvalidFieldError):
            decode_money_cursor(forged)
