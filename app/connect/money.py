"""The platform's fee and the store's part of an order's money, to the minor unit.

One rounding rule, half to even (``domain.pricing.divide_half_even``), used the same way
everywhere so the recorded parts always add up:

- the fee on ``gross`` minor units at ``bps`` basis points is ``gross * bps / 10,000``
  rounded half to even; the store's part is ``gross - fee`` (never rounded on its own, so
  fee + part = gross exactly);
- a refund of ``refunded`` (all the refunds of the order so far, together) takes back the
  store's part ``refunded * part / gross`` rounded half to even, and the fee's part is the
  rest. Each refund reverses what the running total owes less what earlier ones reversed,
  so however many partial refunds there are, a full refund reverses the whole part and the
  whole fee, never a minor unit more or less;
- where Stripe can't move an amount to the minor unit (three-decimal currencies move in
  tens, ``app.payments.amounts``), the store's part is rounded to what Stripe moves and the
  fee takes the difference.

``gross`` is what the platform collected online for the order: a group order's cash on
delivery never reaches Stripe, so no fee is taken from it and no transfer pays it out.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.payments.amounts import from_stripe, to_stripe
from domain.pricing import divide_half_even

BPS = 10_000


def movable(amount_minor: int, currency: str) -> int:
    """The nearest amount Stripe can move in ``currency`` (the amount itself for all but
    the three-decimal currencies)."""
    return from_stripe(to_stripe(amount_minor, currency), currency)


@dataclass(frozen=True, slots=True)
class Split:
    """Money collected for an order: the platform's fee and the store's part of it."""

    gross_minor: int
    fee_minor: int
    amount_minor: int

    def __post_init__(self) -> None:
        if min(self.gross_minor, self.fee_minor, self.amount_minor) < 0:
            raise ValueError("no part of an order's money is negative")
        if self.fee_minor + self.amount_minor != self.gross_minor:
            raise ValueError("the fee and the store's part add up to the gross")


def platform_fee(gross_minor: int, bps: int) -> int:
    """``gross * bps / 10,000``, half to even."""
    if not 0 <= bps <= BPS:
        raise ValueError("a fee is 0 to 10,000 basis points")
    return divide_half_even(gross_minor * bps, BPS)


def split(gross_minor: int, bps: int, currency: str) -> Split:
    """The fee and the store's part of ``gross_minor`` collected in ``currency``."""
    amount = movable(gross_minor - platform_fee(gross_minor, bps), currency)
    return Split(gross_minor, gross_minor - amount, amount)


def split_of_fee(gross_minor: int, fee_minor: int) -> Split:
    """A split whose fee is already fixed (a destination charge's ``application_fee_amount``)."""
    return Split(gross_minor, fee_minor, gross_minor - fee_minor)


def reversal_due(refunded_minor: int, whole: Split, currency: str) -> Split:
    """What refunds of ``refunded_minor`` in all take back: the store's part of them
    (``Split.amount_minor``) and the fee's (``Split.fee_minor``)."""
    refunded = max(0, min(refunded_minor, whole.gross_minor))
    if whole.gross_minor == 0:
        return Split(0, 0, 0)
    amount = movable(divide_half_even(refunded * whole.amount_minor, whole.gross_minor), currency)
    amount = max(min(amount, whole.amount_minor, refunded), refunded - whole.fee_minor)
    return Split(refunded, refunded - amount, amount)
