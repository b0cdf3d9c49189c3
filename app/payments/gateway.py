"""The payment gateway: what the use cases need from Stripe, and its Stripe SDK implementation.

``PaymentGateway`` is the protocol; ``StripeGateway`` implements it on the official ``stripe``
SDK's async client, with a configurable API base so the same code talks to Stripe or to the
``localstripe`` emulator. Every call that creates something passes an idempotency key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import stripe
from stripe.params import (
    AccountCreateParams,
    PaymentIntentCreateParams,
    PaymentIntentListParams,
    PayoutListParams,
    RefundCreateParams,
    TransferCreateParams,
    TransferListParams,
)
from stripe.params.checkout import SessionCreateParams


class GatewayError(Exception):
    """Stripe could not be reached or refused the call; the caller may retry later."""


class AlreadyRefunded(Exception):
    """Stripe says the charge is already fully refunded: the money is back, nothing to do."""


class CardDeclined(Exception):
    """The card was refused; the message is Stripe's, fit to show the card holder."""


class PaymentMethodRefused(Exception):
    """Stripe answered that the payment method the client sent can't be used on the intent
    (no such payment method, one of another account, …): the client's mistake, not an outage."""


@dataclass(frozen=True, slots=True)
class IntentInfo:
    id: str
    client_secret: str
    status: str
    amount: int  # in Stripe's units for the currency (app.payments.amounts)
    currency: str  # upper case ISO 4217
    metadata: Mapping[str, str]
    created: int


@dataclass(frozen=True, slots=True)
class RefundInfo:
    id: str
    payment_intent_id: str
    amount: int
    currency: str
    status: str


@dataclass(frozen=True, slots=True)
class CheckoutSessionInfo:
    """A Stripe Checkout Session, as far as we read one.

    ``url`` is the hosted page to send the buyer to; Stripe gives it only while the session
    is open (``None`` once complete or expired). ``payment_intent_id`` may be ``None``: Stripe
    creates the PaymentIntent only when the buyer first tries to pay (the emulator's add-on
    creates it at once), so the session id, not the intent, names an attempt until then.
    """

    id: str
    url: str | None
    payment_intent_id: str | None
    status: str  # open | complete | expired
    payment_status: str  # unpaid | paid | no_payment_required
    amount_total: int  # in Stripe's units for the currency (app.payments.amounts)
    currency: str  # upper case ISO 4217
    metadata: Mapping[str, str]
    expires_at: int


@dataclass(frozen=True, slots=True)
class ConnectCharge:
    """How a charge pays a store through Stripe Connect (``app.connect``): a destination
    charge (``transfer_data[destination]`` and ``application_fee_amount``, Stripe's units),
    or a charge of a group whose money reaches the store by a transfer (``transfer_group``)."""

    destination: str | None = None
    application_fee_amount: int | None = None
    transfer_group: str | None = None


@dataclass(frozen=True, slots=True)
class ConnectAccountInfo:
    """A store's Connect account, as far as onboarding goes."""

    id: str
    charges_enabled: bool
    payouts_enabled: bool
    details_submitted: bool
    requirements_due: tuple[str, ...]  # requirements.currently_due and past_due


@dataclass(frozen=True, slots=True)
class TransferInfo:
    id: str
    amount: int  # Stripe's units
    currency: str  # upper case
    destination: str
    transfer_group: str | None
    amount_reversed: int


@dataclass(frozen=True, slots=True)
class TransferReversalInfo:
    id: str
    transfer_id: str
    amount: int


@dataclass(frozen=True, slots=True)
class DestinationChargeInfo:
    """What Connect made of a PaymentIntent's charge: where it went (``None``: the
    platform's own charge), the fee it kept, the transfer to the account and the
    application fee object (both ``None`` until the charge succeeded)."""

    payment_intent_id: str
    destination: str | None
    application_fee_amount: int | None
    transfer_id: str | None
    application_fee_id: str | None


