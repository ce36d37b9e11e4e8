"""Job records in Redis: shared by every replica, kept across restarts of the gateway.

Layout (keys from :mod:`nerve.cache.keys`): one hash per job, ``nerve:job:v1:{tenant}:{job_id}``,
holding ``record`` (the :class:`JobRecord` as JSON) and ``final`` (``1`` once done, failed or
cancelled); the tenant is in the key, so another tenant's job is simply absent (a 404). One
sorted set, ``nerve:jobs-unfinished:v1``, holds every queued or running job (its record key),
scored by the end of its lease (ms, on the Redis server's clock, so replicas' clocks do not
matter).

Leases: a job runs in the process that accepted it, which renews the leases of its unfinished
jobs every ``lease_s / 4``. A process that dies stops renewing; once a lease lapsed the job is
lost: the next read ends it ``failed`` with error ``lost``, and it no longer counts against
the bound. (A graceful shutdown ends the process's jobs ``cancelled``, as the runner does for
any store.)

Bound: ``capacity`` bounds the unfinished jobs of all replicas together (one more: 429).
Finished records are bounded in time: each expires ``ttl_s`` after it finished (a Redis TTL).
An unfinished record has a TTL too, ``lease_s + ttl_s``, renewed with its lease, so a lost job
nobody reads goes as well.

Every operation is one Lua script, atomic on the server: a finished record is final (the first
final status wins, so progress from one replica never overwrites a cancel from another), and a
progress write after the lease lapsed is refused (the job is lost; its worker stops).

A failing Redis is a 503 naming it (:class:`BackendUnavailable`), never a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pydantic import ValidationError

from app.jobs.store import JobError, JobRecord
from nerve.cache.errors import CacheError
from nerve.cache.keys import job_key, unfinished_jobs_key
from nerve.cache.redis_cache import RedisCache
from nerve.errors import BackendUnavailable, Overloaded
from nerve.metrics import Metrics

log = logging.getLogger(__name__)

LOST = "lost"

# The server's clock, in ms (scripts may read it: Redis >= 5 replicates their effects).
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: unfinished set, record. ARGV: capacity, record JSON, lease ms, TTL ms.
# Returns -1 when added, else how many unfinished jobs left no room.
_ADD = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local unfinished = redis.call('ZCARD', KEYS[1])
if unfinished >= tonumber(ARGV[1]) then return unfinished end
redis.call('HSET', KEYS[2], 'record', ARGV[2], 'final', '0')
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]) + tonumber(ARGV[4]))
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), KEYS[2])
return -1
"""
)

# KEYS: unfinished set, record. Returns nil, or {record JSON, 1 if its lease lapsed else 0}.
_GET = (
    """
local found = redis.call('HMGET', KEYS[2], 'record', 'final')
if not found[1] then return false end
if found[2] == '1' then return {found[1], 0} end
"""
    + _NOW
    + """
local lease = redis.call('ZSCORE', KEYS[1], KEYS[2])
if lease and tonumber(lease) > now then return {found[1], 0} end
return {found[1], 1}
"""
)

# KEYS: unfinished set, record. ARGV: record JSON, 1 if final else 0, TTL ms.
# Returns 1 when written; 0 when gone, already final, or (a progress write) its lease lapsed.
_PUT = (
    """
local final = redis.call('HGET', KEYS[2], 'final')
if (not final) or final == '1' then return 0 end
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[2], 'record', ARGV[1], 'final', '1')
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  redis.call('ZREM', KEYS[1], KEYS[2])
  return 1
end
"""
    + _NOW
    + """
local lease = redis.call('ZSCORE', KEYS[1], KEYS[2])
if (not lease) or tonumber(lease) <= now then return 0 end
redis.call('HSET', KEYS[2], 'record', ARGV[1])
return 1
"""
)

# KEYS: unfinished set, records. ARGV: lease ms, TTL ms. Renews each live lease (a lapsed one
# stays lapsed) and returns, per record, 1 if its lease was live, else 0 (finished or lost).
_RENEW = (
    _NOW
    + """
local live = {}
for i = 2, #KEYS do
  local lease = redis.call('ZSCORE', KEYS[1], KEYS[i])
  if lease and tonumber(lease) > now then
    redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), KEYS[i])
    redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[1]) + tonumber(ARGV[2]))
    live[#live + 1] = 1
  else
    live[#live + 1] = 0
  end
end
return live
"""
)

