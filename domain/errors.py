"""Every way a business rule can refuse a command, as one exception tree.

Each concrete error has a stable snake_case ``code`` that clients see in problem responses and
WebSocket error messages, and a human ``detail``. The four category bases tell ``app/errors.py``
which HTTP status to answer with; the domain itself knows nothing about HTTP.

Errors that describe bad input may name the offending request ``field``.

The tree::

    DomainError
    +-- NotFound (404)
    |   +-- ItemNotFound                item_not_found
    |   +-- MemberNotFound              member_not_found
    |   +-- ProductNotFound             product_not_found
    +-- Forbidden (403)
    |   +-- NotAMember                  not_a_member
    |   +-- HostOnly                    host_only
    |   +-- NotItemOwner                not_item_owner
    |   +-- MayNotCancel                may_not_cancel
    +-- Conflict (409)
    |   +-- CartNotOpen                 cart_not_open
    |   +-- CartLocked                  cart_locked
    |   +-- CartNotLocked               cart_not_locked
    |   +-- CartNotReady                cart_not_ready
    |   +-- EmptyCart                   empty_cart
    |   +-- ZeroSubtotal                zero_subtotal
    |   +-- HostCannotLeave             host_cannot_leave
    |   +-- PaymentActivityStarted      payment_activity_started
    |   +-- AlreadyPaid                 already_paid
    |   +-- NothingOwed                 nothing_owed
    |   +-- QuoteChanged                quote_changed
    |   +-- AmountMismatch              amount_mismatch
    |   +-- OutOfStock                  out_of_stock
    |   +-- IllegalTransition           illegal_transition
    |   +-- OrderNotCancellable         order_not_cancellable
    |   +-- CheckoutStepMissing         checkout_step_missing
    |   +-- OverSpendingLimit           over_spending_limit
    |   +-- CartOverCommitted           would_change_paid_amounts
    |   +-- OrderNotPayable             order_not_payable
    +-- Invalid (422)
        +-- InvalidQuantity             invalid_quantity
        +-- InvalidOptions              invalid_options
        +-- InvalidTip                  invalid_tip
        +-- TipTooHigh                  tip_too_high
        +-- InvalidDisplayName          invalid_display_name
        +-- InvalidDeadline             invalid_deadline
        +-- InvalidAddress              invalid_address
        +-- InvalidStore                invalid_store
        +-- InvalidProduct              invalid_product
        +-- InvalidCoupon               invalid_coupon
        +-- CouponNotApplicable         coupon_not_applicable
        |   +-- CouponMinSubtotalNotMet coupon_min_subtotal
        |   +-- CouponExhausted         coupon_exhausted
        +-- CurrencyMismatch            currency_mismatch
        +-- UnknownCurrency             unknown_currency
        +-- TrackingRequired            tracking_required
        +-- InvalidAllowance            invalid_allowance
        +-- InvalidRefund               invalid_refund
        +-- PaymentNotRefundable        payment_not_refundable
        +-- RefundExceedsPaid           refund_exceeds_paid

Note that ``CartLocked`` is also the name of an event in ``domain.events``; import the modules
(``from domain import errors, events``) rather than both names.
"""

from collections.abc import Iterable
from typing import ClassVar


class DomainError(Exception):
    """A business rule refused a command. ``code`` is stable; ``detail`` is for humans."""

    code: ClassVar[str] = "domain_error"
    default_detail: ClassVar[str] = "The request breaks a business rule."
    default_field: ClassVar[str | None] = None

    def __init__(self, detail: str | None = None, *, field: str | None = None) -> None:
        self.detail: str = detail if detail is not None else self.default_detail
        self.field: str | None = field if field is not None else self.default_field
        super().__init__(self.detail)


# --- categories -------------------------------------------------------------------------------


class NotFound(DomainError):
    """The thing the command names does not exist (HTTP 404)."""

    code = "not_found"
    default_detail = "Not found."


class Forbidden(DomainError):
    """The actor may not do this (HTTP 403)."""

    code = "forbidden"
    default_detail = "You are not allowed to do this."


class Conflict(DomainError):
    """The command does not fit the current state (HTTP 409)."""

    code = "conflict"
    default_detail = "The request conflicts with the current state."


