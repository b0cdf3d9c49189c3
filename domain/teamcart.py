"""The TeamCart aggregate: one group order for one store, from invite to confirmed Order.

Life cycle::

    open --lock--> locked --(every owed share committed or paid)--> ready_to_confirm
      ^              |   <--(a settled payment refunded or disputed)--      |
      +---unlock-----+  (only while nobody is paying, has committed or paid) confirm --> converted
    open, locked, ready_to_confirm --cancel (host)--> cancelled
    open (past deadline, no items), locked (payment window over),
    ready_to_confirm (confirm window over) --> expired
    open (past deadline, with items) --> locked automatically

Rules worth knowing before reading the code:

- Each command checks, in order: the actor is a member (``NotAMember``), has the right
  (``HostOnly`` / ``NotItemOwner``), the cart is in the right state (``Conflict`` errors), the
  input is acceptable (``Invalid`` errors). Nothing changes unless every check passes.
- Every recorded event bumps ``version`` by exactly one and carries the new value; a command
  that records two events bumps twice. A command that changes nothing (joining twice, setting
  ``ready`` to the value it has, committing to COD twice, setting the same tip or coupon)
  records nothing and leaves ``version`` alone.
- Changing one's items clears one's ready flag, recorded as a ``MemberReadyChanged`` after the
  item event.
- Locking prices the cart (``domain.pricing``) and bumps ``quote_version``; so does every tip or
  coupon change. ``quote_version`` never goes back, even across unlock and lock, so a payment
  made against an older quote can always be told apart.
- Unlocking discards the quote together with the tip and coupon (they were set on that quote)
  and resets every member's payment to ``none``.
- A cart whose items all cost nothing cannot be locked (``ZeroSubtotal``): shares are split in
  proportion to subtotals, and there would be nothing to split the fee and tax by.
- If a quote's total is 0 (a 100 % coupon on a cart with no fee, tax or tip), nobody owes
  anything and the cart becomes ``ready_to_confirm`` at once; while nobody has paid, the host
  can still ``unlock`` it from there.

``TeamCart.open`` starts a new cart (recording ``CartOpened`` as version 1); the plain
constructor ``TeamCart(...)`` rebuilds a stored cart without recording anything.

Why one module of this length: one aggregate a module (CONVENTIONS.md); every rule of a cart
is a method of the one class that keeps it consistent.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType

from domain import errors
from domain.catalog import CouponTerms, ProductSnapshot, StoreTerms, price_options
from domain.events import (
    AllowanceSet,
    CartCancelled,
    CartConverted,
    CartEvent,
    CartExpired,
    CartLocked,
    CartOpened,
    CartPaymentsReopened,
    CartReadyToConfirm,
    CartRequoted,
    CartUnlocked,
    CodCommitted,
    CouponApplied,
    CouponRemoved,
    InviteRotated,
    ItemAdded,
    ItemQuantityChanged,
    ItemRemoved,
    MemberCovered,
    MemberJoined,
    MemberLeft,
    MemberReadyChanged,
    OnlinePaymentRecorded,
    PaymentAuthorized,
    PaymentCanceled,
    PaymentFailed,
    PaymentModeSet,
    PaymentRefunded,
    PaymentStarted,
    PaymentUnderReview,
    SpendingLimitSet,
    TipSet,
)
from domain.money import is_whole_number
from domain.order import DeliveryAddress, Order, OrderLine, OrderPayment
from domain.payments import (
    INACTIVE_STATUSES,
    PAYABLE_STATUSES,
    SETTLED_STATUSES,
    CaptureOutcome,
    PaymentMethod,
    PaymentStatus,
)
from domain.pricing import OverCommitted, Quote, compute_quote, owed_amounts

__all__ = [
    "DEFAULT_MAX_TIP_BPS",
    "DEFAULT_REMINDER_MINUTES",
    "HOLD_LIFETIME",
    "MAX_DISPLAY_NAME_LENGTH",
    "MAX_MEMBERS",
    "MAX_QUANTITY",
    "NO_PAYMENT",
    "Capture",
    "CartItem",
    "CartStatus",
    "Member",
    "MemberPayment",
    "MemberRole",
    "OwedRefund",
    "PaymentMethod",
    "PaymentMode",
    "PaymentStatus",
    "TeamCart",
    "hold_window",
    "max_tip_for",
]

MAX_QUANTITY = 99
DEFAULT_REMINDER_MINUTES = 15
"""How long before a deadline members are reminded, unless the cart says otherwise."""
MAX_MEMBERS = 50
"""A cart takes at most this many members, the host included."""
CONFIRM_WINDOWS = 2
"""A ready cart is confirmed within this many payment windows of its lock, or expires."""
MAX_DISPLAY_NAME_LENGTH = 100
DEFAULT_MAX_TIP_BPS = 10_000
"""A tip may be at most this share of the subtotal, in basis points, unless the store says
otherwise (``stores.max_tip_bps``)."""
_INVITE_CODE_ALPHABET = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
)
_INVITE_CODE_MIN_LENGTH = 22  # 22 URL-safe characters carry at least 128 bits


class CartStatus(StrEnum):
    OPEN = "open"
    LOCKED = "locked"
    READY_TO_CONFIRM = "ready_to_confirm"
    CONVERTED = "converted"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class MemberRole(StrEnum):
    HOST = "host"
    GUEST = "guest"


@dataclass(frozen=True, slots=True)
class MemberPayment:
    """Where one member's payment for the current quote stands."""

    status: PaymentStatus
    method: PaymentMethod | None
    amount_minor: int
    reference: str | None  # the PaymentIntent id for online payments


NO_PAYMENT = MemberPayment(PaymentStatus.NONE, None, 0, None)
"""A member's payment before they do anything (and again after an unlock)."""


@dataclass(frozen=True, slots=True)
class Member:
    """Someone in the cart: the host or a guest, with their lobby flag and payment."""

    user_id: str
    display_name: str
    role: MemberRole
    ready: bool
    joined_at: datetime
    payment: MemberPayment = NO_PAYMENT
    covered: bool = False  # the host pays this member's share

    @property
    def is_host(self) -> bool:
        return self.role is MemberRole.HOST


class PaymentMode(StrEnum):
    SPLIT = "split"  # everyone pays their own share
    HOST_PAYS = "host_pays"  # the host pays the whole total


class Capture(StrEnum):
    AUTOMATIC = "automatic"  # a card payment is captured when it is made
    ON_CONFIRM = "on_confirm"  # cards are authorised, captured when the host confirms


