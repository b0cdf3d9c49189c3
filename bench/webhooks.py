"""Webhook intake benchmark: signed Stripe events per second, end to end, and ack latency.

    python bench/webhooks.py [--seconds 10] [--rate 500] [--workers 1] [--concurrency 32]
                             [--profile FILE]

Starts ``teamcart serve`` on a fresh database (the machine's PostgreSQL/Redis when they
answer, else the embedded ones), opens and locks carts through the HTTP API, then sends
correctly signed ``payment_intent.payment_failed`` events for their members. Each one is a
real state change: signature check, inbox row, cart load, version-checked save, outbox event.

It prints one JSON object:
- ``events_per_s``: sustained throughput with ``--concurrency`` senders, as fast as acked;
- ``p50_ms``/``p95_ms``/``p99_ms``/``max_ms``: acknowledgement latency at a fixed offered
  ``--rate`` (open loop, from each event's due time);
- ``baseline_upserts_per_s``: one-row ``INSERT … ON CONFLICT DO UPDATE`` transactions per
  second through asyncpg on the same database, same concurrency, same run;
- ``ratio``: events_per_s / baseline_upserts_per_s.
Targets (issue 4): ≥ 1,000 events/s, p99 < 100 ms at 500/s offered, ratio ≥ 0.25.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.dispatcher import listen_dsn
from app.embedded import free_port
from bench.common import (
    HttpError,
    LeanHttp,
    Seat,
    bearer,
    open_group_carts,
    open_loop,
    profiling,
    run_benchmark,
    server,
    summary,
    teamcart_command,
    teamcart_env,
    wait_ready,
)

SECRET = "whsec_bench_" + uuid.uuid4().hex
JWT_SECRET = "bench-" + uuid.uuid4().hex * 2
WEBHOOK_PATH = "/api/v1/webhooks/stripe"


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
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        opened = await open_group_carts(http, JWT_SECRET, carts, 2)

        async def lock(cart_id: str, seats: list[Seat]) -> list[tuple[str, str, int]]:
            locked = await http.post(
                f"/api/v1/teamcarts/{cart_id}/lock", headers=bearer(seats[0].token)
            )
            assert locked.status_code == 200, locked.text
            return [(cart_id, seat.user_id, locked.json()["quote_version"]) for seat in seats]

        members: list[tuple[str, str, int]] = []
        for start in range(0, len(opened), 25):
            batch = opened[start : start + 25]
            for pair in await asyncio.gather(*(lock(*cart) for cart in batch)):
                members.extend(pair)
    return members


async def throughput(
    http: LeanHttp, members: list[tuple[str, str, int]], seconds: float, concurrency: int
) -> tuple[float, dict[str, int]]:
    outcomes: dict[str, int] = {}
    done = 0
    deadline = time.perf_counter() + seconds

    async def sender() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            body, headers = signed(failed_event(*random.choice(members)))
            try:
                status, answer = await http.post(WEBHOOK_PATH, body, headers)
            except HttpError:
                key = "connection_error"
            else:
                key = json.loads(answer).get("outcome") if status == 200 else str(status)
            outcomes[key] = outcomes.get(key, 0) + 1
            done += key == "applied"  # only events that took effect count

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return done / elapsed, outcomes


async def latency_at_rate(
    http: LeanHttp, members: list[tuple[str, str, int]], seconds: float, rate: float
) -> tuple[list[float], int]:
    """Open loop: send at a fixed rate whatever the answers do; measure each ack."""

    async def send(_: int) -> bool:
        body, headers = signed(failed_event(*random.choice(members)))
        try:
            status, _answer = await http.post(WEBHOOK_PATH, body, headers)
        except HttpError:
            return False
        return status == 200

    _, latencies, errors = await open_loop(rate, seconds, send)
    return latencies, errors


async def baseline_upserts(database_url: str, seconds: float, concurrency: int) -> float:
    dsn = listen_dsn(database_url)
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


async def run(args: argparse.Namespace, database_url: str, redis_url: str) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = teamcart_env(database_url, redis_url, JWT_SECRET, Path(args.tmp) / "data")
    env["TEAMCART_STRIPE_WEBHOOK_SECRET"] = SECRET  # no refunds happen in this mix
    log = Path(args.tmp) / "server.log"
    with server(teamcart_command(port, args.workers), env, log) as process:
        await wait_ready(base, "/health/ready", process)
        members = await prepare_carts(base, args.carts)
        http = LeanHttp("127.0.0.1", port, max_connections=max(args.concurrency, 400))
        try:
            await throughput(http, members, 2, args.concurrency)  # warm up
            with profiling(args.profile, process.pid, args.seconds):
                events_per_s, outcomes = await throughput(
                    http, members, args.seconds, args.concurrency
                )
            latencies, errors = await latency_at_rate(http, members, args.seconds, args.rate)
        finally:
            await http.close()
    upserts_per_s = await baseline_upserts(database_url, args.seconds, args.concurrency)
    return {
        "events_per_s": round(events_per_s, 1),
        "outcomes": outcomes,
        "offered_rate_per_s": args.rate,
        **summary(latencies),
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
    parser.add_argument("--profile", help="py-spy the server under load into this file")
    args = parser.parse_args()
    run_benchmark(run, args)


if __name__ == "__main__":
    main()
