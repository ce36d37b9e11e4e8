"""Milvus as the vector store: Milvus Lite (a local file) by default, a server by URI.

Three collections, all filtered by tenant and domain:
- ``<prefix>_domains``: one row per domain (its JSON spec; a 2-d dummy vector, which Milvus
  requires);
- ``<prefix>_examples``: one row per example (text, entities JSON, sentence vector);
- ``<prefix>_words``: one row per word of each example (its vector, example id, word index).
Vectors are L2-normalised and indexed IVF_FLAT with COSINE. Milvus Lite brute-forces
unflushed rows (slow), so every write is flushed before it returns.

With Milvus Lite in process (a file URI), searches and example look-ups read an in-process copy
of each domain (:mod:`nerve.retrieval.store.local_index`, a faiss IVF_FLAT sized to the pool): Milvus Lite's
own search costs ~2.6 ms per hit returned. Milvus still holds and persists every row; the copy
is loaded from it on a domain's first use and updated after each write Milvus accepted.

The vector collections record which embedder made their vectors (a collection property): a
store reopened with another embedder or word-embedding mode would return nonsense neighbours
without any error, so it is refused instead.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from nerve.errors import BackendTimeout, BackendUnavailable, InvalidRequest
from nerve.retrieval.store.base import Hit, IndexedExample
from nerve.retrieval.store.lite_speedups import install as install_lite_speedups
from nerve.retrieval.store.local_index import DomainIndex, IndexParams
from nerve.vocab.types import Domain, Example, Span

log = logging.getLogger(__name__)

T = TypeVar("T")

_MAX_TEXT = 65_535
_QUERY_BATCH = 1_000
_NAME_LEN = 128
VECTORS_PROPERTY = "nerve.vectors"
# Loading a domain's copy reads every row through Milvus Lite (~2.6 ms a row measured: 10 s for
# 3,953 words), far beyond one call's timeout; it runs in this process, so it cannot hang on a
# network.
_LOAD_TIMEOUT_S = 3_600.0


def _quote(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid Milvus string literal


class _Slot:
    """One domain's copy, loaded once under its own lock (a big domain loads for minutes), and
    its spec as last written or read (every request reads it: a Milvus query saved each time)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.index: DomainIndex | None = None
        self.spec: str | None = None  # the Domain's JSON, parsed afresh for each caller
        # Orders a read-and-remember against a write: a slow read never overwrites a newer spec.
        self.spec_lock = threading.Lock()


# The in-process copies, shared by every MilvusStore of this process on the same file and prefix
# (Milvus Lite serves one data directory once per process, so they all see the same rows).
_LOCAL: dict[tuple[str, str], dict[tuple[str, str], _Slot]] = {}
_LOCAL_LOCK = threading.Lock()


