"""Every event bumps the version by exactly one; no-ops and refusals record nothing."""

from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import errors, events
from domain.catalog import ProductSnapshot
from domain.teamcart import TeamCart

from .builders import NOW, a_coupon, a_product, a_store, an_address, an_id, an_invite_code


def _versions(recorded: list[events.CartEvent]) -> list[int]:
    return [event.version for event in recorded]


def test_a_whole_flow_numbers_its_events_1_2_3_without_gaps() -> None:
    cart = TeamCart.open(an_id(), a_store(), "host", "Hana", an_invite_code(), None, NOW)
    cart.join("ana", "Ana", NOW)
    cart.join("bo", "Bo", NOW)
    cart.join("ana", "Ana", NOW)  # no-op
    cart.set_ready("ana", True)
    cart.add_item("ana", "i1", a_product(cart.store), 2, [], NOW)  # + ready cleared
    cart.add_item("host", "i2", a_product(cart.store, price_minor=333), 1, [], NOW)
    cart.add_item("bo", "i3", a_product(cart.store), 1, [], NOW)
    cart.change_item_quantity("bo", "i3", 3)
    cart.change_item_quantity("bo", "i3", 3)  # no-op
    cart.remove_item("bo", "i3")
    cart.remove_member("bo", "bo")
    cart.lock("host", NOW)
    cart.set_tip("host", 250)
    cart.apply_coupon("host", a_coupon())
    cart.remove_coupon("host")
    cart.unlock("host")
    cart.lock("host", NOW)
    cart.commit_cod("ana")
    cart.commit_cod("ana")  # no-op
    cart.commit_cod("host")  # + ready to confirm
    cart.confirm("host", an_id(), "TC-9", an_address(), NOW)

    recorded = cart.pull_events()
    assert _versions(recorded) == list(range(1, len(recorded) + 1))
    assert cart.version == len(recorded) == 21
    assert [event.name for event in recorded] == [
        "cart_opened",
        "member_joined",
        "member_joined",
        "member_ready_changed",
        "item_added",
        "member_ready_changed",
        "item_added",
        "item_added",
        "item_quantity_changed",
        "item_removed",
        "member_left",
        "cart_locked",
        "tip_set",
        "coupon_applied",
        "coupon_removed",
        "cart_unlocked",
        "cart_locked",
        "cod_committed",
        "cod_committed",
        "cart_ready_to_confirm",
        "cart_converted",
    ]
    assert all(event.cart_id == cart.id for event in recorded)


def test_a_refused_command_changes_nothing() -> None:
    cart = TeamCart.open(an_id(), a_store(), "host", "Hana", an_invite_code(), None, NOW)
    cart.join("ana", "Ana", NOW)
    cart.add_item("ana", "i1", a_product(cart.store), 1, [], NOW)
    cart.pull_events()
    before = (cart.version, cart.status, dict(cart.members), dict(cart.items))
    refusals: list[Callable[[], object]] = [
        lambda: cart.lock("ana", NOW),
        lambda: cart.remove_item("host", "i1"),
        lambda: cart.change_item_quantity("ana", "i1", 0),
        lambda: cart.add_item("ana", "i2", a_product(a_store()), 1, [], NOW),
        lambda: cart.commit_cod("ana"),
        lambda: cart.unlock("host"),
        lambda: cart.remove_member("host", "host"),
    ]
    for refusal in refusals:
        with pytest.raises(errors.DomainError):
            refusal()
    assert (cart.version, cart.status, dict(cart.members), dict(cart.items)) == before
    assert cart.pull_events() == []


def test_a_restored_cart_records_nothing_and_continues_its_numbering() -> None:
    original = TeamCart.open(an_id(), a_store(), "host", "Hana", an_invite_code(), None, NOW)
    original.join("ana", "Ana", NOW)
    original.add_item("ana", "i1", a_product(original.store), 1, [], NOW)
    original.lock("host", NOW)
    original.pull_events()

    restored = TeamCart(
        id=original.id,
        store=original.store,
        host_user_id=original.host_user_id,
        invite_code=original.invite_code,
        status=original.status,
        version=original.version,
        quote_version=original.quote_version,
        deadline=original.deadline,
        created_at=original.created_at,
        locked_at=original.locked_at,
        members=[replace(member) for member in original.members.values()],
        items=list(original.items.values()),
        tip_minor=original.tip_minor,
        coupon=original.coupon,
        quote=original.quote,
        order_id=original.order_id,
    )
    assert restored.pull_events() == []
    assert list(restored.members) == ["host", "ana"]
    restored.commit_cod("ana")
    assert _versions(restored.pull_events()) == [original.version + 1, original.version + 2]


COMMANDS = st.lists(
    st.tuples(
        st.sampled_from(
            ["join", "leave", "add", "change", "remove", "ready", "lock", "unlock", "tip", "cod"]
        ),
        st.sampled_from(["host", "ana", "bo", "cy"]),
        st.integers(min_value=0, max_value=100),
    ),
    max_size=40,
)


def _run(
    cart: TeamCart, product: ProductSnapshot, step: int, command: str, actor: str, number: int
) -> None:
    """Run one generated command; a refused one raises ``DomainError``."""
    items = [item.item_id for item in cart.items.values() if item.user_id == actor]
    item_id = items[number % len(items)] if items else "missing"
    commands: dict[str, Callable[[], object]] = {
        "join": lambda: cart.join(actor, actor.title(), NOW),
        "leave": lambda: cart.remove_member(actor, actor),
        "add": lambda: cart.add_item(actor, f"item-{step}", product, number, [], NOW),
        "change": lambda: cart.change_item_quantity(actor, item_id, number),
        "remove": lambda: cart.remove_item(actor, item_id),
        "ready": lambda: cart.set_ready(actor, number % 2 == 0),
        "lock": lambda: cart.lock(actor, NOW),
        "unlock": lambda: cart.unlock(actor),
        "tip": lambda: cart.set_tip(actor, number),
        "cod": lambda: cart.commit_cod(actor),
    }
    commands[command]()


@settings(max_examples=150, deadline=None)
@given(COMMANDS)
def test_any_command_sequence_keeps_versions_consecutive(
    commands: list[tuple[str, str, int]],
) -> None:
    cart = TeamCart.open("c", a_store(), "host", "Hana", an_invite_code(), None, NOW)
    product = a_product(cart.store, price_minor=199)
    recorded = cart.pull_events()
    for step, (command, actor, number) in enumerate(commands):
        version = cart.version
        try:
            _run(cart, product, step, command, actor, number)
        except errors.DomainError:
            assert cart.version == version
        new = cart.pull_events()
        assert _versions(new) == list(range(version + 1, cart.version + 1))
        recorded.extend(new)
        if cart.quote is not None:
            assert sum(cart.quote.shares.values()) == cart.quote.totals.total_minor
    assert _versions(recorded) == list(range(1, cart.version + 1))
