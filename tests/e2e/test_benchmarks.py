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
    assert result["delivered_ratio"] == 1.0  # every other member got every write
    assert result["out_of_order"] == 0
    assert result["failed_commands"] == 0
    assert result["server_cpu_ms_per_command"] > 0
    assert result["baseline"]["delivered_ratio"] == 1.0
    assert result["baseline"]["failed_publishes"] == 0
    # From before the request to the other member's screen includes commit → screen.
    assert 0 <= result["commit_to_receipt_ms"]["p50_ms"] <= result["p99_ms"]
    for value in (result["p50_ms"], result["baseline"]["p99_ms"], result["rss_per_connection_kib"]):
        assert value >= 0
    assert result["open_files_limit"]["soft"] > 0


def test_fanout_capacity_curve_reports_the_highest_rate_held() -> None:
    result = run_bench(
        "fanout",
        *("--curve", "--curve-workers", "1", "--curve-sockets", "4", "--members", "2"),
        *("--curve-seconds", "0.5", "--warmup", "0.5", "--curve-rates", "5,10"),
    )
    [point] = result["capacity"]
    assert (point["workers"], point["sockets"]) == (1, 4)
    assert point["steps"][0]["rate"] > 0
    held = point["max_rate_p99_50ms"]
    assert held in {0, 5, 10}
    for step in point["steps"]:  # every step up to the rate held kept p99 within 50 ms
        if step["rate"] <= held * 1.05:
            assert 0 <= step["p99_ms"] <= 50


def test_etag_benchmark_is_answered_304_every_time() -> None:
    result = run_bench("etag", "--seconds", "0.5", "--concurrency", "2")
    assert set(result["statuses"]) == {"304"}
    assert result["requests_per_s"] > 0
    assert result["baseline_hello_world"]["statuses"].keys() == {"200"}
    assert (
        0
        < result["ratio"]
        == pytest.approx(
            result["requests_per_s"] / result["baseline_hello_world"]["requests_per_s"], abs=0.001
        )
    )
