"""What a locked cart costs and who owes which part of it.

``compute_quote`` turns the members' subtotals and the store's and host's choices (delivery
fee, tax rate, tip, coupon) into a ``Quote``: the totals shown to everyone and each member's
share. All arithmetic is on integers (and exact fractions), never floats:

- tax is ``subtotal * rate_bps / 10000`` rounded half-to-even to the minor unit;
- a percent discount is ``subtotal * percent / 100`` rounded half-to-even; any discount is
  capped at the subtotal;
- ``total = subtotal + delivery fee + tax + tip - discount``, never below 0;
- the total is split in proportion to the members' subtotals by the largest-remainder
  (Hamilton) method, so shares are whole minor units, never negative, sum exactly to the
  total, each differs from its exact proportion by less than one minor unit, and a member with
  nothing in the cart owes 0.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeVar

from domain.catalog import CouponKind, CouponTerms
from domain.money import is_whole_number

K = TypeVar("K", bound=Hashable)


def divide_half_even(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded to the nearest integer, ties to the even one."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient


def split_proportionally(total: int, weights: Mapping[K, int]) -> dict[K, int]:
    """Split ``total`` minor units in proportion to ``weights`` (largest-remainder method).

    Each key first gets ``floor(total * w / W)``; the units left over go one each to the keys
    with the largest remainders, ties going to the key that comes first in ``weights``. A key
    with weight 0 gets 0. With no weight at all only a total of 0 can be split (everyone gets
    0); a positive total with nothing to weigh it by is a ``ValueError``.
    """
    if not is_whole_number(total) or total < 0:
        raise ValueError(f"total must be a non-negative int, got {total!r}")
    for key, weight in weights.items():
        if not is_whole_number(weight) or weight < 0:
            raise ValueError(f"weight of {key!r} must be a non-negative int, got {weight!r}")
    weight_sum = sum(weights.values())
    if weight_sum == 0:
        if total != 0:
            raise ValueError("cannot split a positive total when every weight is 0")
        return dict.fromkeys(weights, 0)

    shares: dict[K, int] = {}
    remainders: list[tuple[int, int, K]] = []
    for position, (key, weight) in enumerate(weights.items()):
        share, remainder = divmod(total * weight, weight_sum)
        shares[key] = share
        remainders.append((-remainder, position, key))
    left_over = total - sum(shares.values())
    for _, _, key in sorted(remainders, key=lambda entry: (entry[0], entry[1]))[:left_over]:
        shares[key] += 1
    return shares


def tax_for(subtotal_minor: int, rate_bps: int) -> int:
    """Tax on ``subtotal_minor`` at ``rate_bps`` basis points, rounded half-to-even."""
    if not is_whole_number(subtotal_minor) or subtotal_minor < 0:
        raise ValueError("subtotal must be a non-negative int")
    if not is_whole_number(rate_bps) or rate_bps < 0:
        raise ValueError("tax rate must be a non-negative int of basis points")
    return divide_half_even(subtotal_minor * rate_bps, 10_000)


def discount_for(subtotal_minor: int, coupon: CouponTerms | None) -> int:
    """What the coupon takes off the subtotal, never more than the subtotal itself."""
    if coupon is None:
        return 0
    if coupon.kind is CouponKind.PERCENT:
        discount = divide_half_even(subtotal_minor * coupon.value, 100)
    else:
        discount = coupon.value
    return min(discount, subtotal_minor)


@dataclass(frozen=True, slots=True)
class Totals:
    """The six amounts every price states, in one currency's minor units: what the items
    cost, the delivery fee, tax, tip, the discount, and what is paid in all. The cart's
    quote, the order, the views and the stored rows all use this one value."""

    subtotal_minor: int
    delivery_fee_minor: int
    tax_minor: int
    tip_minor: int
    discount_minor: int
    total_minor: int

    @classmethod
    def before_quote(cls, subtotal_minor: int, delivery_fee_minor: int) -> Totals:
        """An open cart's running totals: its items and the store's fee, no tax or tip yet."""
        return cls(subtotal_minor, delivery_fee_minor, 0, 0, 0, subtotal_minor + delivery_fee_minor)

    def as_dict(self) -> dict[str, int]:
        """The six amounts by name (``subtotal_minor``, …, ``total_minor``)."""
        return {name: getattr(self, name) for name in TOTALS_FIELDS}


TOTALS_FIELDS = (
    "subtotal_minor",
    "delivery_fee_minor",
    "tax_minor",
    "tip_minor",
    "discount_minor",
    "total_minor",
)
"""The names of :class:`Totals`' amounts, in order (as columns and view fields)."""


