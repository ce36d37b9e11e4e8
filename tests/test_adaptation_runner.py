"""The adaptation runner and its trigger (app/adaptation/), with a stand-in job
(tests/fixtures/adaptation_job.py) and an in-memory pool: each lifecycle fault in a second or
two. The real job, through the gateway: tests/test_adaptation_lifecycle.py."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.adaptation.locks import FileRunLocks, RedisRunLocks, RunLocks
from app.adaptation.runner import AdaptationRunner
from app.adaptation.service import AdaptationService
from nerve.adaptation.store import RUNS, AdaptationStore
from nerve.cache.redis_cache import RedisCache
from nerve.errors import Conflict, InvalidRequest, NotFound
from nerve.metrics import Metrics
from nerve.settings import Settings, load_settings
from nerve.vocab.types import Domain, EntityType, Example, Span

JOB = Path(__file__).parent / "fixtures" / "adaptation_job.py"
TENANT = "default"


class MemoryPool:
    """The domains a runner reads (DomainService's get/find/count_examples/all_examples)."""

    def __init__(self) -> None:
        self.domains: dict[str, Domain] = {}
        self.examples: dict[str, list[Example]] = {}

    def add(self, name: str, count: int) -> Domain:
        domain = self.domains.get(name) or Domain(
            tenant=TENANT,
            name=name,
            entity_types=[EntityType(name="person"), EntityType(name="band")],
            created_at=time.time(),
        )
        self.domains[name] = domain
        pool = self.examples.setdefault(name, [])
        for _ in range(count):
            index = len(pool)
            pool.append(
                Example(
                    id=f"{name}-{index}",
                    text=f"Anna Berg {index} plays",
                    entities=[Span(start=0, end=9, type="person")],
                )
            )
        return domain

    def remove(self, name: str) -> None:
        self.domains.pop(name, None)
        self.examples.pop(name, None)

    async def get(self, tenant: str, name: str) -> Domain:
        if name not in self.domains:
            raise NotFound(f"unknown domain {name!r}")
        return self.domains[name]

    async def find(self, tenant: str, name: str) -> Domain | None:
        return self.domains.get(name)

    async def count_examples(self, tenant: str, name: str) -> int:
        return len(self.examples.get(name, []))

    async def all_examples(self, tenant: str, name: str) -> list[Example]:
        await self.get(tenant, name)
        return list(self.examples[name])


class Rig:
    """A runner (and the service around it) on a store directory, with the stand-in job."""

    def __init__(
        self, root: Path, pool: MemoryPool, locks: RunLocks | None = None, **adapt: Any
    ) -> None:
        self.settings: Settings = load_settings(
            data_dir=root,
            adapt={"enabled": True, "min_examples": 4, "growth_share": 0.5, **adapt},
        )
        self.store = AdaptationStore(self.settings.adaptation_dir)
        self.pool = pool
        self.locks = locks or FileRunLocks(self.store)
        self.metrics = Metrics()
        self.runner = AdaptationRunner(
            self.settings, self.store, pool, self.locks, self.metrics, command=[sys.executable]
        )
        self.service = AdaptationService(
            self.settings,
            self.store,
            self.runner,
            self.locks,
            pool,  # type: ignore[arg-type]
        )
        self.job("win")

    def job(self, mode: str, seconds: float = 0.0, trace: Path | None = None) -> None:
        command = [sys.executable, str(JOB), "--mode", mode, "--seconds", str(seconds)]
        self.runner.command = command + (["--trace", str(trace)] if trace else [])

    def outcomes(self) -> dict[str, float]:
        return {
            s.labels["outcome"]: s.value
            for family in self.metrics.registry.collect()
            if family.name == "nerve_adaptation_runs"
            for s in family.samples
            if s.name.endswith("_total") and s.value
        }

    async def job_started(self, domain: str, timeout_s: float = 20.0) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pid = self.runner.job_pid(TENANT, domain)
            if pid is not None:
                return pid
            await asyncio.sleep(0.02)
        raise AssertionError(f"no job of {domain} started within {timeout_s} s")


@pytest.fixture
def pool() -> MemoryPool:
    return MemoryPool()


@pytest.fixture
async def rig(tmp_path: Path, pool: MemoryPool) -> AsyncIterator[Rig]:
    made = Rig(tmp_path, pool)
    try:
        yield made
    finally:
        await made.runner.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by a parent that is gone) is not alive either.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


def no_runs_left(rig: Rig) -> bool:
    runs = rig.store.root / RUNS
    return not runs.exists() or not any(runs.iterdir())


