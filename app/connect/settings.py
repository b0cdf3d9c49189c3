"""A store's payment settings: cash on delivery and online payments on or off, the
platform's fee, and the secrets of a store that takes payments on its own Stripe account.

The secrets are write-only. A write seals each with the first key of ``TEAMCART_SECRETS_KEY``
(``app.secrets``, bound to the store and the field); every answer says only whether each is
``set`` or ``unset``; the one place a secret is opened is where it is used (the store's own
webhook endpoint verifying a signature). A write that leaves a secret out keeps it; ``null``
removes it. :func:`rotate_secrets` re-seals every one under the first key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

import structlog
from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from app.connect.onboarding import connect_rows
from app.connect.rows import ConnectRows
from app.failures import NotFoundError, UnprocessableError
from app.secrets import Keyring, SecretsError
from app.unit_of_work import UnitOfWork

log = structlog.get_logger("teamcart.connect")

SECRET_FIELDS: Final = ("stripe_secret_key", "stripe_webhook_secret")


def secret_context(store_id: str, name: str) -> str:
    """What a sealed secret is bound to: a token copied to another store or field won't open."""
    return f"store_payment_configs/{store_id}/{name}"


class Keep:
    """A secret the write leaves as it is."""


KEEP: Final = Keep()
Change = str | None | Keep
"""A secret in a write: the new value, ``None`` to remove it, or ``KEEP``."""


SecretState = Literal["set", "unset"]


def _state(sealed: str | None) -> SecretState:
    return "unset" if sealed is None else "set"


@dataclass(frozen=True, slots=True)
class PaymentConfig:
    """The settings as answered: never a secret, only whether each is set."""

    store_id: str
    cod_enabled: bool
    online_enabled: bool
    platform_fee_bps: int
    stripe_secret_key: SecretState
    stripe_webhook_secret: SecretState
    updated_at: datetime | None


def _answer(store_id: str, row: RowMapping | None) -> PaymentConfig:
    if row is None:
        return PaymentConfig(store_id, True, True, 0, "unset", "unset", None)
    return PaymentConfig(
        store_id=store_id,
        cod_enabled=row["cod_enabled"],
        online_enabled=row["online_enabled"],
        platform_fee_bps=row["platform_fee_bps"],
        stripe_secret_key=_state(row["stripe_secret_key_sealed"]),
        stripe_webhook_secret=_state(row["stripe_webhook_secret_sealed"]),
        updated_at=row["updated_at"],
    )


async def _store_rows(uow: UnitOfWork, store_id: str) -> ConnectRows:
    if await uow.catalog.store(store_id) is None:
        raise NotFoundError("store_not_found", f"no store with id {store_id}")
    return connect_rows(uow)


async def read_payment_config(store_id: str, uow: UnitOfWork) -> PaymentConfig:
    rows = await _store_rows(uow, store_id)
    return _answer(store_id, await rows.config(store_id))


@dataclass(frozen=True, slots=True)
class SetPaymentConfig:
    store_id: str
    cod_enabled: bool
    online_enabled: bool
    platform_fee_bps: int
    stripe_secret_key: Change
    stripe_webhook_secret: Change
    keyring: Keyring


def _sealed(command: SetPaymentConfig, name: str, change: Change, kept: str | None) -> str | None:
    if isinstance(change, Keep):
        return kept
    if change is None:
        return None
    return command.keyring.seal(change, context=secret_context(command.store_id, name))


async def set_payment_config(command: SetPaymentConfig, uow: UnitOfWork) -> PaymentConfig:
    """The store's settings replaced (secrets left out kept); 422 ``no_payment_method`` for
    settings that would let the store take no payment at all."""
    if not command.cod_enabled and not command.online_enabled:
        raise UnprocessableError(
            "no_payment_method", "a store takes cash on delivery, online payments, or both"
        )
    rows = await _store_rows(uow, command.store_id)
    before = await rows.config(command.store_id, lock=True)
    row = await rows.put_config(
        command.store_id,
        cod_enabled=command.cod_enabled,
        online_enabled=command.online_enabled,
        platform_fee_bps=command.platform_fee_bps,
        secret_key=_sealed(
            command,
            "stripe_secret_key",
            command.stripe_secret_key,
            None if before is None else before["stripe_secret_key_sealed"],
        ),
        webhook_secret=_sealed(
            command,
            "stripe_webhook_secret",
            command.stripe_webhook_secret,
            None if before is None else before["stripe_webhook_secret_sealed"],
        ),
    )
    log.info(
        "store_payment_config_set",
        store_id=command.store_id,
        cod_enabled=command.cod_enabled,
        online_enabled=command.online_enabled,
        platform_fee_bps=command.platform_fee_bps,
        secrets_changed=[
            name
            for name, change in zip(
                SECRET_FIELDS,
                (command.stripe_secret_key, command.stripe_webhook_secret),
                strict=True,
            )
            if not isinstance(change, Keep)
        ],
    )
    return _answer(command.store_id, row)


@dataclass(frozen=True, slots=True)
class StoreWebhookSecret:
    store_id: str
    keyring: Keyring


async def store_webhook_secret(query: StoreWebhookSecret, uow: UnitOfWork) -> str | None:
    """The store's webhook secret, opened to verify a signature; ``None`` when it has none
    (or no such store). A secret no configured key opens is an operator's problem: logged,
    and the store's events are refused until it is set again."""
    row = await connect_rows(uow).config(query.store_id)
    sealed = None if row is None else row["stripe_webhook_secret_sealed"]
    if sealed is None:
        return None
    try:
        return query.keyring.open(
            sealed, context=secret_context(query.store_id, "stripe_webhook_secret")
        )
    except SecretsError as exc:
        log.error("store_webhook_secret_unreadable", store_id=query.store_id, error=str(exc))
        return None


@dataclass(frozen=True, slots=True)
class Rotation:
    """What ``teamcart secrets rotate`` did: secrets re-sealed under the first key, ones
    that were under it already, and stores whose secrets no configured key opens."""

    resealed: int
    current: int
    unreadable: Sequence[str]


async def rotate_secrets(engine: AsyncEngine, keyring: Keyring) -> Rotation:
    """Re-seal every store's secrets under the first key, in one transaction (every row
    locked): run it after putting the new key first in ``TEAMCART_SECRETS_KEY``; the old
    keys may go once it reports nothing unreadable."""
    resealed = current = 0
    unreadable: list[str] = []
    async with engine.connect() as conn:
        rows = ConnectRows(conn)
        for row in await rows.sealed_configs():
            store_id = str(row["store_id"])
            tokens: dict[str, str | None] = {}
            for name in SECRET_FIELDS:
                token = tokens[name] = row[f"{name}_sealed"]
                if token is None:
                    continue
                context = secret_context(store_id, name)
                try:
                    if keyring.is_current(token):
                        current += 1
                        continue
                    tokens[name] = keyring.seal(
                        keyring.open(token, context=context), context=context
                    )
                except SecretsError:
                    unreadable.append(store_id)
                    continue
                resealed += 1
            await rows.reseal(
                store_id,
                secret_key=tokens["stripe_secret_key"],
                webhook_secret=tokens["stripe_webhook_secret"],
            )
        await conn.commit()
    return Rotation(resealed, current, sorted(set(unreadable)))
