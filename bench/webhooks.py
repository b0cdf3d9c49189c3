"""Webhook intake benchmark: signed Stripe events per second, end to end, and ack latency.

    python bench/webhooks.py [--seconds 10] [--rate 500] [--workers 1] [--concurrency 32]

Starts ``teamcart serve`` on a fresh database (the machine's PostgreSQL/Redis when they
answer, else the embedded ones), opens and locks carts through the HTTP API, then sends
correctly signed ``payment_intent.payment_failed`` events for their members. Each one is a
real state change: signature check, inbox row, cart load, version-checked save, outbox event.

It prints one JSON object:
- ``events_per_s``: sustained throughput with ``--concurrency`` senders, as fast as acked;
- ``p50_ms``/``p99_ms``: acknowledgement latency at a fixed offered ``--rate`` (open loop);
- ``baseline_upserts_per_s``: one-row ``INSERT … ON CONFLICT DO UPDATE`` transactions per
  second through asyncpg on the same database, same concurrency, same run;
- ``ratio``: events_per_s / baseline_upserts_per_s.
Targets (issue 4): ≥ 1,000 events/s, p99 < 100 ms at 500/s offered, ratio ≥ 0.25.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.auth import issue_token  # noqa: E402
from app.embedded import free_port  # noqa: E402
from app.persistence import schema  # noqa: E402
from tests.services import fresh_database, postgres_server, redis_server  # noqa: E402

SECRET = "whsec_bench_" + uuid.uuid4().hex
JWT_SECRET = "bench-" + uuid.uuid4().hex * 2


def signed(event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    payload = json.dumps(event).encode()
    ts = int(time.time())
    mac = hmac.new(SECRET.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return payload, {"Stripe-Signature": f"t={ts},v1={mac}", "Content-Type": "application/json"}


def failed_event(cart_id: str, user_id: str, quote_version: int) -> dict[str, Any]:
    intent = f"pi_{uuid.uuid4().hex[:20]}"
    return {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "type": "payment_intent.payment_failed",
        "created": int(time.time()),
        "livemode": False,
        "data": {
            "object": {
                "id": intent,
                "object": "payment_intent",
                "amount": 1000,
                "currency": "usd",
                "status": "requires_payment_method",
                "metadata": {
                    "source": "teamcart",
                    "teamcart_id": cart_id,
                    "member_user_id": user_id,
                    "quote_version": str(quote_version),
                    "purpose": "member_payment",
                },
            }
        },
    }


async def prepare_carts(base: str, carts: int) -> list[tuple[str, str, int]]:
    """Open and lock ``carts`` carts of two members; return (cart, member, quote_version)."""
    admin = {
        "Authorization": "Bearer " + issue_token(JWT_SECRET, display_name="Admin", admin=True).token
    }
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        store = (
            await http.post(
                "/api/v1/stores",
                headers=admin,
                json={
                    "name": "Bench",
                    "currency": "USD",
                    "delivery_fee_minor": 300,
                    "tax_rate_bps": 800,
                },
            )
        ).json()
        product = (
            await http.post(
                f"/api/v1/stores/{store['id']}/products",
                headers=admin,
                json={"name": "Dish", "price_minor": 1000},
            )
        ).json()

        async def one() -> list[tuple[str, str, int]]:
            people = []
            for name in ("Host", "Guest"):
                token = (await http.post("/api/v1/sessions", json={"display_name": name})).json()
                people.append(({"Authorization": f"Bearer {token['token']}"}, token["user_id"]))
            cart = (
                await http.post(
                    "/api/v1/teamcarts", json={"store_id": store["id"]}, headers=people[0][0]
                )
            ).json()
            url = f"/api/v1/teamcarts/{cart['id']}"
            await http.post(
                "/api/v1/teamcarts/join",
                json={"invite_code": cart["invite_code"]},
                headers=people[1][0],
            )
            for headers, _ in people:
                await http.post(
                    url + "/items",
                    json={"product_id": product["id"], "quantity": 1},
                    headers=headers,
                )
            locked = (await http.post(url + "/lock", headers=people[0][0])).json()
            return [(cart["id"], user_id, locked["quote_version"]) for _, user_id in people]

        members: list[tuple[str, str, int]] = []
        for start in range(0, carts, 20):
            batch = await asyncio.gather(*(one() for _ in range(min(20, carts - start))))
            members.extend(m for pair in batch for m in pair)
    return members


async def throughput(
    base: str, members: list[tuple[str, str, int]], seconds: float, concurrency: int
) -> tuple[float, dict[str, int]]:
    outcomes: dict[str, int] = {}
    done = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:

        async def sender() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                body, headers = signed(failed_event(*random.choice(members)))
                response = await http.post("/api/v1/webhooks/stripe", content=body, headers=headers)
                key = (
                    response.json().get("outcome")
                    if response.status_code == 200
                    else str(response.status_code)
                )
                outcomes[key] = outcomes.get(key, 0) + 1
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return done / elapsed, outcomes


async def latency_at_rate(
    base: str, members: list[tuple[str, str, int]], seconds: float, rate: float
) -> tuple[list[float], int]:
    """Open loop: send at a fixed rate whatever the answers do; measure each ack."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:

        async def send() -> None:
            nonlocal errors
            body, headers = signed(failed_event(*random.choice(members)))
            sent = time.perf_counter()
            try:
                response = await http.post("/api/v1/webhooks/stripe", content=body, headers=headers)
            except httpx.HTTPError:
                errors += 1
                return
            latencies.append((time.perf_counter() - sent) * 1000)
            if response.status_code != 200:
                errors += 1

        tasks = []
        start = time.perf_counter()
        total = int(seconds * rate)
        for i in range(total):
            wait = start + i / rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(send()))
        await asyncio.gather(*tasks)
    return latencies, errors


