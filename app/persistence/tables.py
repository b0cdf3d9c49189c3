"""Table definitions used by the repositories' queries.

The schema is created and changed only by the Alembic migrations; ``tests/integration/
test_migrations.py`` compares these definitions with the migrated database so they can't drift.

Why one module of this length: it is the whole schema, one table a block, as the migrations
build it.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Sequence,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

NOW = text("now()")

stores = Table(
    "stores",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("name", Text, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("delivery_fee_minor", BigInteger, nullable=False),
    Column("tax_rate_bps", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    # The largest tip a cart of this store may carry, in basis points of its subtotal.
    Column("max_tip_bps", Integer, nullable=False, server_default=text("10000")),
    CheckConstraint("delivery_fee_minor >= 0", name="delivery_fee_not_negative"),
    CheckConstraint("tax_rate_bps BETWEEN 0 AND 10000", name="tax_rate_in_range"),
    CheckConstraint("max_tip_bps BETWEEN 0 AND 10000", name="max_tip_in_range"),
)

products = Table(
    "products",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("store_id", UUID(as_uuid=False), ForeignKey("stores.id"), nullable=False, index=True),
    Column("name", Text, nullable=False),
    Column("price_minor", BigInteger, nullable=False),
    # NULL stock means unlimited; otherwise the units still for sale (reservations subtract).
    Column("stock", Integer, nullable=True),
    Column("option_groups", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    CheckConstraint("price_minor >= 0", name="price_not_negative"),
    CheckConstraint("stock IS NULL OR stock >= 0", name="stock_not_negative"),
)

coupons = Table(
    "coupons",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("store_id", UUID(as_uuid=False), ForeignKey("stores.id"), nullable=False),
    Column("code", Text, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("value", BigInteger, nullable=False),
    Column("min_subtotal_minor", BigInteger, nullable=False),
    Column("max_uses", Integer, nullable=True),
    Column("times_used", Integer, nullable=False, server_default=text("0")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    UniqueConstraint("store_id", "code", name="uq_coupons_store_id_code"),
    CheckConstraint("kind IN ('percent', 'fixed')", name="kind_known"),
    CheckConstraint("value > 0", name="value_positive"),
    CheckConstraint("max_uses IS NULL OR times_used <= max_uses", name="uses_within_limit"),
)

# --- TeamCarts -------------------------------------------------------------------------------

teamcarts = Table(
    "teamcarts",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("store_id", UUID(as_uuid=False), ForeignKey("stores.id"), nullable=False),
    # The store's terms when the cart opened: a cart keeps the prices it was opened with.
    Column("currency", String(3), nullable=False),
    Column("delivery_fee_minor", BigInteger, nullable=False),
    Column("tax_rate_bps", Integer, nullable=False),
    Column("host_user_id", UUID(as_uuid=False), nullable=False),
    Column("invite_code", Text, nullable=False, unique=True),
    Column("status", String(24), nullable=False),
    Column("version", Integer, nullable=False),
    Column("quote_version", Integer, nullable=False),
    Column("deadline", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("locked_at", DateTime(timezone=True), nullable=True),
    Column("tip_minor", BigInteger, nullable=False),
    Column("coupon_code", Text, nullable=True),
    # The quote (NULL while open); each member's share is on teamcart_members.
    Column("subtotal_minor", BigInteger, nullable=True),
    Column("quote_delivery_fee_minor", BigInteger, nullable=True),
    Column("tax_minor", BigInteger, nullable=True),
    Column("quote_tip_minor", BigInteger, nullable=True),
    Column("discount_minor", BigInteger, nullable=True),
    Column("total_minor", BigInteger, nullable=True),
    Column("order_id", UUID(as_uuid=False), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    # When the host of a ready cart was reminded to confirm it (once, by whichever sweeper).
    Column("confirm_reminded_at", DateTime(timezone=True), nullable=True),
    # Guests the host removed: the invite no longer lets them back in.
    Column(
        "removed_user_ids",
        ARRAY(UUID(as_uuid=False)),
        nullable=False,
        server_default=text("'{}'"),
    ),
    # Who pays (split, or the host for everyone), what the host covers of each guest's share,
    # the most a guest may put in while open; capture at payment or on confirm; reminders.
    Column("payment_mode", String(16), nullable=False, server_default=text("'split'")),
    Column("allowance_minor", BigInteger, nullable=True),
    Column("spending_limit_minor", BigInteger, nullable=True),
    Column("capture", String(16), nullable=False, server_default=text("'automatic'")),
    Column("reminder_minutes", Integer, nullable=False, server_default=text("15")),
    CheckConstraint(
        "status IN ('open', 'locked', 'ready_to_confirm', 'converted', 'expired', 'cancelled')",
        name="status_known",
    ),
    CheckConstraint("version >= 1", name="version_positive"),
    CheckConstraint("payment_mode IN ('split', 'host_pays')", name="payment_mode_known"),
)
Index("ix_teamcarts_status_deadline", teamcarts.c.status, teamcarts.c.deadline)

teamcart_members = Table(
    "teamcart_members",
    metadata,
    Column(
        "cart_id",
        UUID(as_uuid=False),
        ForeignKey("teamcarts.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("user_id", UUID(as_uuid=False), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("display_name", Text, nullable=False),
    Column("role", String(8), nullable=False),
    Column("ready", Boolean, nullable=False),
    Column("joined_at", DateTime(timezone=True), nullable=False),
    Column("share_minor", BigInteger, nullable=True),
    Column("payment_status", String(16), nullable=False),
    Column("payment_method", String(8), nullable=True),
    Column("payment_amount_minor", BigInteger, nullable=False),
    Column("payment_reference", Text, nullable=True),
    Column("owes_minor", BigInteger, nullable=True),  # what they pay (share_minor: the raw share)
    Column("covered", Boolean, nullable=False, server_default=text("false")),  # by the host
    CheckConstraint("share_minor IS NULL OR share_minor >= 0", name="share_not_negative"),
    CheckConstraint("owes_minor IS NULL OR owes_minor >= 0", name="owes_not_negative"),
)

cart_reminders = Table(
    "cart_reminders",
    metadata,
    Column(
        "cart_id",
        UUID(as_uuid=False),
        ForeignKey("teamcarts.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("user_id", UUID(as_uuid=False), primary_key=True),
    Column("what", String(16), primary_key=True),  # ready | pay
    Column("deadline", DateTime(timezone=True), primary_key=True),
    Column("sent_at", DateTime(timezone=True), nullable=False, server_default=NOW),
)
Index("ix_teamcart_members_user_id", teamcart_members.c.user_id)

teamcart_items = Table(
    "teamcart_items",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column(
        "cart_id",
        UUID(as_uuid=False),
        ForeignKey("teamcarts.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("position", Integer, nullable=False),
    Column("user_id", UUID(as_uuid=False), nullable=False),
    Column("product_id", UUID(as_uuid=False), ForeignKey("products.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("unit_price_minor", BigInteger, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("options", JSONB, nullable=False),
    CheckConstraint("quantity BETWEEN 1 AND 99", name="quantity_in_range"),
)

# Units taken out of products.stock by a locked cart; given back on unlock, cancel or expiry,
# dropped (the sale is final) on confirm.
stock_reservations = Table(
    "stock_reservations",
    metadata,
    Column(
        "cart_id",
        UUID(as_uuid=False),
        ForeignKey("teamcarts.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("product_id", UUID(as_uuid=False), ForeignKey("products.id"), primary_key=True),
    Column("quantity", Integer, nullable=False),
    CheckConstraint("quantity > 0", name="quantity_positive"),
)

# --- Orders ----------------------------------------------------------------------------------

order_number_seq = Sequence("order_number_seq", metadata=metadata)

orders = Table(
    "orders",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("number", Text, nullable=False, unique=True),
    Column("cart_id", UUID(as_uuid=False), ForeignKey("teamcarts.id"), nullable=True, unique=True),
    Column("store_id", UUID(as_uuid=False), ForeignKey("stores.id"), nullable=False),
    Column("host_user_id", UUID(as_uuid=False), nullable=False, index=True),
    Column("currency", String(3), nullable=False),
    Column("status", String(24), nullable=False),
    Column("version", Integer, nullable=False),
    Column("subtotal_minor", BigInteger, nullable=False),
    Column("delivery_fee_minor", BigInteger, nullable=False),
    Column("tax_minor", BigInteger, nullable=False),
    Column("tip_minor", BigInteger, nullable=False),
    Column("discount_minor", BigInteger, nullable=False),
    Column("total_minor", BigInteger, nullable=False),
    Column("coupon_code", Text, nullable=True),
    Column("delivery_address", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("kind", String(8), nullable=False, server_default=text("'group'")),
    Column("store_name", Text, nullable=False, server_default=text("''")),
    # [{status, at, by_role, reason}], oldest first; {carrier, tracking_number, url} or null.
    Column("history", JSONB, nullable=False, server_default=text("'[]'")),
    Column("tracking", JSONB, nullable=True),
)
Index("ix_orders_created_at_id", orders.c.created_at, orders.c.id)
Index("ix_orders_store_created_at_id", orders.c.store_id, orders.c.created_at, orders.c.id)

order_lines = Table(
    "order_lines",
    metadata,
    Column(
        "order_id",
        UUID(as_uuid=False),
        ForeignKey("orders.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("position", Integer, primary_key=True),
    Column("user_id", UUID(as_uuid=False), nullable=False),
    Column("product_id", UUID(as_uuid=False), ForeignKey("products.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("options", JSONB, nullable=False),
    Column("unit_price_minor", BigInteger, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("line_total_minor", BigInteger, nullable=False),
)

order_payments = Table(
    "order_payments",
    metadata,
    Column(
        "order_id",
        UUID(as_uuid=False),
        ForeignKey("orders.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("user_id", UUID(as_uuid=False), primary_key=True),
    Column("method", String(8), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("reference", Text, nullable=True),
    Column("display_name", Text, nullable=False, server_default=text("''")),
    Column("refunded_minor", BigInteger, nullable=False, server_default=text("0")),
    Column("checkout_session_id", Text, nullable=True),  # a single-payer's Stripe Checkout
)
Index("ix_order_payments_user_id", order_payments.c.user_id)
Index("ix_order_payments_reference", order_payments.c.reference)

store_staff = Table(
    "store_staff",
    metadata,
    Column("store_id", UUID(as_uuid=False), ForeignKey("stores.id"), primary_key=True),
    Column("user_id", UUID(as_uuid=False), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
)
Index("ix_store_staff_user_id", store_staff.c.user_id)

# --- Shop carts (single-payer) ---------------------------------------------------------------

shop_carts = Table(
    "shop_carts",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("user_id", UUID(as_uuid=False), nullable=False),
    Column("store_id", UUID(as_uuid=False), ForeignKey("stores.id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("address", JSONB, nullable=True),
    Column("delivery_method", String(16), nullable=True),
    Column("order_id", UUID(as_uuid=False), ForeignKey("orders.id"), nullable=True),
    Column("version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    CheckConstraint("status IN ('open', 'checked_out', 'merged')", name="status_known"),
)
Index(
    "ix_shop_carts_open_per_user_store",
    shop_carts.c.user_id,
    shop_carts.c.store_id,
    unique=True,
    postgresql_where=shop_carts.c.status == "open",
)
Index("ix_shop_carts_order_id", shop_carts.c.order_id)

shop_cart_items = Table(
    "shop_cart_items",
    metadata,
    Column(
        "cart_id",
        UUID(as_uuid=False),
        ForeignKey("shop_carts.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("item_id", UUID(as_uuid=False), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("product_id", UUID(as_uuid=False), ForeignKey("products.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("options", JSONB, nullable=False),
    Column("unit_price_minor", BigInteger, nullable=False),
    Column("quantity", Integer, nullable=False),
)

# --- Outbox and idempotency ------------------------------------------------------------------

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("aggregate_type", String(16), nullable=False),
    Column("aggregate_id", UUID(as_uuid=False), nullable=False),
    Column("version", Integer, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("dispatched_at", DateTime(timezone=True), nullable=True),
    # Until then only the process that committed the row dispatches it (migration 0006).
    Column("reserved_until", DateTime(timezone=True), nullable=True),
    UniqueConstraint(
        "aggregate_type",
        "aggregate_id",
        "version",
        name="uq_outbox_aggregate_type_aggregate_id_version",
    ),
)
Index("ix_outbox_undispatched", outbox.c.id, postgresql_where=outbox.c.dispatched_at.is_(None))

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("user_id", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("request_hash", Text, nullable=False),
    # NULL while the first request is still being handled.
    Column("status_code", Integer, nullable=True),
    Column("content_type", Text, nullable=True),
    Column("body", LargeBinary, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
)
Index("ix_idempotency_keys_created_at", idempotency_keys.c.created_at)

# A use of a coupon held by the cart that applied it, until it confirms (then it is a use:
# coupons.times_used) or lets go (removal, unlock, cancel, expiry). Uses made plus uses held
# never pass max_uses, so no cart is left unable to confirm.
coupon_reservations = Table(
    "coupon_reservations",
    metadata,
    Column("cart_id", UUID(as_uuid=False), ForeignKey("teamcarts.id"), primary_key=True),
    Column("store_id", UUID(as_uuid=False), nullable=False),
    Column("code", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
)
Index(
    "ix_coupon_reservations_store_id_code",
    coupon_reservations.c.store_id,
    coupon_reservations.c.code,
)

# --- Payments --------------------------------------------------------------------------------

# Every PaymentIntent we created, so a retry reuses the open one and nothing is created twice.
payment_intents = Table(
    "payment_intents",
    metadata,
    Column("id", Text, primary_key=True),  # Stripe's pi_…
    Column("cart_id", UUID(as_uuid=False), ForeignKey("teamcarts.id"), nullable=False),
    Column("user_id", UUID(as_uuid=False), nullable=False),
    Column("quote_version", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("client_secret", Text, nullable=False),
    # open → failed | canceled → succeeded → refunded; never backward (INTENT_STATUS_RANK)
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    UniqueConstraint(
        "cart_id",
        "user_id",
        "quote_version",
        "attempt",
        name="uq_payment_intents_cart_id_user_id_quote_version_attempt",
    ),
)
Index("ix_payment_intents_cart_id_status", payment_intents.c.cart_id, payment_intents.c.status)

# The webhook inbox: one row per Stripe event id, so each event takes effect exactly once.
stripe_events = Table(
    "stripe_events",
    metadata,
    Column("id", Text, primary_key=True),  # Stripe's evt_…
    Column("type", Text, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("reason", Text, nullable=True),
    Column("payment_intent_id", Text, nullable=True),
    Column("cart_id", UUID(as_uuid=False), nullable=True),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=NOW),
)

# Every refund we asked for or Stripe told us about, by Stripe's refund id.
refunds = Table(
    "refunds",
    metadata,
    Column("id", Text, primary_key=True),  # Stripe's re_…
    Column("payment_intent_id", Text, nullable=False, index=True),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(24), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
)

# Every dispute Stripe told us about, by Stripe's dispute id, whatever it concerns: a dispute
# reported before its payment's capture must still keep that capture from counting as paid.
disputes = Table(
    "disputes",
    metadata,
    Column("id", Text, primary_key=True),  # Stripe's du_…
    Column("payment_intent_id", Text, nullable=False, index=True),
    Column("amount", BigInteger, nullable=False),  # Stripe's units
    Column("currency", String(3), nullable=False),
    Column("reason", Text, nullable=False),
    Column("status", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
)

# A refund we owe: written in the same transaction as the decision (a rejected payment, a
# cancelled or expired cart), carried out against Stripe after commit and retried by the
# sweeper until done. So a Stripe failure never undoes the decision, and no decision is lost.
refund_requests = Table(
    "refund_requests",
    metadata,
    # The intent's id for its full refund; ``partial-<uuid>`` for each partial one.
    Column("id", Text, primary_key=True),
    Column("payment_intent_id", Text, nullable=False),
    Column("partial", Boolean, nullable=False, server_default=text("false")),
    Column("refund_id", Text, nullable=True),  # Stripe's, once it made the refund
    Column("cart_id", UUID(as_uuid=False), nullable=True),
    Column("amount", BigInteger, nullable=False),  # Stripe's units: captured, or the part
    Column("currency", String(3), nullable=False),
    Column("reason", Text, nullable=False),
    Column("status", String(16), nullable=False, server_default=text("'pending'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text, nullable=True),
    # When the sweeper may try again (pushed back after each failure), and which round this
    # is: a refund Stripe reports failed opens the next round, with a new idempotency key.
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("round", Integer, nullable=False, server_default=text("1")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    CheckConstraint("status IN ('pending', 'done')", name="status_known"),
)
Index("ix_refund_requests_payment_intent_id", refund_requests.c.payment_intent_id)
Index(
    "ix_refund_requests_pending",
    refund_requests.c.next_attempt_at,
    postgresql_where=refund_requests.c.status == "pending",
)

# --- Users and mail (migration 0013) ---------------------------------------------------------

# Who a person said they are: the name and, if they gave one, the address their mail goes to.
# Guest tokens stay the identity; this row is what mail reads (a token's name is not updated).
users = Table(
    "users",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("display_name", Text, nullable=False),
    Column("email", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    # An account's Argon2id hash (argon2-cffi's encoded form); null for a guest.
    Column("password_hash", Text, nullable=True),
)
# Among accounts an address is taken once, whatever its case (app.persistence.accounts).
Index(
    "ix_users_account_email",
    func.lower(users.c.email),
    unique=True,
    postgresql_where=users.c.password_hash.is_not(None),
)

# One mail planned from an order's outbox event for one recipient (app.mail, ADR 0013): the
# unique key makes a replayed event plan nothing new; the mailer claims pending rows with
# SKIP LOCKED and marks each sent or failed in the claim's transaction.
emails = Table(
    "emails",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),  # also the Message-ID's left part
    # Order mail: the outbox record and order it was planned from. A reminder (migration
    # 0020) is about a cart instead, planned by the sweeper: ``cart_id``, no outbox or order.
    Column("outbox_id", BigInteger, nullable=True),
    Column("user_id", UUID(as_uuid=False), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("order_id", UUID(as_uuid=False), nullable=True, index=True),
    Column("cart_id", UUID(as_uuid=False), nullable=True),
    Column("to_address", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("text_body", Text, nullable=False),
    Column("html_body", Text, nullable=False),
    # pending → sent | failed; never back.
    Column("status", String(16), nullable=False, server_default=text("'pending'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("last_error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("outbox_id", "user_id", "kind", name="uq_emails_outbox_id_user_id_kind"),
    CheckConstraint("status IN ('pending', 'sent', 'failed')", name="status_known"),
    CheckConstraint(
        "(outbox_id IS NOT NULL AND order_id IS NOT NULL) OR cart_id IS NOT NULL",
        name="about_an_order_or_a_cart",
    ),
)
Index(
    "ix_emails_pending",
    emails.c.next_attempt_at,
    postgresql_where=emails.c.status == "pending",
)

# --- referrals (migration 0018, app.referrals, ADR 0017) ---------------------------------

# A user's referral code; the code a cart was created with (fixed then), by cart id: a
# TeamCart's (kind ``teamcart``) or a shop cart's (``shop``).
referral_codes = Table(
    "referral_codes",
    metadata,
    Column("user_id", UUID(as_uuid=False), primary_key=True),
    Column("code", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    UniqueConstraint("code", name="uq_referral_codes_code"),
)
referral_attributions = Table(
    "referral_attributions",
    metadata,
    Column("cart_id", UUID(as_uuid=False), primary_key=True),
    Column("cart_kind", String(16), nullable=False),
    Column("referrer_user_id", UUID(as_uuid=False), nullable=False, index=True),
    Column("referred_user_id", UUID(as_uuid=False), nullable=False),
    Column("code", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    CheckConstraint("cart_kind IN ('teamcart', 'shop')", name="cart_kind_known"),
)

# At most one commission per order; ``reversed_minor`` is what refunds took back so far (the
# sum of its ``commission_reversals``), ``order_version`` the order version it reflects.
commissions = Table(
    "commissions",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("order_id", UUID(as_uuid=False), ForeignKey("orders.id"), nullable=False),
    Column("referrer_user_id", UUID(as_uuid=False), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("reversed_minor", BigInteger, nullable=False, server_default=text("0")),
    Column("status", String(16), nullable=False),
    Column("order_version", Integer, nullable=False),
    Column("order_placed_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("paid_at", DateTime(timezone=True), nullable=True),
    Column("paid_by", UUID(as_uuid=False), nullable=True),
    UniqueConstraint("order_id", name="uq_commissions_order_id"),
    CheckConstraint("status IN ('pending', 'approved', 'paid', 'void')", name="status_known"),
    CheckConstraint("amount_minor >= 0", name="amount_not_negative"),
    CheckConstraint("reversed_minor BETWEEN 0 AND amount_minor", name="reversed_in_range"),
)
Index(
    "ix_commissions_referrer_user_id",
    commissions.c.referrer_user_id,
    commissions.c.order_placed_at,
)
Index("ix_commissions_created_at", commissions.c.created_at)
commission_reversals = Table(
    "commission_reversals",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("commission_id", UUID(as_uuid=False), ForeignKey("commissions.id"), nullable=False),
    Column("outbox_id", BigInteger, nullable=False),
    Column("order_version", Integer, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),  # negative: a failed refund's share back
    Column("refunded_minor", BigInteger, nullable=False),  # the order's, as of that version
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    UniqueConstraint(
        "commission_id",
        "order_version",
        name="uq_commission_reversals_commission_id_order_version",
    ),
)

# The cards (Stripe's fingerprints) each user paid an order with: a referrer's own cards.
referral_fingerprints = Table(
    "referral_fingerprints",
    metadata,
    Column("user_id", UUID(as_uuid=False), primary_key=True),
    Column("fingerprint", Text, primary_key=True, index=True),
    Column("order_id", UUID(as_uuid=False), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
)

# The outbox records the accrual consumed: a replay finds its id here and does nothing.
referral_consumed = Table(
    "referral_consumed",
    metadata,
    Column("outbox_id", BigInteger, primary_key=True),
    Column("order_id", UUID(as_uuid=False), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("consumed_at", DateTime(timezone=True), nullable=False, server_default=NOW),
)

# The decision log: what was decided about each order's commission and why. Append-only: a
# trigger of migration 0018 refuses UPDATE, DELETE and TRUNCATE. One accrual decision per
# order (``subject``: its id), whatever else is logged about it.
audit = Table(
    "audit",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("subject", Text, nullable=False, index=True),
    Column("referrer_user_id", UUID(as_uuid=False), nullable=True, index=True),
    Column("decision", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("amount_minor", BigInteger, nullable=True),
    Column("commission_id", UUID(as_uuid=False), nullable=True),
    Column("outbox_id", BigInteger, nullable=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=NOW),
    CheckConstraint(
        "decision IN ('accrued', 'no_code', 'self_referral', 'below_minimum', 'velocity', "
        "'duplicate', 'reversed', 'voided')",
        name="decision_known",
    ),
)
Index(
    "ix_audit_one_accrual_decision",
    audit.c.subject,
    unique=True,
    postgresql_where=audit.c.decision.in_(
        ["accrued", "no_code", "self_referral", "below_minimum", "velocity"]
    ),
)


# --- Stores get paid: Stripe Connect and per-store payment settings (migration 0019) --------

# What a store takes and what the platform keeps (app.connect). The two Stripe secrets are
# sealed (app.secrets: AES-GCM, the key's id inside the token), never stored in clear.
store_payment_configs = Table(
    "store_payment_configs",
    metadata,
    Column(
        "store_id",
        UUID(as_uuid=False),
        ForeignKey("stores.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("cod_enabled", Boolean, nullable=False, server_default=text("true")),
    Column("online_enabled", Boolean, nullable=False, server_default=text("true")),
    Column("platform_fee_bps", Integer, nullable=False, server_default=text("0")),
    Column("stripe_secret_key_sealed", Text, nullable=True),
    Column("stripe_webhook_secret_sealed", Text, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    CheckConstraint("platform_fee_bps BETWEEN 0 AND 10000", name="platform_fee_in_range"),
)

# A store's Connect account and where its onboarding stands, as account.updated says
# (``state_as_of``: the newest event's ``created`` applied, so an older one never wins).
store_accounts = Table(
    "store_accounts",
    metadata,
    Column(
        "store_id",
        UUID(as_uuid=False),
        ForeignKey("stores.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("account_id", Text, nullable=False, unique=True),
    Column("charges_enabled", Boolean, nullable=False, server_default=text("false")),
    Column("payouts_enabled", Boolean, nullable=False, server_default=text("false")),
    Column("details_submitted", Boolean, nullable=False, server_default=text("false")),
    Column("requirements_due", JSONB, nullable=False, server_default=text("'[]'")),
    Column("state_as_of", BigInteger, nullable=False, server_default=text("0")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
)

# The store's money from one order, once per order (the primary key): a transfer of a group
# order's online money less the fee, or the destination charge of a single-payer order.
# Pending until Stripe made it (retried with backoff, the same idempotency key each time).
store_transfers = Table(
    "store_transfers",
    metadata,
    Column("order_id", UUID(as_uuid=False), ForeignKey("orders.id"), primary_key=True),
    Column("store_id", UUID(as_uuid=False), ForeignKey("stores.id"), nullable=False),
    Column("account_id", Text, nullable=False),
    Column("kind", String(16), nullable=False),  # transfer | destination
    Column("currency", String(3), nullable=False),
    Column("gross_minor", BigInteger, nullable=False),
    Column("fee_minor", BigInteger, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("transfer_group", Text, nullable=True),
    Column("payment_intent_id", Text, nullable=True),
    Column("stripe_transfer_id", Text, nullable=True, unique=True),
    Column("application_fee_id", Text, nullable=True),
    Column("status", String(16), nullable=False, server_default=text("'pending'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text, nullable=True),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("paid_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("kind IN ('transfer', 'destination')", name="kind_known"),
    CheckConstraint("status IN ('pending', 'paid', 'skipped')", name="status_known"),
    CheckConstraint(
        "fee_minor >= 0 AND amount_minor >= 0 AND amount_minor = gross_minor - fee_minor",
        name="amounts_add_up",
    ),
)
Index(
    "ix_store_transfers_store_id_created_at",
    store_transfers.c.store_id,
    store_transfers.c.created_at,
)
Index(
    "ix_store_transfers_pending",
    store_transfers.c.next_attempt_at,
    postgresql_where=store_transfers.c.status == "pending",
)

# One refund's part of the store's transfer given back (and the fee's part), once per refund
# event (``id``: the order and the event's version).
store_transfer_reversals = Table(
    "store_transfer_reversals",
    metadata,
    Column("id", Text, primary_key=True),
    Column(
        "order_id",
        UUID(as_uuid=False),
        ForeignKey("store_transfers.order_id"),
        nullable=False,
        index=True,
    ),
    Column("refunded_minor", BigInteger, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("fee_minor", BigInteger, nullable=False),
    Column("stripe_reversal_id", Text, nullable=True),
    Column("application_fee_refund_id", Text, nullable=True),
    Column("status", String(16), nullable=False, server_default=text("'pending'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text, nullable=True),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("done_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("status IN ('pending', 'done')", name="status_known"),
    CheckConstraint("amount_minor >= 0 AND fee_minor >= 0", name="amounts_not_negative"),
)
Index(
    "ix_store_transfer_reversals_pending",
    store_transfer_reversals.c.next_attempt_at,
    postgresql_where=store_transfer_reversals.c.status == "pending",
)

# A connected account's payouts to its bank, as payout.* events say (by Stripe's id).
store_payouts = Table(
    "store_payouts",
    metadata,
    Column("id", Text, primary_key=True),
    Column("store_id", UUID(as_uuid=False), ForeignKey("stores.id"), nullable=False),
    Column("account_id", Text, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),
    Column("arrival_date", DateTime(timezone=True), nullable=True),
    Column("failure_code", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("state_as_of", BigInteger, nullable=False, server_default=text("0")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
)
Index("ix_store_payouts_store_id_created_at", store_payouts.c.store_id, store_payouts.c.created_at)
