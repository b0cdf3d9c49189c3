"""Referral commissions: what an order earns the user whose code brought it, and the guards
that refuse to pay for a referral that games the scheme.

A referrer's code is fixed on a cart when the cart is created (its *attribution*); the order
the cart becomes is judged **once**, from the first of its outbox events that shows it placed
and paid in full (every payment ``paid_online`` or ``cod_committed``)::

    judge(order, judgement) -> Verdict     one accrual decision per order, the first that holds:

    no_code        the cart was opened without a referral code
    self_referral  the referrer is on the order, or shares an email or a card with it
    below_minimum  the subtotal is under the minimum order (per currency)
    velocity       the referrer has N commissions from orders placed that day already
    accrued        a commission of commission_bps * subtotal, ``pending``

An accrued commission then follows its order (:func:`follow`), always to the state of the
newest order version seen, so events handled out of order converge on the same result::

    pending --order delivered--> approved --an admin pays it--> paid
       |
       +--order cancelled or rejected--> void

and every refund reverses it pro rata (``reversed``), while it is not void. A second placing
of an order already decided is a ``duplicate`` and changes nothing.

Money is integer minor units of the order's currency, with one rounding rule, half to even
(:func:`domain.pricing.divide_half_even`):

- commission = commission_bps * subtotal / 10 000;
- reversed so far = commission * refunded / total, on the *cumulative* refund of the order: a
  refund's reversal is that less what earlier refunds reversed, so however many refunds there
  are, the reversals add up to one rounding of the whole, and a full refund reverses exactly
  the whole commission. A refund that Stripe later reports failed lowers the refunded total,
  and its reversal comes back (a negative reversal).

Nothing here reads the clock or a database: :func:`consume` is given what is stored about
the order (:class:`Standing`) and what was looked up to judge it (:class:`Judgement`), and
answers what to store (:class:`Outcome`). ``app.referrals`` does the I/O around it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from enum import StrEnum
from types import MappingProxyType

from domain.pricing import divide_half_even

BPS = 10_000
"""Basis points in a whole: 500 bps is 5 %."""

CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
"""Crockford's base 32: no I, L, O or U, so a code read aloud or copied by hand survives."""
CODE_LENGTH = 8
_LOOKALIKES = MappingProxyType(str.maketrans({"I": "1", "L": "1", "O": "0", "-": None, " ": None}))


class Decision(StrEnum):
    """What the decision log (``audit``) says was decided about an order's commission."""

    ACCRUED = "accrued"
    NO_CODE = "no_code"
    SELF_REFERRAL = "self_referral"
    BELOW_MINIMUM = "below_minimum"
    VELOCITY = "velocity"
    DUPLICATE = "duplicate"
    REVERSED = "reversed"
    VOIDED = "voided"


ACCRUAL_DECISIONS: frozenset[Decision] = frozenset(
    {
        Decision.ACCRUED,
        Decision.NO_CODE,
        Decision.SELF_REFERRAL,
        Decision.BELOW_MINIMUM,
        Decision.VELOCITY,
    }
)
"""An order has at most one of these, ever (the migration's unique index says so too)."""


class CommissionStatus(StrEnum):
    PENDING = "pending"  # the order was paid in full
    APPROVED = "approved"  # and delivered: owed to the referrer
    PAID = "paid"  # an admin paid it out
    VOID = "void"  # the order was cancelled or rejected


SETTLED_PAYMENTS = frozenset({"paid_online", "cod_committed"})
"""A payment in one of these counts towards "paid in full" (API.md § Referrals)."""

PLACED_STATUSES = frozenset(
    {"placed", "accepted", "preparing", "out_for_delivery", "shipped", "delivered"}
)
"""An order in one of these was placed and is still going (not awaiting payment, not
cancelled or rejected)."""

APPROVING_STATUSES = frozenset({"delivered"})
VOIDING_STATUSES = frozenset({"cancelled", "rejected"})


def commission_for(subtotal_minor: int, commission_bps: int) -> int:
    """``commission_bps`` of the subtotal, half to even."""
    return divide_half_even(subtotal_minor * commission_bps, BPS)


def reversed_for(commission_minor: int, refunded_minor: int, total_minor: int) -> int:
    """How much of a commission the order's refunds so far take back: ``refunded / total``
    of it, half to even (all of it when everything was refunded)."""
    if total_minor <= 0:
        return 0
    refunded = max(0, min(refunded_minor, total_minor))
    return divide_half_even(commission_minor * refunded, total_minor)


def normalized_code(code: str) -> str:
    """A code as typed (any case, dashes, look-alike letters) as it is stored."""
    return code.strip().upper().translate(_LOOKALIKES)


def normalized_email(address: str) -> str:
    """An address compared for self-referral: case folded, and a ``+tag`` of the local part
    dropped (``ana+2@example.com`` is Ana's inbox)."""
    local, at, domain = address.strip().lower().rpartition("@")
    if not at:
        return address.strip().lower()
    return f"{local.split('+', 1)[0]}@{domain}"