async def baseline_upserts(database_url: str, seconds: float, concurrency: int) -> float:
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    pool = await asyncpg.create_pool(dsn, min_size=concurrency, max_size=concurrency)
    assert pool is not None
    await pool.execute("CREATE TABLE IF NOT EXISTS bench_upsert (id text PRIMARY KEY, n int)")
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        async with pool.acquire() as conn:
            while time.perf_counter() < deadline:
                async with conn.transaction():
                    await conn.execute(
                        "INSERT INTO bench_upsert VALUES ($1, 1) "
                        "ON CONFLICT (id) DO UPDATE SET n = bench_upsert.n + 1",
                        str(random.randrange(10_000)),
                    )
                done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await pool.close()
    return done / elapsed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args: argparse.Namespace, database_url: str, redis_url: str) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEAMCART_")}
    env.update(
        {
            "TEAMCART_DATABASE_URL": database_url,
            "TEAMCART_REDIS_URL": redis_url,
            "TEAMCART_JWT_SECRET": JWT_SECRET,
            "TEAMCART_STRIPE_SECRET_KEY": "sk_test_bench",
            "TEAMCART_STRIPE_API_BASE": "http://127.0.0.1:9",  # no refunds happen in this mix
            "TEAMCART_STRIPE_WEBHOOK_SECRET": SECRET,
            "TEAMCART_LOG_LEVEL": "WARNING",
            "TEAMCART_DATA_DIR": str(Path(args.tmp) / "data"),
        }
    )
    server = subprocess.Popen(  # noqa: ASYNC220 - started once, before any load
        [
            sys.executable,
            "-m",
            "app.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(timeout=2) as probe:
            for _ in range(200):
                with contextlib.suppress(httpx.HTTPError):
                    if (await probe.get(base + "/health/ready")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("the server did not become ready")
        members = await prepare_carts(base, args.carts)
        await throughput(base, members, 2, args.concurrency)  # warm up
        events_per_s, outcomes = await throughput(base, members, args.seconds, args.concurrency)
        latencies, errors = await latency_at_rate(base, members, args.seconds, args.rate)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    upserts_per_s = await baseline_upserts(database_url, args.seconds, args.concurrency)
    return {
        "events_per_s": round(events_per_s, 1),
        "outcomes": outcomes,
        "offered_rate_per_s": args.rate,
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_ms": round(max(latencies), 2),
        "errors_at_rate": errors,
        "baseline_upserts_per_s": round(upserts_per_s, 1),
        "ratio": round(events_per_s / upserts_per_s, 3),
        "workers": args.workers,
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "carts": args.carts,
        "cpus": os.cpu_count(),
        "targets": {"events_per_s": 1000, "p99_ms_at_500": 100, "ratio": 0.25},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--carts", type=int, default=200)
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = tmp
        with postgres_server(Path(tmp)) as server_url, fresh_database(server_url) as db:
            schema.upgrade(db)
            with redis_server(Path(tmp)) as redis_url:
                result = asyncio.run(run(args, db, redis_url))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
