"""What the benchmarks share: the server under test, a lean HTTP client, percentiles, py-spy.

The load generator shares the machine's two cores with the server, PostgreSQL and Redis, so
it must cost little per request: ``LeanHttp`` writes prebuilt HTTP/1.1 requests on keep-alive
connections and reads only the status line, ``Content-Length`` and the body (httpx spends
about 1 ms of CPU per request, and its connection pool slows down quadratically when
requests queue, which made the generator, not the server, the bottleneck).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.persistence import schema  # noqa: E402
from tests.services import fresh_database, postgres_server, redis_server  # noqa: E402


@contextlib.contextmanager
def services() -> Iterator[tuple[Path, str, str]]:
    """A scratch folder, a fresh migrated database and a Redis: the machine's PostgreSQL and
    Redis when they answer (as the tests use them), else embedded ones in the folder."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        postgres_server(Path(tmp)) as server_url,
        fresh_database(server_url) as database,
        redis_server(Path(tmp)) as redis_url,
    ):
        schema.upgrade(database)
        yield Path(tmp), database, redis_url


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


class HttpError(Exception):
    """The connection failed or the answer was not HTTP/1.1 with a ``Content-Length``."""


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = -1
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length < 0:
            raise HttpError("an answer without Content-Length")
        return status, await self.reader.readexactly(length)


class LeanHttp:
    """A keep-alive HTTP/1.1 client for loopback load: one request per connection at a time,
    up to ``max_connections``, opened as needed."""

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
            connection = self._idle.pop() if self._idle else await self._open()
            try:
                answer = await connection.exchange(request)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                connection.writer.close()
                raise HttpError(repr(exc)) from exc
            except BaseException:
                connection.writer.close()
                raise
            self._idle.append(connection)
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
            connection.writer.close()
            with contextlib.suppress(Exception):
                await connection.writer.wait_closed()