@dataclass(frozen=True, slots=True)
class PayoutInfo:
    """A payout from a connected account's balance to its bank."""

    id: str
    amount: int  # Stripe's units
    currency: str  # upper case
    status: str  # pending | in_transit | paid | failed | canceled
    created: int
    arrival_date: int | None
    failure_code: str | None


class PaymentGateway(Protocol):
    async def create_payment_intent(
        self,
        *,
        amount: int,
        currency: str,
        metadata: Mapping[str, str],
        idempotency_key: str,
        connect: ConnectCharge | None = None,
        manual_capture: bool = False,
    ) -> IntentInfo:
        """``manual_capture``: the card is only authorised (``capture_method=manual``) until
        :meth:`capture_payment_intent`."""

    async def capture_payment_intent(self, intent_id: str, *, idempotency_key: str) -> str:
        """Capture an authorised intent in full; its status after (``succeeded``)."""

    async def retrieve_payment_intent(self, intent_id: str) -> IntentInfo: ...

    async def cancel_payment_intent(self, intent_id: str) -> None: ...

    async def confirm_payment_intent(self, intent_id: str, payment_method: str) -> str: ...

    async def refund_payment_intent(
        self, intent_id: str, *, idempotency_key: str, reason: str, amount: int | None = None
    ) -> RefundInfo:
        """Refund ``amount`` (Stripe's units) of the capture, or all that is left of it."""

    def list_payment_intents(self, *, created_since: int) -> AsyncIterator[IntentInfo]: ...

    async def close(self) -> None: ...

    async def create_checkout_session(
        self,
        *,
        amount: int,
        currency: str,
        name: str,
        metadata: Mapping[str, str],
        success_url: str,
        cancel_url: str,
        idempotency_key: str,
        expires_at: int | None = None,
        connect: ConnectCharge | None = None,
    ) -> CheckoutSessionInfo:
        """A hosted Checkout page for one line (``name``) of ``amount`` (Stripe's units);
        ``metadata`` on the session and on its PaymentIntent, so either's events route."""

    async def retrieve_checkout_session(self, session_id: str) -> CheckoutSessionInfo: ...

    async def expire_checkout_session(self, session_id: str) -> None:
        """Close an open session to payment; one expired already counts as done."""

    # --- Stripe Connect (app.connect) -----------------------------------------------------

    async def create_connect_account(
        self, *, store_id: str, idempotency_key: str
    ) -> ConnectAccountInfo:
        """A new Express account for the store (card payments and transfers requested)."""

    async def retrieve_connect_account(self, account_id: str) -> ConnectAccountInfo: ...

    async def create_account_link(
        self, account_id: str, *, refresh_url: str, return_url: str
    ) -> str:
        """A fresh single-use onboarding link (its URL) for the account."""

    async def create_transfer(
        self,
        *,
        amount: int,
        currency: str,
        destination: str,
        transfer_group: str | None,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> TransferInfo: ...

    async def create_transfer_reversal(
        self, transfer_id: str, *, amount: int, metadata: Mapping[str, str], idempotency_key: str
    ) -> TransferReversalInfo: ...

    async def retrieve_destination_charge(self, intent_id: str) -> DestinationChargeInfo: ...

    async def refund_application_fee(
        self, fee_id: str, *, amount: int, idempotency_key: str
    ) -> str:
        """Give ``amount`` of an application fee back to the account; the fee refund's id."""

    async def list_payouts(self, account_id: str, *, limit: int = 100) -> list[PayoutInfo]:
        """The connected account's newest payouts (``Stripe-Account``)."""

    async def list_transfers(self, *, transfer_group: str) -> list[TransferInfo]: ...

    async def card_fingerprint(self, payment_intent_id: str) -> str | None:
        """The fingerprint of the card that paid the intent (its latest charge's), the same
        for one card number whoever holds it: referrals compare it (``app.referrals``).
        ``None`` when nothing was charged, or not by card."""


def _plain(obj: Any) -> dict[str, Any]:
    """The SDK's StripeObject as a plain dict (it is not a Mapping)."""
    data: dict[str, Any] = obj.to_dict()
    return data


def _intent(obj: Any) -> IntentInfo:
    obj = _plain(obj)
    return IntentInfo(
        id=obj["id"],
        client_secret=obj["client_secret"] or "",
        status=obj["status"],
        amount=int(obj["amount"]),
        currency=str(obj["currency"]).upper(),
        metadata=dict(obj["metadata"] or {}),
        created=int(obj["created"]),
    )


def _connect_params(params: PaymentIntentCreateParams, connect: ConnectCharge) -> None:
    if connect.destination is not None:
        params["transfer_data"] = {"destination": connect.destination}
    if connect.application_fee_amount is not None:
        params["application_fee_amount"] = connect.application_fee_amount
    if connect.transfer_group is not None:
        params["transfer_group"] = connect.transfer_group


def _account(obj: Any) -> ConnectAccountInfo:
    account = _plain(obj)
    requirements = account.get("requirements") or {}
    due = [*(requirements.get("currently_due") or []), *(requirements.get("past_due") or [])]
    return ConnectAccountInfo(
        id=str(account["id"]),
        charges_enabled=bool(account.get("charges_enabled")),
        payouts_enabled=bool(account.get("payouts_enabled")),
        details_submitted=bool(account.get("details_submitted")),
        requirements_due=tuple(dict.fromkeys(str(item) for item in due)),
    )


def _transfer(obj: Any) -> TransferInfo:
    transfer = _plain(obj)
    return TransferInfo(
        id=str(transfer["id"]),
        amount=int(transfer["amount"]),
        currency=str(transfer["currency"]).upper(),
        destination=str(transfer["destination"]),
        transfer_group=transfer.get("transfer_group"),
        amount_reversed=int(transfer.get("amount_reversed") or 0),
    )


def _payout(obj: Any) -> PayoutInfo:
    payout = _plain(obj)
    arrival = payout.get("arrival_date")
    return PayoutInfo(
        id=str(payout["id"]),
        amount=int(payout["amount"]),
        currency=str(payout["currency"]).upper(),
        status=str(payout["status"]),
        created=int(payout["created"]),
        arrival_date=None if arrival is None else int(arrival),
        failure_code=payout.get("failure_code"),
    )


def _id_of(value: Any) -> str | None:
    """An id Stripe may give as a string or, expanded, as the object."""
    if isinstance(value, dict):
        value = value.get("id")
    return str(value) if value else None


def _checkout_session(obj: Any) -> CheckoutSessionInfo:
    session = _plain(obj)
    intent = session.get("payment_intent")
    if isinstance(intent, dict):  # expanded
        intent = intent.get("id")
    return CheckoutSessionInfo(
        id=session["id"],
        url=session.get("url"),
        payment_intent_id=str(intent) if intent else None,
        status=str(session["status"]),
        payment_status=str(session["payment_status"]),
        amount_total=int(session.get("amount_total") or 0),
        currency=str(session.get("currency") or "").upper(),
        metadata=dict(session.get("metadata") or {}),
        expires_at=int(session["expires_at"]),
    )


class StripeGateway:
    """``PaymentGateway`` on the stripe SDK (``StripeClient`` with an async HTTP client)."""

    def __init__(self, secret_key: str, *, api_base: str | None = None) -> None:
        base_addresses: dict[str, str] = {}
        if api_base is not None:
            base_addresses = {"api": api_base, "files": api_base, "connect": api_base}
        self._http = stripe.HTTPXClient(allow_sync_methods=True)
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses=base_addresses,  # type: ignore[arg-type]
            http_client=self._http,
            max_network_retries=2,
        )

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]

    async def create_payment_intent(
        self,
        *,
        amount: int,
        currency: str,
        metadata: Mapping[str, str],
        idempotency_key: str,
        connect: ConnectCharge | None = None,
        manual_capture: bool = False,
    ) -> IntentInfo:
        params: PaymentIntentCreateParams = {
            "amount": amount,
            "currency": currency.lower(),
            "metadata": dict(metadata),
        }
        if manual_capture:
            params["capture_method"] = "manual"
        if connect is not None:
            _connect_params(params, connect)
        try:
            intent = await self._client.v1.payment_intents.create_async(
                params=params, options={"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as exc:
            raise GatewayError(str(exc)) from exc
        return _intent(intent)

    async def capture_payment_intent(self, intent_id: str, *, idempotency_key: str) -> str:
        try:
            captured = await self._client.v1.payment_intents.capture_async(
                intent_id, options={"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as exc:
            raise GatewayError(str(exc)) from exc
        return str(captured.status)

    async def retrieve_payment_intent(self, intent_id: str) -> IntentInfo:
        try:
            return _intent(await self._client.v1.payment_intents.retrieve_async(intent_id))
        except stripe.StripeError as exc:
            raise GatewayError(str(exc)) from exc

    async def cancel_payment_intent(self, intent_id: str) -> None:
        """Cancel an intent; one canceled already (a retried cancel) is canceled: success."""
        try:
            await self._client.v1.payment_intents.cancel_async(intent_id)
        except stripe.InvalidRequestError as exc:
            if (await self.retrieve_payment_intent(intent_id)).status != "canceled":
                raise GatewayError(str(exc)) from exc
        except stripe.StripeError as exc:
            raise GatewayError(str(exc)) from exc

    async def confirm_payment_intent(self, intent_id: str, payment_method: str) -> str:
        """Attach a payment method made by Stripe.js and confirm; the new status.

        Raises ``CardDeclined`` with Stripe's message when the card is refused, and
        ``PaymentMethodRefused`` when Stripe refuses the payment method itself (unknown id).
        """
        try:
            await self._client.v1.payment_intents.update_async(
                intent_id, params={"payment_method": payment_method}
            )
            confirmed = await self._client.v1.payment_intents.confirm_async(intent_id)
        except stripe.CardError as exc:
            raise CardDeclined(exc.user_message or str(exc)) from exc
        except stripe.InvalidRequestError as exc:
            # The intent is the caller's open one (checked before): a refusal that names no
            # other parameter is about the payment method the client sent.
            if exc.param in {None, "payment_method"}:
                raise PaymentMethodRefused(str(exc)) from exc
            raise GatewayError(str(exc)) from exc
        except stripe.StripeError as exc:
            raise GatewayError(str(exc)) from exc
        return str(_plain(confirmed)["status"])

    async def refund_payment_intent(
        self, intent_id: str, *, idempotency_key: str, reason: str, amount: int | None = None
    ) -> RefundInfo:
        params: RefundCreateParams = {
            "payment_intent": intent_id,
            "metadata": {"teamcart_reason": reason},
        }
        if amount is not None:
            params["amount"] = amount
        try:
            created = await self._client.v1.refunds.create_async(
                params=params, options={"idempotency_key": idempotency_key}
            )
        except stripe.InvalidRequestError as exc:
            if exc.code == "charge_already_refunded":
                raise AlreadyRefunded(intent_id) from exc
            raise GatewayError(str(exc)) from exc
        except stripe.StripeError as exc:
            raise GatewayError(str(exc)) from exc
        refund = _plain(created)
        return RefundInfo(
            id=refund["id"],
            payment_intent_id=intent_id,
            amount=int(refund["amount"]),
            currency=str(refund["currency"]).upper(),
            status=str(refund.get("status") or "succeeded"),
        )

    async def list_payment_intents(self, *, created_since: int) -> AsyncIterator[IntentInfo]:
        params: PaymentIntentListParams = {"limit": 100}
        while True:
            try:
                page = await self._client.v1.payment_intents.list_async(params=params)
            except stripe.StripeError as exc:
                raise GatewayError(str(exc)) from exc
            for obj in page.data:
                if int(obj["created"]) >= created_since:
                    yield _intent(obj)
            if not page.has_more or not page.data:
                return
            params["starting_after"] = page.data[-1]["id"]

    async def create_checkout_session(
        self,
        *,
        amount: int,
        currency: str,
        name: str,
        metadata: Mapping[str, str],
        success_url: str,
        cancel_url: str,
        idempotency_key: str,
        expires_at: int | None = None,
        connect: ConnectCharge | None = None,
    ) -> CheckoutSessionInfo:
        params: SessionCreateParams = {
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {
                        "currency": currency.lower(),
                        "unit_amount": amount,
                        "product_data": {"name": name},
                    },
                    "quantity": 1,
                }
            ],
            "success_url": success_url,
            "cancel_url": cancel_url,
            "metadata": dict(metadata),
            "payment_intent_data": {"metadata": dict(metadata)},
        }
        if expires_at is not None:
            params["expires_at"] = expires_at
        if connect is not None:
            intent_data = params["payment_intent_data"]
            if connect.destination is not None:
                intent_data["transfer_data"] = {"destination": connect.destination}
            if connect.application_fee_amount is not None:
                intent_data["application_fee_amount"] = connect.application_fee_amount
            if connect.transfer_group is not None:
                intent_data["transfer_group"] = connect.transfer_group
        try:
            session = await self._client.v1.checkout.sessions.create_async(
                params=params, options={"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as exc:
            raise GatewayError(str(exc)) from exc
        return _checkout_session(session)

    async def retrieve_checkout_session(self, session_id: str) -> CheckoutSessionInfo:
        try:
            return _checkout_session(
                await self._client.v1.checkout.sessions.retrieve_async(session_id)
            )
        except stripe.StripeError as exc:
            raise GatewayError(str(exc)) from exc

    async def expire_checkout_session(self, session_id: str) -> None:
        """Expire an open session; one expired already (a retried expire) is success. A
        completed session can't be expired: that is a ``GatewayError`` (it was paid)."""
        try:
            await self._client.v1.checkout.sessions.expire_async(session_id)
        except stripe.InvalidRequestError as exc:
            if (await self.retrieve_checkout_session(session_id)).status != "expired":
                raise GatewayError(str(exc)) from exc
        except stripe.StripeError as exc:
            raise GatewayError(str(exc)) from exc

    async def card_fingerprint(self, payment_intent_id: str) -> str | None:
        """The latest charge's ``payment_method_details.card.fingerprint``, read with the
        intent (``expand=["latest_charge"]``: one call). Where the charge doesn't carry its
        details (the emulator's don't), the card's payment method has the same fingerprint."""
        try:
            intent = _plain(
                await self._client.v1.payment_intents.retrieve_async(
                    payment_intent_id, params={"expand": ["latest_charge"]}
                )
            )
            charge = intent.get("latest_charge")
            if not isinstance(charge, dict):
                return None  # nothing charged yet
            card = (charge.get("payment_method_details") or {}).get("card") or {}
            if card.get("fingerprint"):
                return str(card["fingerprint"])
            method_id = charge.get("payment_method") or intent.get("payment_method")
            if not isinstance(method_id, str) or not method_id:
                return None
            method = _plain(await self._client.v1.payment_methods.retrieve_async(method_id))
        except stripe.StripeError as exc:
            raise GatewayError(str(exc)) from exc
        fingerprint = (method.get("card") or {}).get("fingerprint")
        return str(fingerprint) if fingerprint else None

    # --- Stripe Connect -------------------------------------------------------------------

    async def create_connect_account(
        self, *, store_id: str, idempotency_key: str
    ) -> ConnectAccountInfo:
        params: AccountCreateParams = {
            "type": "express",
            "capabilities": {
                "card_payments": {"requested": True},
                "transfers": {"requested": True},
            },
            "metadata": {"store_id": store_id},
        }
        try:
            account = await self._client.v1.accounts.create_async(
                params=params, options={"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as exc:
            raise GatewayError(str(exc)) from exc
        return _account(account)

    async def retrieve_connect_account(self, account_id: str) -> ConnectAccountInfo:
        try:
            return _account(await self._client.v1.accounts.retrieve_async(account_id))
        except stripe.StripeError as exc:
            raise GatewayError(str(exc)) from exc

    async def create_account_link(
        self, account_id: str, *, refresh_url: str, return_url: str
    ) -> str:
        try:
            link = await self._client.v1.account_links.create_async(
                params={
                    "account": account_id,
                    "refresh_url": refresh_url,
                    "return_url": return_url,
                    "type": "account_onboarding",
                }
            )
        except stripe.StripeError as exc:
            raise GatewayError(str(exc)) from exc
        return str(_plain(link)["url"])

    async def create_transfer(
        self,
        *,
        amount: int,
        currency: str,
        destination: str,
        transfer_group: str | None,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> TransferInfo:
        params: TransferCreateParams = {
            "amount": amount,
            "currency": currency.lower(),
            "destination": destination,
            "metadata": dict(metadata),
        }
        if transfer_group is not None:
            params["transfer_group"] = transfer_group
        try:
            transfer = await self._client.v1.transfers.create_async(
                params=params, options={"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as exc:
            raise GatewayError(str(exc)) from exc
        return _transfer(transfer)

    async def create_transfer_reversal(
        self, transfer_id: str, *, amount: int, metadata: Mapping[str, str], idempotency_key: str
    ) -> TransferReversalInfo:
        try:
            reversal = await self._client.v1.transfers.reversals.create_async(
                transfer_id,
                params={"amount": amount, "metadata": dict(metadata)},
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise GatewayError(str(exc)) from exc
        made = _plain(reversal)
        return TransferReversalInfo(
            id=str(made["id"]), transfer_id=transfer_id, amount=int(made["amount"])
        )

    async def retrieve_destination_charge(self, intent_id: str) -> DestinationChargeInfo:
        try:
            intent = _plain(
                await self._client.v1.payment_intents.retrieve_async(
                    intent_id, params={"expand": ["latest_charge"]}
                )
            )
        except stripe.StripeError as exc:
            raise GatewayError(str(exc)) from exc
        charge = intent.get("latest_charge")
        charge = charge if isinstance(charge, dict) else {}
        transfer_data = intent.get("transfer_data") or {}
        fee = intent.get("application_fee_amount")
        return DestinationChargeInfo(
            payment_intent_id=intent_id,
            destination=_id_of(transfer_data.get("destination")),
            application_fee_amount=None if fee is None else int(fee),
            transfer_id=_id_of(charge.get("transfer")),
            application_fee_id=_id_of(charge.get("application_fee")),
        )

    async def refund_application_fee(
        self, fee_id: str, *, amount: int, idempotency_key: str
    ) -> str:
        try:
            refund = await self._client.v1.application_fees.refunds.create_async(
                fee_id, params={"amount": amount}, options={"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as exc:
            raise GatewayError(str(exc)) from exc
        return str(_plain(refund)["id"])

    async def list_payouts(self, account_id: str, *, limit: int = 100) -> list[PayoutInfo]:
        params: PayoutListParams = {"limit": limit}
        try:
            page = await self._client.v1.payouts.list_async(
                params=params, options={"stripe_account": account_id}
            )
        except stripe.StripeError as exc:
            raise GatewayError(str(exc)) from exc
        return [_payout(obj) for obj in page.data]

    async def list_transfers(self, *, transfer_group: str) -> list[TransferInfo]:
        params: TransferListParams = {"transfer_group": transfer_group, "limit": 100}
        try:
            page = await self._client.v1.transfers.list_async(params=params)
        except stripe.StripeError as exc:
            raise GatewayError(str(exc)) from exc
        return [_transfer(obj) for obj in page.data]