class Invalid(DomainError):
    """The command's input is unacceptable whatever the state (HTTP 422)."""

    code = "invalid"
    default_detail = "The request is invalid."


# --- not found --------------------------------------------------------------------------------


class ItemNotFound(NotFound):
    code = "item_not_found"
    default_detail = "No such item in this cart."


class MemberNotFound(NotFound):
    code = "member_not_found"
    default_detail = "No such member in this cart."


class RemovedFromCart(NotFound):
    code = "removed_from_cart"
    default_detail = "The host removed you from this cart; ask them for a new invite."


class ProductNotFound(NotFound):
    code = "product_not_found"
    default_detail = "No such product in this store."
    default_field = "product_id"


# --- forbidden --------------------------------------------------------------------------------


class NotAMember(Forbidden):
    code = "not_a_member"
    default_detail = "Only members of this cart may do this."


class MayNotCancel(Forbidden):
    code = "may_not_cancel"
    default_detail = "Only the host (or buyer) and the store's staff may cancel this order."


class HostOnly(Forbidden):
    code = "host_only"
    default_detail = "Only the host of this cart may do this."


class NotItemOwner(Forbidden):
    code = "not_item_owner"
    default_detail = "Only the member who added an item may change or remove it."


# --- conflict ---------------------------------------------------------------------------------


class CartNotOpen(Conflict):
    code = "cart_not_open"
    default_detail = "The cart is no longer open."


class CartLocked(Conflict):
    code = "cart_locked"
    default_detail = "The cart is locked; unlock it to change members or items."


class CartNotLocked(Conflict):
    code = "cart_not_locked"
    default_detail = "The cart must be locked for this."


class CartNotReady(Conflict):
    code = "cart_not_ready"
    default_detail = "The cart is not ready to confirm: not every share is committed or paid."


class EmptyCart(Conflict):
    code = "empty_cart"
    default_detail = "The cart has no items."


class ZeroSubtotal(Conflict):
    code = "zero_subtotal"
    default_detail = "The cart's items cost nothing, so there is no basis to split the bill."


class CartFull(Conflict):
    code = "cart_full"
    default_detail = "This cart has as many members as it can take."


class HostCannotLeave(Conflict):
    code = "host_cannot_leave"
    default_detail = "The host cannot leave the cart; cancel it instead."


class PaymentActivityStarted(Conflict):
    code = "payment_activity_started"
    default_detail = "A member has already committed or paid; the quote can no longer change."


class AlreadyPaid(Conflict):
    code = "already_paid"
    default_detail = "This member has already paid online."


class NothingOwed(Conflict):
    code = "nothing_owed"
    default_detail = "This member owes nothing."


class QuoteChanged(Conflict):
    code = "quote_changed"
    default_detail = "The payment was made against an older quote."


class AmountMismatch(Conflict):
    code = "amount_mismatch"
    default_detail = "The amount paid differs from the amount owed."


class OutOfStock(Conflict):
    """Raised by the application at lock when stock for some lines cannot be reserved."""

    code = "out_of_stock"
    default_detail = "Some products are out of stock."

    def __init__(self, product_ids: Iterable[str], detail: str | None = None) -> None:
        self.product_ids: tuple[str, ...] = tuple(product_ids)
        if detail is None:
            detail = "Out of stock: " + ", ".join(self.product_ids) + "."
        super().__init__(detail)


class IllegalTransition(Conflict):
    """An order asked to move where its state machine does not go from here."""

    code = "illegal_transition"
    default_detail = "The order can't move there from where it is."

    def __init__(self, current: str, to: str, allowed: Iterable[str]) -> None:
        self.allowed: tuple[str, ...] = tuple(allowed)
        named = ", ".join(self.allowed) if self.allowed else "nowhere (it is final)"
        super().__init__(f"The order is {current}; it can't become {to}. It can become: {named}.")


class OrderNotCancellable(Conflict):
    code = "order_not_cancellable"
    default_detail = "The order can no longer be cancelled by you."


class CheckoutStepMissing(Conflict):
    code = "checkout_step_missing"
    default_detail = "An earlier step of the checkout is missing."


