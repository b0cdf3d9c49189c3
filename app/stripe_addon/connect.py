"""Stripe Connect as the add-on emulates it: connected accounts and their onboarding, transfers
and their reversals, destination charges and their application fees, connected accounts'
payouts — objects shaped as Stripe's, and their events signed as Stripe signs them.

No HTTP here (``server.py`` routes to it): this module checks parameters as Stripe checks
them (an unknown one is refused, as the Checkout Sessions are), keeps the objects in memory
(as localstripe keeps its own: a restart forgets them) and sends the events through the
add-on's one ``WebhookSender``, with the envelope's ``account`` set for events that happen
on a connected account (``account.updated``, ``payout.*``), as Stripe sends them to a
Connect endpoint.

Destination charges: localstripe refuses ``transfer_data``, ``application_fee_amount`` and
``transfer_group`` on a PaymentIntent. The server strips them from the create request before
it reaches localstripe (:meth:`Connect.read_charge`), records them by the intent's id and puts
them back on every PaymentIntent answer (:meth:`Connect.decorate_intent`). Stripe moves the
money when the charge succeeds; the add-on does not see localstripe's charges happen, so it
makes the transfer to the account and the application fee the first time it relays the
intent as ``succeeded`` (reading the intent is what the server does to learn of them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.stripe_addon.events import WebhookSender, event_envelope
from app.stripe_addon.forms import FormValue
from app.stripe_addon.sessions import (  # parameters read as the Checkout Sessions' are
    StripeApiError,
    _object,
    _text,
    invalid,
    missing,
    new_id,
)

log = logging.getLogger("teamcart.stripe_addon.connect")

LINK_LIFETIME_SECONDS = 300
"""An account link expires five minutes after it is made, as Stripe's do."""

ONBOARDING_REQUIREMENTS = (
    "business_profile.mcc",
    "business_profile.url",
    "business_type",
    "external_account",
    "representative.first_name",
    "representative.last_name",
    "tos_acceptance.date",
    "tos_acceptance.ip",
)
"""What Stripe asks of a new Express account before it may take charges."""

_ACCOUNT_PARAMS = frozenset(
    {
        "type",
        "country",
        "email",
        "business_type",
        "business_profile",
        "capabilities",
        "default_currency",
        "metadata",
        "expand",
    }
)
_LINK_PARAMS = frozenset({"account", "refresh_url", "return_url", "type", "collect", "expand"})
_TRANSFER_PARAMS = frozenset(
    {
        "amount",
        "currency",
        "destination",
        "transfer_group",
        "metadata",
        "description",
        "source_transaction",
        "expand",
    }
)
_REVERSAL_PARAMS = frozenset({"amount", "metadata", "description", "expand"})
_FEE_REFUND_PARAMS = frozenset({"amount", "metadata", "expand"})
CHARGE_PARAMS = frozenset({"application_fee_amount", "transfer_data", "transfer_group"})
"""The Connect parameters of a PaymentIntent that localstripe refuses and the add-on takes."""
_REFUSED_CHARGE_PARAMS = frozenset({"on_behalf_of"})


def _amount(value: FormValue | None, param: str, *, required: bool = True) -> int | None:
    if value is None or value == "":
        if required:
            raise missing(param)
        return None
    if not isinstance(value, str) or not value.isdigit():
        raise invalid(param, f"Invalid integer: {value}", "parameter_invalid_integer")
    return int(value)


def _metadata(params: Mapping[str, FormValue]) -> dict[str, str]:
    return {
        key: value
        for key, value in _object(params, "metadata").items()
        if isinstance(value, str) and value != ""
    }


def _only(params: Mapping[str, FormValue], allowed: frozenset[str], prefix: str = "") -> None:
    for name in params:
        if name not in allowed:
            param = f"{prefix}[{name}]" if prefix else name
            raise invalid(param, f"Received unknown parameter: {param}", "parameter_unknown")


