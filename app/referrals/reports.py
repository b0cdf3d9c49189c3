"""Referral reports (API.md § Referrals): commissions created between two moments, a
referrer's own or, for admins, everyone's; totals by status, and the rows, as JSON or CSV.

Rows are read in batches on the ``(created_at, id)`` cursor (``BATCH`` at a time, each batch
its own short read), so a report of every commission ever holds neither a connection nor
every row at once while it is written: the CSV is streamed batch by batch, and
``teamcart referrals report`` says how far it got after each batch.

Totals follow API.md's names. ``pending_minor``, ``approved_minor``, ``paid_minor`` and
``void_minor`` add up the commissions in each status; ``reversed_minor`` what refunds took
back from commissions that stand (not void: a void commission is all of it in
``void_minor``). So ``pending + approved + paid - reversed`` is what the referrer earned.
Amounts of different currencies don't add up: ``by_currency`` (not in API.md) has the same
totals for each currency, and each row names its currency.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Final, TextIO

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine

from app.referrals.repository import CommissionRow, SqlReferrals
from domain.referrals import CommissionStatus

BATCH: Final = 1000

CSV_COLUMNS: Final = (
    "commission_id",
    "referrer_user_id",
    "order_id",
    "currency",
    "amount_minor",
    "reversed_minor",
    "status",
    "created_at",
)


def parse_moment(text: str, *, end: bool) -> datetime:
    """An RFC 3339 date or date-time (with its offset) as a moment; ``ValueError`` if it
    isn't one. A date is the start of that day (UTC); as an end, the start of the next, so
    the day named is in the report."""
    if len(text) == 10:
        start = datetime.combine(date.fromisoformat(text), time(), tzinfo=UTC)
        return start + timedelta(days=1) if end else start
    moment = datetime.fromisoformat(text.upper())
    if moment.tzinfo is None:
        raise ValueError("a date-time needs its offset (Z or +hh:mm)")
    return moment.astimezone(UTC)  # OverflowError past year 9999 in UTC: refused here


class Totals(msgspec.Struct):
    pending_minor: int = 0
    approved_minor: int = 0
    paid_minor: int = 0
    void_minor: int = 0
    reversed_minor: int = 0
    count: int = 0

    def add(self, row: CommissionRow) -> None:
        status = CommissionStatus(row.status)
        if status is CommissionStatus.PENDING:
            self.pending_minor += row.amount_minor
        elif status is CommissionStatus.APPROVED:
            self.approved_minor += row.amount_minor
        elif status is CommissionStatus.PAID:
            self.paid_minor += row.amount_minor
        else:
            self.void_minor += row.amount_minor
        if status is not CommissionStatus.VOID:
            self.reversed_minor += row.reversed_minor
        self.count += 1


class CurrencyTotals(msgspec.Struct):
    currency: str
    totals: Totals


class ReportRow(msgspec.Struct):
    commission_id: str
    referrer_user_id: str
    order_id: str
    amount_minor: int
    status: str
    created_at: datetime
    currency: str
    reversed_minor: int


class Report(msgspec.Struct):
    commission_bps: int
    totals: Totals
    rows: list[ReportRow]
    by_currency: list[CurrencyTotals]


def report_row(row: CommissionRow) -> ReportRow:
    return ReportRow(
        commission_id=row.id,
        referrer_user_id=row.referrer_user_id,
        order_id=row.order_id,
        amount_minor=row.amount_minor,
        status=row.status,
        created_at=row.created_at,
        currency=row.currency,
        reversed_minor=row.reversed_minor,
    )


async def batches(
    engine: AsyncEngine,
    *,
    referrer_user_id: str | None,
    start: datetime | None,
    end: datetime | None,
    batch: int = BATCH,
) -> AsyncIterator[list[CommissionRow]]:
    """The commissions, oldest first, ``batch`` at a time (one short read each)."""
    after: tuple[datetime, str] | None = None
    while True:
        async with engine.connect() as conn:
            rows = await SqlReferrals(conn).commission_rows(
                referrer_user_id=referrer_user_id, start=start, end=end, after=after, limit=batch
            )
        if rows:
            yield rows
        if len(rows) < batch:
            return
        after = (rows[-1].created_at, rows[-1].id)


async def count(
    engine: AsyncEngine,
    *,
    referrer_user_id: str | None,
    start: datetime | None,
    end: datetime | None,
) -> int:
    async with engine.connect() as conn:
        return await SqlReferrals(conn).count_commissions(
            referrer_user_id=referrer_user_id, start=start, end=end
        )


async def build_report(
    engine: AsyncEngine,
    commission_bps: int,
    *,
    referrer_user_id: str | None,
    start: datetime | None,
    end: datetime | None,
) -> Report:
    """The JSON report: totals, by currency too, and every row."""
    totals = Totals()
    by_currency: dict[str, Totals] = {}
    rows: list[ReportRow] = []
    async for found in batches(engine, referrer_user_id=referrer_user_id, start=start, end=end):
        for row in found:
            totals.add(row)
            by_currency.setdefault(row.currency, Totals()).add(row)
            rows.append(report_row(row))
    return Report(
        commission_bps=commission_bps,
        totals=totals,
        rows=rows,
        by_currency=[CurrencyTotals(c, t) for c, t in sorted(by_currency.items())],
    )


def csv_text(rows: Iterable[CommissionRow], *, header: bool = False) -> str:
    """Rows as CSV (RFC 4180: CRLF line ends), the header row first if asked."""
    out = io.StringIO()
    writer = csv.writer(out)
    if header:
        writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(
            (
                row.id,
                row.referrer_user_id,
                row.order_id,
                row.currency,
                row.amount_minor,
                row.reversed_minor,
                row.status,
                row.created_at.isoformat(),
            )
        )
    return out.getvalue()


async def csv_chunks(
    engine: AsyncEngine,
    *,
    referrer_user_id: str | None,
    start: datetime | None,
    end: datetime | None,
    progress: Callable[[int], None] = lambda _: None,
    batch: int = BATCH,
) -> AsyncIterator[str]:
    """The CSV report, the header row first, one chunk a batch; ``progress`` is told how
    many rows were read so far after each batch."""
    yield csv_text((), header=True)
    done = 0
    found_batches = batches(
        engine, referrer_user_id=referrer_user_id, start=start, end=end, batch=batch
    )
    async for found in found_batches:
        done += len(found)
        progress(done)
        yield csv_text(found)


class ReferrerTotals(msgspec.Struct):
    """One line of ``teamcart referrals report``: a referrer's totals in one currency."""

    referrer_user_id: str
    currency: str
    totals: Totals


