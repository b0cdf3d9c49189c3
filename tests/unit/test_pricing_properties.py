"""Property tests: for any cart, the split is exact, fair to the unit and never negative."""

from dataclasses import dataclass
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.catalog import CouponKind, CouponTerms
from domain.money import exponent
from domain.pricing import Quote, compute_quote, split_proportionally, tax_for

CURRENCIES = ["JPY", "KRW", "USD", "EUR", "KWD", "BHD"]  # 0, 2 and 3 decimals

SETTINGS = settings(max_examples=300, deadline=None)


@dataclass(frozen=True)
class PricedCart:
    currency: str
    member_subtotals: dict[str, int]
    delivery_fee_minor: int
    tax_rate_bps: int
    tip_minor: int
    coupon: CouponTerms | None

    def quote(self) -> Quote:
        return compute_quote(
            self.member_subtotals,
            self.delivery_fee_minor,
            self.tax_rate_bps,
            self.tip_minor,
            self.coupon,
        )


@st.composite
def carts(draw: st.DrawFn) -> PricedCart:
    """1-8 members, some with nothing in the cart; amounts scaled to the currency's unit."""
    currency = draw(st.sampled_from(CURRENCIES))
    unit = 10 ** exponent(currency)
    member_count = draw(st.integers(min_value=1, max_value=8))
    subtotals = draw(
        st.lists(
            st.one_of(st.just(0), st.integers(min_value=1, max_value=500 * unit)),
            min_size=member_count,
            max_size=member_count,
        ).filter(lambda values: sum(values) > 0)
    )
    coupon = draw(
        st.one_of(
            st.none(),
            st.builds(
                CouponTerms,
                code=st.just("PERCENT"),
                kind=st.just(CouponKind.PERCENT),
                value=st.integers(min_value=0, max_value=100),
            ),
            st.builds(
                CouponTerms,
                code=st.just("FIXED"),
                kind=st.just(CouponKind.FIXED),
                value=st.integers(min_value=0, max_value=1000 * unit),
            ),
        )
    )
    return PricedCart(
        currency=currency,
        member_subtotals={f"user-{index}": value for index, value in enumerate(subtotals)},
        delivery_fee_minor=draw(st.integers(min_value=0, max_value=20 * unit)),
        tax_rate_bps=draw(st.integers(min_value=0, max_value=3000)),
        tip_minor=draw(st.integers(min_value=0, max_value=50 * unit)),
        coupon=coupon,
    )


@SETTINGS
@given(carts())
def test_shares_are_exact_fair_and_never_negative(cart: PricedCart) -> None:
    quote = cart.quote()
    weight_sum = sum(cart.member_subtotals.values())

    assert quote.totals.total_minor >= 0
    assert sum(quote.shares.values()) == quote.totals.total_minor
    assert list(quote.shares) == list(cart.member_subtotals)
    for user_id, weight in cart.member_subtotals.items():
        share = quote.shares[user_id]
        assert isinstance(share, int)
        assert share >= 0
        if weight == 0:
            assert share == 0
        assert abs(share - Fraction(quote.totals.total_minor * weight, weight_sum)) < 1


@SETTINGS
@given(carts())
def test_totals_follow_the_formula(cart: PricedCart) -> None:
    quote = cart.quote()
    # round() of a Fraction rounds half to even: an independent reference.
    assert quote.totals.tax_minor == round(
        Fraction(quote.totals.subtotal_minor * cart.tax_rate_bps, 10_000)
    )
    assert 0 <= quote.totals.discount_minor <= quote.totals.subtotal_minor
    if cart.coupon is not None and cart.coupon.kind is CouponKind.PERCENT:
        expected = round(Fraction(quote.totals.subtotal_minor * cart.coupon.value, 100))
        assert quote.totals.discount_minor == min(expected, quote.totals.subtotal_minor)
    assert quote.totals.total_minor == max(
        0,
        quote.totals.subtotal_minor
        + quote.totals.delivery_fee_minor
        + quote.totals.tax_minor
        + quote.totals.tip_minor
        - quote.totals.discount_minor,
    )


@SETTINGS
@given(
    subtotal=st.integers(min_value=0, max_value=10**12),
    rate_bps=st.integers(min_value=0, max_value=10_000),
)
def test_tax_matches_a_half_even_fraction_reference(subtotal: int, rate_bps: int) -> None:
    assert tax_for(subtotal, rate_bps) == round(Fraction(subtotal * rate_bps, 10_000))


@SETTINGS
@given(
    total=st.integers(min_value=0, max_value=10**9),
    weights=st.lists(st.integers(min_value=0, max_value=10**7), min_size=1, max_size=12).filter(
        lambda values: sum(values) > 0
    ),
)
def test_split_proportionally_is_a_fair_partition(total: int, weights: list[int]) -> None:
    keyed = {f"k{index}": weight for index, weight in enumerate(weights)}
    shares = split_proportionally(total, keyed)
    weight_sum = sum(weights)
    assert sum(shares.values()) == total
    for key, weight in keyed.items():
        assert shares[key] >= 0
        assert abs(shares[key] - Fraction(total * weight, weight_sum)) < 1
        if weight == 0:
            assert shares[key] == 0