def _list(data: list[dict[str, Any]], url: str, *, has_more: bool = False) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def no_such(kind: str, object_id: str, param: str = "id") -> StripeApiError:
    return StripeApiError(
        404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param
    )


# --- the objects --------------------------------------------------------------------------


@dataclass(slots=True)
class Account:
    """A connected account; onboarding done or not is all its state."""

    id: str
    type: str
    country: str
    email: str | None
    default_currency: str
    metadata: dict[str, str]
    business_type: str | None
    requested: tuple[str, ...]
    created: int
    onboarded: bool = False
    business_name: str | None = None

    def to_stripe(self) -> dict[str, Any]:
        due = [] if self.onboarded else list(ONBOARDING_REQUIREMENTS)
        active = "active" if self.onboarded else "inactive"
        requirements = {
            "alternatives": [],
            "current_deadline": None,
            "currently_due": due,
            "disabled_reason": None if self.onboarded else "requirements.past_due",
            "errors": [],
            "eventually_due": due,
            "past_due": due,
            "pending_verification": [],
        }
        return {
            "id": self.id,
            "object": "account",
            "business_profile": {
                "mcc": "5812" if self.onboarded else None,
                "name": self.business_name,
                "product_description": None,
                "support_email": None,
                "url": None,
            },
            "business_type": self.business_type or ("company" if self.onboarded else None),
            "capabilities": dict.fromkeys(self.requested, active),
            "charges_enabled": self.onboarded,
            "controller": {"is_controller": True, "type": "application"},
            "country": self.country,
            "created": self.created,
            "default_currency": self.default_currency,
            "details_submitted": self.onboarded,
            "email": self.email,
            "external_accounts": _list([], f"/v1/accounts/{self.id}/external_accounts"),
            "future_requirements": {**requirements, "currently_due": [], "past_due": []},
            "metadata": dict(self.metadata),
            "payouts_enabled": self.onboarded,
            "requirements": requirements,
            "settings": {"payouts": {"schedule": {"delay_days": 2, "interval": "daily"}}},
            "tos_acceptance": {"date": self.created if self.onboarded else None},
            "type": self.type,
        }

    @property
    def takes_transfers(self) -> bool:
        return self.onboarded and "transfers" in self.requested


@dataclass(slots=True)
class AccountLink:
    """A single-use onboarding link: ``token`` names the page it opens."""

    token: str
    account_id: str
    refresh_url: str
    return_url: str
    created: int
    expires_at: int
    used: bool = False


@dataclass(slots=True)
class Transfer:
    id: str
    amount: int
    currency: str
    destination: str
    transfer_group: str | None
    metadata: dict[str, str]
    description: str | None
    source_transaction: str | None
    created: int
    destination_payment: str
    reversals: list[dict[str, Any]] = field(default_factory=list)

    @property
    def amount_reversed(self) -> int:
        return sum(int(r["amount"]) for r in self.reversals)

    def to_stripe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "transfer",
            "amount": self.amount,
            "amount_reversed": self.amount_reversed,
            "balance_transaction": f"txn_{self.id[3:]}",
            "created": self.created,
            "currency": self.currency,
            "description": self.description,
            "destination": self.destination,
            "destination_payment": self.destination_payment,
            "livemode": False,
            "metadata": dict(self.metadata),
            "reversals": {
                **_list(list(self.reversals), f"/v1/transfers/{self.id}/reversals"),
                "total_count": len(self.reversals),
            },
            "reversed": self.amount_reversed >= self.amount,
            "source_transaction": self.source_transaction,
            "source_type": "card",
            "transfer_group": self.transfer_group,
        }


