"""Fan-out benchmark: from a member's click to every other member's screen.

    python bench/fanout.py [--carts 500] [--members 4] [--rate 200] [--seconds 20]
                           [--warmup 3] [--workers 1] [--profile FILE]
    python bench/fanout.py --curve [--curve-workers 1,2] [--curve-sockets 2000,10000]
                           [--curve-seconds 5]

Starts ``teamcart serve`` on a fresh database (the machine's PostgreSQL/Redis when they
answer, else the embedded ones), opens ``--carts`` carts of ``--members`` members through the
HTTP API (every member adds an item), connects every member's WebSocket, then changes item
quantities through the HTTP API at ``--rate`` commands per second: an open loop, each
request on one of a pool of keep-alive connections, as many in flight as the server lets
pile up. Everything runs on loopback.

What a user feels is the headline: each change is timed from just before its request is sent
to each *other* member's receipt of the update (``p50_ms``, ``p99_ms``; ``delivered_ratio``
counts those receipts). Breakdowns: the HTTP answer's latency (``command_p99_ms``) and commit
→ receipt (the outbox row's ``created_at``, the transaction's last statement, to every
member's receipt). ``server_cpu_ms_per_command`` is the server's CPU time (every worker)
during the measured load divided by the commands sent.

The same run measures a baseline: a bare Litestar app on the same uvicorn settings, whose
POST handler sends a message of the same size straight to the room's sockets in a plain loop
(no PostgreSQL, no Redis, no auth), driven the same way and timed the same way, from before
the request is sent to each socket's receipt. Server memory per idle connection is the RSS
growth of each server process from opening the sockets, divided by their number. The load
generator (this process) turns its own garbage collector off while it drives load, so its
pauses are not counted as the server's.

``--curve`` measures capacity instead: for each worker count and socket count, one server,
then rising write rates (``--curve-seconds`` each) until p99 passes 50 ms or an update goes
missing; it prints the highest rate that held. (The load generator shares the two cores:
at high rates it, too, is measured.)

``--profile FILE`` samples the server with py-spy during the measured load (collapsed
stacks, the input of a flame graph).

Targets (issue 13): at 2,000 sockets and 200 writes/s on one worker, p50 ≤ 10 ms, p99 ≤ 50
ms, delivered 1.0, versions in order, ≤ 1.0 ms of server CPU per command; RSS per idle
connection ≤ 1.1 times the bare endpoint's.

Why one module of this length: a benchmark is read as one script, from the load it makes to
the figures it prints.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import resource
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import psutil
from websockets.asyncio.client import ClientConnection, connect

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
    percentile,
    profiling,
    run_benchmark,
    server,
    summary,
    teamcart_command,
    teamcart_env,
    wait_ready,
)

JWT_SECRET = "bench-" + uuid.uuid4().hex * 2
P99_TARGET_MS = 50.0
CURVE_RATES = "100,200,300,400,500,600,800,1000,1200,1500,2000"


class Head(msgspec.Struct):
    """What a client looks at in a message: its type and version."""

    type: str
    version: int = 0


class Versioned(msgspec.Struct):
    """What the load generator reads of a command's answer (the cart view): its version."""

    version: int


_head = msgspec.json.Decoder(Head)
_versioned = msgspec.json.Decoder(Versioned)


def cpu_seconds(server_pid: int) -> dict[str, float]:
    """CPU time used so far by the server, this load generator, PostgreSQL and Redis."""
    totals = {"server": 0.0, "load_generator": 0.0, "postgres": 0.0, "redis": 0.0}
    server = psutil.Process(server_pid)
    mine = {server_pid, *(p.pid for p in server.children(recursive=True))}
    for proc in psutil.process_iter(["pid", "name", "cpu_times"]):
        times = proc.info["cpu_times"]
        if times is None:
            continue
        used = times.user + times.system
        name = proc.info["name"] or ""
        if proc.info["pid"] in mine and "python" in name:
            totals["server"] += used
        elif proc.info["pid"] == os.getpid():
            totals["load_generator"] += used
        elif name.startswith("postgres"):
            totals["postgres"] += used
        elif name.startswith("redis-server"):
            totals["redis"] += used
    return totals


