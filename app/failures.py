"""Application errors: refusals a handler decides outside the domain's rules.

The domain raises ``domain.errors.DomainError`` for a broken business rule; handlers raise
these for what only the application knows (an id that names nothing, Stripe not answering,
a cart that kept changing). Neither knows HTTP: ``app.errors`` alone turns both into RFC 9457
problems, by category, with the ``code`` given here::

    ApplicationError
    ├── NotFoundError           404  cart_not_found, store_not_found, invite_not_found, …
    ├── ForbiddenError          403  not_a_participant, …
    ├── ConflictError           409  payment_not_open, …
    │   └── VersionConflictError     version_conflict (the unit of work's retries ran out)
    ├── UnprocessableError      422  currency_not_payable_online, …
    ├── PaymentDeclinedError    402  card_declined (Stripe's message for the card holder)
    ├── ProviderUnavailableError 502 payment_provider_unavailable
    └── ServiceUnavailableError 503  service_unavailable (try again later)
"""

from __future__ import annotations

from typing import ClassVar


class ApplicationError(Exception):
    status: ClassVar[int] = 409

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class NotFoundError(ApplicationError):
    status = 404


class ForbiddenError(ApplicationError):
    status = 403


class ConflictError(ApplicationError):
    status = 409


class VersionConflictError(ConflictError):
    def __init__(self, detail: str) -> None:
        super().__init__("version_conflict", detail)


class UnprocessableError(ApplicationError):
    status = 422


class PaymentDeclinedError(ApplicationError):
    status = 402


class ProviderUnavailableError(ApplicationError):
    status = 502


class ServiceUnavailableError(ApplicationError):
    status = 503


def cart_not_found(cart_id: str) -> NotFoundError:
    return NotFoundError("cart_not_found", f"no cart with id {cart_id}")
