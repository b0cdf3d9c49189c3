"""The benchmarks still run end to end and report what they claim (tiny loads: a smoke test of
the tools, not a measurement; the figures come from ``./dev bench``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def run_bench(name: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / f"{name}.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_webhook_benchmark_applies_every_signed_event() -> None:
    result = run_bench(
        "webhooks", "--seconds", "1", "--rate", "20", "--carts", "2", "--concurrency", "2"
    )
    assert result["events_per_s"] > 0
    assert set(result["outcomes"]) == {"applied"}  # every event a real, accepted state change
    assert result["errors_at_rate"] == 0
    assert result["baseline_upserts_per_s"] > 0
    assert (
        0
        < result["ratio"]
        == pytest.approx(result["events_per_s"] / result["baseline_upserts_per_s"], abs=0.001)
    )


def test_fanout_benchmark_delivers_every_update_to_every_member() -> None:
    result = run_bench(
        "fanout",
        *("--carts", "2", "--members", "2", "--rate", "10", "--seconds", "1", "--warmup", "0.5"),
    )
    assert result["connections"] == 4
    assert result["events"] > 0
    assert result["delivered_ratio"] == 1.0
    assert result["out_of_order"] == 0
    assert result["failed_commands"] == 0
    assert result["baseline_delivered_ratio"] == 1.0
    assert result["baseline_failed_publishes"] == 0  # 204s without a body are answers too
    for key in ("p50_ms", "p99_ms", "baseline_p99_ms", "rss_per_connection_kib"):
        assert result[key] >= 0
    assert result["open_files_limit"]["soft"] > 0
