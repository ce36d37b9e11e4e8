"""The search copy: an in-process faiss copy of each domain's vectors, searched instead of
Milvus Lite (whose own search costs ~2.6 ms per hit returned).

Milvus (:class:`~nerve.retrieval.store.records.MilvusRecords`) holds and persists every row; a
domain's copy (:class:`~nerve.retrieval.store.local_index.DomainIndex`, a faiss IVF_FLAT sized
to the pool) is loaded from it on the domain's first use, or at start-up by :meth:`warm`, and
updated after each write Milvus accepted. Beside it, the domain's spec as last written or read
(every request reads it: a Milvus query saved each time). The copy is correct only with Milvus
Lite in this process: Milvus Lite locks its data directory to one process, so every write goes
through here; with a Milvus server, whose other clients write too, there is no copy and searches
go to Milvus.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from nerve.retrieval.store.base import IndexedExample
from nerve.retrieval.store.local_index import DomainIndex, IndexParams
from nerve.retrieval.store.records import MilvusRecords
from nerve.vocab.types import Example

log = logging.getLogger(__name__)


class _Slot:
    """One domain's copy, loaded once under its own lock (a big domain loads for minutes), and
    its spec as last written or read."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.index: DomainIndex | None = None
        self.spec: str | None = None  # the Domain's JSON, parsed afresh for each caller
        # Orders a read-and-remember against a write: a slow read never overwrites a newer spec.
        self.spec_lock = threading.Lock()


# The copies, shared by every SearchCopy of this process on the same file and prefix (Milvus
# Lite serves one data directory once per process, so they all see the same rows).
_LOCAL: dict[tuple[str, str], dict[tuple[str, str], _Slot]] = {}
_LOCAL_LOCK = threading.Lock()


class SearchCopy:
    """The in-process copies of one Milvus Lite file's domains: their loading, warming, updates
    and searches. Writes go to ``records`` first; the copy follows only those it accepted."""

    def __init__(self, records: MilvusRecords, nlist_per_sqrt: float = 4.0) -> None:
        """``nlist_per_sqrt``: a domain's IVF_FLAT has ``nlist_per_sqrt * sqrt(vectors)`` lists."""
        if not records.is_lite:
            # Other processes write to a server: a copy here would go stale.
            raise ValueError("local_search needs Milvus Lite in this process (a file URI)")
        self.records = records
        self.nlist_per_sqrt = nlist_per_sqrt
        self._key = (os.path.abspath(records.uri), records.prefix)
        self._closed = False

    def _slot(self, tenant: str, domain: str) -> _Slot:
        with _LOCAL_LOCK:
            return _LOCAL.setdefault(self._key, {}).setdefault((tenant, domain), _Slot())

    # --- the copy's lifecycle --------------------------------------------------------------
    def index(self, tenant: str, domain: str) -> DomainIndex:
        """The domain's copy, loaded from Milvus on first use (once, under the domain's lock)."""
        slot = self._slot(tenant, domain)
        with slot.lock:
            if slot.index is None:
                slot.index = self._load(tenant, domain)
            return slot.index

    def _load(self, tenant: str, domain: str) -> DomainIndex:
        started = time.perf_counter()
        found = self.records.read_domain(tenant, domain)
        local = DomainIndex(self.records.dimension, self.nlist_per_sqrt)
        for item in found:
            local.add(item.example, item.sentence_vector, item.word_vectors)
        if found:
            log.info(
                "loaded domain %s/%s for search: %d examples, %d words in %.1f s",
                tenant,
                domain,
                len(found),
                sum(len(item.word_vectors) for item in found),
                time.perf_counter() - started,
            )
        return local

    def cold(self, domains: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """Those of ``domains`` (tenant, domain) whose copy is not loaded."""
        with _LOCAL_LOCK:
            slots = dict(_LOCAL.get(self._key, {}))
        return [key for key in domains if key not in slots or slots[key].index is None]

    def warm(self, domains: Sequence[tuple[str, str]]) -> int:
        """Load these domains' copies now, so that no request after a restart waits for its
        domain's load; how many were loaded. A domain that fails to load is logged and left to
        load on its first use; a closed copy stops at the next domain."""
        started = time.perf_counter()
        loaded = 0
        for tenant, name in domains:
            if self._closed:
                break
            try:
                self.index(tenant, name)
                loaded += 1
            except Exception:
                log.exception("loading domain %s/%s for search failed", tenant, name)
        log.info(
            "search copies loaded: %d domains in %.1f s", loaded, time.perf_counter() - started
        )
        return loaded

    def close(self) -> None:
        """Forget this file's copies (a reopened store reloads them from Milvus)."""
        self._closed = True
        with _LOCAL_LOCK:
            _LOCAL.pop(self._key, None)

    # --- after writes Milvus accepted ------------------------------------------------------
    @contextmanager
    def writing_spec(self, tenant: str, name: str, spec: str) -> Iterator[None]:
        """Around a write of the domain's spec: remembered once the body returns (the write
        accepted), and no read of the spec in between."""
        slot = self._slot(tenant, name)
        with slot.spec_lock:
            yield
            slot.spec = spec

    def spec(self, tenant: str, name: str, read: Callable[[], str | None]) -> str | None:
        """The domain's spec, read (``read()``) only the first time."""
        slot = self._slot(tenant, name)
        with slot.spec_lock:
            if slot.spec is None:
                slot.spec = read()
            return slot.spec

    def added(
        self, index: DomainIndex, ids: Sequence[str], items: Sequence[IndexedExample]
    ) -> None:
        """Examples Milvus stored under ``ids``, into the copy ``index`` (loaded before the
        write, so that it did not already hold them)."""
        for example_id, item in zip(ids, items, strict=True):
            example = item.example.model_copy(update={"id": example_id}, deep=True)
            index.add(example, item.sentence_vector, item.word_vectors)

    def removed(self, tenant: str, domain: str, ids: Sequence[str]) -> None:
        self.index(tenant, domain).remove(ids)

    def dropped(self, tenant: str, name: str) -> None:
        """A deleted domain: its copy and spec forgotten."""
        with _LOCAL_LOCK:
            _LOCAL.get(self._key, {}).pop((tenant, name), None)

    # --- reads -----------------------------------------------------------------------------
    def get_examples(self, tenant: str, domain: str, ids: Sequence[str]) -> list[Example]:
        return self.index(tenant, domain).get(ids)

    def search_words(
        self, tenant: str, domain: str, vectors: np.ndarray, limit: int, nprobe: int
    ) -> list[list[tuple[str, int, float]]]:
        return self.index(tenant, domain).search_words(np.asarray(vectors), limit, nprobe)

    def search_sentences(
        self, tenant: str, domain: str, vector: np.ndarray, limit: int, nprobe: int
    ) -> list[tuple[str, int, float]]:
        return self.index(tenant, domain).search_sentences(np.asarray(vector), limit, nprobe)

    def index_params(self, tenant: str, domain: str, nprobe: int) -> dict[str, IndexParams]:
        """The IVF parameters the domain's searches use, read back from faiss."""
        return self.index(tenant, domain).params(nprobe)