@dataclass(slots=True)
class ApplicationFee:
    id: str
    account: str
    amount: int
    currency: str
    charge: str
    created: int
    refunds: list[dict[str, Any]] = field(default_factory=list)

    @property
    def amount_refunded(self) -> int:
        return sum(int(r["amount"]) for r in self.refunds)

    def to_stripe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "application_fee",
            "account": self.account,
            "amount": self.amount,
            "amount_refunded": self.amount_refunded,
            "application": "ca_teamcart_emulator",
            "balance_transaction": f"txn_{self.id[4:]}",
            "charge": self.charge,
            "created": self.created,
            "currency": self.currency,
            "livemode": False,
            "originating_transaction": None,
            "refunded": self.amount_refunded >= self.amount,
            "refunds": {
                **_list(list(self.refunds), f"/v1/application_fees/{self.id}/refunds"),
                "total_count": len(self.refunds),
            },
        }


@dataclass(frozen=True, slots=True)
class ChargeTerms:
    """A PaymentIntent's Connect parameters, as the create request gave them."""

    destination: str | None
    transfer_amount: int | None
    application_fee_amount: int | None
    transfer_group: str | None

    def on_intent(self) -> dict[str, Any]:
        """The fields Stripe shows on the PaymentIntent (and its charge)."""
        data: dict[str, Any] | None = None
        if self.destination is not None:
            data = {"destination": self.destination}
            if self.transfer_amount is not None:
                data["amount"] = self.transfer_amount
        return {
            "application_fee_amount": self.application_fee_amount,
            "on_behalf_of": None,
            "transfer_data": data,
            "transfer_group": self.transfer_group,
        }


@dataclass(slots=True)
class Settlement:
    """What a destination charge did once it succeeded: its charge, transfer and fee."""

    charge: str
    transfer: str
    fee: str | None


# --- the store of them ----------------------------------------------------------------------