async def test_a_run_publishes_and_promotes_a_winning_version(rig: Rig, pool: MemoryPool) -> None:
    pool.add("music", 6)
    state = await rig.runner.run_now(TENANT, "music")
    assert state.served == 1
    assert state.last_run is not None and state.last_run.status == "succeeded"
    assert state.last_run.examples == 6 and state.examples_at_last_run == 6
    assert rig.outcomes() == {"promoted": 1.0}
    assert no_runs_left(rig)
    out = await rig.service.describe(pool.domains["music"], 6)
    assert out.status == "served" and out.served_version == 1
    assert out.served is not None and out.served.heldout_f1_domain == 60.0
    assert out.latest is not None and out.latest.heldout_f1_fewshot == 50.0
    assert out.next_run_at == 9  # 6 grown by half


async def test_the_job_gets_the_gateways_settings_and_the_fit_options(
    rig: Rig, pool: MemoryPool, tmp_path: Path
) -> None:
    pool.add("music", 4)
    seen = tmp_path / "seen"
    script = (
        "import json, os, pathlib, sys; "
        f"pathlib.Path({str(seen)!r}).write_text(json.dumps(["
        "os.environ.get('NERVE_ADAPT_MIN_EXAMPLES'), os.environ.get('NERVE_DATA_DIR'), "
        "json.loads(pathlib.Path(sys.argv[1], 'request.json').read_text())])); sys.exit(3)"
    )
    rig.runner.command = [sys.executable, "-c", script]
    state = await rig.runner.run_now(TENANT, "music", options={"epochs": 7})
    minimum, data_dir, request = json.loads(seen.read_text())
    assert minimum == "4" and data_dir == str(rig.settings.data_dir)
    assert request["options"]["epochs"] == 7 and request["options"]["design"] == "bilstm"
    assert request["nice"] == 10 and [t["name"] for t in request["entity_types"]] == [
        "person",
        "band",
    ]
    assert state.last_run is not None and "exited with status 3" in (state.last_run.error or "")


async def test_a_losing_version_is_not_served(rig: Rig, pool: MemoryPool) -> None:
    pool.add("music", 4)
    rig.job("lose")
    state = await rig.runner.run_now(TENANT, "music")
    assert state.served is None and [v.version for v in state.versions] == [1]
    out = await rig.service.describe(pool.domains["music"], 4)
    assert out.status == "few_shot" and out.latest is not None and not out.latest.promoted
    assert rig.outcomes() == {"not_promoted": 1.0}


async def test_a_failed_job_keeps_what_served_and_says_why(rig: Rig, pool: MemoryPool) -> None:
    pool.add("music", 4)
    await rig.runner.run_now(TENANT, "music")
    rig.job("fail")
    state = await rig.runner.run_now(TENANT, "music")
    assert state.served == 1 and len(state.versions) == 1
    assert state.last_run is not None and state.last_run.status == "failed"
    assert "exited with status 1" in (state.last_run.error or "")
    assert "ValueError: boom in the fit" in (state.last_run.error or "")
    rig.job("noreport")
    state = await rig.runner.run_now(TENANT, "music")
    assert state.served == 1 and "report is missing" in (state.last_run.error or "")
    out = await rig.service.describe(pool.domains["music"], 4)
    assert out.status == "failed" and out.served_version == 1 and "report" in (out.error or "")
    assert rig.outcomes() == {"promoted": 1.0, "failed": 2.0}
    assert no_runs_left(rig)


async def test_a_job_past_its_timeout_is_killed(tmp_path: Path, pool: MemoryPool) -> None:
    rig = Rig(tmp_path, pool, job_timeout_s=1.0)
    pool.add("music", 4)
    rig.job("win", seconds=60)
    began = time.monotonic()
    task = asyncio.ensure_future(rig.runner.run_now(TENANT, "music"))
    pid = await rig.job_started("music")
    state = await task
    assert time.monotonic() - began < 20
    assert state.last_run is not None and "timed out after 1 s" in (state.last_run.error or "")
    assert state.served is None and not alive(pid)
    assert rig.outcomes() == {"timed_out": 1.0}
    await rig.runner.close()


async def test_a_killed_job_is_a_failed_run(rig: Rig, pool: MemoryPool) -> None:
    pool.add("music", 4)
    await rig.runner.run_now(TENANT, "music")
    rig.job("win", seconds=60)
    task = asyncio.ensure_future(rig.runner.run_now(TENANT, "music"))
    pid = await rig.job_started("music")
    running = await rig.service.describe(pool.domains["music"], 4)
    assert running.status == "running" and running.last_run is not None
    os.kill(pid, 9)
    state = await task
    assert state.last_run is not None and "killed by signal 9" in (state.last_run.error or "")
    assert state.served == 1 and len(state.versions) == 1


