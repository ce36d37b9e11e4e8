"""``nerve bench serve``: a load benchmark of ``POST /v1/ner`` against a real ``nerve serve``.

By default it starts its own gateway (``nerve serve`` in a subprocess on a free loopback port,
a fresh data dir, the answer cache off) and stops it at the end; ``--url`` targets a running
one instead (loopback only). A CrossNER domain's train split is the retrieval pool, indexed
into a domain of its own; its test sentences are the queries, each sent **once per run**, so
no request can hit the answer cache (nor the query-embedding cache) even when it is on.

For each method and each concurrency level, that many clients send requests back to back until
the level's requests are done or its time is up; per level: requests/s, client-side latency
p50/p95/p99, errors, and each stage's share of the service's own ``timings_ms`` (embed,
retrieve, generate, parse; the rest of ``total`` is "other"). With ``--triton-stats URL`` (the
gateway calls Triton: ``NERVE_ENCODER_BACKEND=triton``), each level also records how many
requests the Triton model of the method's name answered and in how many ``execute`` calls
(Triton's statistics, read before and after the level): fewer executions is batching.

A gateway started here also reports its **CPU per request**: the user + system CPU time of its
process group (the gateway, Milvus Lite's server, their reaped children; from ``/proc``) over
the level, divided by the level's requests. With the cores the run may use this gives the
level's ceiling, ``cores x 1000 / CPU ms``: the requests/s no scheduling of this work could
exceed (not with ``--triton-stats``: Triton's own CPU is not counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from nerve.data.crossner_types import entity_types_for
from nerve.data.readers import entity_types_of, read_split
from nerve.settings import CROSSNER_DIR, REPO_ROOT
from nerve.vocab.types import Example

STAGES = ("embed", "retrieve", "generate", "parse")
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
UPLOAD_CHUNK = 500
# The `nerve` entry point, without relying on the script being installed.
CLI = "from cli.main import main; main()"


@dataclass(frozen=True)
class BenchConfig:
    url: str | None = None  # None: start a gateway here
    data: Path = CROSSNER_DIR
    domain: str = "music"
    methods: tuple[str, ...] = ("baner",)
    levels: tuple[int, ...] = (1, 4, 8, 16)
    requests: int = 40  # per level and method, at most
    seconds: float = 60.0  # per level and method, at most (no new request after it)
    warmup: int = 2  # requests per method before the first level, not counted
    pool_limit: int | None = None  # the first N train sentences (None: the whole split)
    top_k: int | None = None
    timeout_s: float = 300.0  # of one request
    start_timeout_s: float = 300.0  # of the gateway's start-up
    server_env: dict[str, str] = field(default_factory=dict)  # NERVE_* for the started gateway
    triton_stats: str | None = None  # Triton's HTTP URL: count each level's executions
    # Also each method on a copy of the domain adapted to its pool (its own model, promoted),
    # reported as "<method>+adapted" beside the few-shot domain, in the same run.
    adapted: bool = False
    adapt_timeout_s: float = 900.0


@dataclass
class Sample:
    status: int  # -1: no HTTP answer (connection error, timeout)
    latency_ms: float
    timings: dict[str, float]
    error: str = ""


@dataclass
class LevelResult:
    method: str
    clients: int
    requests: int
    ok: int
    errors: int
    error_statuses: dict[str, int]
    duration_s: float
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_server_total_ms: float
    # Mean server-side milliseconds per stage (+ "other": total minus the stages) and its share.
    stage_ms: dict[str, float]
    stage_share: dict[str, float]
    # With --triton-stats: the method's Triton model's requests and execute calls in the level.
    triton_requests: int | None = None
    triton_executions: int | None = None
    # A gateway started here: its process group's CPU ms per request answered in the level.
    server_cpu_ms_per_request: float | None = None


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def check_loopback(url: str) -> str:
    host = urlparse(url).hostname
    if host not in LOOPBACK:
        raise ValueError(f"--url must be a loopback address ({sorted(LOOPBACK)}); got {host!r}")
    return url.rstrip("/")


def summarise(method: str, clients: int, samples: list[Sample], duration_s: float) -> LevelResult:
    ok = [s for s in samples if s.status == 200]
    statuses: dict[str, int] = {}
    for s in samples:
        if s.status != 200:
            statuses[str(s.status)] = statuses.get(str(s.status), 0) + 1
    latencies = [s.latency_ms for s in ok]
    totals = [s.timings.get("total", 0.0) for s in ok]
    stage_ms = {
        stage: sum(s.timings.get(stage, 0.0) for s in ok) / len(ok) if ok else 0.0
        for stage in STAGES
    }
    mean_total = sum(totals) / len(totals) if totals else 0.0
    stage_ms["other"] = max(0.0, mean_total - sum(stage_ms.values()))
    return LevelResult(
        method=method,
        clients=clients,
        requests=len(samples),
        ok=len(ok),
        errors=len(samples) - len(ok),
        error_statuses=statuses,
        duration_s=round(duration_s, 3),
        requests_per_s=round(len(ok) / duration_s, 3) if duration_s > 0 else 0.0,
        p50_ms=round(percentile(latencies, 50), 1),
        p95_ms=round(percentile(latencies, 95), 1),
        p99_ms=round(percentile(latencies, 99), 1),
        mean_server_total_ms=round(mean_total, 1),
        stage_ms={k: round(v, 1) for k, v in stage_ms.items()},
        stage_share={
            k: round(v / mean_total, 3) if mean_total > 0 else 0.0 for k, v in stage_ms.items()
        },
    )


# --- the gateway ---------------------------------------------------------------------------
def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of every live process in process group ``pgid``, their
    reaped children's included (Linux ``/proc``)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        # Fields after the command name (which may hold spaces): state is field 3.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:  # field 5: pgrp
            total += sum(int(v) for v in fields[11:15])  # fields 14-17: utime .. cstime
    return total / ticks


def triton_counts(url: str, model: str) -> tuple[int, int]:
    """A Triton model's ``inference_count`` and ``execution_count`` (HTTP statistics API)."""
    response = httpx.get(f"{check_loopback(url)}/v2/models/{model}/stats", timeout=10.0)
    response.raise_for_status()
    (entry,) = response.json()["model_stats"]
    return int(entry.get("inference_count", 0)), int(entry.get("execution_count", 0))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def started_gateway(config: BenchConfig, log: Any) -> Iterator[tuple[str, int]]:
    """``nerve serve`` on a free loopback port with a fresh data dir, as (URL, process group);
    stopped (its process group) and its data dir removed on exit."""
    scratch = Path(tempfile.mkdtemp(prefix="nerve-bench-serve-"))
    port = _free_port()
    env = {
        **os.environ,
        "NERVE_DATA_DIR": str(scratch / "data"),
        "NERVE_CACHE_ENTRIES": "0",  # and every query is unseen: no answer-cache hit either way
        "NERVE_MAX_IN_FLIGHT": str(max(64, *config.levels)),
        "NERVE_LOG_JSON": "false",
        "NERVE_LOG_LEVEL": "WARNING",
        # No run starts by itself mid-benchmark: the few-shot domain stays few-shot, and the
        # adapted copy (--adapted) adapts before its levels.
        "NERVE_ADAPT_ENABLED": "false",
        **config.server_env,
    }
    # The gateway imports this checkout's app/, whatever the current directory.
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    log_path = scratch / "server.log"
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", CLI, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(process, url, config.start_timeout_s, log_path)
        log(f"gateway ready at {url} (pid {process.pid}, log {log_path})")
        yield url, process.pid  # start_new_session: the pid is the group's id
    finally:
        _stop(process)
        shutil.rmtree(scratch, ignore_errors=True)