class OverSpendingLimit(Conflict):
    code = "over_spending_limit"
    default_detail = "That would take your items past the host's spending limit."

    def __init__(self, limit_minor: int, detail: str | None = None) -> None:
        self.limit_minor = limit_minor
        super().__init__(detail)


class CartOverCommitted(Conflict):
    code = "would_change_paid_amounts"
    default_detail = (
        "That would change what someone already paid or committed to (or leave the host "
        "owing less than nothing); it can't be done now."
    )


class OrderNotPayable(Conflict):
    code = "order_not_payable"
    default_detail = "This order no longer takes a payment."


# --- invalid ----------------------------------------------------------------------------------


class InvalidQuantity(Invalid):
    code = "invalid_quantity"
    default_detail = "Quantity must be a whole number from 1 to 99."
    default_field = "quantity"


class InvalidOptions(Invalid):
    code = "invalid_options"
    default_detail = "The chosen options do not fit the product."
    default_field = "options"


class InvalidTip(Invalid):
    code = "invalid_tip"
    default_detail = "A tip must be a whole, non-negative number of minor units."
    default_field = "amount_minor"


class TipTooHigh(Invalid):
    code = "tip_too_high"
    default_detail = "The tip is more than this store allows for the cart's subtotal."
    default_field = "amount_minor"

    def __init__(self, max_tip_minor: int, max_tip_bps: int) -> None:
        percent = f"{max_tip_bps / 100:g} %"
        super().__init__(
            f"The tip can be at most {max_tip_minor} minor units ({percent} of the subtotal)."
        )
        self.max_tip_minor = max_tip_minor
        self.max_tip_bps = max_tip_bps


class InvalidDisplayName(Invalid):
    code = "invalid_display_name"
    default_detail = "A display name must be 1 to 100 characters."
    default_field = "display_name"


class InvalidDeadline(Invalid):
    code = "invalid_deadline"
    default_detail = "The deadline must be a time-zone-aware moment in the future."
    default_field = "deadline"


class InvalidAddress(Invalid):
    code = "invalid_address"
    default_detail = "The delivery address is incomplete."
    default_field = "delivery_address"


class InvalidStore(Invalid):
    code = "invalid_store"
    default_detail = "The store's terms are invalid."


class InvalidProduct(Invalid):
    code = "invalid_product"
    default_detail = "The product is invalid."


class InvalidCoupon(Invalid):
    code = "invalid_coupon"
    default_detail = "The coupon's terms are invalid."


class CouponNotApplicable(Invalid):
    code = "coupon_not_applicable"
    default_detail = "The coupon cannot be applied to this cart."
    default_field = "code"


class CouponMinSubtotalNotMet(CouponNotApplicable):
    code = "coupon_min_subtotal"
    default_detail = "The cart's subtotal is below the coupon's minimum."


class CouponExhausted(CouponNotApplicable):
    code = "coupon_exhausted"
    default_detail = "The coupon has reached its use limit."


class CurrencyMismatch(Invalid):
    code = "currency_mismatch"
    default_detail = "Amounts in different currencies cannot be combined."
    default_field = "currency"


class UnknownCurrency(Invalid):
    code = "unknown_currency"
    default_detail = "Unknown ISO 4217 currency code."
    default_field = "currency"


class TrackingRequired(Invalid):
    code = "tracking_required"
    default_detail = "A shipped order needs a carrier and a tracking number."
    default_field = "tracking_number"


class InvalidRefund(Invalid):
    code = "invalid_refund"
    default_detail = "A refund must be a positive whole amount."
    default_field = "amount_minor"


class PaymentNotRefundable(Invalid):
    code = "payment_not_refundable"
    default_detail = "This payment was not made online, or is not held as paid."
    default_field = "user_id"


class RefundExceedsPaid(Invalid):
    code = "refund_exceeds_paid"
    default_detail = "The refund is more than was paid, less what was refunded before."
    default_field = "amount_minor"

    def __init__(self, refundable_minor: int, detail: str | None = None) -> None:
        self.refundable_minor = refundable_minor
        super().__init__(detail)


class InvalidAllowance(Invalid):
    code = "invalid_allowance"
    default_detail = "An allowance is a whole amount >= 0 (or null for none)."
    default_field = "amount_minor"