@dataclass(frozen=True, slots=True)
class Terms:
    """The settings commissions are computed and guarded with."""

    commission_bps: int
    minimum_minor: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """The smallest subtotal that earns a commission, by currency; ``"*"``: any currency not
    named. None at all: no minimum."""
    velocity_per_day: int = 0
    """At most this many commissions per referrer from orders placed the same (UTC) day;
    0: no limit."""

    def __post_init__(self) -> None:
        if not 0 <= self.commission_bps <= BPS:
            raise ValueError("commission_bps must be between 0 and 10000")
        if self.velocity_per_day < 0:
            raise ValueError("velocity_per_day must not be negative")

    def minimum_for(self, currency: str) -> int:
        return self.minimum_minor.get(currency, self.minimum_minor.get("*", 0))


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """An order as one of its outbox events shows it (its view as of that event's version)."""

    order_id: str
    version: int
    event: str
    status: str
    currency: str
    subtotal_minor: int
    total_minor: int
    refunded_minor: int
    """Refunded so far, over every payment."""
    payment_statuses: tuple[str, ...]
    participant_user_ids: frozenset[str]
    """The host (or buyer) and everyone who paid into the order."""
    placed_at: datetime
    """When it was placed (or created, if it wasn't yet)."""

    @property
    def placed_on(self) -> date:
        """The (UTC) day it was placed: the day velocity counts it in."""
        return self.placed_at.astimezone(UTC).date()

    @property
    def placed(self) -> bool:
        return self.status in PLACED_STATUSES

    @property
    def paid_in_full(self) -> bool:
        return all(status in SETTLED_PAYMENTS for status in self.payment_statuses)


@dataclass(frozen=True, slots=True)
class Attribution:
    """The code a cart was created with, and whose it is."""

    referrer_user_id: str
    code: str


@dataclass(frozen=True, slots=True)
class Party:
    """One side of a referral as far as self-referral is concerned."""

    user_ids: frozenset[str] = frozenset()
    emails: frozenset[str] = frozenset()
    """Normalised (:func:`normalized_email`)."""
    card_fingerprints: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Judgement:
    """What was looked up to judge an order: its attribution; the referrer (their id, email
    and the cards they paid their own orders with); the order's side (its participants,
    their emails, the cards that paid it); and the referrer's commissions that day."""

    terms: Terms
    attribution: Attribution | None
    referrer: Party = Party()
    referred: Party = Party()
    commissions_that_day: int = 0


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    reason: str
    amount_minor: int = 0


def judge(order: OrderFacts, judgement: Judgement) -> Verdict:
    """The order's one accrual decision (see the module docstring for the guards' order)."""
    attribution = judgement.attribution
    if attribution is None:
        return Verdict(Decision.NO_CODE, "the cart was opened without a referral code")
    self_referral = _self_referral(attribution.referrer_user_id, judgement)
    if self_referral is not None:
        return Verdict(Decision.SELF_REFERRAL, self_referral)
    terms = judgement.terms
    minimum = terms.minimum_for(order.currency)
    if order.subtotal_minor < minimum:
        return Verdict(
            Decision.BELOW_MINIMUM,
            f"the subtotal {order.subtotal_minor} is below the minimum order {minimum} "
            f"({order.currency}, minor units)",
        )
    if 0 < terms.velocity_per_day <= judgement.commissions_that_day:
        return Verdict(
            Decision.VELOCITY,
            f"the referrer has {judgement.commissions_that_day} commissions from orders placed "
            f"on {order.placed_on.isoformat()} already (at most {terms.velocity_per_day} a day)",
        )
    amount = commission_for(order.subtotal_minor, terms.commission_bps)
    return Verdict(
        Decision.ACCRUED,
        f"{terms.commission_bps} bps of the subtotal {order.subtotal_minor} ({order.currency}) "
        f"with code {attribution.code}",
        amount,
    )


def _self_referral(referrer_user_id: str, judgement: Judgement) -> str | None:
    referrer, referred = judgement.referrer, judgement.referred
    if referrer_user_id in referred.user_ids:
        return "the referrer is on the order (its host, buyer or a payer)"
    if referrer.emails & referred.emails:
        return "the referrer's email is the email of someone on the order"
    if referrer.card_fingerprints & referred.card_fingerprints:
        return "a card the referrer paid with paid this order"
    return None


@dataclass(frozen=True, slots=True)
class Commission:
    """One order's commission, as stored."""

    id: str
    order_id: str
    referrer_user_id: str
    currency: str
    amount_minor: int
    status: CommissionStatus
    reversed_minor: int
    """Taken back by refunds so far (:func:`reversed_for` of the newest version seen)."""
    order_version: int
    """The order version the commission reflects: older events change nothing."""
    placed_at: datetime


