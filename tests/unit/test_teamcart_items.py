"""Adding, changing and removing items: ownership, validation and the ready flag."""

import pytest

from domain import errors, events
from domain.teamcart import CartItem

from .builders import (
    NOW,
    a_guest,
    a_locked_cart,
    a_pizza_with_options,
    a_product,
    a_store,
    add,
    an_id,
    an_open_cart,
)


def test_add_item_snapshots_the_price_with_options() -> None:
    cart = an_open_cart()
    guest = a_guest(cart)
    cart.pull_events()
    pizza = a_pizza_with_options(cart.store)
    item_id = an_id()

    cart.add_item(guest, item_id, pizza, 2, ["Olives", "Large"], NOW)

    item = cart.items[item_id]
    assert item == CartItem(
        item_id=item_id,
        user_id=guest,
        product_id=pizza.product_id,
        name="Pizza",
        unit_price_minor=1350,
        quantity=2,
        options=("Large", "Olives"),
    )
    assert item.line_total_minor == 2700
    assert cart.member_subtotals == {cart.host_user_id: 0, guest: 2700}
    assert cart.subtotal_minor == 2700
    assert cart.items_of(guest) == (item,)
    assert cart.pull_events() == [
        events.ItemAdded(
            cart_id=cart.id,
            version=3,
            item_id=item_id,
            user_id=guest,
            product_id=pizza.product_id,
            product_name="Pizza",
            unit_price_minor=1350,
            quantity=2,
            options=("Large", "Olives"),
            line_total_minor=2700,
            added_at=NOW,
        )
    ]


def test_the_same_product_twice_makes_two_lines() -> None:
    cart = an_open_cart()
    product = a_product(cart.store)
    cart.add_item(cart.host_user_id, "a", product, 1, [], NOW)
    cart.add_item(cart.host_user_id, "b", product, 1, [], NOW)
    assert list(cart.items) == ["a", "b"]


def test_an_item_id_cannot_be_reused() -> None:
    cart = an_open_cart()
    product = a_product(cart.store)
    cart.add_item(cart.host_user_id, "a", product, 1, [], NOW)
    with pytest.raises(ValueError, match="already used"):
        cart.add_item(cart.host_user_id, "a", product, 1, [], NOW)


def test_changing_ones_items_clears_the_ready_flag_with_its_own_event() -> None:
    cart = an_open_cart()
    guest = a_guest(cart)
    cart.set_ready(guest, True)
    cart.pull_events()

    item_id = add(cart, guest)
    added, cleared = cart.pull_events()
    assert isinstance(added, events.ItemAdded)
    assert cleared == events.MemberReadyChanged(
        cart_id=cart.id, version=5, user_id=guest, ready=False
    )
    assert not cart.members[guest].ready

    cart.set_ready(guest, True)
    cart.change_item_quantity(guest, item_id, 3)
    cart.remove_item(guest, item_id)
    assert [type(event) for event in cart.pull_events()] == [
        events.MemberReadyChanged,
        events.ItemQuantityChanged,
        events.MemberReadyChanged,
        events.ItemRemoved,
    ]
    assert cart.version == 9


def test_others_ready_flags_are_untouched() -> None:
    cart = an_open_cart()
    guest = a_guest(cart)
    cart.set_ready(cart.host_user_id, True)
    add(cart, guest)
    assert cart.members[cart.host_user_id].ready


@pytest.mark.parametrize("quantity", [0, -1, 100, True, 1.0, "2"])
def test_quantity_must_be_1_to_99(quantity: object) -> None:
    cart = an_open_cart()
    with pytest.raises(errors.InvalidQuantity) as caught:
        cart.add_item(cart.host_user_id, an_id(), a_product(cart.store), quantity, [], NOW)  # type: ignore[arg-type]
    assert (caught.value.code, caught.value.field) == ("invalid_quantity", "quantity")
    item_id = add(cart, cart.host_user_id)
    with pytest.raises(errors.InvalidQuantity):
        cart.change_item_quantity(cart.host_user_id, item_id, quantity)  # type: ignore[arg-type]
    assert cart.items[item_id].quantity == 1


