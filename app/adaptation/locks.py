"""One run of a domain at a time, across every process that could start one.

With Redis (the replicas' shared state), the lock is a key set with ``SET NX PX`` to a random
token: the holder renews it every third of its lease and deletes it when done, both only while
the key still holds its token (a Lua script), so a holder that lost it (a lease lapsed while
its process froze) never frees another's. Without Redis, it is an ``flock`` on a file in the
domain's adaptation tree: two gateway processes on one data dir exclude each other too (and the
kernel frees it with the process that held it).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
import uuid
from typing import Protocol

from anyio import to_thread

from nerve.adaptation.store import RUN_LOCK, AdaptationStore, DomainGone
from nerve.cache.errors import CacheError
from nerve.cache.keys import adaptation_lock_key
from nerve.cache.redis_cache import RedisCache
from nerve.errors import BackendUnavailable

# Compare-and-renew / compare-and-delete: only the token's holder touches the key.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LockLost(Exception):
    """The run's lock is no longer this process's: its run must stop."""


class HeldLock(Protocol):
    async def keep(self) -> None:
        """Keep the lock while the run goes: returns only by raising :class:`LockLost`."""

    async def release(self) -> None: ...


class RunLocks(Protocol):
    async def acquire(self, tenant: str, domain: str) -> HeldLock | None:
        """The domain's lock, or None when another run holds it (never waits)."""

    async def held(self, tenant: str, domain: str) -> bool:
        """Whether some process runs the domain now."""


class _FileLock:
    def __init__(self, descriptor: int) -> None:
        self._descriptor: int | None = descriptor

    async def keep(self) -> None:
        await asyncio.Event().wait()  # an flock is held until released: nothing to renew

    async def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing the file drops its flock
            self._descriptor = None


class FileRunLocks:
    def __init__(self, store: AdaptationStore) -> None:
        self.store = store

    async def acquire(self, tenant: str, domain: str) -> HeldLock | None:
        """:class:`DomainGone` when the domain's tree is gone (deleted since it was queued)."""
        path = self.store.domain_dir(tenant, domain) / RUN_LOCK
        try:
            descriptor = await to_thread.run_sync(_try_flock, path)
        except FileNotFoundError:
            raise DomainGone(f"{tenant}/{domain} was deleted") from None
        return None if descriptor is None else _FileLock(descriptor)

    async def held(self, tenant: str, domain: str) -> bool:
        path = self.store.domain_dir(tenant, domain) / RUN_LOCK
        try:
            descriptor = await to_thread.run_sync(_try_flock, path)
        except FileNotFoundError:  # no tree: nothing runs it
            return False
        if descriptor is None:
            return True
        os.close(descriptor)
        return False


def _try_flock(path: os.PathLike[str]) -> int | None:
    """An open descriptor holding ``path``'s exclusive flock, or None when another holds it.
    (An flock belongs to the open file, not the process: two runners of one process exclude
    each other as two processes do.)"""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    return descriptor


class _RedisLock:
    def __init__(self, locks: RedisRunLocks, key: str, token: str) -> None:
        self.locks, self.key, self.token = locks, key, token

    async def keep(self) -> None:
        lease_s = self.locks.lease_s
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(lease_s / 3)
            try:
                kept = await self.locks.renew([self.key], [self.token, round(lease_s * 1000)])
            except CacheError:  # Redis away for a moment: the lease may still hold
                if time.monotonic() - renewed >= lease_s:
                    raise LockLost(f"the run's lock was not renewed for {lease_s:g} s") from None
                continue
            if not kept:
                raise LockLost("the run's lock expired and may be another's")
            renewed = time.monotonic()

    async def release(self) -> None:
        with contextlib.suppress(CacheError):  # lapses by itself at its lease's end
            await self.locks.free([self.key], [self.token])


class RedisRunLocks:
    def __init__(self, redis: RedisCache, lease_s: float = 30.0) -> None:
        self.redis = redis
        self.lease_s = lease_s
        self.renew = redis.script("adaptation lock renewal", _RENEW)
        self.free = redis.script("adaptation lock release", _RELEASE)

    async def acquire(self, tenant: str, domain: str) -> HeldLock | None:
        key = adaptation_lock_key(tenant=tenant, domain=domain)
        token = uuid.uuid4().hex
        try:
            taken = await self.redis.add(key, token.encode(), self.lease_s)
        except CacheError as exc:
            raise BackendUnavailable("redis", f"adaptation lock unavailable: {exc}") from exc
        return _RedisLock(self, key, token) if taken else None

    async def held(self, tenant: str, domain: str) -> bool:
        try:
            return (
                await self.redis.get(adaptation_lock_key(tenant=tenant, domain=domain)) is not None
            )
        except CacheError as exc:
            raise BackendUnavailable("redis", f"adaptation lock unavailable: {exc}") from exc