async def test_a_domain_deleted_mid_run_leaves_nothing(rig: Rig, pool: MemoryPool) -> None:
    pool.add("music", 4)
    rig.job("win", seconds=60)
    task = asyncio.ensure_future(rig.runner.run_now(TENANT, "music"))
    pid = await rig.job_started("music")
    pool.remove("music")
    await rig.service.domain_deleted(TENANT, "music")  # what DomainService.delete calls
    assert task.done()  # the hook waited for the run to end
    assert not alive(pid)
    assert not rig.store.domain_dir(TENANT, "music").exists() and no_runs_left(rig)
    assert rig.outcomes() == {"deleted": 1.0}


async def test_a_domain_deleted_elsewhere_mid_run_leaves_nothing(
    rig: Rig, pool: MemoryPool
) -> None:
    pool.add("music", 4)
    rig.job("win", seconds=1.5)
    task = asyncio.ensure_future(rig.runner.run_now(TENANT, "music"))
    await rig.job_started("music")
    pool.remove("music")  # through another gateway: no hook here
    state = await task
    assert state.versions == [] and state.served is None
    assert not rig.store.domain_dir(TENANT, "music").exists() and no_runs_left(rig)


@pytest.mark.parametrize("tree", ["deleted", "left"])
async def test_a_domain_deleted_elsewhere_while_queued_leaves_nothing(
    rig: Rig, pool: MemoryPool, tree: str
) -> None:
    """Queued behind another run, the domain is deleted through another gateway (whose hook
    removes its tree, or not yet): its run never starts a job and leaves no tree."""
    pool.add("music", 4)
    pool.add("books", 4)
    rig.job("win", seconds=60)
    running = asyncio.ensure_future(rig.runner.run_now(TENANT, "music"))
    pid = await rig.job_started("music")
    queued = asyncio.ensure_future(rig.runner.run_now(TENANT, "books"))
    while rig.store.state(TENANT, "books").queued is None:
        await asyncio.sleep(0.02)
    pool.remove("books")
    if tree == "deleted":
        rig.store.delete(TENANT, "books")
    os.kill(pid, 9)
    await running
    state = await queued
    assert state.versions == [] and state.last_run is None
    assert not rig.store.domain_dir(TENANT, "books").exists() and no_runs_left(rig)
    assert rig.outcomes() == {"failed": 1.0, "deleted": 1.0}


async def test_stopping_the_gateway_kills_its_jobs(rig: Rig, pool: MemoryPool) -> None:
    pool.add("music", 4)
    pool.add("books", 4)
    rig.job("win", seconds=60)
    running = asyncio.ensure_future(rig.runner.run_now(TENANT, "music"))
    pid = await rig.job_started("music")
    await rig.runner.request(TENANT, "books")  # queued behind it (concurrency 1)
    assert rig.store.state(TENANT, "books").queued is not None
    await rig.runner.close()
    state = await running
    assert not alive(pid)
    assert state.last_run is not None and state.last_run.status == "failed"
    assert state.last_run.error == "gateway stopped"
    assert state.examples_at_last_run is None  # not counted: the next examples start one
    assert rig.store.state(TENANT, "books").queued is None
    assert no_runs_left(rig)
    with pytest.raises(Conflict, match="stopping"):
        await rig.runner.request(TENANT, "music")


async def test_requests_are_checked_before_queueing(rig: Rig, pool: MemoryPool) -> None:
    with pytest.raises(NotFound):
        await rig.runner.request(TENANT, "nope")
    pool.add("music", 3)
    with pytest.raises(InvalidRequest, match="has 3 examples; a run needs at least 4"):
        await rig.runner.request(TENANT, "music")
    pool.add("music", 1)
    rig.job("win", seconds=1)
    state = await rig.runner.request(TENANT, "music")
    assert state.queued is not None and state.queued.trigger == "manual"
    with pytest.raises(Conflict, match="already"):
        await rig.runner.request(TENANT, "music")


async def test_runs_start_as_the_pool_grows(rig: Rig, pool: MemoryPool) -> None:
    async def added(count: int) -> None:
        await rig.service.examples_added(TENANT, pool.add("music", count))

    async def settle() -> None:
        active = rig.runner._runs.get((TENANT, "music"))
        if active is not None and active.task is not None:
            await active.task

    await added(3)
    assert rig.runner.active(TENANT, "music") is None  # under min_examples (4)
    await added(1)
    assert rig.runner.active(TENANT, "music") is not None
    await settle()
    assert rig.store.state(TENANT, "music").examples_at_last_run == 4
    await added(1)  # 5 < 4 * 1.5
    assert rig.runner.active(TENANT, "music") is None
    await added(1)  # 6: grown by half
    assert rig.runner.active(TENANT, "music") is not None
    await settle()
    state = rig.store.state(TENANT, "music")
    assert [v.examples for v in state.versions] == [4, 6]
    assert {r.trigger for r in [state.last_run] if r} == {"auto"}