def test_bounds_99_and_1_are_accepted() -> None:
    cart = an_open_cart()
    item_id = an_id()
    cart.add_item(cart.host_user_id, item_id, a_product(cart.store), 99, [], NOW)
    cart.change_item_quantity(cart.host_user_id, item_id, 1)
    assert cart.items[item_id].quantity == 1


def test_add_item_refusals() -> None:
    cart = an_open_cart()
    host = cart.host_user_id
    with pytest.raises(errors.NotAMember):
        cart.add_item(an_id(), an_id(), a_product(cart.store), 1, [], NOW)
    with pytest.raises(errors.ProductNotFound) as other_store:
        cart.add_item(host, an_id(), a_product(a_store()), 1, [], NOW)
    assert other_store.value.code == "product_not_found"
    with pytest.raises(errors.InvalidOptions) as options:
        cart.add_item(host, an_id(), a_pizza_with_options(cart.store), 1, ["Olives"], NOW)
    assert options.value.code == "invalid_options"
    assert (cart.version, cart.pull_events(), dict(cart.items)) == (1, [], {})


def test_items_are_frozen_once_locked() -> None:
    cart, host, guest = a_locked_cart()
    [guest_item] = cart.items_of(guest)
    with pytest.raises(errors.CartLocked):
        cart.add_item(host, an_id(), a_product(cart.store), 1, [], NOW)
    with pytest.raises(errors.CartLocked):
        cart.change_item_quantity(guest, guest_item.item_id, 2)
    with pytest.raises(errors.CartLocked):
        cart.remove_item(guest, guest_item.item_id)


def test_change_item_quantity() -> None:
    cart = an_open_cart()
    item_id = add(cart, cart.host_user_id, price_minor=250)
    cart.pull_events()
    cart.change_item_quantity(cart.host_user_id, item_id, 4)
    assert cart.items[item_id].line_total_minor == 1000
    assert cart.pull_events() == [
        events.ItemQuantityChanged(
            cart_id=cart.id,
            version=3,
            item_id=item_id,
            user_id=cart.host_user_id,
            quantity=4,
            line_total_minor=1000,
        )
    ]


def test_setting_the_same_quantity_is_a_no_op() -> None:
    cart = an_open_cart()
    item_id = add(cart, cart.host_user_id, quantity=2)
    cart.set_ready(cart.host_user_id, True)
    cart.pull_events()
    cart.change_item_quantity(cart.host_user_id, item_id, 2)
    assert cart.pull_events() == []
    assert cart.members[cart.host_user_id].ready


def test_remove_item() -> None:
    cart = an_open_cart()
    item_id = add(cart, cart.host_user_id)
    cart.pull_events()
    cart.remove_item(cart.host_user_id, item_id)
    assert dict(cart.items) == {}
    assert cart.pull_events() == [
        events.ItemRemoved(cart_id=cart.id, version=3, item_id=item_id, user_id=cart.host_user_id)
    ]


def test_only_the_owner_changes_or_removes_an_item() -> None:
    cart = an_open_cart()
    guest = a_guest(cart)
    item_id = add(cart, guest)
    host = cart.host_user_id
    with pytest.raises(errors.NotItemOwner) as caught:
        cart.change_item_quantity(host, item_id, 2)
    assert caught.value.code == "not_item_owner"
    with pytest.raises(errors.NotItemOwner):
        cart.remove_item(host, item_id)
    with pytest.raises(errors.NotAMember):
        cart.remove_item(an_id(), item_id)
    assert item_id in cart.items


def test_unknown_item() -> None:
    cart = an_open_cart()
    with pytest.raises(errors.ItemNotFound) as caught:
        cart.change_item_quantity(cart.host_user_id, an_id(), 2)
    assert caught.value.code == "item_not_found"
    with pytest.raises(errors.ItemNotFound):
        cart.remove_item(cart.host_user_id, an_id())