class Connect:
    """Every Connect object the add-on has made, by id."""

    def __init__(
        self,
        sender: WebhookSender,
        *,
        public_base: str,
        api_version: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sender = sender
        self._public_base = public_base.rstrip("/")
        self._api_version = api_version
        self._clock = clock
        self.accounts: dict[str, Account] = {}
        self.links: dict[str, AccountLink] = {}
        self.transfers: dict[str, Transfer] = {}
        self.fees: dict[str, ApplicationFee] = {}
        self.charges: dict[str, ChargeTerms] = {}
        """Destination and group charges' terms, by PaymentIntent id."""
        self.settled: dict[str, Settlement] = {}
        self.charge_intents: dict[str, str] = {}
        """PaymentIntent ids by charge id, for the charges' answers."""
        self.payouts: dict[str, list[dict[str, Any]]] = {}
        self.events: dict[str, dict[str, Any]] = {}

    def now(self) -> int:
        return int(self._clock())

    def clear(self) -> None:
        for kept in (self.accounts, self.links, self.transfers, self.fees, self.charges):
            kept.clear()
        self.settled.clear()
        self.charge_intents.clear()
        self.payouts.clear()
        self.events.clear()

    def _announce(
        self,
        event_type: str,
        obj: Mapping[str, Any],
        *,
        account: str | None = None,
        previous: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        event = event_envelope(
            event_type,
            obj,
            api_version=self._api_version,
            request_id=request_id,
            idempotency_key=idempotency_key,
        )
        if previous is not None:
            event["data"]["previous_attributes"] = dict(previous)
        if account is not None:
            event["account"] = account  # Stripe's mark of an event on a connected account
        self.events[event["id"]] = event
        self._sender.send(event)

    # --- accounts ---------------------------------------------------------------------------

    def create_account(self, params: Mapping[str, FormValue]) -> Account:
        _only(params, _ACCOUNT_PARAMS)
        kind = _text(params, "type") or "express"
        if kind not in {"express", "standard", "custom"}:
            raise invalid("type", "Invalid type: must be one of express, standard or custom")
        capabilities = _object(params, "capabilities")
        requested = tuple(
            name
            for name, wanted in capabilities.items()
            if isinstance(wanted, dict) and wanted.get("requested") == "true"
        )
        country = (_text(params, "country") or "US").upper()
        account = Account(
            id=new_id("acct_", 16),
            type=kind,
            country=country,
            email=_text(params, "email"),
            default_currency=(_text(params, "default_currency") or "usd").lower(),
            metadata=_metadata(params),
            business_type=_text(params, "business_type"),
            requested=requested or ("card_payments", "transfers"),
            created=self.now(),
        )
        self.accounts[account.id] = account
        return account

    def account(self, account_id: str) -> Account:
        account = self.accounts.get(account_id)
        if account is None:
            raise StripeApiError(
                404,
                f"No such account: '{account_id}'",
                code="account_invalid",
                param="account",
            )
        return account

    def create_link(self, params: Mapping[str, FormValue]) -> dict[str, Any]:
        _only(params, _LINK_PARAMS)
        account_id = _text(params, "account")
        if account_id is None:
            raise missing("account")
        self.account(account_id)
        kind = _text(params, "type")
        if kind is None:
            raise missing("type")
        if kind != "account_onboarding":
            raise invalid("type", "The Stripe emulator's account links are account_onboarding.")
        refresh_url, return_url = _text(params, "refresh_url"), _text(params, "return_url")
        if refresh_url is None:
            raise missing("refresh_url")
        if return_url is None:
            raise missing("return_url")
        now = self.now()
        link = AccountLink(
            token=new_id("", 32),
            account_id=account_id,
            refresh_url=refresh_url,
            return_url=return_url,
            created=now,
            expires_at=now + LINK_LIFETIME_SECONDS,
        )
        self.links[link.token] = link
        return {
            "object": "account_link",
            "created": link.created,
            "expires_at": link.expires_at,
            "url": f"{self._public_base}/connect/onboarding/{link.token}",
        }

    def usable_link(self, token: str) -> AccountLink | None:
        """The link if it may still be followed (not used, not expired)."""
        link = self.links.get(token)
        if link is None or link.used or link.expires_at <= self.now():
            return None
        return link

    def complete_onboarding(self, token: str, *, business_name: str) -> str:
        """The onboarding form was submitted: the account may take charges and payouts
        (``account.updated``, on the account); where to send the browser (``return_url``,
        or ``refresh_url`` for a link used or expired, as Stripe does)."""
        link = self.links.get(token)
        if link is None:
            raise no_such("account link", token)
        if link.used or link.expires_at <= self.now():
            return link.refresh_url
        link.used = True
        account = self.account(link.account_id)
        if not account.onboarded:
            before = account.to_stripe()
            account.onboarded = True
            account.business_name = business_name
            after = account.to_stripe()
            changed = {k: before[k] for k in after if before[k] != after[k]}
            self._announce("account.updated", after, account=account.id, previous=changed)
            log.info("account %s onboarded", account.id)
        return link.return_url

    # --- charges of the platform that pay accounts ---------------------------------------------

    def read_charge(
        self, params: Mapping[str, FormValue], *, amount: int, prefix: str = ""
    ) -> ChargeTerms | None:
        """The Connect terms of a PaymentIntent's create parameters (``prefix``: where they
        sit, ``payment_intent_data`` for a Checkout Session), checked as Stripe checks them;
        ``None`` when there are none."""

        def named(name: str) -> str:
            return f"{prefix}[{name}]" if prefix else name

        for name in _REFUSED_CHARGE_PARAMS & set(params):
            raise invalid(
                named(name),
                f"The Stripe emulator does not take {named(name)}.",
                "parameter_unknown",
            )
        if not CHARGE_PARAMS & set(params):
            return None
        data = _object(params, "transfer_data")
        _only(data, frozenset({"destination", "amount"}), named("transfer_data"))
        destination = _text(data, "destination")
        transfer_amount = _amount(
            data.get("amount"), named("transfer_data[amount]"), required=False
        )
        fee = _amount(
            params.get("application_fee_amount"), named("application_fee_amount"), required=False
        )
        group = _text(params, "transfer_group")
        if data and destination is None:
            raise missing(named("transfer_data[destination]"))
        if destination is not None:
            self._destination(destination, named("transfer_data[destination]"))
        if fee is not None and destination is None:
            raise StripeApiError(
                400,
                "Can only apply an application_fee_amount when the PaymentIntent is attempting "
                "a direct payment (using an OAuth key or Stripe-Account header) or destination "
                "payment (using `transfer_data[destination]`).",
                param=named("application_fee_amount"),
            )
        if fee is not None and fee > amount:
            raise StripeApiError(
                400,
                "The application fee can't be greater than the amount of the payment.",
                param=named("application_fee_amount"),
            )
        if transfer_amount is not None and transfer_amount > amount:
            raise StripeApiError(
                400,
                "The transfer amount can't be greater than the amount of the payment.",
                param=named("transfer_data[amount]"),
            )
        return ChargeTerms(destination, transfer_amount, fee, group)

    def _destination(self, account_id: str, param: str) -> Account:
        """The account money may be sent to, as Stripe checks it: onboarded, with the
        ``transfers`` capability."""
        account = self.accounts.get(account_id)
        if account is None:
            raise invalid(param, f"No such destination: '{account_id}'", "resource_missing")
        if not account.takes_transfers:
            raise invalid(
                param,
                "Your destination account needs to have at least one of the following "
                "capabilities enabled: transfers, crypto_transfers, legacy_payments",
                "insufficient_capabilities_for_transfer",
            )
        return account

    def record_charge(self, intent_id: str, terms: ChargeTerms) -> None:
        self.charges[intent_id] = terms

    def decorate_intent(self, intent: dict[str, Any]) -> dict[str, Any]:
        """A PaymentIntent from localstripe with the Connect fields it was created with; a
        succeeded destination charge is settled here (its transfer and fee made, once)."""
        intent_id = str(intent.get("id", ""))
        terms = self.charges.get(intent_id)
        if terms is None:
            return intent
        intent.update(terms.on_intent())
        charge = intent.get("latest_charge")
        charge_id = charge.get("id") if isinstance(charge, dict) else charge
        if intent.get("status") == "succeeded" and isinstance(charge_id, str):
            self._settle(intent_id, terms, charge_id, int(intent.get("amount") or 0), intent)
        if isinstance(charge, dict):
            self.decorate_charge(charge)
        return intent

    def decorate_charge(self, charge: dict[str, Any]) -> dict[str, Any]:
        """A charge from localstripe with its Connect fields (its transfer and fee once its
        intent's success was seen)."""
        intent_id = charge.get("payment_intent") or self.charge_intents.get(str(charge.get("id")))
        terms = self.charges.get(str(intent_id)) if intent_id else None
        if terms is None:
            return charge
        settled = self.settled.get(str(intent_id))
        charge.update(terms.on_intent())
        charge["application_fee"] = settled.fee if settled else None
        charge["transfer"] = settled.transfer if settled else None
        return charge

    def _settle(
        self,
        intent_id: str,
        terms: ChargeTerms,
        charge_id: str,
        amount: int,
        intent: Mapping[str, Any],
    ) -> None:
        if intent_id in self.settled or terms.destination is None:
            return
        currency = str(intent.get("currency") or "usd").lower()
        now = self.now()
        transfer = Transfer(
            id=new_id("tr_"),
            amount=amount if terms.transfer_amount is None else terms.transfer_amount,
            currency=currency,
            destination=terms.destination,
            transfer_group=terms.transfer_group,
            metadata={},
            description=None,
            source_transaction=charge_id,
            created=now,
            destination_payment=new_id("py_"),
        )
        self.transfers[transfer.id] = transfer
        fee = None
        if terms.application_fee_amount:
            fee = ApplicationFee(
                id=new_id("fee_"),
                account=terms.destination,
                amount=terms.application_fee_amount,
                currency=currency,
                charge=charge_id,
                created=now,
            )
            self.fees[fee.id] = fee
        self.settled[intent_id] = Settlement(
            charge_id, transfer.id, None if fee is None else fee.id
        )
        self.charge_intents[charge_id] = intent_id
        self._announce("transfer.created", transfer.to_stripe())
        if fee is not None:
            self._announce("application_fee.created", fee.to_stripe())
        log.info(
            "destination charge %s settled: %s to %s", intent_id, transfer.id, transfer.destination
        )

    # --- transfers ------------------------------------------------------------------------------

    def create_transfer(self, params: Mapping[str, FormValue], *, request_id: str) -> Transfer:
        _only(params, _TRANSFER_PARAMS)
        amount = _amount(params.get("amount"), "amount") or 0
        if amount < 1:
            raise invalid("amount", "This value must be greater than or equal to 1.")
        currency = _text(params, "currency")
        if currency is None:
            raise missing("currency")
        destination = _text(params, "destination")
        if destination is None:
            raise missing("destination")
        self._destination(destination, "destination")
        transfer = Transfer(
            id=new_id("tr_"),
            amount=amount,
            currency=currency.lower(),
            destination=destination,
            transfer_group=_text(params, "transfer_group"),
            metadata=_metadata(params),
            description=_text(params, "description"),
            source_transaction=_text(params, "source_transaction"),
            created=self.now(),
            destination_payment=new_id("py_"),
        )
        self.transfers[transfer.id] = transfer
        self._announce("transfer.created", transfer.to_stripe(), request_id=request_id)
        return transfer

    def transfer(self, transfer_id: str) -> Transfer:
        transfer = self.transfers.get(transfer_id)
        if transfer is None:
            raise no_such("transfer", transfer_id)
        return transfer

    def list_transfers(self, params: Mapping[str, FormValue]) -> dict[str, Any]:
        """Newest first; ``transfer_group`` and ``destination`` filter, ``limit`` and
        ``starting_after`` page."""
        group, destination = _text(params, "transfer_group"), _text(params, "destination")
        found = [
            t
            for t in sorted(self.transfers.values(), key=lambda t: t.created, reverse=True)
            if (group is None or t.transfer_group == group)
            and (destination is None or t.destination == destination)
        ]
        page, more = _page(found, params, lambda t: t.id)
        return _list([t.to_stripe() for t in page], "/v1/transfers", has_more=more)

    def create_reversal(
        self, transfer_id: str, params: Mapping[str, FormValue], *, request_id: str
    ) -> dict[str, Any]:
        _only(params, _REVERSAL_PARAMS)
        transfer = self.transfer(transfer_id)
        left = transfer.amount - transfer.amount_reversed
        amount = _amount(params.get("amount"), "amount", required=False)
        amount = left if amount is None else amount
        if left <= 0:
            raise StripeApiError(400, f"Transfer {transfer_id} has already been fully reversed.")
        if amount < 1 or amount > left:
            raise invalid(
                "amount",
                f"Transfer {transfer_id} has only {left} left to reverse; you asked for {amount}.",
            )
        reversal = {
            "id": new_id("trr_"),
            "object": "transfer_reversal",
            "amount": amount,
            "balance_transaction": new_id("txn_"),
            "created": self.now(),
            "currency": transfer.currency,
            "destination_payment_refund": new_id("pyr_"),
            "metadata": _metadata(params),
            "source_refund": None,
            "transfer": transfer.id,
        }
        transfer.reversals.append(reversal)
        self._announce("transfer.reversed", transfer.to_stripe(), request_id=request_id)
        return reversal

    # --- application fees ----------------------------------------------------------------------

    def fee(self, fee_id: str) -> ApplicationFee:
        fee = self.fees.get(fee_id)
        if fee is None:
            raise no_such("application fee", fee_id)
        return fee

    def refund_fee(
        self, fee_id: str, params: Mapping[str, FormValue], *, request_id: str
    ) -> dict[str, Any]:
        _only(params, _FEE_REFUND_PARAMS)
        fee = self.fee(fee_id)
        left = fee.amount - fee.amount_refunded
        amount = _amount(params.get("amount"), "amount", required=False)
        amount = left if amount is None else amount
        if amount < 1 or amount > left:
            raise invalid(
                "amount",
                f"Application fee {fee_id} has only {left} left to refund; you asked for {amount}.",
            )
        refund = {
            "id": new_id("fr_"),
            "object": "fee_refund",
            "amount": amount,
            "balance_transaction": new_id("txn_"),
            "created": self.now(),
            "currency": fee.currency,
            "fee": fee.id,
            "metadata": _metadata(params),
        }
        fee.refunds.append(refund)
        self._announce("application_fee.refunded", fee.to_stripe(), request_id=request_id)
        return refund

    # --- payouts on connected accounts ---------------------------------------------------------

    def list_payouts(self, account_id: str, params: Mapping[str, FormValue]) -> dict[str, Any]:
        self.account(account_id)
        found = list(reversed(self.payouts.get(account_id, [])))
        page, more = _page(found, params, lambda p: str(p["id"]))
        return _list(page, "/v1/payouts", has_more=more)

    def pay_out(
        self, account_id: str, *, amount: int, currency: str, status: str, failure_code: str | None
    ) -> dict[str, Any]:
        """A payout of the account ends ``paid`` or ``failed`` (the test hook): Stripe's
        ``payout.created`` then ``payout.paid`` / ``payout.failed``, each on the account."""
        if status not in {"paid", "failed"}:
            raise invalid("status", "A payout the emulator makes ends paid or failed.")
        self.account(account_id)
        now = self.now()
        failed = status == "failed"
        payout: dict[str, Any] = {
            "id": new_id("po_"),
            "object": "payout",
            "amount": amount,
            "arrival_date": now + 2 * 86400,
            "automatic": True,
            "balance_transaction": new_id("txn_"),
            "created": now,
            "currency": currency.lower(),
            "description": "STRIPE PAYOUT",
            "destination": new_id("ba_"),
            "failure_balance_transaction": new_id("txn_") if failed else None,
            "failure_code": (failure_code or "account_closed") if failed else None,
            "failure_message": "The bank account has been closed." if failed else None,
            "livemode": False,
            "metadata": {},
            "method": "standard",
            "original_payout": None,
            "reconciliation_status": "not_applicable",
            "reversed_by": None,
            "source_type": "card",
            "statement_descriptor": None,
            "status": "pending",
            "type": "bank_account",
        }
        self._announce("payout.created", payout, account=account_id)
        payout = {**payout, "status": status}
        self.payouts.setdefault(account_id, []).append(payout)
        self._announce(f"payout.{status}", payout, account=account_id)
        return payout


def _page(
    found: list[Any], params: Mapping[str, FormValue], id_of: Callable[[Any], str]
) -> tuple[list[Any], bool]:
    """Stripe's list paging: ``starting_after`` an id, ``limit`` 1-100 (default 10)."""
    after = _text(params, "starting_after")
    if after is not None:
        ids = [id_of(item) for item in found]
        if after not in ids:
            raise invalid("starting_after", f"No such object: '{after}'", "resource_missing")
        found = found[ids.index(after) + 1 :]
    raw = params.get("limit")
    limit = 10
    if raw not in (None, ""):
        if not isinstance(raw, str) or not raw.isdigit() or not 1 <= int(raw) <= 100:
            raise invalid(
                "limit",
                "This value must be greater than or equal to 1 and less than or equal to 100.",
                "parameter_invalid_integer",
            )
        limit = int(raw)
    return found[:limit], len(found) > limit
