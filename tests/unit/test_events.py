"""Event wire names and the JSON form used by the outbox."""

import json
import re

import pytest

from domain import events
from domain.order import Actor, OrderStatus
from domain.payments import PaymentStatus
from domain.teamcart import PaymentMode, TeamCart
from tests.fakes import copy_order

from .builders import NOW, a_coupon, a_product, a_store, an_address, an_id, an_invite_code


def _concrete_event_types() -> set[type[events.DomainEvent]]:
    # Only the classes the module exports: @dataclass(slots=True) leaves the pre-slots
    # class objects behind in __subclasses__().
    found: set[type[events.DomainEvent]] = set()
    pending: list[type[events.DomainEvent]] = [events.DomainEvent]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            pending.append(sub)
            if "name" in vars(sub) and getattr(events, sub.__name__) is sub:
                found.add(sub)
    return found


def test_every_event_has_a_unique_snake_case_wire_name_and_is_registered() -> None:
    concrete = _concrete_event_types()
    assert set(events.EVENT_TYPES.values()) == concrete
    for name, event_type in events.EVENT_TYPES.items():
        assert event_type.name == name
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", name)


def test_the_wire_names_the_protocol_relies_on() -> None:
    assert events.MemberJoined.name == "member_joined"
    assert events.CodCommitted.name == "cod_committed"
    assert events.CartLocked.name == "cart_locked"
    assert events.CartReadyToConfirm.name == "cart_ready_to_confirm"
    assert events.OrderPlaced.name == "order_placed"


def test_payment_events_share_a_base() -> None:
    for event_type in (events.CodCommitted, events.OnlinePaymentRecorded, events.PaymentFailed):
        assert issubclass(event_type, events.MemberPaymentEvent)


def _events_of_a_full_flow() -> list[events.DomainEvent]:
    cart = TeamCart.open(
        an_id(), a_store(), "host", "Hana", an_invite_code(), NOW.replace(year=2031), NOW
    )
    cart.join("ana", "Ana", NOW)
    cart.join("bo", "Bo", NOW)
    cart.set_ready("ana", True)
    cart.add_item("ana", "i1", a_product(cart.store), 2, [], NOW)
    cart.add_item("host", "i2", a_product(cart.store), 1, [], NOW)
    cart.add_item("bo", "i3", a_product(cart.store), 1, [], NOW)
    cart.change_item_quantity("host", "i2", 2)
    cart.remove_item("bo", "i3")
    cart.remove_member("host", "bo")
    cart.lock("host", NOW)
    cart.unlock("host")
    cart.lock("host", NOW)
    cart.set_tip("host", 100)
    cart.apply_coupon("host", a_coupon())
    cart.remove_coupon("host")
    cart.start_online_payment("ana", "pi_a", cart.quote_version)
    cart.note_payment_canceled("ana", "pi_a")
    cart.start_online_payment("ana", "pi_0", cart.quote_version)
    cart.mark_payment_failed("ana", "pi_0")
    cart.record_online_payment("ana", cart.share_of("ana"), "USD", cart.quote_version, "pi_1")
    cart.commit_cod("host")
    order = cart.confirm("host", an_id(), "TC-1", an_address(), NOW)
    recorded: list[events.DomainEvent] = [*cart.pull_events(), *order.pull_events()]
    order.move(OrderStatus.ACCEPTED, Actor.STAFF, NOW)
    order.move(OrderStatus.PREPARING, Actor.STAFF, NOW)
    order.move(OrderStatus.OUT_FOR_DELIVERY, Actor.STAFF, NOW)
    order.move(OrderStatus.DELIVERED, Actor.STAFF, NOW)
    order.refund("ana", 100, Actor.STAFF, NOW)
    order.note_dispute("pi_1", PaymentStatus.DISPUTED, NOW)
    recorded += order.pull_events()
    shipped = copy_order(order)
    shipped.status = OrderStatus.PREPARING
    shipped.move(OrderStatus.SHIPPED, Actor.STAFF, NOW, carrier="UPS", tracking_number="1Z")
    rejected = copy_order(order)
    rejected.status = OrderStatus.PLACED
    rejected.move(OrderStatus.REJECTED, Actor.STAFF, NOW, reason="closed")
    cancelled_order = copy_order(order)
    cancelled_order.status = OrderStatus.PLACED
    cancelled_order.cancel(Actor.HOST, "changed our minds", NOW)
    single = copy_order(order)
    single.status = OrderStatus.AWAITING_PAYMENT
    single.move(OrderStatus.PAYMENT_FAILED, Actor.SYSTEM, NOW)
    single.move(OrderStatus.AWAITING_PAYMENT, Actor.BUYER, NOW)
    single.move(OrderStatus.PLACED, Actor.SYSTEM, NOW)
    for moved in (shipped, rejected, cancelled_order, single):
        recorded += moved.pull_events()

    cancelled = TeamCart.open(an_id(), a_store(), "h", "H", an_invite_code(), None, NOW)
    cancelled.cancel("h", NOW)
    expired = TeamCart.open(an_id(), a_store(), "h", "H", an_invite_code(), None, NOW)
    expired.expire(NOW)

    disputed = TeamCart.open(an_id(), a_store(), "h", "H", an_invite_code(), None, NOW)
    disputed.add_item("h", "i4", a_product(disputed.store), 1, [], NOW)
    disputed.lock("h", NOW)
    disputed.record_online_payment("h", disputed.share_of("h"), "USD", 1, "pi_2")
    disputed.flag_payment_for_review("h", "pi_2")  # ready → locked again
    disputed.record_refund("h", "pi_2", disputed.share_of("h"))
    options = TeamCart.open(an_id(), a_store(), "h", "H", an_invite_code(), None, NOW)
    options.join("g", "G", NOW)
    options.set_spending_limit("h", 5000)
    options.add_item("h", "o1", a_product(options.store), 1, [], NOW)
    options.add_item("g", "o2", a_product(options.store), 1, [], NOW)
    options.lock("h", NOW)
    options.set_allowance("h", 100)
    options.set_payment_mode("h", PaymentMode.HOST_PAYS)
    options.set_payment_mode("h", PaymentMode.SPLIT)
    options.cover("h", "g")
    options.rotate_invite("h", an_invite_code())
    options.record_online_payment(
        "h", options.share_of("h"), "USD", options.quote_version, "pi_hold", authorized=True
    )
    return [
        *recorded,
        *options.pull_events(),
        *cancelled.pull_events(),
        *expired.pull_events(),
        *disputed.pull_events(),
    ]


