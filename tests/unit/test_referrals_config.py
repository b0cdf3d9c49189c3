"""The referral settings: read from the environment, each bad value named, and handed on to a
server's workers unchanged."""

from __future__ import annotations

import pytest

from app.config import Settings, SettingsError, settings_to_env
from app.referrals.accrual import terms_of


def test_the_defaults_are_five_percent_no_minimum_and_twenty_a_day() -> None:
    settings = Settings.from_env({})
    assert settings.referral_commission_bps == 500
    assert settings.referral_min_order_minor == ()
    assert settings.referral_velocity_per_day == 20
    terms = terms_of(settings)
    assert (terms.commission_bps, terms.minimum_for("USD"), terms.velocity_per_day) == (500, 0, 20)


def test_the_settings_are_read_and_handed_on() -> None:
    env = {
        "TEAMCART_REFERRAL_COMMISSION_BPS": "1250",
        "TEAMCART_REFERRAL_MIN_ORDER_MINOR": "usd:1000, JPY:1500,*:300",
        "TEAMCART_REFERRAL_VELOCITY_PER_DAY": "0",
    }
    settings = Settings.from_env(env)
    assert settings.referral_commission_bps == 1250
    assert settings.referral_min_order_minor == (("USD", 1000), ("JPY", 1500), ("*", 300))
    assert settings.referral_velocity_per_day == 0
    terms = terms_of(settings)
    assert [terms.minimum_for(c) for c in ("USD", "JPY", "KWD")] == [1000, 1500, 300]
    assert Settings.from_env(settings_to_env(settings)) == settings
    everywhere = Settings.from_env({"TEAMCART_REFERRAL_MIN_ORDER_MINOR": "700"})
    assert terms_of(everywhere).minimum_for("EUR") == 700


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TEAMCART_REFERRAL_COMMISSION_BPS", "10001"),
        ("TEAMCART_REFERRAL_COMMISSION_BPS", "-5"),
        ("TEAMCART_REFERRAL_COMMISSION_BPS", "5%"),
        ("TEAMCART_REFERRAL_COMMISSION_BPS", "²"),
        ("TEAMCART_REFERRAL_MIN_ORDER_MINOR", "ten"),
        ("TEAMCART_REFERRAL_MIN_ORDER_MINOR", "USD:1000,USD:5"),
        ("TEAMCART_REFERRAL_MIN_ORDER_MINOR", "DOLLARS:5"),
        ("TEAMCART_REFERRAL_MIN_ORDER_MINOR", "USD:-1"),
        ("TEAMCART_REFERRAL_MIN_ORDER_MINOR", "USD:"),
        ("TEAMCART_REFERRAL_MIN_ORDER_MINOR", "\uff11\uff10"),  # fullwidth digits
        ("TEAMCART_REFERRAL_VELOCITY_PER_DAY", "many"),
        ("TEAMCART_REFERRAL_VELOCITY_PER_DAY", "1.5"),
    ],
)
def test_a_bad_value_stops_start_up_naming_its_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({variable: value})
    assert raised.value.variable == variable
    assert str(raised.value).startswith(variable)
