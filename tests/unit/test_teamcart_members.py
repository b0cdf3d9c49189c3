"""Opening a cart, joining, leaving, removing members and the ready flag."""

from datetime import timedelta

import pytest

from domain import errors, events
from domain.teamcart import MAX_MEMBERS, CartStatus, MemberRole, TeamCart

from .builders import NOW, a_guest, a_locked_cart, a_store, add, an_id, an_invite_code, an_open_cart


def test_open_records_cart_opened_as_version_1_with_the_host_as_member() -> None:
    store = a_store(currency="JPY")
    host = an_id()
    deadline = NOW + timedelta(hours=1)
    code = an_invite_code()
    cart = TeamCart.open("cart-1", store, host, "  Hana ", code, deadline, NOW)

    assert cart.status is CartStatus.OPEN
    assert (cart.version, cart.quote_version) == (1, 0)
    assert cart.currency == "JPY"
    assert list(cart.members) == [host]
    member = cart.members[host]
    assert (member.display_name, member.role, member.ready) == ("Hana", MemberRole.HOST, False)
    assert member.is_host
    assert cart.pull_events() == [
        events.CartOpened(
            cart_id="cart-1",
            version=1,
            store_id=store.store_id,
            currency="JPY",
            host_user_id=host,
            host_display_name="Hana",
            invite_code=code,
            deadline=deadline,
            opened_at=NOW,
        )
    ]
    assert cart.pull_events() == []


@pytest.mark.parametrize(
    "deadline",
    [NOW, NOW - timedelta(seconds=1), (NOW + timedelta(hours=1)).replace(tzinfo=None)],
)
def test_open_refuses_a_deadline_that_is_not_in_the_future(deadline: object) -> None:
    with pytest.raises(errors.InvalidDeadline) as caught:
        TeamCart.open(an_id(), a_store(), an_id(), "Hana", an_invite_code(), deadline, NOW)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_deadline"


@pytest.mark.parametrize("code", ["short", "x" * 21, "has spaces in it........", "é" * 30])
def test_open_refuses_a_weak_invite_code(code: str) -> None:
    with pytest.raises(ValueError, match="invite code"):
        TeamCart.open(an_id(), a_store(), an_id(), "Hana", code, None, NOW)


def test_open_needs_an_aware_now() -> None:
    with pytest.raises(ValueError, match="aware"):
        TeamCart.open(
            an_id(), a_store(), an_id(), "Hana", an_invite_code(), None, NOW.replace(tzinfo=None)
        )


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_display_names_are_checked(name: str) -> None:
    with pytest.raises(errors.InvalidDisplayName):
        TeamCart.open(an_id(), a_store(), an_id(), name, an_invite_code(), None, NOW)
    cart = an_open_cart()
    with pytest.raises(errors.InvalidDisplayName) as caught:
        cart.join(an_id(), name, NOW)
    assert caught.value.code == "invalid_display_name"
    assert cart.version == 1


def test_join_adds_a_guest() -> None:
    cart = an_open_cart()
    guest = an_id()
    cart.join(guest, " Gus ", NOW)
    assert list(cart.members) == [cart.host_user_id, guest]
    assert cart.members[guest].role is MemberRole.GUEST
    assert cart.is_member(guest)
    assert cart.pull_events() == [
        events.MemberJoined(
            cart_id=cart.id, version=2, user_id=guest, display_name="Gus", joined_at=NOW
        )
    ]


def test_joining_again_is_a_no_op_even_after_lock() -> None:
    cart = an_open_cart()
    guest = a_guest(cart)
    cart.pull_events()
    cart.join(guest, "Another name", NOW)
    cart.join(cart.host_user_id, "Host again", NOW)
    assert cart.pull_events() == []
    assert cart.version == 2
    assert cart.members[guest].display_name == "Gus"

    locked, _, locked_guest = a_locked_cart()
    version = locked.version
    locked.join(locked_guest, "Gus", NOW)
    assert (locked.version, locked.pull_events()) == (version, [])


def test_a_locked_cart_cannot_be_joined() -> None:
    cart, _, _ = a_locked_cart()
    with pytest.raises(errors.CartLocked) as caught:
        cart.join(an_id(), "Late", NOW)
    assert caught.value.code == "cart_locked"


def test_a_closed_cart_cannot_be_joined() -> None:
    cart = an_open_cart()
    cart.cancel(cart.host_user_id, NOW)
    with pytest.raises(errors.CartNotOpen) as caught:
        cart.join(an_id(), "Late", NOW)
    assert caught.value.code == "cart_not_open"


