"""The Checkout Sessions the add-on keeps, and what happens to them: created (with their
PaymentIntent at localstripe), paid on the hosted page, expired by the API or by the clock.

Each move on a session holds that session's lock, so a payment and an expiry racing each
other (or two submits of the page) end in one outcome and one event. Sessions live in memory
only, as localstripe's objects do: the emulator starts from scratch every time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from app.stripe_addon.connect import ChargeTerms, Connect
from app.stripe_addon.events import WebhookSender, event_envelope
from app.stripe_addon.forms import FormValue
from app.stripe_addon.sessions import (
    CheckoutSession,
    SessionNotOpen,
    SessionRequest,
    SessionStatus,
    StripeApiError,
    new_id,
    no_such_session,
    read_create_params,
)
from app.stripe_addon.upstream import Upstream, UpstreamError

log = logging.getLogger("teamcart.stripe_addon.checkout")

EXPIRY_CHECK_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Card:
    """What the hosted page's form gave, checked for shape (``hosted_page.read_card``)."""

    number: str
    exp_month: int
    exp_year: int
    cvc: str


@dataclass(frozen=True, slots=True)
class Paid:
    session: CheckoutSession


@dataclass(frozen=True, slots=True)
class Declined:
    """The card was refused; ``message`` is for the card holder."""

    message: str


THREE_D_SECURE = (
    "This card asks for 3D Secure authentication, which the emulator's checkout page does "
    "not offer. Try another card."
)


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """Who asked, for the events it causes: the account's key, Stripe's request id, the
    ``Idempotency-Key`` and the ``Stripe-Version`` if the client sent them."""

    api_key: str
    request_id: str
    idempotency_key: str | None = None
    api_version: str | None = None


