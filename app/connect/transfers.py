"""The store's money from each order, through Connect: an outbox consumer that records what
the store is owed when an order is placed and what a refund takes back, and the work that
asks Stripe for it, retried until Stripe has made it.

When an order is placed (``order_placed``) at a store whose Connect account may take
charges:

- a group order's members paid the platform (separate charges, in the cart's transfer
  group): the store is owed their online money less the platform's fee, one transfer per
  order (``store_transfers``' primary key), asked of Stripe with the idempotency key
  ``store-transfer-<order>``;
- a single-payer order was a destination charge: Stripe moved the money itself; the row
  records the transfer Stripe made and the fee it kept (read back from the PaymentIntent).

A refund (``order_refunded``; ``order_cancelled`` refunds every online payment) takes back
the store's part of it and gives back the fee's (``app.connect.money.reversal_due``), one
``store_transfer_reversals`` row per refund event (``<order>:v<version>``), asked of
Stripe with the idempotency key ``store-reversal-<row>``: a reversal of the transfer, and,
for a destination charge, a refund of that part of the application fee, as Stripe's own
``reverse_transfer`` and ``refund_application_fee`` would.

The consumer runs at least once per event, sometimes in two processes at once and in the
committing request's task (``app.dispatcher``), so it only writes rows (idempotent: the
primary keys, and the transfer row locked while a refund's part is worked out) and leaves
Stripe to a background task; whatever that task doesn't finish (Stripe down, the process
gone) the retry loop (:meth:`StoreTransfers.running`) takes up, claiming each row with
``SKIP LOCKED`` and backing off as owed refunds do.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

import msgspec
import structlog
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine

from app.connect import money
from app.connect.rows import ConnectRows, TransferRow
from app.payments.amounts import from_stripe, to_stripe
from app.payments.gateway import GatewayError, PaymentGateway
from app.persistence.outbox import OutboxRecord

log = structlog.get_logger("teamcart.connect")

RETRY_INTERVAL_SECONDS: Final = 5.0
RETRY_BATCH: Final = 50

TRANSFERS = Counter(
    "teamcart_store_transfers", "Stores' transfers and reversals by outcome.", ["kind", "outcome"]
)

PAID_ONLINE: Final = frozenset({"paid_online", "won", "refunded"})
"""An order's online payments that brought money in (a refund is counted as it comes)."""


class _Payment(msgspec.Struct):
    method: str
    amount_minor: int
    refunded_minor: int = 0
    status: str = ""
    reference: str | None = None


class _Order(msgspec.Struct):
    id: str
    kind: str
    store_id: str
    currency: str
    total_minor: int
    teamcart_id: str | None = None
    payments: list[_Payment] = msgspec.field(default_factory=list)


class _OrderEvent(msgspec.Struct):
    """The order outbox payload's fields this consumer reads (``order_views.OrderPayload``)."""

    event: str
    version: int
    order: _Order


_decoder = msgspec.json.Decoder(_OrderEvent)

REFUND_EVENTS: Final = frozenset({"order_refunded", "order_cancelled"})