def rss_bytes(pid: int) -> int:
    """The RSS of a server: the process and its children (uvicorn workers)."""
    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])


@dataclass
class Receipts:
    """Every client's receipts: (room, version) → [(receipt time, reader)], and order
    violations."""

    times: dict[tuple[str, int], list[tuple[float, str]]] = field(default_factory=dict)
    out_of_order: int = 0
    snapshots_after_first: int = 0
    first_snapshot_bytes: int = 0

    async def read(self, ws: ClientConnection, room: str, reader: str) -> None:
        last = 0
        with contextlib.suppress(Exception):  # the connection ends: what arrived is counted
            async for raw in ws:
                now = time.time()
                head = _head.decode(raw)
                if head.type == "update":
                    if head.version != last + 1 and last:
                        self.out_of_order += 1
                    last = head.version
                    self.times.setdefault((room, head.version), []).append((now, reader))
                elif head.type == "snapshot":
                    if last:
                        self.snapshots_after_first += 1
                    last = head.version


@dataclass
class Sent:
    """Each answered write: (room, version) → (the moment before it was sent, the writer)."""

    times: dict[tuple[str, int], tuple[float, str]] = field(default_factory=dict)
    http_ms: list[float] = field(default_factory=list)

    def latencies(self, receipts: Receipts) -> tuple[list[float], int]:
        """Send → receipt of every member but the writer; and how many receipts there are."""
        latencies = [
            (received - sent) * 1000
            for key, (sent, writer) in self.times.items()
            for received, reader in receipts.times.get(key, ())
            if reader != writer
        ]
        return latencies, len(latencies)


async def open_sockets(
    urls: list[tuple[str, str, str]], receipts: Receipts, concurrency: int
) -> tuple[list[ClientConnection], list[asyncio.Task[None]]]:
    """Connect every (room, reader, url); each gets a reader task. Waits for every first
    message (the snapshot, or the bare server's hello)."""
    sockets: list[ClientConnection] = []
    readers: list[asyncio.Task[None]] = []
    gate = asyncio.Semaphore(concurrency)

    async def one(room: str, reader: str, url: str) -> None:
        async with gate:
            ws = await connect(url, compression=None, ping_interval=None, open_timeout=120)
            first = await asyncio.wait_for(ws.recv(), 60)
            if receipts.first_snapshot_bytes == 0:
                receipts.first_snapshot_bytes = len(first)
            sockets.append(ws)
            readers.append(asyncio.create_task(receipts.read(ws, room, reader)))

    await asyncio.gather(*(one(*url) for url in urls))
    return sockets, readers


async def close_sockets(sockets: list[ClientConnection], readers: list[asyncio.Task[None]]) -> None:
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    await asyncio.gather(*readers)


# --- the real server --------------------------------------------------------------------------


async def commit_times(database_url: str) -> dict[tuple[str, int], float]:
    conn = await asyncpg.connect(listen_dsn(database_url))
    try:
        rows = await conn.fetch(
            "SELECT aggregate_id::text AS cart, version, extract(epoch FROM created_at) AS t "
            "FROM outbox WHERE event_type = 'item_quantity_changed'"
        )
    finally:
        await conn.close()
    return {(row["cart"], row["version"]): float(row["t"]) for row in rows}


@dataclass
class LiveCarts:
    """A running ``teamcart serve`` with its carts open and every member's socket connected."""

    process: Any
    port: int
    members: int
    seats: list[tuple[str, Seat]]
    receipts: Receipts
    rss_per_connection_kib: float
    connections: int
    lean: LeanHttp
    quantities: dict[str, int] = field(default_factory=dict)

    async def write(self, i: int, sent: Sent) -> bool:
        cart_id, seat = self.seats[i % len(self.seats)]
        quantity = self.quantities.get(seat.item_id, 1) % 5 + 1
        self.quantities[seat.item_id] = quantity
        started = time.time()
        try:
            status, body = await self.lean.request(
                "PATCH",
                f"/api/v1/teamcarts/{cart_id}/items/{seat.item_id}",
                b'{"quantity": %d}' % quantity,
                {**bearer(seat.token), "Content-Type": "application/json"},
            )
        except HttpError:
            return False
        if status != 200:
            return False
        sent.times[(cart_id, _versioned.decode(body).version)] = (started, seat.user_id)
        return True

    async def measure(
        self, rate: float, seconds: float, profile: str | None = None
    ) -> tuple[dict[str, Any], Sent]:
        """One open-loop phase at ``rate``: what users felt, and the server's CPU per command."""
        sent = Sent()
        cpu_before = cpu_seconds(self.process.pid)
        measured_from = time.time()
        with profiling(profile, self.process.pid, seconds):
            achieved, command_ms, failed = await open_loop(
                rate, seconds, lambda i: self.write(i, sent)
            )
        # Reading every process's CPU time holds this process for some 20 ms: let the last
        # updates arrive first, or that stall would count as their latency.
        await asyncio.sleep(0.5)
        cpu_after = cpu_seconds(self.process.pid)
        cpu_elapsed = time.time() - measured_from
        await asyncio.sleep(1.0)  # stragglers
        latencies, delivered = sent.latencies(self.receipts)
        expected = len(sent.times) * (self.members - 1)
        commands = len(sent.times) + failed
        figures = {
            "rate": round(achieved, 1),
            **summary(latencies),
            "delivered_ratio": round(delivered / expected, 4) if expected else 0.0,
            "failed_commands": failed,
            "command_p50_ms": round(statistics.median(command_ms), 2) if command_ms else -1,
            "command_p99_ms": round(percentile(command_ms, 0.99), 2) if command_ms else -1,
            "server_cpu_ms_per_command": round(
                (cpu_after["server"] - cpu_before["server"]) * 1000 / max(commands, 1), 3
            ),
            "cpu_cores_used": {
                name: round((cpu_after[name] - cpu_before[name]) / cpu_elapsed, 2)
                for name in cpu_after
            },
        }
        return figures, sent


@contextlib.asynccontextmanager
async def live_carts(
    args: argparse.Namespace, database_url: str, redis_url: str, carts: int, workers: int
) -> AsyncIterator[LiveCarts]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = teamcart_env(database_url, redis_url, JWT_SECRET, Path(args.tmp) / f"data-{port}")
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    log = Path(args.tmp) / f"server-{port}.log"
    with server(teamcart_command(port, workers), env, log) as process:
        await wait_ready(base, "/health/ready", process)
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
            opened = await open_group_carts(http, JWT_SECRET, carts, args.members)
        await asyncio.sleep(1)
        rss_before = rss_bytes(process.pid)
        receipts = Receipts()
        ws_base = base.replace("http://", "ws://")
        urls = [
            (cart_id, seat.user_id, f"{ws_base}/ws/teamcarts/{cart_id}?token={seat.token}")
            for cart_id, seats in opened
            for seat in seats
        ]
        sockets, readers = await open_sockets(urls, receipts, args.connect_concurrency)
        await asyncio.sleep(2)  # idle: presence settled, snapshots sent
        rss_after = rss_bytes(process.pid)
        lean = LeanHttp("127.0.0.1", port, max_connections=200)
        try:
            yield LiveCarts(
                process=process,
                port=port,
                members=args.members,
                # Every cart's first member, then every cart's second, ...: consecutive
                # writes go to different carts, as they would from many groups.
                seats=[
                    (cart_id, seats[m]) for m in range(args.members) for cart_id, seats in opened
                ],
                receipts=receipts,
                rss_per_connection_kib=round((rss_after - rss_before) / len(sockets) / 1024, 2),
                connections=len(sockets),
                lean=lean,
            )
        finally:
            await lean.close()
            await close_sockets(sockets, readers)


async def real_run(args: argparse.Namespace, database_url: str, redis_url: str) -> dict[str, Any]:
    async with live_carts(args, database_url, redis_url, args.carts, args.workers) as live:
        warm = Sent()
        await open_loop(args.rate, args.warmup, lambda i: live.write(i, warm))
        await asyncio.sleep(1)
        figures, sent = await live.measure(args.rate, args.seconds, args.profile)
    committed = await commit_times(database_url)
    breakdown = [
        (received - committed[key]) * 1000
        for key in sent.times
        if key in committed
        for received, _ in live.receipts.times.get(key, ())
    ]
    return {
        "connections": live.connections,
        "events": len(sent.times),
        **figures,
        "out_of_order": live.receipts.out_of_order,
        "snapshots_after_first": live.receipts.snapshots_after_first,
        "commit_to_receipt_ms": summary(breakdown),
        "rss_per_connection_kib": live.rss_per_connection_kib,
        "message_bytes": live.receipts.first_snapshot_bytes,
    }


async def capacity(
    args: argparse.Namespace, database_url: str, redis_url: str
) -> list[dict[str, Any]]:
    """The highest write rate with p99 ≤ 50 ms (every update delivered, none failed), per
    worker count and socket count."""
    curve = []
    for sockets in (int(n) for n in args.curve_sockets.split(",")):
        for workers in (int(n) for n in args.curve_workers.split(",")):
            steps: list[dict[str, Any]] = []
            held = 0.0
            carts = sockets // args.members
            async with live_carts(args, database_url, redis_url, carts, workers) as live:
                await open_loop(100, args.warmup, functools.partial(live.write, sent=Sent()))
                for rate in (float(n) for n in args.curve_rates.split(",")):
                    figures, _ = await live.measure(rate, args.curve_seconds)
                    steps.append(
                        {
                            key: figures[key]
                            for key in (
                                "rate",
                                "p50_ms",
                                "p99_ms",
                                "delivered_ratio",
                                "failed_commands",
                                "server_cpu_ms_per_command",
                            )
                        }
                        | {"server_cores": figures["cpu_cores_used"]["server"]}
                    )
                    ok = (
                        0 <= figures["p99_ms"] <= P99_TARGET_MS
                        and figures["delivered_ratio"] >= 1.0
                        and figures["failed_commands"] == 0
                        and figures["rate"] >= 0.95 * rate
                    )
                    if not ok:
                        break
                    held = rate
                    await asyncio.sleep(1)
            print(f"capacity: {workers} worker(s), {sockets} sockets: {held}/s", file=sys.stderr)
            curve.append(
                {"workers": workers, "sockets": sockets, "max_rate_p99_50ms": held, "steps": steps}
            )
    return curve


# --- the baseline: a bare Litestar endpoint, sockets written in a plain loop ------------------


def bare_app(message_bytes: int) -> Any:
    from litestar import Litestar, WebSocket, post, websocket
    from litestar.params import FromPath

    rooms: dict[str, set[WebSocket[Any, Any, Any]]] = {}
    padding = "x" * max(0, message_bytes - 60)

    @websocket("/ws/{room:str}")
    async def socket_handler(socket: WebSocket[Any, Any, Any], room: FromPath[str]) -> None:
        await socket.accept()
        await socket.send_text('{"type":"hello"}')
        members = rooms.setdefault(room, set())
        members.add(socket)
        try:
            while (await socket.receive())["type"] != "websocket.disconnect":
                pass
        finally:
            members.discard(socket)

    @post("/publish/{room:str}", status_code=200)
    async def publish(room: FromPath[str], data: dict[str, int]) -> dict[str, int]:
        text = json.dumps({"type": "update", "version": data["version"], "p": padding})
        for socket in list(rooms.get(room, ())):
            await socket.send_text(text)
        return {"version": data["version"]}

    return Litestar([socket_handler, publish])


def serve_bare(port: int, message_bytes: int) -> None:
    import uvicorn

    uvicorn.run(
        bare_app(message_bytes),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        ws_per_message_deflate=False,
    )


async def bare_run(args: argparse.Namespace, message_bytes: int) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, __file__, "--bare-server", str(port), str(message_bytes)]
    with server(command, dict(os.environ), Path(args.tmp) / "bare.log") as process:
        await wait_ready(base, "/nothing", process)
        rooms = [uuid.uuid4().hex for _ in range(args.carts)]
        await asyncio.sleep(1)
        rss_before = rss_bytes(process.pid)
        receipts = Receipts()
        urls = [
            (room, f"socket {n}", f"{base.replace('http://', 'ws://')}/ws/{room}")
            for room in rooms
            for n in range(args.members)
        ]
        sockets, readers = await open_sockets(urls, receipts, args.connect_concurrency)
        await asyncio.sleep(2)
        rss_after = rss_bytes(process.pid)
        http = LeanHttp("127.0.0.1", port, max_connections=200)
        versions: dict[str, int] = {}

        async def publish(i: int, sent: Sent) -> bool:
            room = rooms[i % len(rooms)]
            version = versions[room] = versions.get(room, 0) + 1
            started = time.time()
            try:
                status, _ = await http.post(
                    f"/publish/{room}",
                    b'{"version": %d}' % version,
                    {"Content-Type": "application/json"},
                )
            except HttpError:
                return False
            sent.times[(room, version)] = (started, "the load generator")
            return status == 200

        warm = Sent()
        await open_loop(args.rate, args.warmup, lambda i: publish(i, warm))
        await asyncio.sleep(1)
        sent = Sent()
        rate, _, failed = await open_loop(args.rate, args.seconds, lambda i: publish(i, sent))
        await asyncio.sleep(1.5)
        await http.close()
        await close_sockets(sockets, readers)
    latencies, delivered = sent.latencies(receipts)
    expected = len(sent.times) * args.members
    return {
        "rate": round(rate, 1),
        **summary(latencies),
        "delivered_ratio": round(delivered / expected, 4) if expected else 0.0,
        "failed_publishes": failed,
        "rss_per_connection_kib": round((rss_after - rss_before) / len(sockets) / 1024, 2),
    }


def ratio(value: float, baseline: float) -> float | None:
    return round(value / baseline, 3) if baseline > 0 and value >= 0 else None


async def run(args: argparse.Namespace, database_url: str, redis_url: str) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    machine = {"cpus": os.cpu_count(), "open_files_limit": {"soft": soft, "hard": hard}}
    if args.curve:
        return {
            "capacity": await capacity(args, database_url, redis_url),
            "members_per_cart": args.members,
            "seconds_per_step": args.curve_seconds,
            "p99_target_ms": P99_TARGET_MS,
            **machine,
        }
    real = await real_run(args, database_url, redis_url)
    bare = await bare_run(args, real["message_bytes"])
    return {
        **real,
        "baseline": bare,
        "p99_vs_baseline": ratio(real["p99_ms"], bare["p99_ms"]),
        "rss_vs_bare": ratio(real["rss_per_connection_kib"], bare["rss_per_connection_kib"]),
        "carts": args.carts,
        "members_per_cart": args.members,
        "seconds": args.seconds,
        "workers": args.workers,
        **machine,
        "targets": {
            "p50_ms": 10,
            "p99_ms": P99_TARGET_MS,
            "delivered_ratio": 1.0,
            "server_cpu_ms_per_command": 1.0,
            "rss_vs_bare": 1.1,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--carts", type=int, default=500)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--rate", type=float, default=200, help="commands (writes) per second")
    parser.add_argument("--seconds", type=float, default=20, help="measured load duration")
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--connect-concurrency", type=int, default=50)
    parser.add_argument("--profile", help="py-spy the server under load into this file")
    parser.add_argument("--curve", action="store_true", help="measure the capacity curve")
    parser.add_argument("--curve-workers", default="1,2")
    parser.add_argument("--curve-sockets", default="2000,10000")
    parser.add_argument("--curve-seconds", type=float, default=5)
    parser.add_argument("--curve-rates", default=CURVE_RATES, help="rising write rates to try")
    parser.add_argument("--bare-server", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        serve_bare(*args.bare_server)
        return
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    run_benchmark(run, args)


if __name__ == "__main__":
    main()