@dataclass(frozen=True, slots=True)
class Standing:
    """What is stored about one order's referral: its accrual decision and its commission."""

    decision: Decision | None = None
    commission: Commission | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """A line of the decision log."""

    decision: Decision
    reason: str
    amount_minor: int | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What consuming one event means: decision log lines, the commission as it is now (when
    it is new or changed), and the reversal this event adds (0: none)."""

    entries: tuple[Entry, ...] = ()
    commission: Commission | None = None
    created: bool = False
    reversal_minor: int = 0
    undecided: bool = False
    """Nothing was decided: the order isn't placed and paid in full (yet), as this version
    shows it."""

    @property
    def decision(self) -> Decision | None:
        """The accrual decision this event made, if it made one."""
        return next((e.decision for e in self.entries if e.decision in ACCRUAL_DECISIONS), None)


def needs_judgement(standing: Standing, order: OrderFacts) -> bool:
    """Whether consuming this event decides the order (so a :class:`Judgement` is needed)."""
    return standing.decision is None and order.placed and order.paid_in_full


def consume(
    standing: Standing, order: OrderFacts, judgement: Judgement | None, commission_id: str
) -> Outcome:
    """What one order event does to the order's referral (``commission_id`` names the
    commission if this one accrues it). ``judgement`` is required when
    :func:`needs_judgement` says so, and ignored otherwise."""
    if standing.decision is None:
        if not needs_judgement(standing, order):
            return Outcome(undecided=True)
        if judgement is None:
            raise ValueError("deciding an order needs its judgement")
        return _decide(order, judgement, commission_id)
    if order.event == "order_placed":
        return Outcome(
            entries=(
                Entry(
                    Decision.DUPLICATE,
                    f"order version {order.version} was placed again; it was decided before "
                    f"({standing.decision})",
                ),
            )
        )
    if standing.commission is None:
        return Outcome()
    return follow(standing.commission, order)


def _decide(order: OrderFacts, judgement: Judgement, commission_id: str) -> Outcome:
    verdict = judge(order, judgement)
    if verdict.decision is not Decision.ACCRUED or judgement.attribution is None:
        return Outcome(entries=(Entry(verdict.decision, verdict.reason),))
    accrued = Commission(
        id=commission_id,
        order_id=order.order_id,
        referrer_user_id=judgement.attribution.referrer_user_id,
        currency=order.currency,
        amount_minor=verdict.amount_minor,
        status=CommissionStatus.PENDING,
        reversed_minor=0,
        order_version=order.version - 1,  # so that following this very version applies it
        placed_at=order.placed_at,
    )
    followed = follow(accrued, order)  # a late decision may find it delivered or refunded
    return Outcome(
        entries=(
            Entry(Decision.ACCRUED, verdict.reason, verdict.amount_minor),
            *followed.entries,
        ),
        commission=followed.commission or accrued,
        created=True,
        reversal_minor=followed.reversal_minor,
    )


def next_status(status: CommissionStatus, order_status: str) -> CommissionStatus:
    """Where a commission goes when its order is ``order_status``: only forward."""
    if status is CommissionStatus.PENDING and order_status in APPROVING_STATUSES:
        return CommissionStatus.APPROVED
    if status is CommissionStatus.PENDING and order_status in VOIDING_STATUSES:
        return CommissionStatus.VOID
    return status


def follow(commission: Commission, order: OrderFacts) -> Outcome:
    """Bring the commission to the order as this version shows it; an older version than
    the one it reflects changes nothing (a later one already told it more)."""
    if order.version <= commission.order_version:
        return Outcome()
    status = next_status(commission.status, order.status)
    if commission.status is CommissionStatus.VOID or status is CommissionStatus.VOID:
        entries: tuple[Entry, ...] = ()
        if commission.status is not CommissionStatus.VOID:
            entries = (
                Entry(
                    Decision.VOIDED,
                    f"the order was {order.status}",
                    commission.amount_minor,
                ),
            )
        return Outcome(
            entries=entries,
            commission=replace(commission, status=status, order_version=order.version),
        )
    target = reversed_for(commission.amount_minor, order.refunded_minor, order.total_minor)
    reversal = target - commission.reversed_minor
    entries = ()
    if reversal:
        entries = (Entry(Decision.REVERSED, _reversal_reason(reversal, order), reversal),)
    return Outcome(
        entries=entries,
        commission=replace(
            commission, status=status, reversed_minor=target, order_version=order.version
        ),
        reversal_minor=reversal,
    )


def _reversal_reason(reversal: int, order: OrderFacts) -> str:
    refunded = f"{order.refunded_minor} of the order's {order.total_minor} ({order.currency})"
    if reversal > 0:
        return f"refunded {refunded} so far: {reversal} of the commission reversed"
    return f"a refund failed, leaving {refunded} refunded: {-reversal} of the commission restored"