async def test_runs_do_not_start_by_themselves_when_disabled(
    tmp_path: Path, pool: MemoryPool
) -> None:
    rig = Rig(tmp_path, pool, enabled=False)
    await rig.service.examples_added(TENANT, pool.add("music", 10))
    assert rig.runner.active(TENANT, "music") is None
    state = await rig.runner.run_now(TENANT, "music")  # asked for: it runs
    assert state.served == 1


async def test_concurrency_bounds_the_runs_of_one_gateway(tmp_path: Path, pool: MemoryPool) -> None:
    rig = Rig(tmp_path, pool)
    trace = tmp_path / "trace"
    rig.job("win", seconds=0.5, trace=trace)
    for name in ("music", "books", "films"):
        pool.add(name, 4)
    states = await asyncio.gather(
        *(rig.runner.run_now(TENANT, name) for name in ("music", "books", "films"))
    )
    assert [s.served for s in states] == [1, 1, 1]
    assert_never_overlapping(trace)
    await rig.runner.close()


def assert_never_overlapping(trace: Path, per_domain: bool = False) -> None:
    running: set[str] = set()
    starts = 0
    for line in trace.read_text().splitlines():
        _, what, domain = line.split()
        key = domain if per_domain else "any"
        if what == "start":
            assert key not in running, f"two runs at once:\n{trace.read_text()}"
            running.add(key)
            starts += 1
        else:
            running.discard(key)
    assert starts


async def two_runners_race(first: Rig, second: Rig, trace: Path, seconds: float = 1.0) -> None:
    """Both ask for the same domain at once, twice: one runs, the other is refused (409)."""
    for rig in (first, second):
        rig.job("win", seconds=seconds, trace=trace)
    for _ in range(2):
        results = await asyncio.gather(
            first.runner.run_now(TENANT, "music"),
            second.runner.run_now(TENANT, "music"),
            return_exceptions=True,
        )
        refused = [r for r in results if isinstance(r, Conflict)]
        assert len(refused) == 1, results
        assert "elsewhere" in refused[0].message
    assert_never_overlapping(trace, per_domain=True)
    state = first.store.state(TENANT, "music")
    assert [v.version for v in state.versions] == [1, 2], state.last_run


async def test_two_gateways_on_one_data_dir_never_run_a_domain_at_once(
    tmp_path: Path, pool: MemoryPool
) -> None:
    first, second = Rig(tmp_path, pool), Rig(tmp_path, pool)
    pool.add("music", 4)
    await two_runners_race(first, second, tmp_path / "trace")
    for rig in (first, second):
        await rig.runner.close()


@pytest.mark.integration
async def test_two_gateways_on_one_redis_never_run_a_domain_at_once(
    tmp_path: Path, pool: MemoryPool, redis_url: str
) -> None:
    clients = [RedisCache(redis_url, timeout_s=2.0, default_ttl_s=60.0) for _ in range(2)]
    # One store, as replicas share its volume; the lock is Redis alone (no file locks).
    # A lease a loaded CI machine's event loop cannot miss by a stall (renewed every 0.5 s).
    first = Rig(tmp_path / "a", pool, RedisRunLocks(clients[0], lease_s=1.5))
    second = Rig(tmp_path / "a", pool, RedisRunLocks(clients[1], lease_s=1.5))
    pool.add("music", 4)
    try:
        # The 2-s jobs outlive the 1.5-s lease: only the holder's renewals keep others out.
        await two_runners_race(first, second, tmp_path / "trace", seconds=2.0)
        assert not await first.locks.held(TENANT, "music")  # released after each run
    finally:
        for rig in (first, second):
            await rig.runner.close()
        for client in clients:
            await client.close()


@pytest.mark.integration
async def test_a_run_that_loses_its_redis_lock_is_killed(
    tmp_path: Path, pool: MemoryPool, redis_url: str
) -> None:
    client = RedisCache(redis_url, timeout_s=2.0, default_ttl_s=60.0)
    rig = Rig(tmp_path, pool, RedisRunLocks(client, lease_s=0.6))
    pool.add("music", 4)
    rig.job("win", seconds=60)
    try:
        task = asyncio.ensure_future(rig.runner.run_now(TENANT, "music"))
        pid = await rig.job_started("music")
        # Another holder took the key (as after a lapsed lease): the renewal finds it not ours.
        from nerve.cache.keys import adaptation_lock_key

        await client.set(adaptation_lock_key(tenant=TENANT, domain="music"), b"other", 30)
        state = await asyncio.wait_for(task, 20)
        assert state.last_run is not None and "lock" in (state.last_run.error or "")
        assert not alive(pid)
    finally:
        await rig.runner.close()
        await client.close()
