"""Background work every server process runs while it serves.

The sweeper wakes every ``TEAMCART_SWEEP_INTERVAL_SECONDS``: it reminds the hosts of ready
carts whose confirm window is about to end and members who aren't ready or haven't paid
before a deadline (once each, ``app.use_cases.reminders``), locks open carts whose deadline
passed (or expires them if empty), expires locked carts whose payment window is over and
ready carts whose confirm window is (owing a refund for every online payment they hold),
cancels single-payer orders left unpaid a payment window (their stock back on sale), retries
refunds Stripe has not taken yet, purges idempotency keys older than 24 hours and dispatched
outbox events older than a week. Every process runs one; they never double-apply because each cart
change goes through the cart's version check.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from app.failures import causes, is_unavailable
from app.idempotency import purge_expired_keys
from app.persistence.outbox import purge_dispatched
from app.unit_of_work import UnitOfWorkRunner
from app.use_cases.checkout import expire_unpaid_orders
from app.use_cases.payments.refunds import carry_out_refunds
from app.use_cases.reminders import remind_members
from app.use_cases.teamcarts import Remind, expire_due_carts, remind_hosts_to_confirm

log = structlog.get_logger("teamcart.workers")


async def sweep_once(
    engine: AsyncEngine, runner: UnitOfWorkRunner, payment_window: timedelta, remind: Remind
) -> int:
    await remind_hosts_to_confirm(runner, payment_window, remind)
    await remind_members(engine, payment_window, remind)  # ready / pay, before the deadline
    changed = await expire_due_carts(runner, payment_window)
    changed += await expire_unpaid_orders(runner, payment_window)
    await carry_out_refunds(runner)  # any refund whose first attempt failed
    await purge_expired_keys(engine)
    await purge_dispatched(engine)
    return changed


async def _sweep_forever(
    engine: AsyncEngine,
    runner: UnitOfWorkRunner,
    payment_window: timedelta,
    interval: float,
    remind: Remind,
) -> None:
    while True:
        try:
            await sweep_once(engine, runner, payment_window, remind)
        except Exception as exc:  # a database blip must not end the loop
            if any(is_unavailable(cause) for cause in causes(exc)):
                log.warning("sweep_failed", error=repr(exc))  # an outage: retried next time
            else:
                log.exception("sweep_failed")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running_sweeper(
    engine: AsyncEngine,
    runner: UnitOfWorkRunner,
    payment_window: timedelta,
    interval: float,
    remind: Remind,
) -> AsyncIterator[None]:
    """Run the sweeper for as long as the context is open (the app's lifespan)."""
    task = asyncio.create_task(
        _sweep_forever(engine, runner, payment_window, interval, remind), name="sweeper"
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