@dataclass(frozen=True, slots=True)
class Quote:
    """The frozen price of a locked cart: its totals, every member's share of the total (in
    proportion to their subtotal), and what each of them pays (``owes``: the shares, unless
    the host pays for everyone, covers a member or gives an allowance: ``owed_amounts``).
    Both sum to the total."""

    totals: Totals
    shares: Mapping[str, int]
    owes: Mapping[str, int] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "shares", MappingProxyType(dict(self.shares)))
        owes = self.shares if self.owes is None else self.owes
        object.__setattr__(self, "owes", MappingProxyType(dict(owes)))

    def share_of(self, user_id: str) -> int:
        """The member's share by subtotal; 0 for anyone the quote does not name."""
        return self.shares.get(user_id, 0)

    def owed_by(self, user_id: str) -> int:
        """What the member pays; 0 for anyone the quote does not name."""
        assert self.owes is not None
        return self.owes.get(user_id, 0)


class OverCommitted(ValueError):
    """What members have already paid or committed is more than the host's side can absorb:
    the host would owe a negative amount, or a host who paid would owe a different one."""


def owed_amounts(
    shares: Mapping[K, int],
    host: K,
    *,
    host_pays: bool = False,
    allowance_minor: int | None = None,
    covered: Collection[K] = (),
    fixed: Mapping[K, int] | None = None,
) -> dict[K, int]:
    """What each member pays, from their shares (which sum to the total):

    - a guest whose amount is ``fixed`` (they paid, committed or are paying) pays exactly that;
    - otherwise nothing when the host pays for everyone or covers them, their share less the
      ``allowance_minor`` (never below 0) when there is one, else their share;
    - the host pays the rest, so the amounts sum to the total. ``OverCommitted`` when that
      would be negative, or differ from a ``fixed`` amount of the host's.
    """
    fixed = fixed or {}
    if host not in shares:
        raise ValueError("the host must have a share")
    if allowance_minor is not None and (
        not is_whole_number(allowance_minor) or allowance_minor < 0
    ):
        raise ValueError("an allowance is a non-negative int")
    owes: dict[K, int] = {}
    for member, share in shares.items():
        if member == host:
            continue
        if member in fixed:
            owes[member] = fixed[member]
        elif host_pays or member in covered:
            owes[member] = 0
        elif allowance_minor is not None:
            owes[member] = max(0, share - allowance_minor)
        else:
            owes[member] = share
    host_owes = sum(shares.values()) - sum(owes.values())
    if host_owes < 0:
        raise OverCommitted("the members' fixed payments exceed the cart's total")
    if host in fixed and fixed[host] != host_owes:
        raise OverCommitted("the host's own payment would have to change")
    return {member: host_owes if member == host else owes[member] for member in shares}


def compute_quote(
    member_subtotals: Mapping[str, int],
    delivery_fee_minor: int,
    tax_rate_bps: int,
    tip_minor: int,
    coupon: CouponTerms | None,
) -> Quote:
    """Price a cart from its members' subtotals (one entry per member, 0 for no items).

    The shares name every member in ``member_subtotals``, in its order (which also breaks ties
    when rounding). A positive total with a zero subtotal cannot be split in proportion to the
    subtotals and raises ``ValueError``; the cart refuses to lock such a cart beforehand.
    """
    for name, amount in (("delivery fee", delivery_fee_minor), ("tip", tip_minor)):
        if not is_whole_number(amount) or amount < 0:
            raise ValueError(f"{name} must be a non-negative int, got {amount!r}")
    subtotal = 0
    for user_id, member_subtotal in member_subtotals.items():
        if not is_whole_number(member_subtotal) or member_subtotal < 0:
            raise ValueError(f"subtotal of {user_id!r} must be a non-negative int")
        subtotal += member_subtotal
    tax = tax_for(subtotal, tax_rate_bps)
    discount = discount_for(subtotal, coupon)
    total = max(0, subtotal + delivery_fee_minor + tax + tip_minor - discount)
    return Quote(
        totals=Totals(
            subtotal_minor=subtotal,
            delivery_fee_minor=delivery_fee_minor,
            tax_minor=tax,
            tip_minor=tip_minor,
            discount_minor=discount,
            total_minor=total,
        ),
        shares=split_proportionally(total, member_subtotals),
    )