FIXED_STATUSES: frozenset[PaymentStatus] = frozenset(
    {
        PaymentStatus.PENDING,
        PaymentStatus.COD_COMMITTED,
        PaymentStatus.PAID_ONLINE,
        PaymentStatus.REVIEW,
        PaymentStatus.AUTHORIZED,
    }
)
"""A member in one of these has paid, committed or is paying an amount: re-pricing the cart
(a removal, a cover) never changes what they owe; the host's share absorbs the change."""


@dataclass(frozen=True, slots=True)
class CartItem:
    """A member's line, priced (product price plus option deltas) when it was added."""

    item_id: str
    user_id: str
    product_id: str
    name: str
    unit_price_minor: int
    quantity: int
    options: tuple[str, ...]

    @property
    def line_total_minor(self) -> int:
        return self.unit_price_minor * self.quantity


def _clean_display_name(display_name: str) -> str:
    cleaned = display_name.strip() if isinstance(display_name, str) else ""
    if not 1 <= len(cleaned) <= MAX_DISPLAY_NAME_LENGTH:
        raise errors.InvalidDisplayName()
    return cleaned


HOLD_LIFETIME = timedelta(days=7)
"""How long Stripe keeps a card authorised for later capture."""


def hold_window(payment_window: timedelta) -> timedelta:
    """A capture-on-confirm cart's payment window: the settings', but short enough that the
    cart expires (its payment window and then its confirm window) a day before the first
    hold can lapse."""
    return min(payment_window, (HOLD_LIFETIME - timedelta(days=1)) / (CONFIRM_WINDOWS + 1))


def max_tip_for(subtotal_minor: int, max_tip_bps: int) -> int:
    """The largest tip a cart of ``subtotal_minor`` may carry: ``max_tip_bps`` of it, rounded
    down to the minor unit (the limit is never more than the rule says)."""
    if not is_whole_number(max_tip_bps) or max_tip_bps < 0:
        raise ValueError(f"max_tip_bps must be a non-negative int, got {max_tip_bps!r}")
    return subtotal_minor * max_tip_bps // 10_000


def _check_quantity(quantity: int) -> None:
    if not is_whole_number(quantity) or not 1 <= quantity <= MAX_QUANTITY:
        raise errors.InvalidQuantity()


@dataclass(frozen=True, slots=True)
class OwedRefund:
    """A captured online payment a cancelled or expired cart gives back."""

    user_id: str
    payment_intent_id: str
    amount_minor: int


