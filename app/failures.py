"""Application errors: refusals a handler decides outside the domain's rules.

The domain raises ``domain.errors.DomainError`` for a broken business rule; handlers raise
these for what only the application knows (an id that names nothing, Stripe not answering,
a cart that kept changing). Neither knows HTTP: ``app.errors`` alone turns both into RFC 9457
problems, by category, with the ``code`` given here. At the end: what an exception from a
driver means (a value PostgreSQL can't store, a service out of reach), for the mapper and
for the webhook intake alike::

    ApplicationError
    ├── InvalidFieldError       400  validation_error, naming the field (a foreign cursor,
    │                                a payment method Stripe refuses)
    ├── NotFoundError           404  cart_not_found, store_not_found, invite_not_found, …
    ├── ForbiddenError          403  not_a_participant, …
    ├── ConflictError           409  payment_not_open, …
    │   └── VersionConflictError     version_conflict (the unit of work's retries ran out)
    ├── UnprocessableError      422  currency_not_payable_online, …
    │   └── BelowOnlineMinimum       below_online_minimum (with ``minimum_minor``)
    ├── PaymentDeclinedError    402  card_declined (Stripe's message for the card holder)
    ├── ProviderUnavailableError 502 payment_provider_unavailable
    └── ServiceUnavailableError 503  service_unavailable (try again later)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import asyncpg.exceptions as pg
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.exc import InterfaceError as DBAPIInterfaceError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError


class ApplicationError(Exception):
    status: ClassVar[int] = 409

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class InvalidFieldError(ApplicationError):
    """A request value only the application can judge (a cursor it did not issue)."""

    status = 400

    def __init__(self, field: str, source: str, detail: str) -> None:
        super().__init__("validation_error", f"{field}: {detail}")
        self.field = field
        self.source = source


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


class BelowOnlineMinimum(UnprocessableError):
    """A share smaller than Stripe charges in the currency: cash, or the host covering it."""

    def __init__(self, minimum_minor: int, currency: str) -> None:
        super().__init__(
            "below_online_minimum",
            f"Stripe charges at least {minimum_minor} ({currency} minor units); pay this share "
            "cash on delivery, or ask the host to cover it",
        )
        self.minimum_minor = minimum_minor


class PaymentDeclinedError(ApplicationError):
    status = 402


class ProviderUnavailableError(ApplicationError):
    status = 502


class ServiceUnavailableError(ApplicationError):
    status = 503


def cart_not_found(cart_id: str) -> NotFoundError:
    return NotFoundError("cart_not_found", f"no cart with id {cart_id}")


# --- what an exception from below means --------------------------------------------------

# PostgreSQL refusing a value a request carried (SQLSTATE class 22): a NUL or a character the
# encoding lacks, a number or time out of range, text too long for its column.
_UNSTORABLE_VALUES: tuple[type[BaseException], ...] = (
    pg.CharacterNotInRepertoireError,
    pg.NumericValueOutOfRangeError,
    pg.UntranslatableCharacterError,
    pg.InvalidTextRepresentationError,
    pg.DatetimeFieldOverflowError,
    pg.StringDataRightTruncationError,
)

# Failures of the connection, not of the request: the same request may succeed in a moment.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, timed out (TimeoutError is an OSError)
    pg.PostgresConnectionError,  # ConnectionDoesNotExistError, ConnectionFailureError, …
    pg.CannotConnectNowError,  # the server is starting or shutting down
    pg.TooManyConnectionsError,
    pg.InterfaceError,
    OperationalError,
    DBAPIInterfaceError,
    DisconnectionError,
    PoolTimeoutError,  # no connection free in the pool in time
    RedisConnectionError,
    RedisTimeoutError,
)


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what caused it: a DBAPIError's driver error, each ``raise … from``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = current.orig if isinstance(current, DBAPIError) else None
        current = orig if isinstance(orig, BaseException) else current.__cause__


def is_unstorable_value(exc: BaseException) -> bool:
    # asyncpg's own check of a parameter (an int past int32, a time past year 9999) raises the
    # family's base class itself; its subclasses are PostgreSQL's verdicts.
    return isinstance(exc, _UNSTORABLE_VALUES) or type(exc) is pg.DataError


def is_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, _UNAVAILABLE) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )
