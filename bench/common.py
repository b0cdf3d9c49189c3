"""What the benchmarks share: the server under test, a lean HTTP client, percentiles, py-spy.

The load generator shares the machine's two cores with the server, PostgreSQL and Redis, so
it must cost little per request: ``LeanHttp`` writes plain HTTP/1.1 requests on keep-alive
connections and reads only the status line, ``Content-Length`` and the body (httpx spends
about 1 ms of CPU per request, and its connection pool slows down quadratically when
requests queue, which made the generator, not the server, the bottleneck).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.auth import issue_token  # noqa: E402
from app.persistence import schema  # noqa: E402
from tests.services import fresh_database, postgres_server, redis_server  # noqa: E402


def run_benchmark(
    run: Callable[[argparse.Namespace, str, str], Coroutine[Any, Any, dict[str, Any]]],
    args: argparse.Namespace,
) -> None:
    """Run a benchmark on a fresh, migrated database and a Redis (the machine's PostgreSQL
    and Redis when they answer, as the tests use them, else embedded ones in a scratch
    folder, ``args.tmp``), and print its figures as one JSON object."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        postgres_server(Path(tmp)) as server_url,
        fresh_database(server_url) as database_url,
        redis_server(Path(tmp)) as redis_url,
    ):
        schema.upgrade(database_url)
        args.tmp = Path(tmp)
        result = asyncio.run(run(args, database_url, redis_url))
    print(json.dumps(result, indent=2))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(latencies_ms: list[float]) -> dict[str, float]:
    if not latencies_ms:
        return {"p50_ms": -1, "p95_ms": -1, "p99_ms": -1, "max_ms": -1}
    return {
        "p50_ms": round(statistics.median(latencies_ms), 2),
        "p95_ms": round(percentile(latencies_ms, 0.95), 2),
        "p99_ms": round(percentile(latencies_ms, 0.99), 2),
        "max_ms": round(max(latencies_ms), 2),
    }


