"""/v1/ner/jobs on a real redis-server (``NERVE_REDIS_URL`` set): every replica sees every job
(status, progress, answer), a restart keeps them, another tenant's is a 404, a finished record
expires ``NERVE_JOBS_TTL_S`` after it finished, the unfinished jobs of all replicas share one
bound, a replica's graceful stop ends its jobs ``cancelled`` while a crashed one's jobs read as
``failed`` (``lost``) once their lease lapsed, and Redis down is a 503 naming it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from app.auth import KEY_HEADER, key_entry, new_api_key
from app.components import Components, build_components
from app.jobs.redis_store import RedisJobStore
from app.jobs.store import JobRecord
from app.main import build_app
from app.ner.protocol import NERRequest
from nerve.cache.keys import job_key, unfinished_jobs_key
from nerve.cache.redis_cache import RedisCache
from nerve.metrics import Metrics
from nerve.retrieval.embedding.sentence_transformers import SentenceTransformerEmbedder
from nerve.settings import Settings, load_settings
from tests.fixtures.gateway import SUPPORT_DOMAIN, SUPPORT_EXAMPLES
from tests.fixtures.redis import RedisServer
from tests.fixtures.settings import merged
from tests.test_jobs import FINISHED, GatedGenerator, metric, wait_for
from tests.test_long_text import TYPES, QueryEchoGenerator, check_offsets, long_text

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ACME, GLOBEX = new_api_key(), new_api_key()
BANER = {"domain": "support", "method": "baner"}
WRANER = {"domain": "support", "method": "wraner", "top_k": 0}


def wait_until(check: Callable[[], Any], what: str, bound_s: float = 300.0) -> Any:
    """Call ``check`` until it answers something truthy (a bounded loop on a state)."""
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"never: {what}")


class ReleasingGatedGenerator(GatedGenerator):
    """The gated LLM of tests/test_jobs.py that lets everything through when its app closes:
    a job blocked on it is cancelled first (the shutdown under test), then nothing waits."""

    async def close(self) -> None:
        self.release(1_000)


@contextlib.contextmanager
def replica(
    data_dir: Path,
    embedder: SentenceTransformerEmbedder,
    redis_url: str,
    llm: Any = None,
    key: str | None = None,
    **overrides: Any,
) -> Iterator[TestClient]:
    """One gateway replica on ``redis_url`` with its own data dir and the ``support`` domain
    (the tenant of ``key`` when auth is on)."""
    # A Redis call slower than 0.5 s (the default timeout) is a 503: seen on this loaded machine.
    base = {
        "data_dir": data_dir,
        "log_json": False,
        "cache": {"entries": 0},
        "redis_timeout_s": 5.0,
    }
    settings = load_settings(**merged(base, {"redis_url": redis_url}, overrides))

    def factory(s: Settings) -> Components:
        return build_components(s, embedder=embedder, generator=llm or QueryEchoGenerator())

    headers = {KEY_HEADER: key} if key else {}
    with TestClient(build_app(settings, components_factory=factory), headers=headers) as c:
        assert c.post("/v1/domains", json=SUPPORT_DOMAIN).status_code == 201
        added = c.post("/v1/domains/support/examples", json={"examples": SUPPORT_EXAMPLES})
        assert added.status_code == 201, added.text
        yield c


def keys_file(path: Path) -> Path:
    entries = [key_entry(ACME, "acme").model_dump(), key_entry(GLOBEX, "globex").model_dump()]
    path.write_text(json.dumps(entries))
    return path


def test_replicas_share_jobs_across_a_restart_and_tenants_stay_apart(
    tmp_path: Path, embedder: SentenceTransformerEmbedder, redis_url: str
) -> None:
    auth = {"auth": {"enabled": True, "api_keys_file": keys_file(tmp_path / "keys.json")}}
    text = long_text(400)
    body = {"text": text, **BANER}
    with replica(tmp_path / "b", embedder, redis_url, key=ACME, **auth) as b:
        with replica(tmp_path / "a", embedder, redis_url, key=ACME, **auth) as a:
            job = a.post("/v1/ner/jobs", json=body)
            assert job.status_code == 202, job.text
            url = job.json()["status_url"]
            # Polled on the other replica: status, progress and answer, as replica a wrote them.
            seen = wait_for(b, url, lambda s: s["status"] in FINISHED)
            done = seen[-1]
            assert done["status"] == "done", done["error"]
            assert done["progress"]["done"] == done["progress"]["total"] > 1
            check_offsets(text, done["result"], TYPES)
            assert a.get(url).json() == done
            # Another tenant: a 404 on either replica, as for an unknown job.
            for c in (a, b):
                for method in ("GET", "DELETE"):
                    other = c.request(method, url, headers={KEY_HEADER: GLOBEX})
                    assert other.status_code == 404, other.text
                    assert other.json()["error"]["code"] == "not_found"
        sync = b.post("/v1/ner", json=body)
        assert sync.status_code == 200, sync.text
        spans = [(e["start"], e["end"], e["type"]) for e in sync.json()["entities"]]
        assert [(e["start"], e["end"], e["type"]) for e in done["result"]["entities"]] == spans
    # Both replicas stopped; a new one (a restart) still answers the job.
    with replica(tmp_path / "c", embedder, redis_url, key=ACME, **auth) as c:
        assert c.get(url).json() == done
    with redis.Redis.from_url(redis_url) as raw:
        assert raw.exists(job_key(tenant="acme", job_id=done["job_id"]))
        assert raw.zcard(unfinished_jobs_key()) == 0


def test_a_finished_record_expires_after_the_job_ttl(
    tmp_path: Path, embedder: SentenceTransformerEmbedder, redis_url: str
) -> None:
    ttl_s = 3.0
    with replica(tmp_path, embedder, redis_url, jobs={"ttl_s": ttl_s}) as c:
        job = c.post("/v1/ner/jobs", json={"text": long_text(100), **BANER}).json()
        done = wait_for(c, job["status_url"], lambda s: s["status"] in FINISHED)[-1]
        assert done["status"] == "done", done["error"]
        with redis.Redis.from_url(redis_url) as raw:
            pttl = raw.pttl(job_key(tenant="default", job_id=job["job_id"]))
        assert 0 < pttl <= ttl_s * 1000
        wait_until(lambda: c.get(job["status_url"]).status_code == 404, "the record expired")
        assert c.get(job["status_url"]).json()["error"]["code"] == "not_found"


def dead_process_job(redis_url: str, lease_s: float) -> str:
    """A job left ``running`` by a process that then stopped renewing its lease (as a crash
    would: nothing ended it): written through a store of its own, on its own connection."""

    async def run() -> str:
        client = RedisCache(redis_url, timeout_s=2.0, default_ttl_s=60.0, max_connections=2)
        store = RedisJobStore(client, Metrics(), capacity=100, ttl_s=600.0, lease_s=lease_s)
        record = JobRecord(
            job_id=uuid.uuid4().hex,
            tenant="default",
            request_id="died",
            request=NERRequest(text="Anna Berg called.", domain="support"),
            created_at=time.time(),
            total=1,
        )
        try:
            await store.add(record)
            record.status, record.started_at = "running", time.time()
            assert await store.put(record)
        finally:
            await store.close()  # stops renewing; ends nothing
            await client.close()
        return record.job_id

    return asyncio.run(run())


def test_a_job_whose_process_died_reads_as_lost_and_frees_its_room(
    tmp_path: Path, embedder: SentenceTransformerEmbedder, redis_url: str
) -> None:
    with replica(tmp_path, embedder, redis_url, jobs={"records": 2}) as c:
        alive = dead_process_job(redis_url, lease_s=3_600.0)  # its lease outlives the test
        died = dead_process_job(redis_url, lease_s=0.2)
        url = "/v1/ner/jobs/{}".format
        lost = wait_for(c, url(died), lambda s: s["status"] != "running", bound_s=120)[-1]
        assert lost["status"] == "failed" and lost["result"] is None
        assert lost["error"]["code"] == "lost"
        assert "stopped before it finished" in lost["error"]["message"]
        assert lost["finished_at"] is not None
        assert c.get(url(died)).json() == lost  # final
        assert c.get(url(alive)).json()["status"] == "running"
        # The lost job no longer counts against NERVE_JOBS_RECORDS; the live one does.
        job = c.post("/v1/ner/jobs", json={"text": long_text(50), **BANER})
        assert job.status_code == 202, job.text
        full = c.post("/v1/ner/jobs", json={"text": long_text(50), **BANER})
        assert full.status_code == 429, full.text
        assert "2 jobs unfinished across the service (limit 2)" in full.json()["error"]["message"]
        done = wait_for(c, job.json()["status_url"], lambda s: s["status"] in FINISHED)[-1]
        assert done["status"] == "done", done["error"]


def test_a_replica_stopping_ends_its_jobs_cancelled_and_renews_their_leases_until_then(
    tmp_path: Path, embedder: SentenceTransformerEmbedder, redis_url: str
) -> None:
    lease_s = 1.0
    shared = {
        "jobs": {"records": 1, "max_running": 1, "lease_s": lease_s},
        "segment": {"batch": 2},
        "lar": {"postprocess": False},
    }
    gated = ReleasingGatedGenerator()
    text = long_text(700)
    with replica(tmp_path / "b", embedder, redis_url, **shared) as b:
        with replica(tmp_path / "a", embedder, redis_url, gated, **shared) as a:
            first = a.post("/v1/ner/jobs", json={"text": text, **WRANER}).json()
            url = first["status_url"]
            wait_for(b, url, lambda s: s["status"] == "running")
            # Its lease is renewed (Redis' own clock moves it on) past several lease lengths,
            # while every replica still reads the job as running.
            key = job_key(tenant="default", job_id=first["job_id"])
            with redis.Redis.from_url(redis_url) as raw:
                start = raw.zscore(unfinished_jobs_key(), key)
                assert start is not None
                later = start + 3 * lease_s * 1000  # ms, Redis' clock

                def renewed() -> bool:
                    assert b.get(url).json()["status"] == "running"
                    score = raw.zscore(unfinished_jobs_key(), key)
                    return score is not None and score > later

                wait_until(renewed, "the lease renewed")
            # One unfinished job in all (NERVE_JOBS_RECORDS=1): the other replica refuses more.
            full = b.post("/v1/ner/jobs", json={"text": text, **WRANER})
            assert full.status_code == 429, full.text
            # Cancelled from the other replica: the worker stops at its next batch.
            assert b.delete(url).json()["status"] == "cancelled"
            gated.release(2)  # one batch of two segments; then the worker sees the cancel
            wait_until(
                lambda: gated.prompts == 2 and metric(a, "nerve_jobs_running") == 0,
                "the worker stopped after its batch",
            )
            assert a.get(url).json()["status"] == "cancelled"
            # Room again; this one is still running when replica a stops.
            second = a.post("/v1/ner/jobs", json={"text": text, **WRANER})
            assert second.status_code == 202, second.text
            wait_for(b, second.json()["status_url"], lambda s: s["status"] == "running")
        stopped = b.get(second.json()["status_url"]).json()
        assert stopped["status"] == "cancelled" and stopped["result"] is None
        assert stopped["error"]["code"] == "shutdown"
        with redis.Redis.from_url(redis_url) as raw:
            assert raw.zcard(unfinished_jobs_key()) == 0


def test_redis_down_is_a_503_naming_it(
    tmp_path: Path, embedder: SentenceTransformerEmbedder, disposable_redis: RedisServer
) -> None:
    body = {"text": long_text(50), **BANER}
    with replica(tmp_path, embedder, disposable_redis.url, redis_timeout_s=0.3) as c:
        job = c.post("/v1/ner/jobs", json=body).json()
        assert wait_for(c, job["status_url"], lambda s: s["status"] in FINISHED)[-1]["status"] == (
            "done"
        )
        disposable_redis.kill()
        for response in (c.post("/v1/ner/jobs", json=body), c.get(job["status_url"])):
            assert response.status_code == 503, response.text
            error = response.json()["error"]
            assert error["code"] == "backend_unavailable"
            assert error["message"].startswith("redis: job records unavailable")
        assert metric(c, 'nerve_backend_errors_total{backend="redis"}') >= 2
        disposable_redis.start()  # empty: the old job is gone, a new one is served
        assert c.get(job["status_url"]).status_code == 404
        again = c.post("/v1/ner/jobs", json=body)
        assert again.status_code == 202, again.text
        final = wait_for(c, again.json()["status_url"], lambda s: s["status"] in FINISHED)[-1]
        assert final["status"] == "done", final["error"]
