"""A store's own Stripe secrets: written once, never answered by any route, never in the
database in clear (the test reads the row), opened only to verify the store's webhooks, and
still opened after ``teamcart secrets rotate`` re-seals them under a new key (the CLI, in a
child process, on a database of its own)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.connect.settings import secret_context
from app.persistence import schema
from app.persistence.database import create_engine
from app.secrets import Keyring, SecretsError, generate_key, key_id, keyring_for
from tests.builders import Client, create_store
from tests.services import fresh_database
from tests.stripe_events import event, sign

ROOT = Path(__file__).resolve().parents[2]
SECRET_KEY = "sk_live_" + uuid.uuid4().hex  # never sent anywhere: only kept
WEBHOOK_SECRET = "whsec_" + uuid.uuid4().hex


async def config_row(engine: AsyncEngine, store_id: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    text("SELECT * FROM store_payment_configs WHERE store_id = :s"),
                    {"s": store_id},
                )
            )
            .mappings()
            .one()
        )
    return dict(row)


def assert_no_secret(text_seen: str) -> None:
    assert SECRET_KEY not in text_seen
    assert WEBHOOK_SECRET not in text_seen
    assert WEBHOOK_SECRET.removeprefix("whsec_") not in text_seen


async def test_a_secret_written_is_never_answered_nor_kept_in_clear(
    client: Client, admin_headers: dict[str, str], settings: Settings, engine: AsyncEngine
) -> None:
    store = await create_store(client, admin_headers)
    url = f"/api/v1/stores/{store['id']}/payment-config"
    unset = await client.get(url, headers=admin_headers)
    assert unset.status_code == 200, unset.text
    assert (unset.json()["stripe_secret_key"], unset.json()["stripe_webhook_secret"]) == (
        "unset",
        "unset",
    )
    body = {
        "cod_enabled": True,
        "online_enabled": True,
        "platform_fee_bps": 250,
        "stripe_secret_key": SECRET_KEY,
        "stripe_webhook_secret": WEBHOOK_SECRET,
    }
    written = await client.put(url, json=body, headers=admin_headers)
    assert written.status_code == 200, written.text
    assert written.json()["stripe_secret_key"] == "set"
    assert written.json()["stripe_webhook_secret"] == "set"

    seen = [written.text]
    for path in (
        url,
        f"/api/v1/stores/{store['id']}",
        "/api/v1/stores",
        f"/api/v1/stores/{store['id']}/payment-methods",
        f"/api/v1/stores/{store['id']}/connect",
        f"/api/v1/stores/{store['id']}/payouts",
        "/metrics",
    ):
        answer = await client.get(path, headers=admin_headers)
        assert answer.status_code == 200, (path, answer.text)
        seen.append(answer.text)
    first_token = (await config_row(engine, store["id"]))["stripe_secret_key_sealed"]
    kept = await client.put(url, json={**body, "platform_fee_bps": 300}, headers=admin_headers)
    del body["stripe_secret_key"], body["stripe_webhook_secret"]
    left_out = await client.put(url, json=body, headers=admin_headers)
    seen += [kept.text, left_out.text]
    assert left_out.json()["stripe_secret_key"] == "set"  # left out: kept
    for page in seen:
        assert_no_secret(page)

    row = await config_row(engine, store["id"])
    assert_no_secret(json.dumps(row, default=str))
    keyring = keyring_for(settings.secrets_keys, settings.data_dir)
    for name, value in (
        ("stripe_secret_key", SECRET_KEY),
        ("stripe_webhook_secret", WEBHOOK_SECRET),
    ):
        token = row[f"{name}_sealed"]
        assert token.split(".")[:2] == ["tcs1", keyring.primary_id]
        assert keyring.open(token, context=secret_context(store["id"], name)) == value
    # Written twice, the same secret is two different tokens (a fresh nonce each time).
    assert row["stripe_secret_key_sealed"] != first_token
    context = secret_context(store["id"], "stripe_secret_key")
    assert keyring.open(first_token, context=context) == SECRET_KEY
    with pytest.raises(SecretsError):  # bound to its store and field
        keyring.open(first_token, context=secret_context(str(uuid.uuid4()), "stripe_secret_key"))

    removed = await client.put(url, json={**body, "stripe_secret_key": None}, headers=admin_headers)
    assert removed.json()["stripe_secret_key"] == "unset"
    assert removed.json()["stripe_webhook_secret"] == "set"
    assert (await config_row(engine, store["id"]))["stripe_secret_key_sealed"] is None


async def test_only_admins_see_the_settings_and_a_key_must_look_like_a_key(
    client: Client, admin_headers: dict[str, str]
) -> None:
    store = await create_store(client, admin_headers)
    url = f"/api/v1/stores/{store['id']}/payment-config"
    body = {"cod_enabled": True, "online_enabled": True, "platform_fee_bps": 100}
    for field, value in (
        ("stripe_secret_key", "pk_test_publishable"),
        ("stripe_webhook_secret", "not-a-secret"),
        ("platform_fee_bps", 10_001),
    ):
        refused = await client.put(url, json={**body, field: value}, headers=admin_headers)
        assert refused.status_code == 400, refused.text
        assert field in refused.text
        assert str(value) not in refused.json()["detail"]
    guest = await client.post("/api/v1/sessions", json={"display_name": "Guest"})
    token = {"Authorization": f"Bearer {guest.json()['token']}"}
    assert (await client.get(url, headers=token)).status_code == 403
    missing = await client.get(
        f"/api/v1/stores/{uuid.uuid4()}/payment-config", headers=admin_headers
    )
    assert missing.status_code == 404


async def test_the_stores_own_endpoint_verifies_with_the_stores_secret(
    client: Client, admin_headers: dict[str, str]
) -> None:
    store = await create_store(client, admin_headers)
    endpoint = f"/api/v1/webhooks/stripe/stores/{store['id']}"
    evt = event("charge.succeeded", {"id": "ch_x", "object": "charge"})
    payload = json.dumps(evt).encode()

    def signed(secret: str) -> dict[str, str]:
        return {"Stripe-Signature": sign(payload, secret), "Content-Type": "application/json"}

    none_set = await client.post(endpoint, content=payload, headers=signed(WEBHOOK_SECRET))
    assert none_set.status_code == 400
    assert none_set.json()["code"] == "invalid_signature"
    await client.put(
        f"/api/v1/stores/{store['id']}/payment-config",
        json={
            "cod_enabled": True,
            "online_enabled": True,
            "platform_fee_bps": 0,
            "stripe_webhook_secret": WEBHOOK_SECRET,
        },
        headers=admin_headers,
    )
    wrong = await client.post(endpoint, content=payload, headers=signed("whsec_" + "0" * 32))
    assert wrong.status_code == 400
    assert wrong.json()["code"] == "invalid_signature"
    other = await create_store(client, admin_headers)  # another store's secret is not this one's
    elsewhere = await client.post(
        f"/api/v1/webhooks/stripe/stores/{other['id']}",
        content=payload,
        headers=signed(WEBHOOK_SECRET),
    )
    assert elsewhere.status_code == 400
    taken = await client.post(endpoint, content=payload, headers=signed(WEBHOOK_SECRET))
    assert taken.status_code == 200, taken.text
    assert taken.json()["outcome"] == "ignored"  # taken into the one inbox …
    again = await client.post(endpoint, content=payload, headers=signed(WEBHOOK_SECRET))
    assert again.json()["outcome"] == "duplicate"  # … once
    platform = await client.post(
        "/api/v1/webhooks/stripe", content=payload, headers=signed(WEBHOOK_SECRET)
    )
    assert platform.status_code == 400  # the store's secret is not the platform's


# --- rotation, with the command line --------------------------------------------------------


@pytest.fixture
def own_database(postgres_server_url: str) -> Iterator[str]:
    with fresh_database(postgres_server_url) as url:
        schema.upgrade(url)
        yield url


def rotate(database_url: str, keys: list[str], data_dir: Path) -> tuple[int, dict[str, Any], str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TEAMCART_")},
        "TEAMCART_DATABASE_URL": database_url,
        "TEAMCART_DATA_DIR": str(data_dir),
        "TEAMCART_SECRETS_KEY": ",".join(keys),
    }
    child = subprocess.run(
        [sys.executable, "-m", "app.cli", "secrets", "rotate"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    out = child.stdout.decode()
    report = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    return child.returncode, report, out + child.stderr.decode()


async def seal_for_a_store(database_url: str, keyring: Keyring) -> tuple[AsyncEngine, str]:
    """A store with both secrets sealed under ``keyring``'s first key, as a write leaves it."""
    engine = create_engine(database_url, pool_size=1)
    store_id = str(uuid.uuid4())
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO stores (id, name, currency, delivery_fee_minor, tax_rate_bps)"
                " VALUES (:id, 'Rotating', 'USD', 0, 0)"
            ),
            {"id": store_id},
        )
        await conn.execute(
            text(
                "INSERT INTO store_payment_configs"
                " (store_id, stripe_secret_key_sealed, stripe_webhook_secret_sealed)"
                " VALUES (:id, :key, :hook)"
            ),
            {
                "id": store_id,
                "key": keyring.seal(
                    SECRET_KEY, context=secret_context(store_id, "stripe_secret_key")
                ),
                "hook": keyring.seal(
                    WEBHOOK_SECRET, context=secret_context(store_id, "stripe_webhook_secret")
                ),
            },
        )
    return engine, store_id


