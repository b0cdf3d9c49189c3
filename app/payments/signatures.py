"""Stripe webhook signatures, checked with the SDK on the raw body.

``Stripe-Signature`` carries a timestamp and one or more ``v1`` signatures; the SDK accepts
the event when any of them matches and the timestamp is not older than the tolerance. A
timestamp further in the future than the tolerance is refused here too (the SDK lets it
through): a signature made for later is a replay waiting to happen. Several secrets may be
configured during rotation: the event is genuine if it verifies with any of them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

import stripe

TOLERANCE_SECONDS = 300
_TIMESTAMP = re.compile(r"(?:^|,)\s*t=(\d{1,12})(?:,|$)")


class InvalidSignature(Exception):
    """Missing, malformed, wrong or stale ``Stripe-Signature``."""


def verify_signature(payload: bytes, header: str | None, secrets: Sequence[str]) -> None:
    if not header:
        raise InvalidSignature("no Stripe-Signature header")
    if not secrets:
        raise InvalidSignature("no webhook secret is configured")
    stamp = _TIMESTAMP.search(header)
    if stamp is not None and int(stamp.group(1)) > time.time() + TOLERANCE_SECONDS:
        raise InvalidSignature("the signature's timestamp is in the future")
    text = payload.decode("utf-8")
    last: Exception | None = None
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(text, header, secret, TOLERANCE_SECONDS)
        except stripe.SignatureVerificationError as exc:
            last = exc
            continue
        return
    raise InvalidSignature(str(last) if last else "signature does not match")