def _wait_ready(process: subprocess.Popen[bytes], url: str, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nerve serve exited: {log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"nerve serve not ready within {timeout_s:g} s: {log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


# --- the load ------------------------------------------------------------------------------
async def _create_domain(client: httpx.AsyncClient, name: str, pool: Sequence[Example]) -> None:
    types = entity_types_for(entity_types_of(pool))
    body = {
        "name": name,
        "entity_types": [{"name": t.name, "description": t.description} for t in types],
    }
    (await client.post("/v1/domains", json=body)).raise_for_status()
    rows = [{"text": e.text, "entities": [s.model_dump() for s in e.entities]} for e in pool]
    for start in range(0, len(rows), UPLOAD_CHUNK):
        chunk = {"examples": rows[start : start + UPLOAD_CHUNK]}
        response = await client.post(f"/v1/domains/{name}/examples", json=chunk)
        response.raise_for_status()


async def _adapt(client: httpx.AsyncClient, name: str, timeout_s: float) -> dict[str, Any]:
    """Start the domain's adaptation, wait for it to end; its state (a version must serve)."""
    (await client.post(f"/v1/domains/{name}/adaptation")).raise_for_status()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = await client.get(f"/v1/domains/{name}")
        response.raise_for_status()
        state: dict[str, Any] = response.json()["adaptation"]
        if state["status"] not in ("queued", "running"):
            latest = state["latest"]
            if latest is None:
                raise RuntimeError(f"adapting {name} made no version: {state}")
            if state["served_version"] is None:
                # Not promoted (it did not beat the few-shot path on its held-out examples):
                # served anyway, this measures the adapted path's speed, not its quality.
                rollback = {"to": latest["version"]}
                response = await client.post(
                    f"/v1/domains/{name}/adaptation/rollback", json=rollback
                )
                response.raise_for_status()
                state = response.json()
            return state
        await asyncio.sleep(1.0)
    raise RuntimeError(f"adapting {name} did not end within {timeout_s:g} s")


async def _one(client: httpx.AsyncClient, body: dict[str, Any]) -> Sample:
    started = time.perf_counter()
    try:
        response = await client.post("/v1/ner", json=body)
    except httpx.HTTPError as exc:
        return Sample(-1, (time.perf_counter() - started) * 1000, {}, f"{type(exc).__name__}")
    latency = (time.perf_counter() - started) * 1000
    timings = response.json().get("timings_ms", {}) if response.status_code == 200 else {}
    return Sample(response.status_code, latency, timings)


async def _level(
    client: httpx.AsyncClient,
    bodies: list[dict[str, Any]],
    clients: int,
    seconds: float,
) -> tuple[list[Sample], float]:
    queue = list(reversed(bodies))
    samples: list[Sample] = []
    started = time.perf_counter()
    stop_at = started + seconds

    async def worker() -> None:
        while queue and time.perf_counter() < stop_at:
            samples.append(await _one(client, queue.pop()))

    await asyncio.gather(*(worker() for _ in range(clients)))
    return samples, time.perf_counter() - started


def _queries(config: BenchConfig, pool: Sequence[Example]) -> list[str]:
    """The test split's distinct sentences, minus any in the pool: each is sent once."""
    seen = {" ".join(e.text.split()) for e in pool}
    out: list[str] = []
    for example in read_split(config.data, config.domain, "test"):
        key = " ".join(example.text.split())
        if key not in seen:
            seen.add(key)
            out.append(example.text)
    return out


async def run_load(
    url: str, config: BenchConfig, log: Any, server_pgid: int | None = None
) -> dict[str, Any]:
    pool = read_split(config.data, config.domain, "train")[: config.pool_limit]
    queries = _queries(config, pool)
    run_count = len(config.methods) * (2 if config.adapted else 1)
    needed = run_count * (config.warmup + config.requests * len(config.levels))
    if needed > len(queries):
        raise ValueError(
            f"{needed} unseen sentences needed ({run_count} methods x "
            f"({config.warmup} warm-up + {config.requests} requests x {len(config.levels)} "
            f"levels)); {config.domain}/test has {len(queries)}: lower --requests"
        )
    name = f"bench-{config.domain}-{uuid.uuid4().hex[:8]}"
    limits = httpx.Limits(max_connections=max(config.levels) + 4)
    async with httpx.AsyncClient(
        base_url=url, timeout=config.timeout_s, limits=limits, trust_env=False
    ) as client:
        try:
            started = time.perf_counter()
            await _create_domain(client, name, pool)
            seconds = time.perf_counter() - started
            log(f"pool: {len(pool)} {config.domain} train sentences indexed in {seconds:.1f} s")
            runs = [(method, name, method) for method in config.methods]
            adaptation: dict[str, Any] | None = None
            if config.adapted:
                await _create_domain(client, f"{name}-adapted", pool)
                started = time.perf_counter()
                adaptation = await _adapt(client, f"{name}-adapted", config.adapt_timeout_s)
                log(
                    f"adapted copy: version {adaptation['served_version']} serves "
                    f"({time.perf_counter() - started:.0f} s)"
                )
                runs += [(m, f"{name}-adapted", f"{m}+adapted") for m in config.methods]
            results: list[LevelResult] = []
            unseen = iter(queries)
            for method, domain_name, label in runs:
                body: dict[str, Any] = {"domain": domain_name, "method": method}
                if config.top_k is not None:
                    body["top_k"] = config.top_k

                def take(n: int, body: dict[str, Any] = body) -> list[dict[str, Any]]:
                    return [{**body, "text": next(unseen)} for _ in range(n)]

                for warm in take(config.warmup):
                    sample = await _one(client, warm)
                    if sample.status != 200:
                        raise RuntimeError(f"warm-up request for {method} got {sample.status}")
                for clients in config.levels:
                    stats = config.triton_stats
                    before = (
                        await asyncio.to_thread(triton_counts, stats, method) if stats else None
                    )
                    cpu_before = group_cpu_seconds(server_pgid) if server_pgid else 0.0
                    samples, duration = await _level(
                        client, take(config.requests), clients, config.seconds
                    )
                    result = summarise(label, clients, samples, duration)
                    if server_pgid and result.ok:
                        cpu = group_cpu_seconds(server_pgid) - cpu_before
                        result.server_cpu_ms_per_request = round(cpu * 1000 / result.ok, 1)
                    if stats and before is not None:
                        after = await asyncio.to_thread(triton_counts, stats, method)
                        result.triton_requests = after[0] - before[0]
                        result.triton_executions = after[1] - before[1]
                    log(
                        f"{method} x{clients}: {result.ok} ok, {result.errors} errors, "
                        f"{result.requests_per_s} req/s, p50 {result.p50_ms} ms"
                    )
                    results.append(result)
        finally:
            for created in (name, f"{name}-adapted") if config.adapted else (name,):
                with contextlib.suppress(httpx.HTTPError):
                    await client.delete(f"/v1/domains/{created}")
    return {
        "tool": "nerve bench serve",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "affinity": sorted(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else None,
            "platform": platform.platform(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        },
        "target": "started" if config.url is None else url,
        "domain": config.domain,
        "pool_size": len(pool),
        "queries": "distinct unseen test sentences, each sent once (no answer-cache hits)",
        "config": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in asdict(config).items()
            if k != "server_env"
        },
        "levels": [asdict(r) for r in results],
        "adaptation": adaptation,
    }


def run(config: BenchConfig, log: Any = print) -> dict[str, Any]:
    if config.url is not None:
        return asyncio.run(run_load(check_loopback(config.url), config, log))
    with started_gateway(config, log) as (url, pgid):
        return asyncio.run(run_load(url, config, log, server_pgid=pgid))


def render_table(result: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(
        title=f"nerve bench serve: {result['domain']}, pool {result['pool_size']}, "
        f"{result['date']}, load {result['machine']['load_average']}"
    )
    columns = ["method", "clients", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms"]
    columns += [f"{s} %" for s in (*STAGES, "other")]
    triton = any(r.get("triton_executions") is not None for r in result["levels"])
    if triton:
        columns += ["triton requests", "triton executes"]
    cpu = any(r.get("server_cpu_ms_per_request") is not None for r in result["levels"])
    # The cores this run may use (taskset narrows them); with Triton the gateway's CPU is
    # only part of a request's, so no ceiling follows from it.
    cores = len(result["machine"]["affinity"] or []) or result["machine"]["cpus"] or 1
    if cpu:
        columns += ["gateway CPU ms/req"] + ([] if triton else [f"ceiling req/s ({cores} cores)"])
    for column in columns:
        table.add_column(column, justify="left" if column == "method" else "right")
    for r in result["levels"]:
        table.add_row(
            r["method"],
            str(r["clients"]),
            str(r["requests"]),
            str(r["errors"]),
            f"{r['requests_per_s']:.2f}",
            f"{r['p50_ms']:.0f}",
            f"{r['p95_ms']:.0f}",
            f"{r['p99_ms']:.0f}",
            *(f"{r['stage_share'][s] * 100:.0f}" for s in (*STAGES, "other")),
            *((str(r.get("triton_requests")), str(r.get("triton_executions"))) if triton else ()),
            *(_cpu_cells(r.get("server_cpu_ms_per_request"), cores, not triton) if cpu else ()),
        )
    return table


def _cpu_cells(cpu_ms: float | None, cores: int, with_ceiling: bool) -> list[str]:
    cells = [f"{cpu_ms:.1f}" if cpu_ms else "-"]
    if with_ceiling:
        cells.append(f"{cores * 1000 / cpu_ms:.1f}" if cpu_ms else "-")
    return cells


def write(result: dict[str, Any], output: Path | None) -> None:
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2) + "\n")
