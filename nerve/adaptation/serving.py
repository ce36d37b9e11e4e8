"""The domain models one gateway process serves: loaded on demand, least recently used evicted
within a byte budget, and following the store's state (a replica notices a promotion or a
rollback within ``poll_s``: every replica reads the same store, the data directory in the
embedded default, a shared volume in production)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # torch is imported only where a domain model is loaded
    from nerve.adaptation.model import DomainModel

log = logging.getLogger(__name__)

# The escalation reason of an answer the few-shot path gave because the domain's promoted
# model could not be loaded (corrupt, foreign, missing): never served, always said.
REASON_DOMAIN_MODEL_UNAVAILABLE = "domain_model_unavailable"


class ServedVersionLike(Protocol):
    @property
    def version(self) -> int: ...
    @property
    def directory(self) -> Path: ...
    @property
    def manifest_sha256(self) -> str: ...


class VersionSource(Protocol):
    """What :class:`DomainModels` reads of the adaptation store."""

    def served(self, tenant: str, domain: str) -> ServedVersionLike | None: ...

    def state_stamp(self, tenant: str, domain: str) -> int | None: ...


@dataclass(frozen=True)
class ServedModel:
    """What answers a domain now: its model (None: the few-shot path), the version, and why a
    promoted version is not answering (None when nothing failed)."""

    model: DomainModel | None
    version: int | None
    failure: str | None = None

    @property
    def label(self) -> str | None:
        """The answer's model suffix and cache-key part: ``domain-v3``; None for few-shot."""
        return f"domain-v{self.version}" if self.model is not None else None


FEW_SHOT = ServedModel(None, None)


@dataclass
class _Entry:
    checked_at: float
    stamp: int | None
    served: ServedModel


class DomainModels:
    def __init__(
        self,
        source: VersionSource,
        encoder: str,
        max_bytes: int,
        poll_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.encoder = encoder
        self.max_bytes = max_bytes
        self.poll_s = poll_s
        self.clock = clock
        self._entries: dict[tuple[str, str], _Entry] = {}
        # Loaded models by (tenant, domain, version), least recently used first.
        self._loaded: OrderedDict[tuple[str, str, int], DomainModel] = OrderedDict()
        self._lock = asyncio.Lock()

    async def get(self, tenant: str, domain: str) -> ServedModel:
        """The model serving (tenant, domain) now; the store is looked at most every poll_s."""
        key = (tenant, domain)
        entry = self._entries.get(key)
        now = self.clock()
        if entry is not None and now - entry.checked_at < self.poll_s:
            return self._touch(entry.served)
        async with self._lock:
            entry = self._entries.get(key)
            if entry is not None and now - entry.checked_at < self.poll_s:
                return self._touch(entry.served)
            stamp = await asyncio.to_thread(self.source.state_stamp, tenant, domain)
            if entry is not None and stamp == entry.stamp and self._still_loaded(entry.served):
                entry.checked_at = now
                return self._touch(entry.served)
            served = await self._resolve(tenant, domain)
            self._entries[key] = _Entry(now, stamp, served)
            return served

    def forget(self, tenant: str, domain: str) -> None:
        """Drop what this process holds of a domain (deleted, or told to look again now)."""
        self._entries.pop((tenant, domain), None)
        for key in [k for k in self._loaded if k[:2] == (tenant, domain)]:
            del self._loaded[key]

    @property
    def loaded_bytes(self) -> int:
        return sum(m.nbytes for m in self._loaded.values())

    async def _resolve(self, tenant: str, domain: str) -> ServedModel:
        from nerve.adaptation.model import ArtefactRejected, load_model

        version = await asyncio.to_thread(self.source.served, tenant, domain)
        if version is None:
            return FEW_SHOT
        cached = self._loaded.get((tenant, domain, version.version))
        if cached is not None:
            return ServedModel(cached, version.version)
        try:
            model = await asyncio.to_thread(
                load_model,
                version.directory,
                encoder=self.encoder,
                manifest_sha256=version.manifest_sha256,
            )
        except ArtefactRejected as error:
            log.error(
                "domain model of %s/%s v%d refused: %s", tenant, domain, version.version, error
            )
            return ServedModel(None, version.version, failure=str(error))
        except Exception as error:  # any load failure: the few-shot path answers, and says so
            log.exception(
                "domain model of %s/%s v%d failed to load", tenant, domain, version.version
            )
            return ServedModel(None, version.version, failure=f"load failed: {error}")
        for key in [k for k in self._loaded if k[:2] == (tenant, domain)]:
            del self._loaded[key]  # an older version of the same domain
        self._loaded[(tenant, domain, version.version)] = model
        self._evict()
        return ServedModel(model, version.version)

    def _touch(self, served: ServedModel) -> ServedModel:
        if served.model is not None:
            for key, model in self._loaded.items():
                if model is served.model:
                    self._loaded.move_to_end(key)
                    break
        return served

    def _still_loaded(self, served: ServedModel) -> bool:
        if served.failure is not None:
            return False  # a refused artefact is tried again every poll_s (it may be mended)
        return served.model is None or any(m is served.model for m in self._loaded.values())

    def _evict(self) -> None:
        while len(self._loaded) > 1 and self.loaded_bytes > self.max_bytes:
            (tenant, domain, _), _evicted = self._loaded.popitem(last=False)
            # Its entry holds the model too: dropped, the next request loads it again.
            self._entries.pop((tenant, domain), None)
