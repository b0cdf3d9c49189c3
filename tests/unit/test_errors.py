"""The error tree: stable codes, categories, default details."""

import re

from domain import errors

CATEGORIES = (errors.NotFound, errors.Forbidden, errors.Conflict, errors.Invalid)

EXPECTED_CODES: dict[type[errors.DomainError], tuple[str, type[errors.DomainError]]] = {
    errors.NotAMember: ("not_a_member", errors.Forbidden),
    errors.HostOnly: ("host_only", errors.Forbidden),
    errors.NotItemOwner: ("not_item_owner", errors.Forbidden),
    errors.ItemNotFound: ("item_not_found", errors.NotFound),
    errors.MemberNotFound: ("member_not_found", errors.NotFound),
    errors.RemovedFromCart: ("removed_from_cart", errors.NotFound),
    errors.ProductNotFound: ("product_not_found", errors.NotFound),
    errors.CartNotOpen: ("cart_not_open", errors.Conflict),
    errors.CartLocked: ("cart_locked", errors.Conflict),
    errors.CartNotLocked: ("cart_not_locked", errors.Conflict),
    errors.CartNotReady: ("cart_not_ready", errors.Conflict),
    errors.EmptyCart: ("empty_cart", errors.Conflict),
    errors.ZeroSubtotal: ("zero_subtotal", errors.Conflict),
    errors.HostCannotLeave: ("host_cannot_leave", errors.Conflict),
    errors.CartFull: ("cart_full", errors.Conflict),
    errors.PaymentActivityStarted: ("payment_activity_started", errors.Conflict),
    errors.AlreadyPaid: ("already_paid", errors.Conflict),
    errors.NothingOwed: ("nothing_owed", errors.Conflict),
    errors.QuoteChanged: ("quote_changed", errors.Conflict),
    errors.AmountMismatch: ("amount_mismatch", errors.Conflict),
    errors.OutOfStock: ("out_of_stock", errors.Conflict),
    errors.InvalidQuantity: ("invalid_quantity", errors.Invalid),
    errors.InvalidOptions: ("invalid_options", errors.Invalid),
    errors.InvalidTip: ("invalid_tip", errors.Invalid),
    errors.TipTooHigh: ("tip_too_high", errors.Invalid),
    errors.InvalidDisplayName: ("invalid_display_name", errors.Invalid),
    errors.InvalidDeadline: ("invalid_deadline", errors.Invalid),
    errors.InvalidAddress: ("invalid_address", errors.Invalid),
    errors.InvalidStore: ("invalid_store", errors.Invalid),
    errors.InvalidProduct: ("invalid_product", errors.Invalid),
    errors.InvalidCoupon: ("invalid_coupon", errors.Invalid),
    errors.CouponNotApplicable: ("coupon_not_applicable", errors.Invalid),
    errors.CouponMinSubtotalNotMet: ("coupon_min_subtotal", errors.Invalid),
    errors.CouponExhausted: ("coupon_exhausted", errors.Invalid),
    errors.CurrencyMismatch: ("currency_mismatch", errors.Invalid),
    errors.UnknownCurrency: ("unknown_currency", errors.Invalid),
    errors.IllegalTransition: ("illegal_transition", errors.Conflict),
    errors.OrderNotCancellable: ("order_not_cancellable", errors.Conflict),
    errors.CheckoutStepMissing: ("checkout_step_missing", errors.Conflict),
    errors.OverSpendingLimit: ("over_spending_limit", errors.Conflict),
    errors.CartOverCommitted: ("would_change_paid_amounts", errors.Conflict),
    errors.InvalidAllowance: ("invalid_allowance", errors.Invalid),
    errors.OrderNotPayable: ("order_not_payable", errors.Conflict),
    errors.MayNotCancel: ("may_not_cancel", errors.Forbidden),
    errors.TrackingRequired: ("tracking_required", errors.Invalid),
    errors.InvalidRefund: ("invalid_refund", errors.Invalid),
    errors.PaymentNotRefundable: ("payment_not_refundable", errors.Invalid),
    errors.RefundExceedsPaid: ("refund_exceeds_paid", errors.Invalid),
}


def _all_error_types() -> list[type[errors.DomainError]]:
    found: list[type[errors.DomainError]] = []
    pending = [errors.DomainError]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            if sub not in found:
                found.append(sub)
            pending.append(sub)
    return found


def test_every_concrete_error_has_its_code_and_category() -> None:
    concrete = [cls for cls in _all_error_types() if cls not in CATEGORIES]
    assert set(concrete) == set(EXPECTED_CODES)
    for cls, (code, category) in EXPECTED_CODES.items():
        assert cls.code == code
        assert issubclass(cls, category)
        assert sum(issubclass(cls, base) for base in CATEGORIES) == 1


def test_codes_are_unique_snake_case() -> None:
    codes = [cls.code for cls in _all_error_types()]
    assert len(codes) == len(set(codes))
    assert all(re.fullmatch(r"[a-z]+(_[a-z0-9]+)*", code) for code in codes)


def test_detail_defaults_per_class_and_can_be_given() -> None:
    default = errors.CartLocked()
    assert default.detail == errors.CartLocked.default_detail
    assert str(default) == default.detail
    given = errors.CartLocked("Locked at noon.")
    assert (given.detail, str(given)) == ("Locked at noon.", "Locked at noon.")


def test_field_names_the_offending_input() -> None:
    assert errors.InvalidQuantity().field == "quantity"
    assert errors.InvalidAddress(field="city").field == "city"
    assert errors.CartLocked().field is None


def test_out_of_stock_names_the_products() -> None:
    error = errors.OutOfStock(["p1", "p2"])
    assert error.product_ids == ("p1", "p2")
    assert "p1" in error.detail
    assert "p2" in error.detail
    assert errors.OutOfStock(("p1",), "Sold out.").detail == "Sold out."
