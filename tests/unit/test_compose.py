"""docker-compose.yml: Debian's docker-compose accepts it, and it agrees with the README and
with the settings the server validates."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from app.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
README = (ROOT / "README.md").read_text()


def test_services_ports_and_health_checks() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"postgres", "redis", "stripe-emulator", "app"}
    ports = {
        name: [p.split(":")[0] for p in spec.get("ports", [])] for name, spec in services.items()
    }
    assert ports == {
        "postgres": ["5432"],
        "redis": ["6379"],
        "stripe-emulator": ["8420"],
        "app": ["8000"],
    }
    for name, spec in services.items():
        assert "healthcheck" in spec, name
    waits_for = services["app"]["depends_on"]
    assert {name: rule["condition"] for name, rule in waits_for.items()} == {
        "postgres": "service_healthy",
        "redis": "service_healthy",
        "stripe-emulator": "service_healthy",
    }


def test_app_settings_are_valid_and_documented() -> None:
    environment = COMPOSE["services"]["app"]["environment"]
    settings = Settings.from_env(environment)  # raises, naming the variable, if unusable
    assert settings.database_url is not None
    assert "@postgres:5432/" in settings.database_url
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.stripe_api_base == "http://stripe-emulator:8420"
    for variable in environment:
        assert f"`{variable}`" in README, f"{variable} is not in the README's configuration table"
    emulator_command = " ".join(COMPOSE["services"]["stripe-emulator"]["command"])
    assert environment["TEAMCART_STRIPE_WEBHOOK_SECRET"] in emulator_command
    assert "http://app:8000/api/v1/webhooks/stripe" in emulator_command


def test_readme_describes_compose_as_it_is() -> None:
    assert "docker compose up" in README
    assert re.search(r"localhost:8000", README)


def test_debian_docker_compose_accepts_the_file() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        import os

        assert os.environ.get("CI") != "true", ".ci/run installs Debian's docker-compose"
        return  # the structure checks above still ran
    result = subprocess.run(
        [binary, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