async def test_secrets_survive_a_key_rotation_by_the_command_line(
    own_database: str, tmp_path: Path
) -> None:
    old, new = generate_key(), generate_key()
    engine, store_id = await seal_for_a_store(own_database, Keyring.of([old]))
    try:
        code, report, output = rotate(own_database, [new, old], tmp_path)
        assert code == 0, output
        new_id = key_id(Keyring.of([new]).keys[0])
        assert report == {
            "key_id": new_id,
            "resealed": 2,
            "already_current": 0,
            "unreadable_stores": [],
        }
        assert_no_secret(output)
        row = await config_row(engine, store_id)
        only_new = Keyring.of([new])  # the old key may go now
        for name, value in (
            ("stripe_secret_key", SECRET_KEY),
            ("stripe_webhook_secret", WEBHOOK_SECRET),
        ):
            assert row[f"{name}_sealed"].split(".")[1] == new_id
            assert only_new.open(row[f"{name}_sealed"], context=secret_context(store_id, name)) == (
                value
            )
        code, report, _ = rotate(own_database, [new, old], tmp_path)  # again: nothing to do
        assert (code, report["resealed"], report["already_current"]) == (0, 0, 2)
        code, report, output = rotate(own_database, [generate_key()], tmp_path)  # key lost
        assert code == 1, output
        assert report["unreadable_stores"] == [store_id]
        assert (await config_row(engine, store_id))["stripe_secret_key_sealed"] == row[
            "stripe_secret_key_sealed"
        ]  # left as it was
        code, _, output = rotate(own_database, ["not-a-key"], tmp_path)
        assert code == 2
        assert "TEAMCART_SECRETS_KEY" in output
    finally:
        await engine.dispose()