class MilvusStore:
    """:class:`nerve.retrieval.store.base.VectorStore` over pymilvus' ``MilvusClient``."""

    name = "milvus"

    def __init__(
        self,
        uri: str,
        dimension: int,
        *,
        token: str | None = None,
        prefix: str = "nerve",
        nlist: int = 128,
        nprobe: int = 16,
        timeout_s: float = 10.0,
        vectors_from: str | None = None,
        local_search: bool | None = None,
        nlist_per_sqrt: float = 4.0,
    ) -> None:
        """``vectors_from`` names the embedder (and its mode); None skips the check.

        ``nlist`` is Milvus' IVF lists per segment. ``local_search`` (default: on for Milvus Lite
        in process) searches an in-process copy of each domain instead, whose IVF_FLAT index has
        ``nlist_per_sqrt * sqrt(vectors)`` lists; ``nprobe`` applies to both.
        """
        from pymilvus import MilvusClient

        self.uri = uri
        self.is_lite = "://" not in uri  # a file path: Milvus Lite
        self.dimension = dimension
        self.nlist = nlist
        self.nprobe = nprobe
        self.local_search = self.is_lite if local_search is None else local_search
        if self.local_search and not self.is_lite:
            # Other processes write to a server: a copy here would go stale.
            raise ValueError("local_search needs Milvus Lite in this process (a file URI)")
        self.nlist_per_sqrt = nlist_per_sqrt
        self._local_key = (os.path.abspath(uri), prefix)
        self.timeout_s = timeout_s
        self.vectors_from = vectors_from
        self.domains = f"{prefix}_domains"
        self.examples = f"{prefix}_examples"
        self.words = f"{prefix}_words"
        self._closed = False
        if self.is_lite:
            install_lite_speedups()
        try:
            self.client = MilvusClient(uri=uri, token=token or "", timeout=timeout_s)
            self._ensure_collections()
        except Exception as exc:  # pymilvus raises many types; all mean "store unusable"
            raise BackendUnavailable("vector_store", f"cannot open Milvus at {uri}: {exc}") from exc

    # --- schema ----------------------------------------------------------------------------
    def _ensure_collections(self) -> None:
        from pymilvus import DataType, MilvusClient

        def varchar(schema: Any, name: str, length: int = _NAME_LEN, pk: bool = False) -> None:
            schema.add_field(name, DataType.VARCHAR, max_length=length, is_primary=pk)

        specs: dict[str, tuple[Any, int, str]] = {}
        domains = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        varchar(domains, "key", 2 * _NAME_LEN + 1, pk=True)
        varchar(domains, "tenant")
        varchar(domains, "spec", _MAX_TEXT)
        domains.add_field("vector", DataType.FLOAT_VECTOR, dim=2)
        specs[self.domains] = (domains, 2, "FLAT")

        examples = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        varchar(examples, "id", 64, pk=True)
        varchar(examples, "tenant")
        varchar(examples, "domain")
        examples.add_field("seq", DataType.INT64)
        varchar(examples, "text", _MAX_TEXT)
        varchar(examples, "entities", _MAX_TEXT)
        examples.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dimension)
        specs[self.examples] = (examples, self.dimension, "IVF_FLAT")

        words = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        varchar(words, "id", 80, pk=True)
        varchar(words, "example_id", 64)
        varchar(words, "tenant")
        varchar(words, "domain")
        words.add_field("word_index", DataType.INT32)
        words.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dimension)
        specs[self.words] = (words, self.dimension, "IVF_FLAT")

        for name, (schema, dim, index_type) in specs.items():
            if self.client.has_collection(name):
                self._check_dimension(name, dim)
                if name != self.domains:
                    self._check_vectors_from(name)
            else:
                index = self.client.prepare_index_params()
                params = {"nlist": self.nlist} if index_type == "IVF_FLAT" else {}
                metric = "COSINE" if index_type == "IVF_FLAT" else "L2"
                index.add_index(
                    field_name="vector", index_type=index_type, metric_type=metric, params=params
                )
                self.client.create_collection(name, schema=schema, index_params=index)
                if name != self.domains:
                    self._record_vectors_from(name)
            # A reopened database starts released: load before any search or query.
            self.client.load_collection(name)

    def _check_dimension(self, name: str, dim: int) -> None:
        info = self.client.describe_collection(name)
        for field in info.get("fields", []):
            if field.get("name") == "vector":
                have = int(field.get("params", {}).get("dim", dim))
                if have != dim:
                    raise ValueError(
                        f"collection {name} holds {have}-d vectors but the embedder makes "
                        f"{dim}-d ones; use another collection_prefix or re-index"
                    )

    def _record_vectors_from(self, name: str) -> None:
        if self.vectors_from is not None:
            self.client.alter_collection_properties(
                name, properties={VECTORS_PROPERTY: self.vectors_from}
            )

    def _check_vectors_from(self, name: str) -> None:
        if self.vectors_from is None:
            return
        have = self.client.describe_collection(name).get("properties", {}).get(VECTORS_PROPERTY)
        if have is None:  # made before stores recorded it: adopt the current embedder
            log.warning(
                "collection %s does not say which embedder made it: recording %s",
                name,
                self.vectors_from,
            )
            self._record_vectors_from(name)
        elif have != self.vectors_from:
            raise ValueError(
                f"collection {name} holds vectors made by {have!r} but this server embeds "
                f"with {self.vectors_from!r}; set the same embedder and NERVE_EMBEDDER_WORD_MODE, "
                "or use another NERVE_MILVUS_COLLECTION_PREFIX and re-add the examples"
            )

    # --- calls -----------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            try:
                return fn()
            except Exception as exc:
                # A restarted Milvus starts with every collection released: load and retry once.
                if "released" not in str(exc) and "load()" not in str(exc):
                    raise
                log.warning("Milvus collections released (server restarted?): loading them")
                self._load_all()
                return fn()
        except (BackendUnavailable, ValueError):
            raise
        except Exception as exc:
            text = str(exc)
            if "timeout" in text.lower() or "deadline" in text.lower():
                raise BackendTimeout("vector_store", f"{what} timed out: {text}") from exc
            raise BackendUnavailable("vector_store", f"{what} failed: {text}") from exc

    def _load_all(self) -> None:
        for collection in (self.domains, self.examples, self.words):
            self.client.load_collection(collection, timeout=self.timeout_s)

    @staticmethod
    def _scope(tenant: str, domain: str) -> str:
        return f"tenant == {_quote(tenant)} and domain == {_quote(domain)}"

    # --- domains ---------------------------------------------------------------------------
    def put_domain(self, domain: Domain) -> None:
        spec = domain.model_dump_json()
        row = {
            "key": f"{domain.tenant}/{domain.name}",
            "tenant": domain.tenant,
            "spec": spec,
            "vector": [0.0, 0.0],
        }
        slot = self._slot(domain.tenant, domain.name)
        with slot.spec_lock if slot is not None else contextlib.nullcontext():
            self._call("put_domain", lambda: self.client.upsert(self.domains, [row]))
            self._call("flush", lambda: self.client.flush(self.domains))
            if slot is not None:
                slot.spec = spec

    def get_domain(self, tenant: str, name: str) -> Domain | None:
        slot = self._slot(tenant, name)
        if slot is None:
            return self._query_domain(tenant, name)
        with slot.spec_lock:
            if slot.spec is None:
                spec = self._query_domain_spec(tenant, name)
                if spec is None:
                    return None
                slot.spec = spec
            return Domain.model_validate_json(slot.spec)

    def _query_domain(self, tenant: str, name: str) -> Domain | None:
        spec = self._query_domain_spec(tenant, name)
        return None if spec is None else Domain.model_validate_json(spec)

    def _query_domain_spec(self, tenant: str, name: str) -> str | None:
        rows = self._call(
            "get_domain",
            lambda: self.client.query(
                self.domains,
                filter=f"key == {_quote(f'{tenant}/{name}')}",
                output_fields=["spec"],
                timeout=self.timeout_s,
            ),
        )
        return str(rows[0]["spec"]) if rows else None

    def list_domains(self, tenant: str) -> list[Domain]:
        rows = self._call(
            "list_domains",
            lambda: self.client.query(
                self.domains,
                filter=f"tenant == {_quote(tenant)}",
                output_fields=["spec"],
                limit=16_384,
                timeout=self.timeout_s,
            ),
        )
        domains = [Domain.model_validate_json(r["spec"]) for r in rows]
        return sorted(domains, key=lambda d: d.name)

    def delete_domain(self, tenant: str, name: str) -> int:
        scope = self._scope(tenant, name)
        ids = self._ids(scope)
        self._call("delete_words", lambda: self.client.delete(self.words, filter=scope))
        self._call("delete_examples", lambda: self.client.delete(self.examples, filter=scope))
        key = _quote(f"{tenant}/{name}")
        self._call(
            "delete_domain", lambda: self.client.delete(self.domains, filter=f"key == {key}")
        )
        for collection in (self.words, self.examples, self.domains):
            self._call("flush", functools.partial(self.client.flush, collection))
        if self.local_search:
            with _LOCAL_LOCK:
                _LOCAL.get(self._local_key, {}).pop((tenant, name), None)
        return len(ids)

    # --- examples --------------------------------------------------------------------------
    def add_examples(self, tenant: str, domain: str, items: Sequence[IndexedExample]) -> list[str]:
        if not items:
            return []
        ids = [item.example.id or uuid.uuid4().hex for item in items]
        # Loaded before the insert, so that the copy does not already hold the new rows.
        local = self._local(tenant, domain)
        base = time.time_ns()
        example_rows = []
        for offset, (example_id, item) in enumerate(zip(ids, items, strict=True)):
            entities = json.dumps([s.model_dump() for s in item.example.entities])
            if len(entities) > _MAX_TEXT:  # the entities column's size: refuse before writing
                raise InvalidRequest(
                    f"examples[{offset}]: {len(item.example.entities)} entities are more than "
                    "one example can hold; split the text"
                )
            example_rows.append(
                {
                    "id": example_id,
                    "tenant": tenant,
                    "domain": domain,
                    "seq": base + offset,
                    "text": item.example.text,
                    "entities": entities,
                    "vector": item.sentence_vector.astype(np.float32).tolist(),
                }
            )

        # Made batch by batch as they are inserted (a retry starts a new generator): as lists of
        # Python floats, a 5,000-sentence upload held ~190,000 rows of 384 floats at once.
        def word_rows() -> Iterator[dict[str, Any]]:
            for example_id, item in zip(ids, items, strict=True):
                vectors = item.word_vectors.astype(np.float32).tolist()
                for index, vector in enumerate(vectors):
                    yield {
                        "id": f"{example_id}:{index}",
                        "example_id": example_id,
                        "tenant": tenant,
                        "domain": domain,
                        "word_index": index,
                        "vector": vector,
                    }

        try:
            self._call("insert_examples", lambda: self._insert(self.examples, example_rows))
            self._call("insert_words", lambda: self._insert(self.words, word_rows()))
            self._call("flush", lambda: self.client.flush(self.examples))
            self._call("flush", lambda: self.client.flush(self.words))
        except BackendUnavailable:
            self._undo(ids)
            raise
        if local is not None:
            for example_id, item in zip(ids, items, strict=True):
                example = item.example.model_copy(update={"id": example_id}, deep=True)
                local.add(example, item.sentence_vector, item.word_vectors)
        return ids

    def _insert(self, collection: str, rows: Iterable[dict[str, Any]]) -> None:
        batches = iter(rows)
        while batch := list(itertools.islice(batches, _QUERY_BATCH)):
            self.client.insert(collection, batch, timeout=self.timeout_s)

    def _undo(self, ids: Sequence[str]) -> None:
        # All or nothing: remove whatever part of a failed ingest reached the store.
        id_list = json.dumps(list(ids))
        for collection, field in ((self.words, "example_id"), (self.examples, "id")):
            try:
                self.client.delete(collection, filter=f"{field} in {id_list}")
                self.client.flush(collection)
            except Exception:  # the store is already failing; the caller gets the first error
                log.exception("rollback of a failed ingest failed", extra={"ids": len(ids)})

    def get_examples(self, tenant: str, domain: str, ids: Sequence[str]) -> list[Example]:
        if not ids:
            return []
        local = self._local(tenant, domain)
        if local is not None:
            return local.get(ids)
        id_list = json.dumps(list(dict.fromkeys(ids)))
        rows = self._call(
            "get_examples",
            lambda: self.client.query(
                self.examples,
                filter=f"{self._scope(tenant, domain)} and id in {id_list}",
                output_fields=["id", "text", "entities"],
                timeout=self.timeout_s,
            ),
        )
        by_id = {r["id"]: _example(r) for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    def _ids(self, scope: str) -> list[tuple[int, str]]:
        """(seq, id) of every example in scope, oldest first."""

        def run() -> list[tuple[int, str]]:
            if self.is_lite:
                # Milvus Lite answers an unbounded query; its iterator logs server errors.
                rows = self.client.query(
                    self.examples, filter=scope, output_fields=["id", "seq"], timeout=self.timeout_s
                )
                return sorted((int(r["seq"]), r["id"]) for r in rows)
            # A server caps one query's window (16,384 rows): iterate.
            iterator = self.client.query_iterator(
                self.examples, batch_size=_QUERY_BATCH, filter=scope, output_fields=["id", "seq"]
            )
            found: list[tuple[int, str]] = []
            try:
                while batch := iterator.next():
                    found.extend((int(r["seq"]), r["id"]) for r in batch)
            finally:
                iterator.close()
            return sorted(found)

        return self._call("list_ids", run)

    def list_examples(
        self, tenant: str, domain: str, offset: int, limit: int
    ) -> tuple[list[Example], int]:
        ids = self._ids(self._scope(tenant, domain))
        page = [i for _, i in ids[offset : offset + limit]]
        return self.get_examples(tenant, domain, page), len(ids)

    def count_examples(self, tenant: str, domain: str) -> int:
        return len(self._ids(self._scope(tenant, domain)))

    def delete_example(self, tenant: str, domain: str, example_id: str) -> bool:
        scope = self._scope(tenant, domain)
        key = _quote(example_id)
        found = self._call(
            "find_example",
            lambda: self.client.query(
                self.examples, filter=f"{scope} and id == {key}", output_fields=["id"]
            ),
        )
        if not found:
            return False
        self._call(
            "delete_words",
            lambda: self.client.delete(self.words, filter=f"{scope} and example_id == {key}"),
        )
        self._call(
            "delete_example",
            lambda: self.client.delete(self.examples, filter=f"{scope} and id == {key}"),
        )
        self._call("flush", lambda: self.client.flush(self.words))
        self._call("flush", lambda: self.client.flush(self.examples))
        local = self._local(tenant, domain)
        if local is not None:
            local.remove([example_id])
        return True

    # --- search ----------------------------------------------------------------------------
    def search_words(
        self, tenant: str, domain: str, vectors: np.ndarray, limit: int
    ) -> list[list[tuple[str, int, float]]]:
        if len(vectors) == 0:
            return []
        local = self._local(tenant, domain)
        if local is not None:
            return local.search_words(np.asarray(vectors), limit, self.nprobe)
        results = self._call(
            "search_words",
            lambda: self.client.search(
                self.words,
                data=[v.astype(np.float32).tolist() for v in vectors],
                anns_field="vector",
                limit=limit,
                filter=self._scope(tenant, domain),
                output_fields=["example_id", "word_index"],
                search_params={"metric_type": "COSINE", "params": {"nprobe": self.nprobe}},
                timeout=self.timeout_s,
            ),
        )
        return [
            [
                (h["entity"]["example_id"], int(h["entity"]["word_index"]), float(h["distance"]))
                for h in hits
            ]
            for hits in results
        ]

    def search_sentences(
        self, tenant: str, domain: str, vector: np.ndarray, limit: int
    ) -> list[Hit]:
        local = self._local(tenant, domain)
        if local is not None:
            hits = local.search_sentences(np.asarray(vector), limit, self.nprobe)
            return [Hit(example_id, similarity) for example_id, _, similarity in hits]
        results = self._call(
            "search_sentences",
            lambda: self.client.search(
                self.examples,
                data=[vector.astype(np.float32).tolist()],
                anns_field="vector",
                limit=limit,
                filter=self._scope(tenant, domain),
                output_fields=["id"],
                search_params={"metric_type": "COSINE", "params": {"nprobe": self.nprobe}},
                timeout=self.timeout_s,
            ),
        )
        return [Hit(h["entity"]["id"], float(h["distance"])) for h in results[0]]

    # --- the in-process copy (Milvus Lite) --------------------------------------------------
    def _slot(self, tenant: str, domain: str) -> _Slot | None:
        """The domain's in-process slot: only with the copy, i.e. Milvus Lite in this process,
        the only writer of its rows (a server's other clients would make it stale)."""
        if not self.local_search:
            return None
        with _LOCAL_LOCK:
            return _LOCAL.setdefault(self._local_key, {}).setdefault((tenant, domain), _Slot())

    def _local(self, tenant: str, domain: str) -> DomainIndex | None:
        slot = self._slot(tenant, domain)
        if slot is None:
            return None
        with slot.lock:
            if slot.index is None:
                slot.index = self._load_local(tenant, domain)
            return slot.index

    def _load_local(self, tenant: str, domain: str) -> DomainIndex:
        """A domain's copy from Milvus (slow on a big domain: Milvus Lite reads row by row)."""
        started = time.perf_counter()
        scope = self._scope(tenant, domain)
        examples = self._call(
            "load_examples",
            lambda: self.client.query(
                self.examples,
                filter=scope,
                output_fields=["id", "seq", "text", "entities", "vector"],
                timeout=_LOAD_TIMEOUT_S,
            ),
        )
        words = self._call(
            "load_words",
            lambda: self.client.query(
                self.words,
                filter=scope,
                output_fields=["example_id", "word_index", "vector"],
                timeout=_LOAD_TIMEOUT_S,
            ),
        )
        by_example: dict[str, list[tuple[int, list[float]]]] = {}
        for row in words:
            by_example.setdefault(row["example_id"], []).append(
                (int(row["word_index"]), row["vector"])
            )
        local = DomainIndex(self.dimension, self.nlist_per_sqrt)
        for row in sorted(examples, key=lambda r: int(r["seq"])):
            vectors = [v for _, v in sorted(by_example.get(row["id"], []), key=lambda p: p[0])]
            local.add(
                _example(row),
                np.asarray(row["vector"], dtype=np.float32),
                np.asarray(vectors, dtype=np.float32).reshape(-1, self.dimension),
            )
        if examples:
            log.info(
                "loaded domain %s/%s for search: %d examples, %d words in %.1f s",
                tenant,
                domain,
                len(examples),
                len(words),
                time.perf_counter() - started,
            )
        return local

    def cold_domains(self) -> list[tuple[str, str]]:
        """(tenant, domain) of every domain whose search copy is not loaded (local search)."""
        if not self.local_search:
            return []
        rows = self._call(
            "list_all_domains",
            lambda: self.client.query(
                self.domains,
                filter='key != ""',
                output_fields=["spec"],
                limit=16_384,
                timeout=self.timeout_s,
            ),
        )
        with _LOCAL_LOCK:
            slots = dict(_LOCAL.get(self._local_key, {}))
        found = [Domain.model_validate_json(r["spec"]) for r in rows]
        return [
            (d.tenant, d.name)
            for d in found
            if (d.tenant, d.name) not in slots or slots[(d.tenant, d.name)].index is None
        ]

    def warm(self, domains: Sequence[tuple[str, str]]) -> int:
        """Load these domains' copies now, so that no request after a restart waits for its
        domain's load; how many were loaded. A domain that fails to load is logged and left to
        load on its first use."""
        started = time.perf_counter()
        loaded = 0
        for tenant, name in domains:
            if self._closed:
                break
            try:
                self._local(tenant, name)
                loaded += 1
            except Exception:
                log.exception("loading domain %s/%s for search failed", tenant, name)
        log.info(
            "search copies loaded: %d domains in %.1f s", loaded, time.perf_counter() - started
        )
        return loaded

    def index_params(self, tenant: str, domain: str) -> dict[str, IndexParams]:
        """The IVF parameters a domain's searches use, read back from faiss (local search only)."""
        local = self._local(tenant, domain)
        if local is None:
            raise ValueError("index_params needs local_search (Milvus Lite in this process)")
        return local.params(self.nprobe)

    # --- lifecycle -------------------------------------------------------------------------
    def ready(self) -> bool:
        try:
            self.client.list_collections(timeout=self.timeout_s)
            return True
        except Exception:
            return False

    def close(self) -> None:
        self._closed = True
        if self.local_search:
            with _LOCAL_LOCK:
                _LOCAL.pop(self._local_key, None)
        try:
            self.client.close()
        except Exception:  # closing a broken connection must not mask shutdown
            log.warning("closing Milvus failed", exc_info=True)


def _example(row: dict[str, Any]) -> Example:
    spans = [Span.model_validate(s) for s in json.loads(row["entities"])]
    return Example(id=row["id"], text=row["text"], entities=spans)
