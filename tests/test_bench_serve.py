"""``nerve bench serve`` in a tiny configuration: it starts a real gateway, loads it, and its
table and JSON hold sane numbers (every request counted, percentiles ordered, no errors)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import cli
from tests.fixtures.gateway import require_data
from tests.fixtures.settings import as_env
from tools.bench_serve import (
    STAGES,
    Sample,
    check_loopback,
    group_cpu_seconds,
    percentile,
    render_table,
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


def _table_text(levels: list[dict[str, Any]]) -> str:
    from rich.console import Console

    result = {
        "domain": "music",
        "pool_size": 8,
        "date": "d",
        "machine": {"cpus": 4, "affinity": [0, 1], "load_average": None},
        "levels": levels,
    }
    console = Console(width=400, record=True)
    console.print(render_table(result))
    return console.export_text()


def test_the_table_gives_the_ceiling_of_the_cores_the_run_may_use() -> None:
    timings = {"embed": 10.0, "retrieve": 5.0, "generate": 20.0, "parse": 0.0, "total": 40.0}
    level = asdict(summarise("baner", 8, [Sample(200, 50.0, timings)] * 4, duration_s=0.1))
    level["server_cpu_ms_per_request"] = 40.0
    text = _table_text([level])
    # Two cores in the affinity (of four on the machine): 2 x 1000 / 40 ms = 50 requests/s.
    assert "ceiling req/s (2 cores)" in text and "50.0" in text
    # With Triton's counts the gateway's CPU is only part of a request's: no ceiling.
    level |= {"triton_requests": 4, "triton_executions": 1}
    text = _table_text([level])
    assert "gateway CPU ms/req" in text and "ceiling" not in text


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
    for name, value in as_env(base_settings).items():
        args += ["--server-env", f"{name}={value}"]
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
