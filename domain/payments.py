"""How a member pays and where that payment stands.

Shared by the TeamCart (each member's payment while the cart is locked) and the Order (the
payment records it keeps once confirmed), so both speak the same vocabulary.
"""

from enum import StrEnum


class PaymentMethod(StrEnum):
    COD = "cod"  # cash on delivery
    ONLINE = "online"  # a Stripe PaymentIntent


class PaymentStatus(StrEnum):
    NONE = "none"  # nothing yet
    PENDING = "pending"  # an online payment is under way
    COD_COMMITTED = "cod_committed"  # will pay cash on delivery
    PAID_ONLINE = "paid_online"  # captured online
    FAILED = "failed"  # the last online attempt failed; the member may try again
    REFUNDED = "refunded"  # captured, then given back
    REVIEW = "review"  # captured but disputed or partly refunded: for an operator
    AUTHORIZED = "authorized"  # the card is held (capture on confirm), not charged yet
    # An order's payment only: a dispute opened on it, and how it closed.
    DISPUTED = "disputed"  # the customer's bank is reclaiming it: not counted as paid
    WON = "won"  # the dispute closed in the store's favour: paid again
    LOST = "lost"  # the bank took the money back: never counted as paid again


SETTLED_STATUSES: frozenset[PaymentStatus] = frozenset(
    {PaymentStatus.COD_COMMITTED, PaymentStatus.PAID_ONLINE, PaymentStatus.AUTHORIZED}
)
"""A member in one of these has done their part for the cart to become ready."""

INACTIVE_STATUSES: frozenset[PaymentStatus] = frozenset(
    {PaymentStatus.NONE, PaymentStatus.FAILED, PaymentStatus.REFUNDED}
)
"""While every member is in one of these, nobody has committed, is paying, or holds money in
the cart."""

PAYABLE_STATUSES: frozenset[PaymentStatus] = INACTIVE_STATUSES | {PaymentStatus.PENDING}
"""A member in one of these may start paying online (again: a new attempt replaces one
that is pending)."""


class CaptureOutcome(StrEnum):
    """What recording a captured online payment did to the member (``record_online_payment``)."""

    RECORDED = "recorded"  # the member is paid
    UNCHANGED = "unchanged"  # this capture was recorded (or given back) before
    ALREADY_REFUNDED = "already_refunded"  # Stripe gave it all back before we saw the capture
    UNDER_REVIEW = "under_review"  # disputed, or partly refunded, before we saw it
