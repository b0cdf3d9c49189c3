"""Settings: defaults, and every unusable value stops start-up naming its variable."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from app.config import Settings, SettingsError, settings_to_env


def test_nothing_set_means_embedded_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.database_url is None
    assert settings.redis_url is None
    assert settings.data_dir == Path(".teamcart")
    assert settings.uses_stripe_emulator
    assert settings.payment_window == timedelta(minutes=30)


def test_values_are_read_and_trimmed() -> None:
    settings = Settings.from_env(
        {
            "TEAMCART_DATABASE_URL": " postgresql://u@db.internal:5433/teamcart ",
            "TEAMCART_REDIS_URL": "redis://cache:6380/1",
            "TEAMCART_STRIPE_SECRET_KEY": "sk_test_abc",
            "TEAMCART_STRIPE_WEBHOOK_SECRET": "whsec_new, whsec_old",
            "TEAMCART_PUBLIC_URL": "https://carts.example.com/",
            "TEAMCART_DATA_DIR": "/var/lib/teamcart",
        }
    )
    assert settings.database_url == "postgresql://u@db.internal:5433/teamcart"
    assert settings.redis_url == "redis://cache:6380/1"
    assert settings.stripe_webhook_secrets == ("whsec_new", "whsec_old")
    assert settings.public_url == "https://carts.example.com"
    assert settings.data_dir == Path("/var/lib/teamcart")
    assert not settings.uses_stripe_emulator


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TEAMCART_DATABASE_URL", "mysql://root@localhost/teamcart"),
        ("TEAMCART_DATABASE_URL", "postgresql://u@localhost:99999/teamcart"),
        ("TEAMCART_DATABASE_URL", "postgresql://u@localhost:5432"),
        ("TEAMCART_REDIS_URL", "http://localhost:6379"),
        ("TEAMCART_REDIS_URL", "redis://localhost:port/0"),
        ("TEAMCART_STRIPE_API_BASE", "localhost:8420"),
        ("TEAMCART_PUBLIC_URL", "ftp://example.com"),
        ("TEAMCART_JWT_SECRET", "too-short"),
        ("TEAMCART_STRIPE_SECRET_KEY", "pk_test_wrong_kind"),
        ("TEAMCART_STRIPE_PUBLISHABLE_KEY", "sk_test_wrong_kind"),
        ("TEAMCART_STRIPE_WEBHOOK_SECRET", "not-a-secret"),
        ("TEAMCART_PAYMENT_WINDOW_MINUTES", "soon"),
        ("TEAMCART_SWEEP_INTERVAL_SECONDS", "-1"),
        ("TEAMCART_LOG_LEVEL", "LOUD"),
        ("TEAMCART_LOG_JSON", "maybe"),
    ],
)
def test_unusable_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({variable: value})
    assert raised.value.variable == variable
    assert str(raised.value).startswith(variable + ":")


def test_settings_survive_the_trip_through_the_environment() -> None:
    settings = Settings.from_env(
        {
            "TEAMCART_DATABASE_URL": "postgresql://u@db:5432/teamcart",
            "TEAMCART_REDIS_URL": "unix:///tmp/redis.sock",
            "TEAMCART_JWT_SECRET": "x" * 40,
            "TEAMCART_STRIPE_API_BASE": "http://127.0.0.1:8420",
            "TEAMCART_STRIPE_WEBHOOK_SECRET": "whsec_a,whsec_b",
            "TEAMCART_PAYMENT_WINDOW_MINUTES": "45",
        }
    )
    assert Settings.from_env(settings_to_env(settings)) == settings