class TeamCart:
    """One group cart. Commands are methods; read ``pull_events()`` after each to persist."""

    def __init__(
        self,
        *,
        id: str,
        store: StoreTerms,
        host_user_id: str,
        invite_code: str,
        status: CartStatus,
        version: int,
        quote_version: int,
        deadline: datetime | None,
        created_at: datetime,
        locked_at: datetime | None,
        members: Iterable[Member],
        items: Iterable[CartItem],
        tip_minor: int = 0,
        coupon: CouponTerms | None = None,
        quote: Quote | None = None,
        order_id: str | None = None,
        removed_user_ids: Iterable[str] = (),
        payment_mode: PaymentMode = PaymentMode.SPLIT,
        allowance_minor: int | None = None,
        spending_limit_minor: int | None = None,
        capture: Capture = Capture.AUTOMATIC,
        reminder_minutes: int = DEFAULT_REMINDER_MINUTES,
    ) -> None:
        """Rebuild a stored cart as it is; records no event. New carts use ``TeamCart.open``."""
        self.id = id
        self.store = store
        self.host_user_id = host_user_id
        self.invite_code = invite_code
        self.status = status
        self.version = version
        self.quote_version = quote_version
        self.deadline = deadline
        self.created_at = created_at
        self.locked_at = locked_at
        self._members: dict[str, Member] = {member.user_id: member for member in members}
        self._items: dict[str, CartItem] = {item.item_id: item for item in items}
        self.tip_minor = tip_minor
        self.coupon = coupon
        self.quote = quote
        self.order_id = order_id
        self.removed_user_ids = frozenset(removed_user_ids)
        """Guests the host removed: the invite no longer lets them back in."""
        self.payment_mode = payment_mode
        self.allowance_minor = allowance_minor
        """The most of each guest's share the host pays (``None``: no allowance)."""
        self.spending_limit_minor = spending_limit_minor
        """The most a guest's items may come to while the cart is open (``None``: no limit)."""
        self.capture = capture
        self.reminder_minutes = reminder_minutes
        self._pending_events: list[CartEvent] = []

    @classmethod
    def open(
        cls,
        cart_id: str,
        store: StoreTerms,
        host_user_id: str,
        host_display_name: str,
        invite_code: str,
        deadline: datetime | None,
        now: datetime,
        *,
        capture: Capture = Capture.AUTOMATIC,
        reminder_minutes: int = DEFAULT_REMINDER_MINUTES,
    ) -> "TeamCart":
        """A new open cart with the host as its only member (``CartOpened``, version 1).

        ``invite_code`` must be URL-safe and at least 22 characters (128 bits when random);
        making it random is the caller's job. ``deadline``, if any, must be aware and later
        than ``now``.
        """
        if now.tzinfo is None:
            raise ValueError("now must be time-zone aware")
        if len(invite_code) < _INVITE_CODE_MIN_LENGTH or not set(invite_code).issubset(
            _INVITE_CODE_ALPHABET
        ):
            raise ValueError("invite code must be >= 22 URL-safe characters")
        if deadline is not None and (deadline.tzinfo is None or deadline <= now):
            raise errors.InvalidDeadline()
        display_name = _clean_display_name(host_display_name)
        cart = cls(
            id=cart_id,
            store=store,
            host_user_id=host_user_id,
            invite_code=invite_code,
            status=CartStatus.OPEN,
            version=0,
            quote_version=0,
            deadline=deadline,
            created_at=now,
            locked_at=None,
            members=[Member(host_user_id, display_name, MemberRole.HOST, False, now)],
            items=[],
            capture=capture,
            reminder_minutes=reminder_minutes,
        )
        cart._record(
            CartOpened(
                cart_id=cart.id,
                version=cart._next_version(),
                store_id=store.store_id,
                currency=store.currency,
                host_user_id=host_user_id,
                host_display_name=display_name,
                invite_code=invite_code,
                deadline=deadline,
                opened_at=now,
            )
        )
        return cart

    # --- reading ------------------------------------------------------------------------------

    @property
    def currency(self) -> str:
        return self.store.currency

    @property
    def members(self) -> Mapping[str, Member]:
        """Members by user id, in the order they joined (the host first)."""
        return MappingProxyType(self._members)

    @property
    def items(self) -> Mapping[str, CartItem]:
        """Items by item id, in the order they were added."""
        return MappingProxyType(self._items)

    def is_member(self, user_id: str) -> bool:
        return user_id in self._members

    def items_of(self, user_id: str) -> tuple[CartItem, ...]:
        return tuple(item for item in self._items.values() if item.user_id == user_id)

    @property
    def member_subtotals(self) -> dict[str, int]:
        """Every member's subtotal (0 for no items), in join order."""
        subtotals = dict.fromkeys(self._members, 0)
        for item in self._items.values():
            subtotals[item.user_id] += item.line_total_minor
        return subtotals

    @property
    def subtotal_minor(self) -> int:
        return sum(item.line_total_minor for item in self._items.values())

    def share_of(self, user_id: str) -> int:
        """What the member pays under the current quote (0 while there is no quote): their
        share by subtotal, unless the host pays it, covers it or gives an allowance."""
        return self.quote.owed_by(user_id) if self.quote is not None else 0

    def raw_share_of(self, user_id: str) -> int:
        """The member's share of the total in proportion to their subtotal."""
        return self.quote.share_of(user_id) if self.quote is not None else 0

    @property
    def has_payment_activity(self) -> bool:
        """True once any member has committed to COD, started paying or paid."""
        return any(m.payment.status not in INACTIVE_STATUSES for m in self._members.values())

    @property
    def paid_online_members(self) -> tuple[Member, ...]:
        """Members whose online payment was captured: the ones to refund on cancel or expiry."""
        return tuple(
            member
            for member in self._members.values()
            if member.payment.status is PaymentStatus.PAID_ONLINE
        )

    def pull_events(self) -> list[CartEvent]:
        """Hand over the events recorded since the last call (for the outbox)."""
        events, self._pending_events = self._pending_events, []
        return events

    # --- membership ---------------------------------------------------------------------------

    def join(self, user_id: str, display_name: str, now: datetime) -> None:
        """Add a guest. A member joining again is a no-op, whatever the cart's state. A guest
        the host removed can't come back with the same invite (``RemovedFromCart``); a guest
        who left can. A cart takes at most ``MAX_MEMBERS`` (``CartFull``)."""
        if user_id in self._members:
            return
        if user_id in self.removed_user_ids:
            raise errors.RemovedFromCart()
        if self.status in (CartStatus.LOCKED, CartStatus.READY_TO_CONFIRM):
            raise errors.CartLocked(
                "The group has locked this cart and is paying, so nobody new can join; "
                "ask the host to unlock it or to open a new cart."
            )
        self._require_open()
        if len(self._members) >= MAX_MEMBERS:
            raise errors.CartFull(f"This cart already has {MAX_MEMBERS} members.")
        cleaned = _clean_display_name(display_name)
        self._members[user_id] = Member(user_id, cleaned, MemberRole.GUEST, False, now)
        self._record(
            MemberJoined(
                cart_id=self.id,
                version=self._next_version(),
                user_id=user_id,
                display_name=cleaned,
                joined_at=now,
            )
        )

    def remove_member(self, actor: str, user_id: str) -> None:
        """The host removes a guest, or a guest leaves; their items go with them."""
        self._member(actor)
        if user_id not in self._members:
            raise errors.MemberNotFound()
        if actor != self.host_user_id and actor != user_id:
            raise errors.HostOnly("Only the host may remove another member.")
        if user_id == self.host_user_id:
            raise errors.HostCannotLeave()
        locked = self.status in (CartStatus.LOCKED, CartStatus.READY_TO_CONFIRM)
        self._check_removable(actor, user_id, locked=locked)
        members_before, items_before = dict(self._members), dict(self._items)
        removed_before, version_before = self.removed_user_ids, self.version
        events_before = list(self._pending_events)
        removed_item_ids = tuple(item.item_id for item in self.items_of(user_id))
        for item_id in removed_item_ids:
            del self._items[item_id]
        del self._members[user_id]
        if actor != user_id:
            self.removed_user_ids |= {user_id}
        self._record(
            MemberLeft(
                cart_id=self.id,
                version=self._next_version(),
                user_id=user_id,
                removed_by_host=actor != user_id,
                removed_item_ids=removed_item_ids,
            )
        )
        if locked:
            try:
                if self.subtotal_minor == 0:
                    raise errors.ZeroSubtotal("Removing them would leave nothing in the cart.")
                self._requote_if_locked("member_removed")
            except errors.DomainError:
                # Refused: the cart is as it was (nothing recorded is kept either).
                self._members, self._items = members_before, items_before
                self.removed_user_ids, self.version = removed_before, version_before
                self._pending_events = events_before
                raise

    def _check_removable(self, actor: str, user_id: str, *, locked: bool) -> None:
        """While open anyone may go; after lock only the host removes, and only a guest with
        nothing paid or under way (the others' amounts stay; the host absorbs the change)."""
        if not (locked and actor == self.host_user_id):
            self._require_open()
            return
        status = self._members[user_id].payment.status
        if status not in (PaymentStatus.NONE, PaymentStatus.FAILED):
            raise errors.AlreadyPaid(
                f"That member's payment is {status}: a member who paid or committed stays."
            )

    def rotate_invite(self, actor: str, invite_code: str) -> None:
        """A new invite code (host, while the cart is open or locked): the old link stops
        working; members stay."""
        self._host(actor)
        if self.status not in (CartStatus.OPEN, CartStatus.LOCKED, CartStatus.READY_TO_CONFIRM):
            raise errors.CartNotOpen(f"The cart is {self.status}: it takes nobody new.")
        if len(invite_code) < _INVITE_CODE_MIN_LENGTH or not set(invite_code).issubset(
            _INVITE_CODE_ALPHABET
        ):
            raise ValueError("invite code must be >= 22 URL-safe characters")
        if invite_code == self.invite_code:
            return
        self.invite_code = invite_code
        self._record(
            InviteRotated(cart_id=self.id, version=self._next_version(), invite_code=invite_code)
        )

    def set_ready(self, actor: str, ready: bool) -> None:
        """Set the actor's own lobby flag; setting it to the value it has is a no-op."""
        member = self._member(actor)
        self._require_open()
        if member.ready == ready:
            return
        self._members[actor] = replace(member, ready=ready)
        self._record(
            MemberReadyChanged(
                cart_id=self.id, version=self._next_version(), user_id=actor, ready=ready
            )
        )

    # --- items --------------------------------------------------------------------------------

    def add_item(
        self,
        actor: str,
        item_id: str,
        product: ProductSnapshot,
        quantity: int,
        options: Sequence[str],
        now: datetime,
    ) -> None:
        """Add a line for the actor, priced from the product snapshot and the chosen options.

        Adding the same product with the same options again makes a second line.
        """
        self._member(actor)
        self._require_open()
        if product.store_id != self.store.store_id:
            raise errors.ProductNotFound(
                f"Product {product.product_id!r} is not sold by this store."
            )
        _check_quantity(quantity)
        chosen, unit_price = price_options(product, options)
        if item_id in self._items:
            raise ValueError(f"item id {item_id!r} is already used in this cart")
        self._check_spending_limit(
            actor, self.member_subtotals.get(actor, 0) + unit_price * quantity
        )
        item = CartItem(
            item_id=item_id,
            user_id=actor,
            product_id=product.product_id,
            name=product.name,
            unit_price_minor=unit_price,
            quantity=quantity,
            options=chosen,
        )
        self._items[item_id] = item
        self._record(
            ItemAdded(
                cart_id=self.id,
                version=self._next_version(),
                item_id=item_id,
                user_id=actor,
                product_id=item.product_id,
                product_name=item.name,
                unit_price_minor=item.unit_price_minor,
                quantity=item.quantity,
                options=item.options,
                line_total_minor=item.line_total_minor,
                added_at=now,
            )
        )
        self._clear_ready(actor)

    def change_item_quantity(self, actor: str, item_id: str, quantity: int) -> None:
        """Change the quantity of one of the actor's items; the same quantity is a no-op."""
        item = self._owned_item(actor, item_id)
        self._require_open()
        _check_quantity(quantity)
        if item.quantity == quantity:
            return
        if quantity > item.quantity:
            more = item.unit_price_minor * (quantity - item.quantity)
            self._check_spending_limit(actor, self.member_subtotals.get(actor, 0) + more)
        changed = replace(item, quantity=quantity)
        self._items[item_id] = changed
        self._record(
            ItemQuantityChanged(
                cart_id=self.id,
                version=self._next_version(),
                item_id=item_id,
                user_id=actor,
                quantity=quantity,
                line_total_minor=changed.line_total_minor,
            )
        )
        self._clear_ready(actor)

    def remove_item(self, actor: str, item_id: str) -> None:
        """Remove one of the actor's items."""
        self._owned_item(actor, item_id)
        self._require_open()
        del self._items[item_id]
        self._record(
            ItemRemoved(
                cart_id=self.id, version=self._next_version(), item_id=item_id, user_id=actor
            )
        )
        self._clear_ready(actor)

    # --- locking and the quote ----------------------------------------------------------------

    def lock(self, actor: str, now: datetime) -> None:
        """Freeze the items and price the cart (host, open, at least one priced item)."""
        self._host(actor)
        self._require_open()
        self._require_lockable()
        self._lock(now, by_deadline=False)

    def unlock(self, actor: str) -> None:
        """Back to open (host; only while nobody has committed, started paying or paid)."""
        self._host(actor)
        if self.status not in (CartStatus.LOCKED, CartStatus.READY_TO_CONFIRM):
            raise errors.CartNotLocked(f"The cart is {self.status}, not locked.")
        self._require_no_payment_activity()
        self.status = CartStatus.OPEN
        self.locked_at = None
        self.quote = None
        self.tip_minor = 0
        self.coupon = None
        for user_id, member in self._members.items():
            self._members[user_id] = replace(member, payment=NO_PAYMENT)
        self._record(CartUnlocked(cart_id=self.id, version=self._next_version()))

    def set_tip(
        self, actor: str, amount_minor: int, *, max_tip_bps: int = DEFAULT_MAX_TIP_BPS
    ) -> None:
        """Set the tip and re-price (host, locked, before any payment activity).

        The tip is at most ``max_tip_bps`` of the subtotal (the store's setting, 100 % by
        default; ``TipTooHigh``): a slip of the keyboard must not turn a $20 lunch into a
        $100,000 one that every member is then asked to pay a share of."""
        self._host(actor)
        self._require_locked()
        self._require_no_payment_activity()
        if not is_whole_number(amount_minor) or amount_minor < 0:
            raise errors.InvalidTip()
        limit = max_tip_for(self.subtotal_minor, max_tip_bps)
        if amount_minor > limit:
            raise errors.TipTooHigh(limit, max_tip_bps)
        if amount_minor == self.tip_minor:
            return
        self.tip_minor = amount_minor
        quote = self._requote()
        self._record(
            TipSet(
                cart_id=self.id,
                version=self._next_version(),
                tip_minor=amount_minor,
                quote_version=self.quote_version,
                quote=quote,
            )
        )
        self._become_ready_if_settled()

    def apply_coupon(self, actor: str, coupon: CouponTerms) -> None:
        """Apply (or replace) the cart's coupon and re-price; the same code again is a no-op."""
        self._host(actor)
        self._require_locked()
        self._require_no_payment_activity()
        if self.coupon is not None and self.coupon.code == coupon.code:
            return
        if coupon.exhausted:
            raise errors.CouponExhausted()
        if self.subtotal_minor < coupon.min_subtotal_minor:
            raise errors.CouponMinSubtotalNotMet()
        self.coupon = coupon
        quote = self._requote()
        self._record(
            CouponApplied(
                cart_id=self.id,
                version=self._next_version(),
                code=coupon.code,
                quote_version=self.quote_version,
                quote=quote,
            )
        )
        self._become_ready_if_settled()

    def remove_coupon(self, actor: str) -> None:
        """Remove the cart's coupon and re-price; with no coupon it is a no-op."""
        self._host(actor)
        self._require_locked()
        self._require_no_payment_activity()
        if self.coupon is None:
            return
        code = self.coupon.code
        self.coupon = None
        quote = self._requote()
        self._record(
            CouponRemoved(
                cart_id=self.id,
                version=self._next_version(),
                code=code,
                quote_version=self.quote_version,
                quote=quote,
            )
        )

    # --- payments -----------------------------------------------------------------------------

    def commit_cod(self, actor: str) -> None:
        """The actor commits to paying their whole share cash on delivery.

        Committing again is a no-op; after paying online it is refused (``AlreadyPaid``).
        """
        member = self._member(actor)
        if member.payment.status is PaymentStatus.COD_COMMITTED:
            return
        if member.payment.status in (
            PaymentStatus.PAID_ONLINE,
            PaymentStatus.REVIEW,
            PaymentStatus.AUTHORIZED,
        ):
            raise errors.AlreadyPaid()
        if self.status not in (CartStatus.LOCKED, CartStatus.READY_TO_CONFIRM):
            raise errors.CartNotLocked(f"The cart is {self.status}, not locked.")
        share = self.share_of(actor)
        if share == 0:
            raise errors.NothingOwed()
        self._members[actor] = replace(
            member,
            payment=MemberPayment(PaymentStatus.COD_COMMITTED, PaymentMethod.COD, share, None),
        )
        self._record(
            CodCommitted(
                cart_id=self.id,
                version=self._next_version(),
                user_id=actor,
                amount_minor=share,
                currency=self.currency,
            )
        )
        self._become_ready_if_settled()

    def record_online_payment(
        self,
        user_id: str,
        amount_minor: int,
        currency: str,
        quote_version: int,
        payment_intent_id: str,
        *,
        refunded_minor: int = 0,
        disputed: bool = False,
        authorized: bool = False,
    ) -> CaptureOutcome:
        """Record what Stripe says a member's PaymentIntent captured (from a webhook).

        ``refunded_minor`` and ``disputed`` say what has happened to that capture since, as
        far as we know: Stripe does not order its events, so a refund or a dispute may be
        reported before the capture. A capture that was refunded or disputed is never
        recorded as paid: refunded in full, the member shows ``refunded`` (if they had no
        other settled payment) and nothing more is owed back; disputed or partly refunded,
        it goes to ``review`` for an operator (a refund in full comes first: the money is
        back, whatever the dispute says).

        The same PaymentIntent again is a no-op (``UNCHANGED``). Refused when the member
        already paid another way or committed to cash (``AlreadyPaid``), when it was made
        against another quote (``QuoteChanged``), in another currency, for another amount
        (``AmountMismatch``), or when the cart is not locked: the caller must then refund it.
        """
        member = self._members.get(user_id)
        if member is None:
            raise errors.MemberNotFound()
        payment = member.payment
        held = self._hold_reported(user_id, payment_intent_id, authorized=authorized)
        if held is not None:
            return held
        settled_before = self._capture_settled_before(
            user_id, payment_intent_id, amount_minor, refunded_minor, disputed=disputed
        )
        if settled_before is not None:
            return settled_before
        if payment.status in SETTLED_STATUSES or payment.status is PaymentStatus.REVIEW:
            raise errors.AlreadyPaid(f"The member's payment is already {payment.status}.")
        if self.status not in (CartStatus.LOCKED, CartStatus.READY_TO_CONFIRM):
            raise errors.CartNotLocked(f"The cart is {self.status}, not locked.")
        if quote_version != self.quote_version:
            raise errors.QuoteChanged(
                f"Paid against quote {quote_version}, the cart is at {self.quote_version}."
            )
        if currency != self.currency:
            raise errors.CurrencyMismatch(f"Paid in {currency}, owed in {self.currency}.")
        share = self.share_of(user_id)
        if share == 0:
            raise errors.NothingOwed()
        if amount_minor != share:
            raise errors.AmountMismatch(f"Paid {amount_minor}, owed {share}.")
        status = PaymentStatus.AUTHORIZED if authorized else PaymentStatus.PAID_ONLINE
        self._members[user_id] = replace(
            member,
            payment=MemberPayment(status, PaymentMethod.ONLINE, share, payment_intent_id),
        )
        event_type = PaymentAuthorized if authorized else OnlinePaymentRecorded
        self._record(
            event_type(
                cart_id=self.id,
                version=self._next_version(),
                user_id=user_id,
                amount_minor=share,
                currency=currency,
                payment_intent_id=payment_intent_id,
            )
        )
        self._become_ready_if_settled()
        return CaptureOutcome.RECORDED

    def _hold_reported(
        self, user_id: str, payment_intent_id: str, *, authorized: bool
    ) -> CaptureOutcome | None:
        """A report of the member's own hold: told again, or captured (by confirm, or a
        confirm that stopped half way); ``None`` for anything else."""
        payment = self._members[user_id].payment
        if payment.reference != payment_intent_id or payment.status is not PaymentStatus.AUTHORIZED:
            return None
        if authorized:
            return CaptureOutcome.UNCHANGED
        self.note_captured(user_id, payment_intent_id)
        return CaptureOutcome.RECORDED

    @property
    def holds(self) -> tuple[tuple[str, str], ...]:
        """``(user_id, payment_intent_id)`` of every card authorised and not captured yet."""
        return tuple(
            (member.user_id, member.payment.reference)
            for member in self._members.values()
            if member.payment.status is PaymentStatus.AUTHORIZED and member.payment.reference
        )

    def note_captured(self, user_id: str, payment_intent_id: str) -> None:
        """The member's hold was captured: they have paid (``OnlinePaymentRecorded``)."""
        member = self._members[user_id]
        payment = member.payment
        if payment.status is not PaymentStatus.AUTHORIZED or payment.reference != payment_intent_id:
            return
        self._members[user_id] = replace(
            member, payment=replace(payment, status=PaymentStatus.PAID_ONLINE)
        )
        self._record(
            OnlinePaymentRecorded(
                cart_id=self.id,
                version=self._next_version(),
                user_id=user_id,
                amount_minor=payment.amount_minor,
                currency=self.currency,
                payment_intent_id=payment_intent_id,
            )
        )

    def release_holds(self) -> tuple[str, ...]:
        """A cancelled or expired cart lets every hold go (no refund, no fee): those members
        owe nothing any more. The intents to cancel at Stripe."""
        if self.status not in (CartStatus.CANCELLED, CartStatus.EXPIRED):
            raise errors.CartNotOpen(f"The cart is {self.status}; only an ended cart releases.")
        released = []
        for user_id, intent in self.holds:
            self._members[user_id] = replace(self._members[user_id], payment=NO_PAYMENT)
            self._record(
                PaymentCanceled(
                    cart_id=self.id,
                    version=self._next_version(),
                    user_id=user_id,
                    payment_intent_id=intent,
                )
            )
            released.append(intent)
        return tuple(released)

    def _capture_settled_before(
        self,
        user_id: str,
        payment_intent_id: str,
        amount_minor: int,
        refunded_minor: int,
        *,
        disputed: bool,
    ) -> CaptureOutcome | None:
        """What became of a capture before it was reported, if anything: recorded already,
        refunded in full (the member shows refunded), disputed or partly refunded (review)."""
        payment = self._members[user_id].payment
        if payment.reference == payment_intent_id and payment.status in (
            PaymentStatus.PAID_ONLINE,
            PaymentStatus.REFUNDED,
            PaymentStatus.REVIEW,
        ):
            return CaptureOutcome.UNCHANGED
        if refunded_minor >= amount_minor > 0:
            self.record_refund(user_id, payment_intent_id, refunded_minor)
            return CaptureOutcome.ALREADY_REFUNDED
        if disputed or refunded_minor > 0:
            self._hold_for_review(user_id, payment_intent_id, amount_minor)
            return CaptureOutcome.UNDER_REVIEW
        return None

    def mark_payment_failed(self, user_id: str, payment_intent_id: str) -> None:
        """Note that the member's online attempt failed, so they can try again.

        A no-op when the member has already committed or paid (an abandoned attempt failing
        changes nothing), when this failure is already noted, and when another attempt of
        theirs is pending (an old attempt failing late must not hide the one under way).
        """
        member = self._members.get(user_id)
        if member is None:
            raise errors.MemberNotFound()
        payment = member.payment
        if payment.status not in (PaymentStatus.NONE, PaymentStatus.PENDING, PaymentStatus.FAILED):
            return
        if payment.status is PaymentStatus.FAILED and payment.reference == payment_intent_id:
            return
        if payment.status is PaymentStatus.PENDING and payment.reference != payment_intent_id:
            return
        self._require_locked()
        self._members[user_id] = replace(
            member,
            payment=MemberPayment(PaymentStatus.FAILED, PaymentMethod.ONLINE, 0, payment_intent_id),
        )
        self._record(
            PaymentFailed(
                cart_id=self.id,
                version=self._next_version(),
                user_id=user_id,
                payment_intent_id=payment_intent_id,
            )
        )

    def record_refund(self, user_id: str, payment_intent_id: str, amount_minor: int) -> None:
        """Note that an online payment of this member was refunded; works in any cart state.

        The member's payment becomes ``refunded`` when it was this PaymentIntent, or when the
        member had no settled payment (a stray payment we refunded: they see it came back).
        A refund of a duplicate payment leaves a member who paid or committed otherwise as
        they are. Refunding a settled payment of a ready cart locks it again.
        """
        member = self._members.get(user_id)
        if member is None:
            raise errors.MemberNotFound()
        payment = member.payment
        ours = payment.reference == payment_intent_id
        unsettled = payment.status in (
            PaymentStatus.NONE,
            PaymentStatus.PENDING,
            PaymentStatus.FAILED,
        )
        if not ours and not unsettled:
            return
        if ours and payment.status is PaymentStatus.REFUNDED:
            return
        self._members[user_id] = replace(
            member,
            payment=MemberPayment(
                PaymentStatus.REFUNDED, PaymentMethod.ONLINE, amount_minor, payment_intent_id
            ),
        )
        self._record(
            PaymentRefunded(
                cart_id=self.id,
                version=self._next_version(),
                user_id=user_id,
                amount_minor=amount_minor,
                payment_intent_id=payment_intent_id,
            )
        )
        self._reopen_if_unsettled()

    def flag_payment_for_review(self, user_id: str, payment_intent_id: str) -> bool:
        """A dispute was opened on this member's payment: it needs an operator's look.

        Returns whether the PaymentIntent was this member's recorded payment (else nothing
        changes: the caller still records the dispute, and a capture of that intent reported
        later goes to review, see ``record_online_payment``).
        """
        member = self._members.get(user_id)
        if member is None:
            raise errors.MemberNotFound()
        recorded = (PaymentStatus.PAID_ONLINE, PaymentStatus.REVIEW, PaymentStatus.REFUNDED)
        if member.payment.reference != payment_intent_id or member.payment.status not in recorded:
            return False  # e.g. a failed attempt's id: its capture was never recorded
        self._hold_for_review(user_id, payment_intent_id, member.payment.amount_minor)
        return True

    def _hold_for_review(self, user_id: str, payment_intent_id: str, amount_minor: int) -> None:
        """The member's payment by this intent is in ``review``: not paid, money held.

        A member whose payment is settled by other means keeps it, and a refunded payment
        stays refunded (the dispute is still on record with the caller); the cart is
        reopened if it counted on this payment."""
        member = self._members[user_id]
        payment = member.payment
        ours = payment.reference == payment_intent_id
        if ours and payment.status in (PaymentStatus.REVIEW, PaymentStatus.REFUNDED):
            return  # a refunded payment stays refunded: its status never moves backward
        if not ours and payment.status in (*SETTLED_STATUSES, PaymentStatus.REVIEW):
            return
        self._members[user_id] = replace(
            member,
            payment=MemberPayment(
                PaymentStatus.REVIEW, PaymentMethod.ONLINE, amount_minor, payment_intent_id
            ),
        )
        self._record(
            PaymentUnderReview(
                cart_id=self.id,
                version=self._next_version(),
                user_id=user_id,
                payment_intent_id=payment_intent_id,
            )
        )
        self._reopen_if_unsettled()

    # --- the end of the cart ------------------------------------------------------------------

    def confirm(
        self,
        actor: str,
        order_id: str,
        order_number: str,
        delivery_address: DeliveryAddress,
        now: datetime,
        store_name: str = "",
    ) -> Order:
        """Turn a ready cart into a placed Order (host only); the cart becomes ``converted``.
        Cards held for capture on confirm must have been captured first (``note_captured``)."""
        self.check_confirmable(actor)
        if self.holds:
            raise errors.CartNotReady("Capture the held cards before confirming.")
        quote = self.quote
        assert quote is not None  # a ready cart is priced
        order = Order.place(
            order_id=order_id,
            number=order_number,
            cart_id=self.id,
            store_id=self.store.store_id,
            currency=self.currency,
            host_user_id=self.host_user_id,
            lines=[
                OrderLine(
                    product_id=item.product_id,
                    name=item.name,
                    options=item.options,
                    unit_price_minor=item.unit_price_minor,
                    quantity=item.quantity,
                    line_total_minor=item.line_total_minor,
                    user_id=item.user_id,
                )
                for item in self._items.values()
            ],
            totals=quote.totals,
            payments=[
                OrderPayment(
                    user_id=member.user_id,
                    method=member.payment.method,
                    amount_minor=member.payment.amount_minor,
                    status=member.payment.status,
                    reference=member.payment.reference,
                    display_name=member.display_name,
                )
                for member in self._members.values()
                if quote.owed_by(member.user_id) > 0 and member.payment.method is not None
            ],
            delivery_address=delivery_address,
            coupon_code=self.coupon.code if self.coupon is not None else None,
            now=now,
            store_name=store_name,
        )
        self.status = CartStatus.CONVERTED
        self.order_id = order_id
        self._record(
            CartConverted(
                cart_id=self.id,
                version=self._next_version(),
                order_id=order_id,
                order_number=order_number,
                converted_at=now,
            )
        )
        return order

    def check_confirmable(self, actor: str) -> None:
        """The host may confirm now: the cart is ready (the checks of ``confirm``, made before
        anything is asked of Stripe)."""
        self._host(actor)
        if self.status is not CartStatus.READY_TO_CONFIRM or self.quote is None:
            raise errors.CartNotReady(f"The cart is {self.status}, not ready to confirm.")

    def cancel(self, actor: str, now: datetime) -> None:
        """Cancel the cart (host; open, locked or ready). Refund ``paid_online_members``."""
        self._host(actor)
        if self.status not in (CartStatus.OPEN, CartStatus.LOCKED, CartStatus.READY_TO_CONFIRM):
            raise errors.CartNotOpen(f"The cart is already {self.status}.")
        self.status = CartStatus.CANCELLED
        self._record(CartCancelled(cart_id=self.id, version=self._next_version(), cancelled_at=now))

    def payable_share(self, user_id: str) -> int:
        """What the member may start paying online now: their share, if the cart is locked,
        they have not paid or committed, and they owe something."""
        member = self._member(user_id)
        if self.status is not CartStatus.LOCKED:
            raise errors.CartNotLocked(
                f"The cart is {self.status}; online payment needs it locked."
            )
        if member.payment.status not in PAYABLE_STATUSES:
            raise errors.AlreadyPaid(f"Your payment is already {member.payment.status}.")
        share = self.share_of(user_id)
        if share == 0:
            raise errors.NothingOwed()
        return share

    def start_online_payment(
        self, user_id: str, payment_intent_id: str, quote_version: int
    ) -> None:
        """The member's PaymentIntent for their share of quote ``quote_version`` is open:
        their payment shows ``pending``, and while it does nobody changes what members owe
        (tip, coupon, unlock: ``PaymentActivityStarted``). Starting the same intent again is
        a no-op; another one replaces it (the caller cancels the one it replaces)."""
        share = self.payable_share(user_id)
        if quote_version != self.quote_version:
            raise errors.QuoteChanged("The cart's quote changed; start the payment again.")
        member = self._members[user_id]
        if member.payment.reference == payment_intent_id:
            return
        self._members[user_id] = replace(
            member,
            payment=MemberPayment(
                PaymentStatus.PENDING, PaymentMethod.ONLINE, share, payment_intent_id
            ),
        )
        self._record(
            PaymentStarted(
                cart_id=self.id,
                version=self._next_version(),
                user_id=user_id,
                amount_minor=share,
                payment_intent_id=payment_intent_id,
            )
        )

    def note_payment_canceled(self, user_id: str, payment_intent_id: str) -> None:
        """The member's pending PaymentIntent was canceled unpaid: they owe it as before.
        Anything but that pending intent is left as it is."""
        member = self._members.get(user_id)
        if member is None:
            raise errors.MemberNotFound()
        payment = member.payment
        if payment.status is not PaymentStatus.PENDING or payment.reference != payment_intent_id:
            return
        self._members[user_id] = replace(member, payment=NO_PAYMENT)
        self._record(
            PaymentCanceled(
                cart_id=self.id,
                version=self._next_version(),
                user_id=user_id,
                payment_intent_id=payment_intent_id,
            )
        )

    @property
    def pending_payments(self) -> tuple[tuple[str, str], ...]:
        """``(user_id, payment_intent_id)`` of every payment under way: a cancelled or
        expired cart cancels those intents, so nobody pays into an abandoned cart."""
        return tuple(
            (member.user_id, member.payment.reference)
            for member in self._members.values()
            if member.payment.status is PaymentStatus.PENDING and member.payment.reference
        )

    def refund_paid_members(self) -> tuple[OwedRefund, ...]:
        """A cancelled or expired cart gives every captured online payment back: each member
        who paid online now shows ``refunded``. Returns the refunds to ask Stripe for."""
        if self.status not in (CartStatus.CANCELLED, CartStatus.EXPIRED):
            raise errors.CartNotOpen(f"The cart is {self.status}; only an ended cart refunds.")
        owed = []
        for member in self.paid_online_members:
            reference = member.payment.reference
            assert reference is not None, "an online payment always has its intent's id"
            owed.append(OwedRefund(member.user_id, reference, member.payment.amount_minor))
            self.record_refund(member.user_id, reference, member.payment.amount_minor)
        return tuple(owed)

    def expire_if_due(self, now: datetime, payment_window: timedelta) -> bool:
        """Apply the deadline rules; returns whether the cart changed.

        An open cart past its deadline is locked if it has priced items, otherwise expired. A
        locked cart still not ready once ``payment_window`` has passed since it was locked
        expires. A ``ready_to_confirm`` cart waits for the host for one more window (its
        confirm window), then expires too: members' money is never held for ever by a host
        who walked away. Whoever expires it refunds ``refund_paid_members``.
        """
        if self.status is CartStatus.OPEN and self.deadline is not None and now > self.deadline:
            if self.subtotal_minor > 0:
                self._lock(now, by_deadline=True)
            else:
                self.expire(now)
            return True
        if self.locked_at is None:
            return False
        if self.capture is Capture.ON_CONFIRM:
            payment_window = hold_window(payment_window)
        if (self.status is CartStatus.LOCKED and now > self.locked_at + payment_window) or (
            self.status is CartStatus.READY_TO_CONFIRM
            and now > self.locked_at + CONFIRM_WINDOWS * payment_window
        ):
            self.expire(now)
            return True
        return False

    def expire(self, now: datetime) -> None:
        """Expire an open, locked or ready cart now (the sweeper's decision: a deadline or a
        window passed, or stock ran out)."""
        if self.status not in (CartStatus.OPEN, CartStatus.LOCKED, CartStatus.READY_TO_CONFIRM):
            raise errors.CartNotOpen(
                f"The cart is {self.status}; only open, locked or ready carts expire."
            )
        self.status = CartStatus.EXPIRED
        self._record(CartExpired(cart_id=self.id, version=self._next_version(), expired_at=now))

    # --- rules shared by the commands ---------------------------------------------------------

    def _member(self, actor: str) -> Member:
        member = self._members.get(actor)
        if member is None:
            raise errors.NotAMember()
        return member

    def _host(self, actor: str) -> Member:
        member = self._member(actor)
        if not member.is_host:
            raise errors.HostOnly()
        return member

    def _owned_item(self, actor: str, item_id: str) -> CartItem:
        self._member(actor)
        item = self._items.get(item_id)
        if item is None:
            raise errors.ItemNotFound()
        if item.user_id != actor:
            raise errors.NotItemOwner()
        return item

    def _require_open(self) -> None:
        if self.status in (CartStatus.LOCKED, CartStatus.READY_TO_CONFIRM):
            raise errors.CartLocked()
        if self.status is not CartStatus.OPEN:
            raise errors.CartNotOpen(f"The cart is {self.status}.")

    def _require_locked(self) -> None:
        if self.status is not CartStatus.LOCKED:
            raise errors.CartNotLocked(f"The cart is {self.status}, not locked.")

    def _require_no_payment_activity(self) -> None:
        if self.has_payment_activity:
            raise errors.PaymentActivityStarted()

    def _require_lockable(self) -> None:
        if not self._items:
            raise errors.EmptyCart()
        if self.subtotal_minor == 0:
            raise errors.ZeroSubtotal()

    def _lock(self, now: datetime, *, by_deadline: bool) -> None:
        self.status = CartStatus.LOCKED
        self.locked_at = now
        quote = self._requote()
        self._record(
            CartLocked(
                cart_id=self.id,
                version=self._next_version(),
                locked_at=now,
                quote_version=self.quote_version,
                quote=quote,
                by_deadline=by_deadline,
            )
        )
        self._become_ready_if_settled()

    def _requote(self) -> Quote:
        """Price the cart again: the shares by subtotal, then what each member pays
        (``owed_amounts``): nobody who paid, committed or is paying owes a different amount,
        and the host's share absorbs the change (``CartOverCommitted`` when it can't)."""
        raw = compute_quote(
            self.member_subtotals,
            self.store.delivery_fee_minor,
            self.store.tax_rate_bps,
            self.tip_minor,
            self.coupon,
        )
        fixed = {
            member.user_id: member.payment.amount_minor
            for member in self._members.values()
            if member.payment.status in FIXED_STATUSES
        }
        try:
            owes = owed_amounts(
                raw.shares,
                self.host_user_id,
                host_pays=self.payment_mode is PaymentMode.HOST_PAYS,
                allowance_minor=self.allowance_minor,
                covered={m.user_id for m in self._members.values() if m.covered},
                fixed=fixed,
            )
        except OverCommitted as exc:
            raise errors.CartOverCommitted() from exc
        self.quote = Quote(raw.totals, raw.shares, owes)
        self.quote_version += 1
        return self.quote

    def _requote_if_locked(self, reason: str) -> None:
        """A locked cart is priced again (``CartRequoted``) and may become ready."""
        if self.status not in (CartStatus.LOCKED, CartStatus.READY_TO_CONFIRM):
            return
        quote = self._requote()
        self._record(
            CartRequoted(
                cart_id=self.id,
                version=self._next_version(),
                quote_version=self.quote_version,
                quote=quote,
                reason=reason,
            )
        )
        self._reopen_if_unsettled()
        self._become_ready_if_settled()

    # --- group payment options ----------------------------------------------------------------

    def _require_open_or_unpaid(self) -> None:
        """Who pays what changes while the cart is open, or locked before anyone paid."""
        if self.status is CartStatus.OPEN:
            return
        self._require_locked()
        self._require_no_payment_activity()

    def set_payment_mode(self, actor: str, mode: PaymentMode) -> None:
        """Split (each pays their share) or the host pays for everyone (host)."""
        self._host(actor)
        self._require_open_or_unpaid()
        if mode is self.payment_mode:
            return
        self.payment_mode = mode
        self._record(PaymentModeSet(cart_id=self.id, version=self._next_version(), mode=mode.value))
        self._requote_if_locked("payment_mode")

    def set_allowance(self, actor: str, amount_minor: int | None) -> None:
        """The host pays up to ``amount_minor`` of each guest's share (``None``: none)."""
        self._host(actor)
        self._require_open_or_unpaid()
        if amount_minor is not None and (not is_whole_number(amount_minor) or amount_minor < 0):
            raise errors.InvalidAllowance()
        if amount_minor == self.allowance_minor:
            return
        self.allowance_minor = amount_minor
        self._record(
            AllowanceSet(cart_id=self.id, version=self._next_version(), amount_minor=amount_minor)
        )
        self._requote_if_locked("allowance")

    def set_spending_limit(self, actor: str, amount_minor: int | None) -> None:
        """The most a guest's items may come to while the cart is open (host; ``None``: no
        limit). A guest already past it keeps their items but can't add more."""
        self._host(actor)
        self._require_open()
        if amount_minor is not None and (not is_whole_number(amount_minor) or amount_minor < 0):
            raise errors.InvalidAllowance("A spending limit is a whole amount >= 0.")
        if amount_minor == self.spending_limit_minor:
            return
        self.spending_limit_minor = amount_minor
        self._record(
            SpendingLimitSet(
                cart_id=self.id, version=self._next_version(), amount_minor=amount_minor
            )
        )

    def _check_spending_limit(self, user_id: str, subtotal_after: int) -> None:
        limit = self.spending_limit_minor
        if limit is not None and user_id != self.host_user_id and subtotal_after > limit:
            raise errors.OverSpendingLimit(limit)

    def cover(self, actor: str, user_id: str) -> None:
        """The host takes over a guest who hasn't paid: the host owes that share too, the
        guest nothing (host; locked)."""
        self._host(actor)
        self._require_locked()
        member = self._members.get(user_id)
        if member is None:
            raise errors.MemberNotFound()
        if member.is_host:
            raise errors.HostCannotLeave("The host can't cover themself.")
        if member.payment.status not in (PaymentStatus.NONE, PaymentStatus.FAILED):
            raise errors.AlreadyPaid(
                f"{member.display_name}'s payment is {member.payment.status}: nothing to cover."
            )
        if member.covered:
            return
        version_before, events_before = self.version, list(self._pending_events)
        quote_before, quote_version_before = self.quote, self.quote_version
        self._members[user_id] = replace(member, covered=True, payment=NO_PAYMENT)
        self._record(MemberCovered(cart_id=self.id, version=self._next_version(), user_id=user_id))
        try:
            self._requote_if_locked("cover")
        except errors.DomainError:
            self._members[user_id] = member
            self.version, self._pending_events = version_before, events_before
            self.quote, self.quote_version = quote_before, quote_version_before
            raise

    def _become_ready_if_settled(self) -> None:
        if self.status is not CartStatus.LOCKED:
            return
        if all(
            member.payment.status in SETTLED_STATUSES
            for member in self._members.values()
            if self.share_of(member.user_id) > 0
        ):
            self.status = CartStatus.READY_TO_CONFIRM
            self._record(CartReadyToConfirm(cart_id=self.id, version=self._next_version()))

    def _reopen_if_unsettled(self) -> None:
        if self.status is not CartStatus.READY_TO_CONFIRM:
            return
        if any(
            member.payment.status not in SETTLED_STATUSES
            for member in self._members.values()
            if self.share_of(member.user_id) > 0
        ):
            self.status = CartStatus.LOCKED
            self._record(CartPaymentsReopened(cart_id=self.id, version=self._next_version()))

    def _clear_ready(self, user_id: str) -> None:
        member = self._members[user_id]
        if member.ready:
            self._members[user_id] = replace(member, ready=False)
            self._record(
                MemberReadyChanged(
                    cart_id=self.id, version=self._next_version(), user_id=user_id, ready=False
                )
            )

    def _next_version(self) -> int:
        self.version += 1
        return self.version

    def _record(self, event: CartEvent) -> None:
        self._pending_events.append(event)
