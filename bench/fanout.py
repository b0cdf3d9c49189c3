"""Fan-out benchmark: cart updates from command commit to every member's WebSocket.

    python bench/fanout.py [--carts 500] [--members 4] [--rate 200] [--seconds 20]
                           [--warmup 3] [--workers 1]

Starts ``teamcart serve`` on a fresh database (the machine's PostgreSQL/Redis when they
answer, else the embedded ones), opens ``--carts`` carts of ``--members`` members through the
HTTP API (every member adds an item), connects every member's WebSocket, then changes item
quantities through the HTTP API at ``--rate`` commands per second (open loop). Each command
commits one event; latency runs from the commit (the outbox row's ``created_at``, the
transaction's last statement, ``clock_timestamp()``) to each member's receipt of the update.
Everything runs on loopback.

The same run measures a baseline: a bare Litestar WebSocket endpoint on the same uvicorn
settings, where a POST sends a message of the same size straight to the room's sockets in a
plain loop (no PostgreSQL, no Redis), driven at the same rate to the same number of sockets;
its latency runs from the moment the handler starts sending. Server memory per idle
connection is the RSS growth of each server process from opening the sockets, divided by
their number. The load generator (this process) turns its own garbage collector off while it
drives load, so its pauses are not counted as the server's.

Prints one JSON object. Targets (issue 5): p99 ≤ 50 ms, delivered ratio 1.0, p99 at most 3
times the baseline's, RSS per connection at most 1.25 times the bare endpoint's.

``--profile FILE`` samples the server with py-spy during the measured load (collapsed
stacks, the input of a flame graph).

Why one module of this length: a benchmark is read as one script, from the load it makes to
the figures it prints.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import sys
import time
import uuid
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
DISPATCH_METRIC = "teamcart_outbox_dispatch_seconds"


class Head(msgspec.Struct):
    """What a client looks at in a message: its type and version."""

    type: str
    version: int = 0


_head = msgspec.json.Decoder(Head)


def histogram(metrics: str, name: str) -> dict[str, float]:
    """A Prometheus histogram's cumulative buckets, sum and count, by label."""
    values: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith(name + "_bucket"):
            values[line.split('le="')[1].split('"')[0]] = float(line.split()[-1])
        elif line.startswith((name + "_sum", name + "_count")):
            values[line.split()[0].removeprefix(name)] = float(line.split()[-1])
    return values


def histogram_summary(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Mean and bucket-bound p50/p99 (ms) of what a histogram saw between two scrapes."""
    seen = {key: after[key] - before.get(key, 0.0) for key in after}
    count, total = seen.pop("_count", 0.0), seen.pop("_sum", 0.0)
    if not count:
        return {}
    buckets = sorted(
        (float("inf") if bound == "+Inf" else float(bound), n) for bound, n in seen.items()
    )

    def quantile(q: float) -> float:
        return next(bound for bound, seen in buckets if seen >= q * count) * 1000

    return {
        "mean": round(total / count * 1000, 2),
        "p50_at_most": quantile(0.5),
        "p99_at_most": quantile(0.99),
    }


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


class Receipts:
    """Every client's receipts: (room, version) → receipt times, plus order violations."""

    def __init__(self) -> None:
        self.times: dict[tuple[str, int], list[float]] = {}
        self.out_of_order = 0
        self.snapshots_after_first = 0
        self.closed = 0
        self.first_snapshot_bytes = 0

    async def read(self, ws: ClientConnection, room: str) -> None:
        last = 0
        with contextlib.suppress(Exception):  # the connection ends: what arrived is counted
            async for raw in ws:
                now = time.time()
                head = _head.decode(raw)
                if head.type == "update":
                    if head.version != last + 1 and last:
                        self.out_of_order += 1
                    last = head.version
                    self.times.setdefault((room, head.version), []).append(now)
                elif head.type == "snapshot":
                    if last:
                        self.snapshots_after_first += 1
                    elif not self.first_snapshot_bytes:
                        self.first_snapshot_bytes = len(raw)
                    last = head.version
        self.closed += 1


async def open_sockets(
    urls: list[tuple[str, str]], receipts: Receipts, concurrency: int
) -> tuple[list[ClientConnection], list[asyncio.Task[None]]]:
    """Connect every (room, url); each gets a reader. Waits for every first message."""
    sockets: list[ClientConnection] = []
    readers: list[asyncio.Task[None]] = []
    gate = asyncio.Semaphore(concurrency)

    async def one(room: str, url: str) -> None:
        async with gate:
            ws = await connect(url, compression=None, ping_interval=None, open_timeout=60)
            first = await asyncio.wait_for(ws.recv(), 30)  # the snapshot (or a hello)
            if receipts.first_snapshot_bytes == 0:
                receipts.first_snapshot_bytes = len(first)
            sockets.append(ws)
            readers.append(asyncio.create_task(receipts.read(ws, room)))

    await asyncio.gather(*(one(room, url) for room, url in urls))
    return sockets, readers


# --- the real server --------------------------------------------------------------------------


async def commit_times(database_url: str, since: float) -> dict[tuple[str, int], float]:
    dsn = listen_dsn(database_url)
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT aggregate_id::text AS cart, version, extract(epoch FROM created_at) AS t "
            "FROM outbox WHERE event_type = 'item_quantity_changed' "
            "AND created_at >= to_timestamp($1)",
            since,
        )
    finally:
        await conn.close()
    return {(row["cart"], row["version"]): float(row["t"]) for row in rows}


async def real_run(args: argparse.Namespace, database_url: str, redis_url: str) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = teamcart_env(database_url, redis_url, JWT_SECRET, Path(args.tmp) / "data")
    command = teamcart_command(port, args.workers)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    with server(command, env, Path(args.tmp) / "server.log") as process:
        await wait_ready(base, "/health/ready", process)
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
            carts = await open_group_carts(http, JWT_SECRET, args.carts, args.members)
            await asyncio.sleep(1)
            rss_before = rss_bytes(process.pid)
            receipts = Receipts()
            ws_base = base.replace("http://", "ws://")
            urls = [
                (cart_id, f"{ws_base}/ws/teamcarts/{cart_id}?token={token}")
                for cart_id, members in carts
                for token, _, _ in members
            ]
            sockets, readers = await open_sockets(urls, receipts, args.connect_concurrency)
            await asyncio.sleep(2)  # idle: presence settled, snapshots sent
            rss_after = rss_bytes(process.pid)
            quantities: dict[str, int] = {}
            seats = [
                (cart_id, members[m].token, members[m].item_id)
                for m in range(args.members)
                for cart_id, members in carts
            ]

            lean = LeanHttp("127.0.0.1", port, max_connections=200)

            async def change_quantity(i: int) -> bool:
                cart_id, token, item = seats[i % len(seats)]
                quantity = quantities.get(item, 1) % 5 + 1
                quantities[item] = quantity
                try:
                    status, _ = await lean.request(
                        "PATCH",
                        f"/api/v1/teamcarts/{cart_id}/items/{item}",
                        b'{"quantity": %d}' % quantity,
                        {**bearer(token), "Content-Type": "application/json"},
                    )
                except HttpError:
                    return False
                return status == 200

            await open_loop(args.rate, args.warmup, change_quantity)
            await asyncio.sleep(1)
            dispatch_before = histogram((await http.get("/metrics")).text, DISPATCH_METRIC)
            cpu_before = cpu_seconds(process.pid)
            measured_from = time.time()
            with profiling(args.profile, process.pid, args.seconds):
                rate, command_ms, failed = await open_loop(args.rate, args.seconds, change_quantity)
            # Reading every process's CPU time holds this process for some 20 ms: let the last
            # updates arrive first, or that stall would count as their latency.
            await asyncio.sleep(0.5)
            cpu_after = cpu_seconds(process.pid)
            cpu_elapsed = time.time() - measured_from
            await asyncio.sleep(1.5)  # stragglers
            dispatch_after = histogram((await http.get("/metrics")).text, DISPATCH_METRIC)
            await lean.close()
            for ws in sockets:
                await ws.close()
            await asyncio.gather(*readers)
        committed = await commit_times(database_url, measured_from)
    latencies = []
    delivered = 0
    for key, commit in committed.items():
        for received in receipts.times.get(key, []):
            latencies.append((received - commit) * 1000)
            delivered += 1
    expected = len(committed) * args.members
    return {
        "connections": len(sockets),
        "rate": round(rate, 1),
        "events": len(committed),
        **summary(latencies),
        "delivered_ratio": round(delivered / expected, 4) if expected else 0.0,
        "out_of_order": receipts.out_of_order,
        "snapshots_after_first": receipts.snapshots_after_first,
        "failed_commands": failed,
        "command_p50_ms": round(statistics.median(command_ms), 2) if command_ms else -1,
        "command_p99_ms": round(percentile(command_ms, 0.99), 2) if command_ms else -1,
        "rss_per_connection_kib": round((rss_after - rss_before) / len(sockets) / 1024, 2),
        "message_bytes": receipts.first_snapshot_bytes,
        "server_commit_to_published_ms": histogram_summary(dispatch_before, dispatch_after),
        "cpu_cores_used": {
            name: round((cpu_after[name] - cpu_before[name]) / cpu_elapsed, 2) for name in cpu_after
        },
    }


# --- the baseline: a bare Litestar endpoint, sockets written in a plain loop ------------------