class StoreTransfers:
    """The outbox consumer (``async (record) -> None``) and the Stripe work behind it."""

    def __init__(self, engine: AsyncEngine, gateway: PaymentGateway) -> None:
        self.engine = engine
        self.gateway = gateway
        self._tasks: set[asyncio.Task[None]] = set()

    # --- the consumer -------------------------------------------------------------------

    async def __call__(self, record: OutboxRecord) -> None:
        if record.aggregate_type != "order":
            return
        try:
            event = _decoder.decode(record.payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("store_transfer_payload_unreadable", outbox_id=record.id, error=str(exc))
            return  # a consumer that raised would hold the order's later events back for ever
        if event.event == "order_placed":
            if await self.owe_transfer(event.order):
                self._later(lambda: self.make_transfer(event.order.id))
        elif event.event in REFUND_EVENTS and await self.owe_reversal(event):
            self._later(lambda: self.make_reversals(event.order.id))

    def _later(self, work: Callable[[], Awaitable[object]]) -> None:
        """Stripe is asked in a task of its own: the consumer may be running in a request's
        task, which must not wait on Stripe (the retry loop covers a task that fails)."""

        async def run() -> None:
            try:
                await work()
            except Exception as exc:  # the database away: the retry loop takes it up
                log.warning("store_transfer_deferred", error=repr(exc))

        task = asyncio.create_task(run(), name="store-transfer")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the Stripe work started so far (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def owe_transfer(self, order: _Order) -> bool:
        """Record what the store is owed for a placed order; whether there is something to
        ask Stripe (a new row, or one still pending)."""
        async with self.engine.connect() as conn:
            rows = ConnectRows(conn)
            terms = await rows.terms(order.store_id)
            if terms is None or terms.account_id is None:
                return False
            online = [p for p in order.payments if p.method == "online"]
            if order.kind == "single":
                # A destination charge: the fee as we asked it, replaced by what Stripe kept
                # once the charge is read back.
                kind, gross, group = "destination", order.total_minor, None
                intent = online[0].reference if online else None
                if intent is None:
                    return False
            else:
                kind, group, intent = "transfer", order.teamcart_id, None
                gross = sum(p.amount_minor for p in online if p.status in PAID_ONLINE)
                if not terms.charges_enabled or gross <= 0:
                    return False  # not onboarded, or all cash: nothing through Connect
            await rows.add_transfer(
                order_id=order.id,
                store_id=order.store_id,
                account_id=terms.account_id,
                kind=kind,
                currency=order.currency,
                split=money.split(gross, terms.platform_fee_bps, order.currency),
                transfer_group=group,
                payment_intent_id=intent,
            )
            await conn.commit()
        return True

    async def owe_reversal(self, event: _OrderEvent) -> bool:
        """Record what this refund event takes back of the store's transfer; whether there
        is a reversal to ask Stripe for."""
        order = event.order
        refunded = sum(p.refunded_minor for p in order.payments if p.method == "online")
        async with self.engine.connect() as conn:
            rows = ConnectRows(conn)
            transfer = await rows.transfer(order.id, lock=True)  # one refund at a time
            if transfer is None or transfer.status == "skipped":
                return False
            due = money.reversal_due(refunded, transfer.split, transfer.currency)
            so_far = await rows.reversed_so_far(order.id)
            amount = due.amount_minor - so_far.amount_minor
            fee = due.fee_minor - so_far.fee_minor
            if amount < 0 or fee < 0:
                # A refund Stripe reports failed after its part was taken back: the store
                # keeps less than it should until an operator looks (no re-transfer).
                log.error("store_refund_lowered_after_reversal", order_id=order.id)
                TRANSFERS.labels("reversal", "lowered").inc()
                return False
            if amount == 0 and fee == 0:
                return bool(await rows.pending_reversals(order.id))
            await rows.add_reversal(
                f"{order.id}:v{event.version}",
                order.id,
                refunded,
                money.Split(amount + fee, fee, amount),
            )
            await conn.commit()
        return True

    # --- asking Stripe ------------------------------------------------------------------

    async def make_transfer(self, order_id: str) -> bool:
        """Ask Stripe for the order's transfer (or read back its destination charge), then
        the reversals that waited for it; whether it is made now."""
        async with self.engine.connect() as conn:
            rows = ConnectRows(conn)
            row = await rows.claim_transfer(order_id)
            if row is None:
                return False  # made, skipped, or in another process's hands
            made = await self._transfer(rows, row)
            await conn.commit()
        if made:
            await self.make_reversals(order_id)
        return made

    async def _transfer(self, rows: ConnectRows, row: TransferRow) -> bool:
        attempts = row.attempts + 1
        try:
            if row.kind == "transfer":
                return await self._pay_out(rows, row, attempts)
            return await self._read_destination_charge(rows, row, attempts)
        except GatewayError as exc:
            await rows.transfer_failed(row.order_id, attempts, str(exc))
            TRANSFERS.labels("transfer", "failed").inc()
            log.warning(
                "store_transfer_failed", order_id=row.order_id, attempts=attempts, error=str(exc)
            )
            return False

    async def _pay_out(self, rows: ConnectRows, row: TransferRow, attempts: int) -> bool:
        if row.split.amount_minor <= 0:
            await rows.transfer_skipped(row.order_id, "the fee is the whole amount")
            return False
        transfer = await self.gateway.create_transfer(
            amount=to_stripe(row.split.amount_minor, row.currency),
            currency=row.currency,
            destination=row.account_id,
            transfer_group=row.transfer_group,
            metadata={"order_id": row.order_id, "store_id": row.store_id},
            idempotency_key=f"store-transfer-{row.order_id}",
        )
        await rows.transfer_paid(row.order_id, stripe_transfer_id=transfer.id, attempts=attempts)
        TRANSFERS.labels("transfer", "made").inc()
        log.info(
            "store_transfer_made",
            order_id=row.order_id,
            transfer_id=transfer.id,
            amount_minor=row.split.amount_minor,
            fee_minor=row.split.fee_minor,
        )
        return True

    async def _read_destination_charge(
        self, rows: ConnectRows, row: TransferRow, attempts: int
    ) -> bool:
        assert row.payment_intent_id is not None
        charge = await self.gateway.retrieve_destination_charge(row.payment_intent_id)
        if charge.destination is None:
            await rows.transfer_skipped(row.order_id, "paid before the store took charges")
            return False
        if charge.transfer_id is None:
            raise GatewayError(f"{row.payment_intent_id} has no transfer yet")
        fee = from_stripe(charge.application_fee_amount or 0, row.currency)
        await rows.transfer_paid(
            row.order_id,
            stripe_transfer_id=charge.transfer_id,
            application_fee_id=charge.application_fee_id,
            attempts=attempts,
            split=money.split_of_fee(row.split.gross_minor, fee),
        )
        TRANSFERS.labels("destination", "recorded").inc()
        return True

    async def make_reversals(self, order_id: str) -> int:
        async with self.engine.connect() as conn:
            pending = await ConnectRows(conn).pending_reversals(order_id)
        done = 0
        for reversal_id in pending:
            done += await self.make_reversal(reversal_id)
        return done

    async def make_reversal(self, reversal_id: str) -> bool:
        """Ask Stripe to take back one refund's part; whether it is done now."""
        async with self.engine.connect() as conn:
            rows = ConnectRows(conn)
            reversal = await rows.claim_reversal(reversal_id)
            if reversal is None:
                return False
            transfer = await rows.transfer(reversal.order_id)
            assert transfer is not None  # its foreign key
            attempts = reversal.attempts + 1
            if transfer.status == "skipped":  # nothing went to the store: nothing comes back
                await rows.reversal_done(
                    reversal_id,
                    attempts=attempts,
                    stripe_reversal_id=None,
                    application_fee_refund_id=None,
                )
            elif transfer.stripe_transfer_id is None:
                await rows.reversal_failed(reversal_id, attempts, "the transfer is not made yet")
            else:
                try:
                    await self._reverse(rows, transfer, reversal_id, reversal.part, attempts)
                except GatewayError as exc:
                    await rows.reversal_failed(reversal_id, attempts, str(exc))
                    TRANSFERS.labels("reversal", "failed").inc()
                    log.warning("store_reversal_failed", reversal_id=reversal_id, error=str(exc))
                    await conn.commit()
                    return False
            await conn.commit()
        return True

    async def _reverse(
        self,
        rows: ConnectRows,
        transfer: TransferRow,
        reversal_id: str,
        part: money.Split,
        attempts: int,
    ) -> None:
        """A transfer of the store's part gives back that part; a destination charge's
        transfer was of the whole amount, so the whole refund comes back from it and the
        fee's part of the application fee goes back to the store."""
        assert transfer.stripe_transfer_id is not None
        taken = part.amount_minor if transfer.kind == "transfer" else part.gross_minor
        reversal_of = None
        if taken > 0:
            made = await self.gateway.create_transfer_reversal(
                transfer.stripe_transfer_id,
                amount=to_stripe(taken, transfer.currency),
                metadata={"order_id": transfer.order_id, "reversal": reversal_id},
                idempotency_key=f"store-reversal-{reversal_id}",
            )
            reversal_of = made.id
        fee_refund = None
        if transfer.kind == "destination" and part.fee_minor > 0 and transfer.application_fee_id:
            fee_refund = await self.gateway.refund_application_fee(
                transfer.application_fee_id,
                amount=to_stripe(part.fee_minor, transfer.currency),
                idempotency_key=f"store-fee-refund-{reversal_id}",
            )
        await rows.reversal_done(
            reversal_id,
            attempts=attempts,
            stripe_reversal_id=reversal_of,
            application_fee_refund_id=fee_refund,
        )
        TRANSFERS.labels("reversal", "made").inc()
        log.info(
            "store_reversal_made",
            order_id=transfer.order_id,
            reversal_id=reversal_id,
            amount_minor=part.amount_minor,
            fee_minor=part.fee_minor,
        )

    # --- the retry loop -----------------------------------------------------------------

    async def retry_due(self) -> int:
        """Every transfer and reversal due again; how many were made now."""
        async with self.engine.connect() as conn:
            rows = ConnectRows(conn)
            transfers = await rows.due_transfers(RETRY_BATCH)
            reversals = await rows.due_reversals(RETRY_BATCH)
        made = 0
        for order_id in transfers:
            made += await self.make_transfer(order_id)
        for reversal_id in reversals:
            made += await self.make_reversal(reversal_id)
        return made

    @contextlib.asynccontextmanager
    async def running(self, interval: float = RETRY_INTERVAL_SECONDS) -> AsyncIterator[None]:
        """Retry what is due every ``interval`` seconds while the context is open (the
        app's lifespan); the Stripe work still under way is waited for at the end."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.retry_due()
                except Exception as exc:  # PostgreSQL away: the next pass retries
                    log.warning("store_transfer_retry_failed", error=repr(exc))

        task = asyncio.create_task(loop(), name="store-transfer-retry")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self.drain()