async def write_report(
    engine: AsyncEngine,
    out: TextIO,
    *,
    as_csv: bool,
    start: datetime | None,
    end: datetime | None,
    progress: Callable[[int, int], None],
    batch: int = BATCH,
) -> int:
    """Every referrer's commissions for ``teamcart referrals report``: each row as CSV, or
    one JSON line of totals per referrer and currency. ``progress(read, total)`` after each
    batch. The number of commissions read."""
    total = await count(engine, referrer_user_id=None, start=start, end=end)
    read = 0

    def told(done: int) -> None:
        nonlocal read
        read = done
        progress(done, total)

    if as_csv:
        chunks = csv_chunks(
            engine, referrer_user_id=None, start=start, end=end, progress=told, batch=batch
        )
        async for chunk in chunks:
            out.write(chunk)
        return read
    by_referrer: dict[tuple[str, str], Totals] = {}
    async for found in batches(engine, referrer_user_id=None, start=start, end=end, batch=batch):
        for row in found:
            by_referrer.setdefault((row.referrer_user_id, row.currency), Totals()).add(row)
        told(read + len(found))
    encoder = msgspec.json.Encoder()
    for (referrer, currency), totals in sorted(by_referrer.items()):
        out.write(encoder.encode(ReferrerTotals(referrer, currency, totals)).decode() + "\n")
    return read
