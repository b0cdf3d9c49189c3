"""Property tests for who pays what: over random carts, payment modes, allowances, covers and
removals after lock, what members pay sums to the total, nobody pays a negative amount, and
nobody who paid, committed or is paying ever owes a different amount afterwards."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from domain import errors
from domain.catalog import StoreTerms
from domain.payments import PaymentStatus
from domain.teamcart import FIXED_STATUSES, PaymentMode, TeamCart

from .builders import NOW, a_product, an_id, an_invite_code

SETTINGS = settings(max_examples=200, deadline=None)
GUESTS = [f"g{n}" for n in range(6)]


def owes(cart: TeamCart) -> dict[str, int]:
    return {user: cart.share_of(user) for user in cart.members}


def assert_exact(cart: TeamCart) -> None:
    assert cart.quote is not None
    amounts = owes(cart)
    assert sum(amounts.values()) == cart.quote.totals.total_minor
    assert all(amount >= 0 for amount in amounts.values())
    assert sum(cart.raw_share_of(u) for u in cart.members) == cart.quote.totals.total_minor


def fixed_amounts(cart: TeamCart) -> dict[str, int]:
    return {
        user: member.payment.amount_minor
        for user, member in cart.members.items()
        if member.payment.status in FIXED_STATUSES
    }


@st.composite
def group_carts(draw: st.DrawFn) -> TeamCart:
    """A locked cart of a host and 1-6 guests with random items, mode and allowance."""
    store = StoreTerms(
        store_id=an_id(),
        currency="USD",
        delivery_fee_minor=draw(st.integers(0, 2_000)),
        tax_rate_bps=draw(st.integers(0, 2_500)),
    )
    cart = TeamCart.open(an_id(), store, "host", "Host", an_invite_code(), None, NOW)
    guests = GUESTS[: draw(st.integers(1, len(GUESTS)))]
    for guest in guests:
        cart.join(guest, guest.upper(), NOW)
    for member in ["host", *guests]:
        for _ in range(draw(st.integers(0 if member != "host" else 1, 3))):
            price = draw(st.integers(1, 5_000))
            cart.add_item(
                member,
                an_id(),
                a_product(store, price_minor=price),
                draw(st.integers(1, 4)),
                [],
                NOW,
            )
    if draw(st.booleans()):
        cart.set_payment_mode("host", PaymentMode.HOST_PAYS)
    if draw(st.booleans()):
        cart.set_allowance("host", draw(st.integers(0, 3_000)))
    cart.lock("host", NOW)
    return cart


Step = tuple[str, str, int]


def steps() -> st.SearchStrategy[list[Step]]:
    """What members and the host do after lock: pay by cash, start or finish paying online,
    get covered, get removed; each for some guest (or the host)."""
    return st.lists(
        st.tuples(
            st.sampled_from(["cod", "start", "paid", "cover", "remove"]),
            st.sampled_from(["host", *GUESTS]),
            st.integers(0, 10**6),
        ),
        max_size=12,
    )


def apply(cart: TeamCart, step: Step) -> None:
    action, user, salt = step
    if user not in cart.members:
        return
    share = cart.share_of(user)
    try:
        if action == "cod":
            cart.commit_cod(user)
        elif action == "start":
            cart.start_online_payment(user, f"pi_{user}_{salt}", cart.quote_version)
        elif action == "paid" and share > 0:
            intent = cart.members[user].payment.reference or f"pi_{user}_{salt}"
            cart.record_online_payment(user, share, "USD", cart.quote_version, intent)
        elif action == "cover":
            cart.cover("host", user)
        elif action == "remove":
            cart.remove_member("host", user)
    except errors.DomainError:
        pass  # refused: it must leave the cart as it was (checked by the caller)


@SETTINGS
@given(group_carts(), steps())
def test_what_members_pay_sums_to_the_total_and_paid_amounts_never_change(
    cart: TeamCart, actions: list[Step]
) -> None:
    assert_exact(cart)
    for step in actions:
        before = fixed_amounts(cart)
        version, owed_before, members_before = cart.version, owes(cart), set(cart.members)
        apply(cart, step)
        assert_exact(cart)
        for user, amount in before.items():
            if user in cart.members and cart.members[user].payment.status in FIXED_STATUSES:
                assert cart.members[user].payment.amount_minor == amount
                assert cart.share_of(user) == amount, (step, user)
        if cart.version == version:  # refused or a no-op: nothing changed
            assert (owes(cart), set(cart.members)) == (owed_before, members_before)


@SETTINGS
@given(group_carts())
def test_an_allowance_takes_off_each_guests_share_and_the_host_pays_the_rest(
    cart: TeamCart,
) -> None:
    assert cart.quote is not None
    allowance = cart.allowance_minor
    for user in cart.members:
        if user == "host":
            continue
        raw = cart.raw_share_of(user)
        if cart.payment_mode is PaymentMode.HOST_PAYS:
            assert cart.share_of(user) == 0
        elif allowance is not None:
            assert cart.share_of(user) == max(0, raw - allowance)
        else:
            assert cart.share_of(user) == raw
    guests = sum(cart.share_of(u) for u in cart.members if u != "host")
    assert cart.share_of("host") == cart.quote.totals.total_minor - guests


@SETTINGS
@given(group_carts(), st.sampled_from(GUESTS))
def test_removing_a_guest_after_another_paid_keeps_the_cart_payable(
    cart: TeamCart, removed: str
) -> None:
    payer = next((u for u in cart.members if u not in ("host", removed)), None)
    if removed not in cart.members or payer is None or cart.share_of(payer) == 0:
        return
    share = cart.share_of(payer)
    cart.record_online_payment(payer, share, "USD", cart.quote_version, "pi_payer")
    try:
        cart.remove_member("host", removed)
    except (errors.CartOverCommitted, errors.ZeroSubtotal):
        assert removed in cart.members  # refused, and nothing changed
        return
    assert cart.share_of(payer) == share
    assert cart.members[payer].payment.status is PaymentStatus.PAID_ONLINE
    assert_exact(cart)
    for user in cart.members:
        if cart.share_of(user) > 0 and cart.members[user].payment.status is PaymentStatus.NONE:
            cart.commit_cod(user)
    assert cart.status.value == "ready_to_confirm"
    assert cart.expire_if_due(NOW + timedelta(minutes=1), timedelta(hours=1)) is False
