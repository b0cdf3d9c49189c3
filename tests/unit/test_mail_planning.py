"""Which mails an order event means, for whom (API.md § Email), read from the order outbox
payload as the order code writes it; and the payload builder the mail tests share."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest

from app.mail.planner import OrderEvent, PlannedMail, mail_context, participants, plan


def uid() -> str:
    return str(uuid.uuid4())


def order_payload(
    event: str,
    *,
    host: str,
    payments: list[tuple[str, str, int]],
    lines: Sequence[tuple[str, str, int, int]] = (),
    currency: str = "USD",
    total_minor: int | None = None,
    refund: tuple[str | None, int] | None = None,
    tracking: dict[str, Any] | None = None,
    number: str = "TC-20261202-7KQ2M",
    order_id: str | None = None,
) -> dict[str, Any]:
    """The order outbox payload: ``{"event", "version", "order": <order view>, "refund",
    "by_role"}``. ``payments``: (user id, method, amount); ``lines``: (user id, name,
    quantity, line total)."""
    subtotal = sum(line[3] for line in lines)
    total = total_minor if total_minor is not None else sum(p[2] for p in payments)
    return {
        "event": event,
        "version": 3,
        "order": {
            "id": order_id or uid(),
            "number": number,
            "kind": "group",
            "status": event.removeprefix("order_"),
            "store_id": uid(),
            "store_name": "Noodle Bar",
            "currency": currency,
            "subtotal_minor": subtotal,
            "delivery_fee_minor": max(total - subtotal, 0),
            "tax_minor": 0,
            "tip_minor": 0,
            "discount_minor": 0,
            "total_minor": total,
            "lines": [
                {
                    "name": name,
                    "options": ["Large"],
                    "unit_price_minor": line_total // quantity,
                    "quantity": quantity,
                    "line_total_minor": line_total,
                    "user_id": user_id,
                }
                for user_id, name, quantity, line_total in lines
            ],
            "payments": [
                {
                    "user_id": user_id,
                    "display_name": "Member",
                    "method": method,
                    "amount_minor": amount,
                    "refunded_minor": 0,
                    "status": "paid" if method == "online" else "committed",
                }
                for user_id, method, amount in payments
            ],
            "delivery_address": {
                "line1": "1 Main St",
                "line2": "",
                "city": "Springfield",
                "postal_code": "12345",
                "country": "US",
            },
            "tracking": tracking,
            "history": [{"status": "placed", "at": "2026-12-02T12:00:00Z", "by_role": "host"}],
            "teamcart_id": uid(),
            "host_user_id": host,
            "version": 3,
        },
        "refund": None if refund is None else {"user_id": refund[0], "amount_minor": refund[1]},
        "by_role": "host",
    }


def decoded(payload: dict[str, Any]) -> OrderEvent:
    return msgspec.json.decode(json.dumps(payload), type=OrderEvent)


HOST, BEN, CEM = uid(), uid(), uid()


def test_order_placed_mails_every_participant_and_receipts_online_payers() -> None:
    payload = order_payload(
        "order_placed",
        host=HOST,
        payments=[(HOST, "cod", 1000), (BEN, "online", 1500), (CEM, "online", 500)],
    )
    assert plan(decoded(payload)) == [
        PlannedMail(HOST, "order_placed"),
        PlannedMail(BEN, "order_placed"),
        PlannedMail(CEM, "order_placed"),
        PlannedMail(BEN, "payment_receipt"),
        PlannedMail(CEM, "payment_receipt"),
    ]


def test_a_host_who_owes_nothing_is_still_a_participant() -> None:
    payload = order_payload("order_placed", host=HOST, payments=[(BEN, "online", 1500)])
    assert participants(decoded(payload).order) == [HOST, BEN]


def test_a_refund_goes_to_the_refunded_member_or_else_the_host() -> None:
    to_ben = order_payload(
        "order_refunded", host=HOST, payments=[(BEN, "online", 900)], refund=(BEN, 300)
    )
    assert plan(decoded(to_ben)) == [PlannedMail(BEN, "refund_issued")]
    unnamed = order_payload(
        "order_refunded", host=HOST, payments=[(HOST, "online", 900)], refund=(None, 900)
    )
    assert plan(decoded(unnamed)) == [PlannedMail(HOST, "refund_issued")]


@pytest.mark.parametrize("event", ["order_shipped", "order_out_for_delivery", "order_delivered"])
def test_delivery_news_goes_to_every_participant(event: str) -> None:
    payload = order_payload(
        event,
        host=HOST,
        payments=[(HOST, "cod", 1), (BEN, "online", 2)],
        tracking={"carrier": "DHL", "tracking_number": "JD1", "url": None},
    )
    assert plan(decoded(payload)) == [PlannedMail(HOST, event), PlannedMail(BEN, event)]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "event",
    [
        "order_accepted",
        "order_rejected",
        "order_preparing",
        "order_cancelled",
        "order_payment_updated",
        "something_new",
    ],
)
def test_other_events_mean_no_mail(event: str) -> None:
    payload = order_payload(event, host=HOST, payments=[(HOST, "online", 100)])
    assert plan(decoded(payload)) == []


def test_ids_that_are_not_uuids_get_no_mail() -> None:
    """No ``users`` row could have them, and the query casts them to uuid."""
    payload = order_payload(
        "order_placed", host="not-a-uuid", payments=[("", "online", 1), (BEN, "online", 2)]
    )
    assert plan(decoded(payload)) == [
        PlannedMail(BEN, "order_placed"),
        PlannedMail(BEN, "payment_receipt"),
    ]


def test_extra_fields_in_the_payload_are_ignored() -> None:
    payload = order_payload("order_placed", host=HOST, payments=[(HOST, "cod", 100)])
    payload["order"]["something_added_later"] = {"x": 1}
    payload["order"]["payments"][0]["also_new"] = True
    assert plan(decoded(payload)) == [PlannedMail(HOST, "order_placed")]


def test_the_context_holds_only_the_recipients_own_lines_and_amount() -> None:
    payload = order_payload(
        "order_placed",
        host=HOST,
        payments=[(HOST, "cod", 1100), (BEN, "online", 2200)],
        lines=[(HOST, "Ramen", 1, 1000), (BEN, "Gyoza", 2, 2000), (BEN, "Tea", 1, 100)],
    )
    event = decoded(payload)
    context = mail_context(event, PlannedMail(BEN, "order_placed"), "Ben")
    assert [line.name for line in context["my_lines"]] == ["Gyoza", "Tea"]  # type: ignore[attr-defined]
    assert context["my_amount_minor"] == 2200
    assert context["my_method"] == "online"
    assert context["money"](2200) == "22.00 USD"  # type: ignore[operator]