@contextlib.contextmanager
def server(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server process with its output in ``log``; stop it with Ctrl-C's signal."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=out)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def teamcart_env(
    database_url: str, redis_url: str, jwt_secret: str, data_dir: Path
) -> dict[str, str]:
    """``teamcart serve``'s environment for a benchmark: the given services, a Stripe key
    whose API base answers nothing (no benchmark makes a Stripe call), warnings only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEAMCART_")}
    env.update(
        {
            "TEAMCART_DATABASE_URL": database_url,
            "TEAMCART_REDIS_URL": redis_url,
            "TEAMCART_JWT_SECRET": jwt_secret,
            "TEAMCART_STRIPE_SECRET_KEY": "sk_test_bench",
            "TEAMCART_STRIPE_API_BASE": "http://127.0.0.1:9",
            "TEAMCART_LOG_LEVEL": "WARNING",
            "TEAMCART_DATA_DIR": str(data_dir),
            "TEAMCART_RATE_LIMIT_PER_MINUTE": "0",  # one load generator signs in thousands
        }
    )
    return env


def teamcart_command(port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "app.cli",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


@contextlib.contextmanager
def profiling(output: str | None, pid: int, seconds: float) -> Iterator[None]:
    """With ``--profile FILE``: py-spy samples the server (and its workers) meanwhile, and
    writes collapsed stacks (flamegraph input) to FILE."""
    if not output:
        yield
        return
    spy_bin = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    command = [spy_bin, "record", "--pid", str(pid), "--subprocesses", "--format", "raw"]
    command += ["--rate", "200", "--duration", str(int(seconds) + 1), "--output", output]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.wait(timeout=60)


async def wait_ready(base: str, path: str, process: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient(timeout=2) as probe:
        for _ in range(600):
            if process.poll() is not None:
                raise RuntimeError(f"{base} exited with {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await probe.get(base + path)).status_code < 500:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{base} did not become ready")


class Seat(NamedTuple):
    """One member of a benchmark cart: their token, user id and the item they added."""

    token: str
    user_id: str
    item_id: str


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def open_group_carts(
    http: httpx.AsyncClient, jwt_secret: str, carts: int, members: int
) -> list[tuple[str, list[Seat]]]:
    """A store with one product, then ``carts`` open carts of ``members`` members, each of
    whom added one item, all through the HTTP API: [(cart id, its seats, host first)]."""
    admin = bearer(issue_token(jwt_secret, display_name="Admin", admin=True).token)
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

    async def one() -> tuple[str, list[Seat]]:
        people = [issue_token(jwt_secret, display_name=f"Member {n}") for n in range(members)]
        opened = await http.post(
            "/api/v1/teamcarts", json={"store_id": store["id"]}, headers=bearer(people[0].token)
        )
        assert opened.status_code == 201, opened.text
        cart = opened.json()
        for person in people[1:]:
            joined = await http.post(
                "/api/v1/teamcarts/join",
                json={"invite_code": cart["invite_code"]},
                headers=bearer(person.token),
            )
            assert joined.status_code == 200, joined.text
        seats = []
        for person in people:
            added = await http.post(
                f"/api/v1/teamcarts/{cart['id']}/items",
                json={"product_id": product["id"], "quantity": 1},
                headers=bearer(person.token),
            )
            assert added.status_code == 201, added.text
            seats.append(Seat(person.token, person.user_id, added.json()["item_id"]))
        return cart["id"], seats

    prepared: list[tuple[str, list[Seat]]] = []
    for start in range(0, carts, 25):
        prepared.extend(await asyncio.gather(*(one() for _ in range(min(25, carts - start)))))
    return prepared


async def open_loop(
    rate: float, seconds: float, send: Callable[[int], Awaitable[bool]]
) -> tuple[float, list[float], int]:
    """Start ``send(i)`` at a fixed rate whatever the answers do (an open loop); return the
    rate achieved, the latencies (ms) of the sends that succeeded, and how many failed.

    Each latency runs from the moment the send was due, not from when it started: when the
    load generator itself falls behind, that delay counts (no coordinated omission). The
    generator's cyclic garbage collector is off meanwhile: its full passes over thousands of
    client sockets take 100-200 ms, which would be counted as the server's latency.
    """

    async def timed(i: int, due: float) -> float | None:
        ok = await send(i)
        return (time.perf_counter() - due) * 1000 if ok else None

    gc.collect()
    gc.disable()
    try:
        tasks = []
        total = int(rate * seconds)
        start = time.perf_counter()
        for i in range(total):
            due = start + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(timed(i, due)))
        results = await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    latencies = [r for r in results if r is not None]
    return total / elapsed, latencies, total - len(latencies)


class HttpError(Exception):
    """The connection failed, or the answer was not one this client reads."""


class _ClosedWhileIdle(Exception):
    """A reused connection was closed by the server before this request reached it."""


_NO_BODY = frozenset({204, 304})


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.reusable = True

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send one request, read its answer: the status line and headers, then a body of
        ``Content-Length`` bytes (none for 1xx, 204 and 304). ``Connection: close`` makes
        the connection single-use."""
        self.writer.write(request)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = -1
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                self.reusable = False
            elif name == b"transfer-encoding":
                raise HttpError("a chunked answer (this client reads Content-Length only)")
        if status in _NO_BODY or status < 200:
            return status, b""
        if length < 0:
            raise HttpError(f"a {status} answer without Content-Length")
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


class LeanHttp:
    """A keep-alive HTTP/1.1 client for loopback load: one request per connection at a time,
    up to ``max_connections``, opened as needed. A kept-alive connection the server closed
    while it was idle (uvicorn does after 5 s) is replaced and the request sent again, once:
    the server never saw it."""

    def __init__(self, host: str, port: int, *, max_connections: int = 100) -> None:
        self.host = host
        self.port = port
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        return await self.request("POST", path, body, headers)

    async def request(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        head.append(f"Content-Length: {len(body)}")
        request = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        async with self._slots:
            while self._idle:
                connection = self._idle.pop()
                try:
                    return await self._exchange(connection, request)
                except _ClosedWhileIdle:
                    continue  # the server closed it while idle: try the next, or a new one
            return await self._exchange(await self._open(), request, fresh=True)

    async def _exchange(
        self, connection: _Connection, request: bytes, *, fresh: bool = False
    ) -> tuple[int, bytes]:
        try:
            answer = await connection.exchange(request)
        except asyncio.IncompleteReadError as exc:
            connection.close()
            if not fresh and not exc.partial:
                raise _ClosedWhileIdle from exc
            raise HttpError(repr(exc)) from exc
        except (ConnectionResetError, BrokenPipeError) as exc:
            connection.close()
            if not fresh:
                raise _ClosedWhileIdle from exc
            raise HttpError(repr(exc)) from exc
        except (OSError, ValueError, asyncio.LimitOverrunError, HttpError) as exc:
            connection.close()
            raise HttpError(repr(exc)) from exc
        except BaseException:
            connection.close()
            raise
        if connection.reusable:
            self._idle.append(connection)
        else:
            connection.close()
        return answer

    async def _open(self) -> _Connection:
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            raise HttpError(repr(exc)) from exc
        return _Connection(reader, writer)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
            with contextlib.suppress(Exception):
                await connection.writer.wait_closed()