class Checkout:
    """The sessions, by id; ``public_base`` is where the hosted page is served."""

    def __init__(
        self,
        upstream: Upstream,
        sender: WebhookSender,
        *,
        public_base: str,
        api_version: str,
        clock: Callable[[], float] = time.time,
        connect: Connect | None = None,
    ) -> None:
        self._upstream = upstream
        self._connect = connect
        """Where a session's destination-charge terms are checked and kept (``None``: the
        add-on takes none, and refuses them as unknown parameters)."""
        self._sender = sender
        self._public_base = public_base.rstrip("/")
        self._api_version = api_version
        self._clock = clock
        self._sessions: dict[str, CheckoutSession] = {}
        self.events: dict[str, dict[str, Any]] = {}
        """Every event sent, by id (``GET /v1/events/{id}`` answers them)."""
        self._locks: dict[str, asyncio.Lock] = {}

    def now(self) -> int:
        return int(self._clock())

    def hosted_page_url(self, session_id: str) -> str:
        return f"{self._public_base}/checkout/{session_id}"

    async def create(self, params: Mapping[str, FormValue], asked: ApiRequest) -> CheckoutSession:
        """A new open session and its PaymentIntent (amount Σ unit_amount * quantity, the
        session's currency, ``payment_intent_data[metadata]``). Raises ``StripeApiError``."""
        now = self.now()
        request = read_create_params(params, now=now)
        if request.amount_total <= 0:
            raise StripeApiError(
                400,
                "The Checkout Session's total amount due must be greater than 0.",
                code="amount_too_small",
                param="line_items",
            )
        terms = self._charge_terms(request)
        try:
            intent = await self._upstream.create_payment_intent(
                api_key=asked.api_key,
                amount=request.amount_total,
                currency=request.currency,
                metadata=request.payment_intent_metadata,
            )
        except UpstreamError as exc:
            kind = "api_error" if exc.status >= 500 else "invalid_request_error"
            raise StripeApiError(exc.status, exc.message, code=exc.code, error_type=kind) from exc
        if terms is not None and self._connect is not None:
            self._connect.record_charge(str(intent["id"]), terms)
        session_id = new_id("cs_test_", 58)
        session = CheckoutSession(
            id=session_id,
            request=request,
            payment_intent=str(intent["id"]),
            url=self.hosted_page_url(session_id),
            created=now,
            api_key=asked.api_key,
            api_version=asked.api_version or self._api_version,
            line_item_ids=tuple(new_id("li_") for _ in request.line_items),
        )
        self._sessions[session_id] = session
        return session

    def _charge_terms(self, request: SessionRequest) -> ChargeTerms | None:
        """The session's destination-charge terms, checked before anything is made."""
        if not request.payment_intent_connect:
            return None
        if self._connect is None:
            name = f"payment_intent_data[{next(iter(request.payment_intent_connect))}]"
            raise StripeApiError(
                400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name
            )
        return self._connect.read_charge(
            request.payment_intent_connect,
            amount=request.amount_total,
            prefix="payment_intent_data",
        )

    def get(self, session_id: str) -> CheckoutSession:
        session = self._sessions.get(session_id)
        if session is None:
            raise no_such_session(session_id)
        return session

    def find(self, session_id: str) -> CheckoutSession | None:
        return self._sessions.get(session_id)

    def listed(self, *, payment_intent: str | None = None) -> list[CheckoutSession]:
        """Newest first, as Stripe lists; only those of ``payment_intent`` when given."""
        found = [
            s
            for s in self._sessions.values()
            if payment_intent is None or s.payment_intent == payment_intent
        ]
        return sorted(found, key=lambda s: s.created, reverse=True)

    def clear(self) -> None:
        """Forget every session (``DELETE /_config/data`` flushes localstripe too)."""
        self._sessions.clear()
        self.events.clear()

    async def expire(self, session_id: str, asked: ApiRequest | None) -> CheckoutSession:
        """Expire an open session: its PaymentIntent is cancelled at localstripe and
        ``checkout.session.expired`` sent. ``asked`` is the API request that expired it,
        ``None`` when the clock did. Raises ``StripeApiError`` for a session not open."""
        session = self.get(session_id)
        async with self._lock(session_id):
            try:
                session.expire()
            except SessionNotOpen as exc:
                raise StripeApiError(
                    400,
                    'Only Checkout Sessions with a status in ["open"] can be expired. '
                    f"This Checkout Session has a status of `{exc.status}`.",
                ) from exc
            try:
                await self._upstream.cancel_payment_intent(
                    session.payment_intent, api_key=session.api_key
                )
            except UpstreamError as exc:
                log.warning(
                    "%s expired, but its PaymentIntent %s was not cancelled: %s",
                    session.id,
                    session.payment_intent,
                    exc,
                )
            self._announce("checkout.session.expired", session, asked)
        return session

    async def expire_due(self) -> int:
        """Expire every open session past its ``expires_at``; how many."""
        now = self.now()
        due = [
            s.id
            for s in self._sessions.values()
            if s.status is SessionStatus.OPEN and s.request.expires_at <= now
        ]
        expired = 0
        for session_id in due:
            try:
                await self.expire(session_id, None)
                expired += 1
            except StripeApiError:
                continue  # paid (or expired) while it waited for the lock
        return expired

    async def run_expiry(self, every: float = EXPIRY_CHECK_SECONDS) -> None:
        """Expire sessions as their time comes, until cancelled."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.expire_due()
            except Exception:  # one bad pass must not stop expiry for good
                log.exception("expiring due Checkout Sessions failed")

    async def pay(self, session_id: str, card: Card, *, email: str | None) -> Paid | Declined:
        """Pay an open session with ``card`` at localstripe. Raises ``SessionNotOpen``
        (expired, or paid already), ``StripeApiError`` for an unknown session, and
        ``UpstreamError`` when localstripe could not be reached."""
        session = self.get(session_id)
        async with self._lock(session_id):
            if session.status is SessionStatus.OPEN and session.request.expires_at <= self.now():
                raise SessionNotOpen(SessionStatus.EXPIRED)  # the expiry pass is on its way
            if session.status is not SessionStatus.OPEN:
                raise SessionNotOpen(session.status)
            outcome = await self._charge(session, card)
            if isinstance(outcome, Declined):
                return outcome
            session.complete(email=email)
            self._announce("checkout.session.completed", session, None)
        return Paid(session)

    async def _charge(self, session: CheckoutSession, card: Card) -> Paid | Declined:
        try:
            intent = await self._upstream.pay_with_card(
                session.payment_intent,
                api_key=session.api_key,
                number=card.number,
                exp_month=card.exp_month,
                exp_year=card.exp_year,
                cvc=card.cvc,
            )
        except UpstreamError as exc:
            if exc.status in {400, 402}:
                return Declined(exc.message if exc.status == 402 else _refused(exc))
            raise
        status = intent.get("status")
        if status == "succeeded":
            return Paid(session)
        if status == "requires_action":
            await self._upstream.abandon_authentication(
                session.payment_intent, str(intent["client_secret"]), api_key=session.api_key
            )
            return Declined(THREE_D_SECURE)
        return Declined(f"The payment did not go through (the PaymentIntent is {status}).")

    def _announce(
        self, event_type: str, session: CheckoutSession, asked: ApiRequest | None
    ) -> None:
        event = event_envelope(
            event_type,
            session.to_stripe(),
            api_version=session.api_version,
            request_id=asked.request_id if asked else None,
            idempotency_key=asked.idempotency_key if asked else None,
        )
        self.events[event["id"]] = event
        self._sender.send(event)

    def _lock(self, session_id: str) -> asyncio.Lock:
        return self._locks.setdefault(session_id, asyncio.Lock())


def _refused(exc: UpstreamError) -> str:
    """localstripe's ``400 Bad request`` for a card it will not take, in the card holder's
    words (its message says nothing useful)."""
    if exc.code == "invalid_expiry_year":
        return "Your card's expiration year is invalid."
    return "Your card's details were refused. Check them, or try another card."
