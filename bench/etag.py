"""Conditional read benchmark: ``GET /api/v1/teamcarts/{id}`` with a matching ``If-None-Match``.

    python bench/etag.py [--seconds 5] [--concurrency 32] [--workers 1] [--profile FILE]

What a polling client costs: it sends the version it has and is answered 304 while nothing
changed. Starts ``teamcart serve`` on a fresh database (the machine's PostgreSQL/Redis when
they answer, else embedded ones), opens one cart through the HTTP API, then sends that
member's conditional GET as fast as ``--concurrency`` keep-alive connections allow (a closed
loop) for ``--seconds``. The same run measures a baseline: a Litestar hello world (one GET
route returning a short text) on the same uvicorn settings, driven the same way.

Prints one JSON object: ``requests_per_s`` (every answer a 304), the baseline's, and their
``ratio``. Target (issue 13): ratio ≥ 0.7.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.embedded import free_port
from bench.common import (
    LeanHttp,
    bearer,
    open_group_carts,
    profiling,
    run_benchmark,
    server,
    teamcart_command,
    teamcart_env,
    wait_ready,
)

JWT_SECRET = "bench-" + uuid.uuid4().hex * 2


async def closed_loop(
    port: int, path: str, headers: dict[str, str], seconds: float, concurrency: int
) -> dict[str, Any]:
    """Each of ``concurrency`` connections sends the request again as soon as answered."""
    http = LeanHttp("127.0.0.1", port, max_connections=concurrency)
    statuses: dict[int, int] = {}
    stop = time.perf_counter() + seconds

    async def one() -> None:
        while time.perf_counter() < stop:
            status, _ = await http.request("GET", path, b"", headers)
            statuses[status] = statuses.get(status, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await http.close()
    return {
        "requests_per_s": round(sum(statuses.values()) / elapsed, 1),
        "statuses": {str(code): n for code, n in sorted(statuses.items())},
    }


async def real_run(args: argparse.Namespace, database_url: str, redis_url: str) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = teamcart_env(database_url, redis_url, JWT_SECRET, Path(args.tmp) / "data")
    with server(teamcart_command(port, args.workers), env, Path(args.tmp) / "server.log") as p:
        await wait_ready(base, "/health/ready", p)
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            [(cart_id, seats)] = await open_group_carts(http, JWT_SECRET, 1, 1)
            path = f"/api/v1/teamcarts/{cart_id}"
            etag = (await http.get(path, headers=bearer(seats[0].token))).headers["etag"]
        headers = {**bearer(seats[0].token), "If-None-Match": etag}
        await closed_loop(port, path, headers, 1, args.concurrency)  # warm-up
        with profiling(args.profile, p.pid, args.seconds):
            return await closed_loop(port, path, headers, args.seconds, args.concurrency)


def hello_app() -> Any:
    from litestar import Litestar, get

    @get("/hello")
    async def hello() -> str:
        return "hello"

    return Litestar([hello])


def serve_hello(port: int) -> None:
    import uvicorn

    uvicorn.run(hello_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def hello_run(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    command = [sys.executable, __file__, "--hello-server", str(port)]
    with server(command, dict(os.environ), Path(args.tmp) / "hello.log") as process:
        await wait_ready(f"http://127.0.0.1:{port}", "/hello", process)
        await closed_loop(port, "/hello", {}, 1, args.concurrency)
        return await closed_loop(port, "/hello", {}, args.seconds, args.concurrency)


async def run(args: argparse.Namespace, database_url: str, redis_url: str) -> dict[str, Any]:
    real = await real_run(args, database_url, redis_url)
    hello = await hello_run(args)
    baseline = hello["requests_per_s"]
    return {
        **real,
        "baseline_hello_world": hello,
        "ratio": round(real["requests_per_s"] / baseline, 3) if baseline else None,
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "targets": {"ratio": 0.7},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--profile", help="py-spy the server under load into this file")
    parser.add_argument("--hello-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hello_server:
        serve_hello(args.hello_server)
        return
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    run_benchmark(run, args)


if __name__ == "__main__":
    main()