def test_a_guest_leaves_and_their_items_go_with_them() -> None:
    cart = an_open_cart()
    guest = a_guest(cart)
    first = add(cart, guest)
    second = add(cart, guest)
    kept = add(cart, cart.host_user_id)
    cart.pull_events()

    cart.remove_member(guest, guest)

    assert not cart.is_member(guest)
    assert list(cart.items) == [kept]
    assert cart.pull_events() == [
        events.MemberLeft(
            cart_id=cart.id,
            version=6,
            user_id=guest,
            removed_by_host=False,
            removed_item_ids=(first, second),
        )
    ]


def test_the_host_removes_a_guest() -> None:
    cart = an_open_cart()
    guest = a_guest(cart)
    cart.pull_events()
    cart.remove_member(cart.host_user_id, guest)
    [event] = cart.pull_events()
    assert isinstance(event, events.MemberLeft)
    assert event.removed_by_host
    assert event.removed_item_ids == ()


def test_a_guest_cannot_remove_someone_else() -> None:
    cart = an_open_cart()
    guest, other = a_guest(cart), a_guest(cart)
    with pytest.raises(errors.HostOnly) as caught:
        cart.remove_member(guest, other)
    assert caught.value.code == "host_only"
    with pytest.raises(errors.HostOnly):
        cart.remove_member(guest, cart.host_user_id)
    assert cart.is_member(other)


def test_the_host_cannot_leave() -> None:
    cart = an_open_cart()
    with pytest.raises(errors.HostCannotLeave) as caught:
        cart.remove_member(cart.host_user_id, cart.host_user_id)
    assert caught.value.code == "host_cannot_leave"


def test_removing_needs_a_member_and_an_existing_target() -> None:
    cart = an_open_cart()
    with pytest.raises(errors.NotAMember) as not_member:
        cart.remove_member(an_id(), cart.host_user_id)
    assert not_member.value.code == "not_a_member"
    with pytest.raises(errors.MemberNotFound) as not_found:
        cart.remove_member(cart.host_user_id, an_id())
    assert not_found.value.code == "member_not_found"


def test_once_locked_a_guest_cant_leave_and_the_host_removes_only_who_hasnt_paid() -> None:
    cart, host, guest = a_locked_cart()
    with pytest.raises(errors.CartLocked):
        cart.remove_member(guest, guest)
    cart.commit_cod(guest)
    with pytest.raises(errors.AlreadyPaid):
        cart.remove_member(host, guest)
    assert cart.is_member(guest)


def test_set_ready_toggles_the_members_own_flag() -> None:
    cart = an_open_cart()
    guest = a_guest(cart)
    cart.pull_events()
    cart.set_ready(guest, True)
    assert cart.members[guest].ready
    cart.set_ready(guest, False)
    assert not cart.members[guest].ready
    assert cart.pull_events() == [
        events.MemberReadyChanged(cart_id=cart.id, version=3, user_id=guest, ready=True),
        events.MemberReadyChanged(cart_id=cart.id, version=4, user_id=guest, ready=False),
    ]


def test_set_ready_to_the_current_value_is_a_no_op() -> None:
    cart = an_open_cart()
    cart.set_ready(cart.host_user_id, False)
    assert (cart.version, cart.pull_events()) == (1, [])


def test_set_ready_needs_a_member_and_an_open_cart() -> None:
    cart, host, _ = a_locked_cart()
    with pytest.raises(errors.NotAMember):
        cart.set_ready(an_id(), True)
    with pytest.raises(errors.CartLocked):
        cart.set_ready(host, True)


def test_a_guest_the_host_removed_cannot_rejoin_but_one_who_left_can() -> None:
    cart = an_open_cart()
    removed, leaver = a_guest(cart), a_guest(cart)
    cart.remove_member(cart.host_user_id, removed)
    cart.remove_member(leaver, leaver)
    with pytest.raises(errors.RemovedFromCart) as caught:
        cart.join(removed, "Again", NOW)
    assert caught.value.code == "removed_from_cart"
    assert not cart.is_member(removed)
    cart.join(leaver, "Back", NOW)
    assert cart.is_member(leaver)


def test_a_cart_takes_at_most_max_members() -> None:
    cart = an_open_cart()
    while len(cart.members) < MAX_MEMBERS:
        a_guest(cart)
    version = cart.version
    with pytest.raises(errors.CartFull):
        cart.join(an_id(), "One too many", NOW)
    assert (len(cart.members), cart.version) == (MAX_MEMBERS, version)
