"""Mail settings: ``TEAMCART_SMTP_URL`` and ``TEAMCART_MAIL_FROM`` read and refused as the
other settings are, and the SMTP URL read into what the mailer connects with."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import DEFAULT_MAIL_FROM, Settings, SettingsError, settings_to_env
from app.mail.smtp import SmtpTarget, message_id, sender_address


def test_no_smtp_url_means_the_embedded_catcher() -> None:
    settings = Settings.from_env({})
    assert settings.smtp_url is None
    assert settings.uses_mail_catcher
    assert settings.mail_from == DEFAULT_MAIL_FROM
    assert settings.mail_catcher_dir is None


def test_mail_values_are_read_and_trimmed() -> None:
    settings = Settings.from_env(
        {
            "TEAMCART_SMTP_URL": " smtps://mailer:s3cret@smtp.example.com:465 ",
            "TEAMCART_MAIL_FROM": "Lunch Orders <lunch@example.com>",
        }
    )
    assert settings.smtp_url == "smtps://mailer:s3cret@smtp.example.com:465"
    assert settings.mail_from == "Lunch Orders <lunch@example.com>"
    assert not settings.uses_mail_catcher


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TEAMCART_SMTP_URL", "http://smtp.example.com"),
        ("TEAMCART_SMTP_URL", "smtp.example.com:587"),
        ("TEAMCART_SMTP_URL", "smtp://smtp.example.com:99999"),
        ("TEAMCART_SMTP_URL", "smtp://smtp.example.com:port"),
        ("TEAMCART_SMTP_URL", "smtp://:587"),
        ("TEAMCART_SMTP_URL", "smtp://smtp.example.com:587/inbox"),
        ("TEAMCART_SMTP_URL", "smtp://smtp.example.com?tls=yes"),
        ("TEAMCART_MAIL_FROM", "TeamCart"),
        ("TEAMCART_MAIL_FROM", "TeamCart <orders>"),
        ("TEAMCART_MAIL_FROM", "orders@example.com\r\nBcc: everyone@example.com"),
        ("TEAMCART_MAIL_FROM", "x" * 320 + "@example.com"),
    ],
)
def test_unusable_mail_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({variable: value})
    assert raised.value.variable == variable
    assert str(raised.value).startswith(variable + ":")


def test_mail_settings_survive_the_trip_through_the_environment() -> None:
    """``teamcart serve`` hands its workers the catcher's URL and folder this way."""
    settings = Settings(
        smtp_url="smtp://127.0.0.1:2525",
        mail_from="Orders <orders@example.com>",
        mail_catcher_dir=Path("/var/lib/teamcart/mail"),
    )
    assert Settings.from_env(settings_to_env(settings)) == settings


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("smtp://localhost", SmtpTarget("localhost", 25)),
        ("smtp://127.0.0.1:2525", SmtpTarget("127.0.0.1", 2525)),
        ("smtps://smtp.example.com", SmtpTarget("smtp.example.com", 465, use_tls=True)),
        (
            "smtp://mailer:s3cret@smtp.example.com:587",
            SmtpTarget("smtp.example.com", 587, username="mailer", password="s3cret"),
        ),
        (
            "smtps://apikey:p%40ss%3Aword@smtp.example.com:465",
            SmtpTarget(
                "smtp.example.com", 465, username="apikey", password="p@ss:word", use_tls=True
            ),
        ),
        ("smtp://only-user@smtp.example.com", SmtpTarget("smtp.example.com", 25, "only-user")),
    ],
)
def test_smtp_url_is_read_into_its_parts(url: str, target: SmtpTarget) -> None:
    assert SmtpTarget.from_url(url) == target


@pytest.mark.parametrize("url", ["http://smtp.example.com", "smtp://", "smtp://:25"])
def test_an_smtp_url_that_is_not_one_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="smtp"):
        SmtpTarget.from_url(url)


def test_message_id_is_the_mail_id_at_the_sender_domain() -> None:
    assert sender_address("TeamCart <orders@teamcart.localhost>") == "orders@teamcart.localhost"
    mail_id = "0b5e0f7c-2a4d-5c1e-9f3a-7d6b8c9e0a1b"
    assert message_id(mail_id, "Orders <o@example.com>") == f"<{mail_id}@example.com>"
    assert message_id(mail_id, "Orders <o@example.com>") == message_id(mail_id, "o@example.com")