def test_the_full_flow_produces_every_event_type() -> None:
    assert {type(event) for event in _events_of_a_full_flow()} == set(events.EVENT_TYPES.values())


@pytest.mark.parametrize("event", _events_of_a_full_flow(), ids=lambda event: event.name)
def test_events_round_trip_through_json(event: events.DomainEvent) -> None:
    data = events.event_to_dict(event)
    text = json.dumps(data)
    assert events.event_from_dict(event.name, json.loads(text)) == event
    assert data["version"] == event.aggregate_version


def test_json_form_uses_iso_times_lists_and_plain_quote_objects() -> None:
    locked = next(
        event for event in _events_of_a_full_flow() if isinstance(event, events.CartLocked)
    )
    data = events.event_to_dict(locked)
    assert data["locked_at"] == NOW.isoformat()
    quote = data["quote"]
    assert isinstance(quote, dict)
    assert isinstance(quote["shares"], dict)
    assert sum(quote["shares"].values()) == quote["totals"]["total_minor"]
    assert set(data) == {"cart_id", "version", "locked_at", "quote_version", "quote", "by_deadline"}


def test_aggregate_identity_for_the_outbox() -> None:
    cart_event = events.CartUnlocked(cart_id="c", version=4)
    order_event = events.OrderPlaced(
        order_id="o",
        version=1,
        number="N",
        cart_id="c",
        store_id="s",
        currency="USD",
        total_minor=1,
        host_user_id="h",
        participant_user_ids=("h",),
        placed_at=NOW,
    )
    assert (cart_event.aggregate_type, cart_event.aggregate_id, cart_event.aggregate_version) == (
        "teamcart",
        "c",
        4,
    )
    assert (order_event.aggregate_type, order_event.aggregate_id) == ("order", "o")


def test_unknown_event_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown event name"):
        events.event_from_dict("cart_exploded", {})
