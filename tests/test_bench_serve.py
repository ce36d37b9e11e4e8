"""``nerve bench serve`` in a tiny configuration: it starts a real gateway, loads it, and its
table and JSON hold sane numbers (every request counted, percentiles ordered, no errors)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from app.cli import cli
from tests.fixtures.gateway import require_data
from tools.bench_serve import (
    STAGES,
    Sample,
    check_loopback,
    group_cpu_seconds,
    percentile,
    summarise,
)


def test_percentiles_interpolate_and_are_ordered() -> None:
    values = [40.0, 10.0, 30.0, 20.0]
    assert percentile(values, 0) == 10.0
    assert percentile(values, 50) == 25.0
    assert percentile(values, 100) == 40.0
    assert percentile([], 95) == 0.0
    assert percentile(values, 50) <= percentile(values, 95) <= percentile(values, 99)


def test_only_loopback_targets() -> None:
    assert check_loopback("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    assert check_loopback("http://localhost:1") == "http://localhost:1"
    with pytest.raises(ValueError, match="loopback"):
        check_loopback("http://10.0.0.2:8000")


def test_a_level_counts_errors_and_stage_shares() -> None:
    timings = {"embed": 10.0, "retrieve": 20.0, "generate": 60.0, "parse": 0.0, "total": 100.0}
    samples = [Sample(200, 110.0, timings), Sample(200, 130.0, timings), Sample(503, 5.0, {})]
    level = summarise("baner", 2, samples, duration_s=0.5)
    assert (level.requests, level.ok, level.errors) == (3, 2, 1)
    assert level.error_statuses == {"503": 1}
    assert level.requests_per_s == 4.0  # answered requests per second
    assert level.p50_ms == 120.0  # of the answered ones
    assert level.stage_share == {
        "embed": 0.1,
        "retrieve": 0.2,
        "generate": 0.6,
        "parse": 0.0,
        "other": 0.1,
    }


def test_a_process_groups_cpu_counts_its_busy_member() -> None:
    """A child in a group of its own spins for 0.3 s of CPU, then prints and sleeps: its
    group's counter has grown by that much, while a sleeping child's group stays near zero."""
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
    spin += "print('spun', flush=True)\ntime.sleep(30)"
    busy = subprocess.Popen(
        [sys.executable, "-c", spin], start_new_session=True, stdout=subprocess.PIPE, text=True
    )
    idle = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True
    )
    try:
        assert busy.stdout is not None and busy.stdout.readline() == "spun\n"
        assert 0.3 <= group_cpu_seconds(busy.pid) < 5.0
        assert group_cpu_seconds(idle.pid) < 0.25  # interpreter start-up only
    finally:
        busy.kill()
        idle.kill()
        busy.wait()
        idle.wait()


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_the_benchmark_runs_against_a_real_gateway(
    tmp_path: Path, base_settings: dict[str, Any]
) -> None:
    data = require_data()
    output = tmp_path / "bench.json"
    args = ["bench", "serve", "--data", str(data), "--domain", "music", "--method", "baner"]
    args += ["--concurrency", "1,2", "--requests", "3", "--warmup", "1", "--pool-limit", "8"]
    args += ["--seconds", "300", "--output", str(output)]
    for key, value in base_settings.items():
        args += ["--server-env", f"NERVE_{key.upper()}={value}"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output

    payload = json.loads(output.read_text())
    assert payload["pool_size"] == 8 and payload["target"] == "started"
    levels = payload["levels"]
    assert [(r["method"], r["clients"]) for r in levels] == [("baner", 1), ("baner", 2)]
    for r in levels:
        assert r["requests"] == 3 and r["ok"] == 3 and r["errors"] == 0, r
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"], r
        assert r["requests_per_s"] > 0 and r["duration_s"] > 0
        assert r["mean_server_total_ms"] > 0
        assert set(r["stage_share"]) == {*STAGES, "other"}
        assert sum(r["stage_share"].values()) == pytest.approx(1.0, abs=0.01)
        assert r["stage_ms"]["generate"] > 0  # the encoder ran
        assert r["stage_ms"]["embed"] > 0 and r["stage_ms"]["retrieve"] > 0
        # The started gateway's CPU per request: the encoders alone take milliseconds.
        assert 1.0 < r["server_cpu_ms_per_request"] < 60_000, r
    # The table: its title and one row per level.
    assert "nerve bench serve: music, pool 8" in result.output
    assert result.output.count("baner") >= 2
    assert "CPU ms/req" in result.output