def bare_app(message_bytes: int) -> Any:
    from litestar import Litestar, WebSocket, post, websocket
    from litestar.params import FromPath

    rooms: dict[str, set[WebSocket[Any, Any, Any]]] = {}
    padding = "x" * max(0, message_bytes - 80)

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

    @post("/publish/{room:str}", status_code=204)
    async def publish(room: FromPath[str], data: dict[str, int]) -> None:
        stamp = time.time()
        text = json.dumps({"type": "update", "version": data["version"], "t": stamp, "p": padding})
        for socket in list(rooms.get(room, ())):
            await socket.send_text(text)

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


class BareReceipts(Receipts):
    """The bare server stamps its send time into each message."""

    def __init__(self) -> None:
        super().__init__()
        self.latencies: list[float] = []
        self.received = 0

    async def read(self, ws: ClientConnection, room: str) -> None:
        with contextlib.suppress(Exception):
            async for raw in ws:
                now = time.time()
                message = json.loads(raw)
                if message["type"] == "update":
                    self.latencies.append((now - message["t"]) * 1000)
                    self.received += 1


async def bare_run(args: argparse.Namespace, message_bytes: int) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, __file__, "--bare-server", str(port), str(message_bytes)]
    with server(command, dict(os.environ), Path(args.tmp) / "bare.log") as process:
        await wait_ready(base, "/nothing", process)
        rooms = [uuid.uuid4().hex for _ in range(args.carts)]
        await asyncio.sleep(1)
        rss_before = rss_bytes(process.pid)
        receipts = BareReceipts()
        urls = [
            (room, f"{base.replace('http://', 'ws://')}/ws/{room}")
            for room in rooms
            for _ in range(args.members)
        ]
        sockets, readers = await open_sockets(urls, receipts, args.connect_concurrency)
        await asyncio.sleep(2)
        rss_after = rss_bytes(process.pid)
        http = LeanHttp("127.0.0.1", port, max_connections=200)
        versions: dict[str, int] = {}

        async def publish(i: int) -> bool:
            room = rooms[i % len(rooms)]
            versions[room] = versions.get(room, 0) + 1
            try:
                status, _ = await http.post(
                    f"/publish/{room}",
                    b'{"version": %d}' % versions[room],
                    {"Content-Type": "application/json"},
                )
            except HttpError:
                return False
            return status == 204

        await open_loop(args.rate, args.warmup, publish)
        await asyncio.sleep(1)
        receipts.latencies.clear()
        receipts.received = 0
        rate, _, failed = await open_loop(args.rate, args.seconds, publish)
        await asyncio.sleep(2)
        await http.close()
        for ws in sockets:
            await ws.close()
        await asyncio.gather(*readers)
    expected = int(args.rate * args.seconds) * args.members
    return {
        "connections": len(sockets),
        "rate": round(rate, 1),
        **summary(receipts.latencies),
        "delivered_ratio": round(receipts.received / expected, 4) if expected else 0.0,
        "failed_publishes": failed,
        "rss_per_connection_kib": round((rss_after - rss_before) / len(sockets) / 1024, 2),
    }


async def run(args: argparse.Namespace, database_url: str, redis_url: str) -> dict[str, Any]:
    real = await real_run(args, database_url, redis_url)
    bare = await bare_run(args, real["message_bytes"])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    p99_ratio = real["p99_ms"] / bare["p99_ms"] if bare["p99_ms"] > 0 else None
    rss_ratio = (
        real["rss_per_connection_kib"] / bare["rss_per_connection_kib"]
        if bare["rss_per_connection_kib"] > 0
        else None
    )
    return {
        **{k: v for k, v in real.items()},
        "baseline_p50_ms": bare["p50_ms"],
        "baseline_p99_ms": bare["p99_ms"],
        "baseline_max_ms": bare["max_ms"],
        "baseline_delivered_ratio": bare["delivered_ratio"],
        "baseline_failed_publishes": bare["failed_publishes"],
        "bare_rss_per_connection_kib": bare["rss_per_connection_kib"],
        "p99_vs_baseline": round(p99_ratio, 2) if p99_ratio is not None else None,
        "rss_vs_bare": round(rss_ratio, 3) if rss_ratio is not None else None,
        "open_files_limit": {"soft": soft, "hard": hard},
        "carts": args.carts,
        "members_per_cart": args.members,
        "seconds": args.seconds,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "targets": {
            "p99_ms": 50,
            "delivered_ratio": 1.0,
            "p99_vs_baseline": 3.0,
            "rss_vs_bare": 1.25,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--carts", type=int, default=500)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--rate", type=float, default=200, help="commands (updates) per second")
    parser.add_argument("--seconds", type=float, default=20, help="measured load duration")
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--connect-concurrency", type=int, default=50)
    parser.add_argument("--profile", help="py-spy the server under load into this file")
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
