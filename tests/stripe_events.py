"""Real-shaped Stripe events, signed with the webhook secret, for what the emulator can't send.

Shapes follow Stripe's API reference (event → data.object of the named type); only the fields
the server reads are filled with meaning, the rest keep their real names and types.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any

WEBHOOK_SECRET = "whsec_teamcart_tests_0123456789abcdef"


def sign(payload: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header Stripe would send for ``payload``."""
    ts = int(time.time()) if timestamp is None else timestamp
    signature = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={ts},v1={signature}"


def event(event_type: str, obj: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def payment_intent(
    intent_id: str,
    *,
    amount: int,
    currency: str,
    metadata: dict[str, str],
    status: str = "succeeded",
) -> dict[str, Any]:
    return {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount if status == "succeeded" else 0,
        "capture_method": "automatic",
        "client_secret": f"{intent_id}_secret_{uuid.uuid4().hex[:16]}",
        "created": int(time.time()),
        "currency": currency.lower(),
        "latest_charge": f"ch_{uuid.uuid4().hex[:24]}",
        "livemode": False,
        "metadata": metadata,
        "payment_method": f"pm_{uuid.uuid4().hex[:24]}",
        "status": status,
    }


def teamcart_metadata(cart_id: str, user_id: str, quote_version: int) -> dict[str, str]:
    return {
        "source": "teamcart",
        "teamcart_id": cart_id,
        "member_user_id": user_id,
        "quote_version": str(quote_version),
        "purpose": "member_payment",
    }


def charge_refunded(
    intent_id: str, *, amount: int, currency: str, refund_id: str
) -> dict[str, Any]:
    return {
        "id": f"ch_{uuid.uuid4().hex[:24]}",
        "object": "charge",
        "amount": amount,
        "amount_refunded": amount,
        "currency": currency.lower(),
        "payment_intent": intent_id,
        "refunded": True,
        "refunds": {
            "object": "list",
            "data": [
                {
                    "id": refund_id,
                    "object": "refund",
                    "amount": amount,
                    "currency": currency.lower(),
                    "payment_intent": intent_id,
                    "status": "succeeded",
                }
            ],
            "has_more": False,
        },
        "status": "succeeded",
    }


def dispute(intent_id: str, *, amount: int, currency: str) -> dict[str, Any]:
    return {
        "id": f"du_{uuid.uuid4().hex[:24]}",
        "object": "dispute",
        "amount": amount,
        "charge": f"ch_{uuid.uuid4().hex[:24]}",
        "currency": currency.lower(),
        "payment_intent": intent_id,
        "reason": "fraudulent",
        "status": "needs_response",
    }


def body_and_headers(evt: dict[str, Any], **sign_kwargs: Any) -> tuple[bytes, dict[str, str]]:
    payload = json.dumps(evt).encode()
    return payload, {
        "Stripe-Signature": sign(payload, **sign_kwargs),
        "Content-Type": "application/json",
    }