Script = Callable[[Sequence[str], Sequence[str | int | float]], Awaitable[Any]]


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisJobStore:
    """The :class:`~app.jobs.store.JobStore` on the process's Redis client (its pool is shared
    with the caches; closing the client is the components' job, not this store's)."""

    def __init__(
        self,
        redis: RedisCache,
        metrics: Metrics,
        *,
        capacity: int,
        ttl_s: float,
        lease_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if capacity < 1 or ttl_s <= 0 or lease_s <= 0:
            raise ValueError(
                f"capacity, ttl_s, lease_s must be > 0: {capacity}, {ttl_s}, {lease_s}"
            )
        self.name = redis.name
        self.metrics = metrics
        self.capacity = capacity
        self.ttl_s = ttl_s
        self.lease_s = lease_s
        self.clock = clock
        self._unfinished = unfinished_jobs_key()
        self._add = redis.script("job add", _ADD)
        self._get = redis.script("job get", _GET)
        self._put = redis.script("job put", _PUT)
        self._renew = redis.script("job lease renewal", _RENEW)
        # Record keys of this process's unfinished jobs: the leases the heartbeat renews.
        self._owned: set[str] = set()
        self._heartbeat: asyncio.Task[None] | None = None

    async def _run(self, script: Script, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        try:
            return await script([self._unfinished, *keys], args)
        except CacheError as exc:
            self.metrics.backend_errors.labels(backend=self.name).inc()
            raise BackendUnavailable(self.name, f"job records unavailable: {exc}") from exc

    async def add(self, record: JobRecord) -> None:
        key = job_key(tenant=record.tenant, job_id=record.job_id)
        args: list[str | int] = [
            self.capacity,
            record.model_dump_json(),
            _ms(self.lease_s),
            _ms(self.ttl_s),
        ]
        unfinished = int(await self._run(self._add, [key], args))
        if unfinished >= 0:
            raise Overloaded(
                f"{unfinished} jobs unfinished across the service (limit {self.capacity}); "
                "retry later",
                headers={"Retry-After": "60"},
            )
        self._owned.add(key)
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.get_running_loop().create_task(
                self._beat(), name="nerve-job-leases"
            )

    async def get(self, tenant: str, job_id: str) -> JobRecord | None:
        found = await self._run(self._get, [job_key(tenant=tenant, job_id=job_id)], [])
        if found is None:
            return None
        raw, lapsed = found
        try:
            record = JobRecord.model_validate_json(raw)
        except ValidationError:  # written by an incompatible version: as good as expired
            log.warning("unreadable job record ignored", extra={"job_id": job_id})
            return None
        if record.tenant != tenant:
            return None
        if lapsed:
            return await self._lose(record)
        return record

    async def _lose(self, record: JobRecord) -> JobRecord | None:
        """End a job whose lease lapsed (its process died): failed, error ``lost``."""
        record.status, record.finished_at = "failed", self.clock()
        record.error = JobError(
            code=LOST,
            message=f"the process running the job stopped before it finished (no lease "
            f"renewal for {self.lease_s:g} s); submit it again",
        )
        if await self.put(record):
            self.metrics.jobs.labels(status="failed").inc()
            log.warning("job lost: its process stopped", extra={"job_id": record.job_id})
            return record
        # Finished meanwhile (a late answer, a cancel): that status stands.
        return await self.get(record.tenant, record.job_id)

    async def put(self, record: JobRecord) -> bool:
        key = job_key(tenant=record.tenant, job_id=record.job_id)
        final = "1" if record.finished else "0"
        args: list[str | int] = [record.model_dump_json(), final, _ms(self.ttl_s)]
        stored = bool(await self._run(self._put, [key], args))
        if record.finished or not stored:
            self._owned.discard(key)
        return stored

    async def _beat(self) -> None:
        """Renew this process's leases until closed; a failed renewal is retried next beat (a
        lease outlives three of them)."""
        while True:
            await asyncio.sleep(self.lease_s / 4)
            keys = sorted(self._owned)
            if not keys:
                continue
            try:
                live = await self._run(self._renew, keys, [_ms(self.lease_s), _ms(self.ttl_s)])
            except BackendUnavailable as exc:
                log.warning("job leases not renewed: %s", exc)
                continue
            for key, alive in zip(keys, live, strict=True):
                if not alive:
                    self._owned.discard(key)

    async def close(self) -> None:
        """Stop renewing (the runner has ended this process's jobs by now)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        self._owned.clear()
