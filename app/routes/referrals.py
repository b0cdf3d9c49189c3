"""Referral routes (API.md § Referrals): the caller's referral code; the report, of the
caller's own commissions or, for an admin, everyone's, as JSON or CSV (``Accept:
text/csv``); and for admins, paying a commission and reading the decision log.

Commissions themselves are accrued by the outbox consumer (``app.referrals.accrual``), never
by a request; a code is attributed when a cart is created (``POST /api/v1/teamcarts`` and
``POST /api/v1/carts`` take ``referral_code``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream
from litestar.security.jwt import Token
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from app.auth import Principal, admin_only
from app.failures import ConflictError, NotFoundError
from app.referrals.attribution import referral_code_for
from app.referrals.reports import Report, build_report, csv_chunks, parse_moment
from app.referrals.repository import AuditRow, CommissionRow, SqlReferrals
from app.resources import AppResources
from app.routes.fields import END_OF_TEXT, invalid_field

AuthRequest = Request[Principal, Token, Any]

_MOMENT = (
    r"^\d{4}-\d{2}-\d{2}"
    r"([Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:\d{2}))?" + END_OF_TEXT
)
From = Annotated[
    str | None,
    QueryParameter(
        name="from",
        max_length=40,
        pattern=_MOMENT,
        description="RFC 3339 date or date-time: commissions created from then on.",
    ),
]
To = Annotated[
    str | None,
    QueryParameter(
        max_length=40,
        pattern=_MOMENT,
        description="RFC 3339 date (that whole day included) or date-time (before it).",
    ),
]
Subject = Annotated[
    uuid.UUID | None,
    QueryParameter(description="An order id, or a referrer's user id (every one of theirs)."),
]

ReferralCodeIn = Annotated[
    str, msgspec.Meta(min_length=4, max_length=32, pattern=rf"^[A-Za-z0-9 -]+{END_OF_TEXT}")
]
"""A referral code as a client sends it, on a cart's creation: any case, dashes or spaces
(``domain.referrals.normalized_code``); whether anyone has it is the handler's 422."""

AUDIT_LIMIT = 500


class ReferralCode(msgspec.Struct):
    code: str


class CommissionView(msgspec.Struct):
    commission_id: str
    referrer_user_id: str
    order_id: str
    amount_minor: int
    status: str
    created_at: datetime
    currency: str
    reversed_minor: int
    paid_at: datetime | None


class AuditItem(msgspec.Struct):
    subject: str
    decision: str
    reason: str
    at: datetime
    amount_minor: int | None
    referrer_user_id: str | None


class AuditPage(msgspec.Struct):
    items: list[AuditItem]


def commission_view(row: CommissionRow) -> CommissionView:
    return CommissionView(
        commission_id=row.id,
        referrer_user_id=row.referrer_user_id,
        order_id=row.order_id,
        amount_minor=row.amount_minor,
        status=row.status,
        created_at=row.created_at,
        currency=row.currency,
        reversed_minor=row.reversed_minor,
        paid_at=row.paid_at,
    )


def audit_item(row: AuditRow) -> AuditItem:
    return AuditItem(
        subject=row.subject,
        decision=row.decision,
        reason=row.reason,
        at=row.at,
        amount_minor=row.amount_minor,
        referrer_user_id=row.referrer_user_id,
    )


def moment(field: str, text: str | None, *, end: bool) -> datetime | None:
    """The query's ``from`` or ``to`` (``app.referrals.reports.parse_moment``), or 422
    naming it."""
    if text is None:
        return None
    try:
        return parse_moment(text, end=end)
    except (ValueError, OverflowError):
        raise invalid_field(
            field, "must be an RFC 3339 date or date-time", source="query"
        ) from None


class ReferralController(Controller):
    path = "/api/v1"
    tags = ["referrals"]  # noqa: RUF012

    @post("/referral-codes", status_code=HTTP_201_CREATED)
    async def referral_code(self, request: AuthRequest, resources: AppResources) -> ReferralCode:
        """The caller's referral code: made on the first call, the same one on every other."""
        return ReferralCode(await referral_code_for(resources.engine, request.user.user_id))

    @get("/referrals/report")
    async def report(
        self,
        request: AuthRequest,
        resources: AppResources,
        from_: From = None,
        to: To = None,
    ) -> Response[Report] | Stream:
        """Commissions created in the period: the caller's as a referrer, or every
        referrer's for an admin. ``Accept: text/csv`` answers the rows as CSV (a header row
        first), streamed as they are read."""
        start, end = moment("from", from_, end=False), moment("to", to, end=True)
        if start is not None and end is not None and end <= start:
            raise invalid_field("to", "must be after from", source="query")
        referrer = None if request.user.is_admin else request.user.user_id
        wanted = request.accept.best_match(["application/json", "text/csv"], "application/json")
        if wanted == "text/csv":
            return Stream(
                csv_chunks(resources.engine, referrer_user_id=referrer, start=start, end=end),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": 'attachment; filename="referrals.csv"'},
            )
        report = await build_report(
            resources.engine,
            resources.settings.referral_commission_bps,
            referrer_user_id=referrer,
            start=start,
            end=end,
        )
        return Response(report)


class AdminReferralController(Controller):
    path = "/api/v1/admin"
    tags = ["referrals"]  # noqa: RUF012
    guards = [admin_only]  # noqa: RUF012

    @post("/commissions/{commission_id:uuid}/pay", status_code=HTTP_200_OK)
    async def pay(
        self,
        request: AuthRequest,
        commission_id: FromPath[uuid.UUID],
        resources: AppResources,
    ) -> CommissionView:
        """Mark an approved commission paid (once: paying it again answers it as it is). A
        commission still pending, or void, is 409 ``commission_not_payable``."""
        async with resources.engine.begin() as conn:
            referrals = SqlReferrals(conn)
            paid = await referrals.mark_paid(str(commission_id), request.user.user_id)
            if paid is None:
                paid = await referrals.commission(str(commission_id))
                if paid is None:
                    raise NotFoundError(
                        "commission_not_found", f"no commission with id {commission_id}"
                    )
                if paid.status != "paid":
                    raise ConflictError(
                        "commission_not_payable",
                        f"the commission is {paid.status}: only an approved one is paid",
                    )
        return commission_view(paid)

    @get("/audit")
    async def audit(self, resources: AppResources, subject: Subject = None) -> AuditPage:
        """The decision log about an order, or about every order of a referrer (with no
        subject, everyone's): its newest 500 lines at most, oldest first."""
        async with resources.engine.connect() as conn:
            rows = await SqlReferrals(conn).audit_of(
                None if subject is None else str(subject), AUDIT_LIMIT
            )
        return AuditPage([audit_item(row) for row in rows])
