"""The record store: domains, examples and word vectors in Milvus (Milvus Lite in a file by
default, a server by URI; same client code), the only place this process reads or writes them.

Every write is flushed before it returns (Milvus Lite brute-forces unflushed rows, slowly), and
an ingest is all or nothing: whatever part of a failed one reached Milvus is deleted again.
Every failure of a call is one of :class:`~nerve.errors.BackendUnavailable` or
:class:`~nerve.errors.BackendTimeout`. The collections: :mod:`nerve.retrieval.store.schema`.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypedDict, TypeVar

import numpy as np

from nerve.errors import BackendTimeout, BackendUnavailable, InvalidRequest
from nerve.retrieval.store.base import IndexedExample
from nerve.retrieval.store.lite_speedups import install as install_lite_speedups
from nerve.retrieval.store.schema import MAX_TEXT, Collections, ensure_collections
from nerve.vocab.types import Domain, Example, Span

log = logging.getLogger(__name__)

T = TypeVar("T")

_QUERY_BATCH = 1_000
# Reading a whole domain (to load its search copy) goes row by row through Milvus Lite (~2.6 ms
# a row measured: 10 s for 3,953 words), far beyond one call's timeout; it runs in this
# process, so it cannot hang on a network.
_READ_DOMAIN_TIMEOUT_S = 3_600.0


def _quote(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid Milvus string literal


def scope(tenant: str, domain: str) -> str:
    """The Milvus filter of one (tenant, domain)'s rows."""
    return f"tenant == {_quote(tenant)} and domain == {_quote(domain)}"


class RecordOptions(TypedDict, total=False):
    """The record store's options besides its URI and dimension (see :class:`MilvusRecords`)."""

    token: str | None
    prefix: str
    nlist: int
    timeout_s: float
    vectors_from: str | None


class MilvusRecords:
    """Domains, examples and word vectors in three Milvus collections, over ``MilvusClient``."""

    def __init__(
        self,
        uri: str,
        dimension: int,
        *,
        token: str | None = None,
        prefix: str = "nerve",
        nlist: int = 128,
        timeout_s: float = 10.0,
        vectors_from: str | None = None,
    ) -> None:
        """``nlist``: Milvus' IVF lists per segment; ``vectors_from`` names the embedder (and
        its mode) that made the vectors, None skips the check."""
        from pymilvus import MilvusClient

        self.uri = uri
        self.is_lite = "://" not in uri  # a file path: Milvus Lite
        self.dimension = dimension
        self.timeout_s = timeout_s
        self.prefix = prefix
        self.collections = Collections.of(prefix)
        if self.is_lite:
            install_lite_speedups()
        try:
            self.client = MilvusClient(uri=uri, token=token or "", timeout=timeout_s)
            ensure_collections(self.client, self.collections, dimension, nlist, vectors_from)
        except Exception as exc:  # pymilvus raises many types; all mean "store unusable"
            raise BackendUnavailable("vector_store", f"cannot open Milvus at {uri}: {exc}") from exc

    # --- calls -----------------------------------------------------------------------------
    def call(self, what: str, fn: Callable[[], T]) -> T:
        """``fn()``, its failures as the store's errors (``what`` names the call)."""
        try:
            try:
                return fn()
            except Exception as exc:
                # A restarted Milvus starts with every collection released: load and retry once.
                if "released" not in str(exc) and "load()" not in str(exc):
                    raise
                log.warning("Milvus collections released (server restarted?): loading them")
                for collection in self.collections.all():
                    self.client.load_collection(collection, timeout=self.timeout_s)
                return fn()
        except (BackendUnavailable, ValueError):
            raise
        except Exception as exc:
            text = str(exc)
            if "timeout" in text.lower() or "deadline" in text.lower():
                raise BackendTimeout("vector_store", f"{what} timed out: {text}") from exc
            raise BackendUnavailable("vector_store", f"{what} failed: {text}") from exc

    def query(self, what: str, collection: str, filter: str, fields: list[str], **kw: Any) -> Any:
        kw.setdefault("timeout", self.timeout_s)
        return self.call(
            what,
            lambda: self.client.query(collection, filter=filter, output_fields=fields, **kw),
        )

    def _flush(self, *collections: str) -> None:
        for collection in collections:
            self.call("flush", functools.partial(self.client.flush, collection))

    # --- domains ---------------------------------------------------------------------------
    def put_domain_spec(self, tenant: str, name: str, spec: str) -> None:
        row = {"key": f"{tenant}/{name}", "tenant": tenant, "spec": spec, "vector": [0.0, 0.0]}
        self.call("put_domain", lambda: self.client.upsert(self.collections.domains, [row]))
        self._flush(self.collections.domains)

    def domain_spec(self, tenant: str, name: str) -> str | None:
        """The domain's JSON as stored, None if there is none."""
        key = f"key == {_quote(f'{tenant}/{name}')}"
        rows = self.query("get_domain", self.collections.domains, key, ["spec"])
        return str(rows[0]["spec"]) if rows else None

    def domains(self, tenant: str | None, what: str = "list_domains") -> list[Domain]:
        """A tenant's domains (every tenant's with None), in no particular order."""
        where = 'key != ""' if tenant is None else f"tenant == {_quote(tenant)}"
        rows = self.query(what, self.collections.domains, where, ["spec"], limit=16_384)
        return [Domain.model_validate_json(r["spec"]) for r in rows]

    def delete_domain(self, tenant: str, name: str) -> int:
        """Delete the domain's rows and its examples'; how many examples went."""
        where = scope(tenant, name)
        ids = self.ids(tenant, name)
        c = self.collections
        self.call("delete_words", lambda: self.client.delete(c.words, filter=where))
        self.call("delete_examples", lambda: self.client.delete(c.examples, filter=where))
        key = _quote(f"{tenant}/{name}")
        self.call("delete_domain", lambda: self.client.delete(c.domains, filter=f"key == {key}"))
        self._flush(c.words, c.examples, c.domains)
        return len(ids)

    # --- examples --------------------------------------------------------------------------
    def add_examples(
        self, tenant: str, domain: str, ids: Sequence[str], items: Sequence[IndexedExample]
    ) -> None:
        """Store the examples under ``ids``, all or none (a failure deletes what was written)."""
        base = time.time_ns()
        example_rows = []
        for offset, (example_id, item) in enumerate(zip(ids, items, strict=True)):
            entities = json.dumps([s.model_dump() for s in item.example.entities])
            if len(entities) > MAX_TEXT:  # the entities column's size: refuse before writing
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

        c = self.collections
        try:
            self.call("insert_examples", lambda: self._insert(c.examples, example_rows))
            self.call("insert_words", lambda: self._insert(c.words, word_rows()))
            self._flush(c.examples, c.words)
        except BackendUnavailable:
            self._undo(ids)
            raise

    def _insert(self, collection: str, rows: Iterable[dict[str, Any]]) -> None:
        batches = iter(rows)
        while batch := list(itertools.islice(batches, _QUERY_BATCH)):
            self.client.insert(collection, batch, timeout=self.timeout_s)

    def _undo(self, ids: Sequence[str]) -> None:
        # All or nothing: remove whatever part of a failed ingest reached the store.
        id_list = json.dumps(list(ids))
        c = self.collections
        for collection, field in ((c.words, "example_id"), (c.examples, "id")):
            try:
                self.client.delete(collection, filter=f"{field} in {id_list}")
                self.client.flush(collection)
            except Exception:  # the store is already failing; the caller gets the first error
                log.exception("rollback of a failed ingest failed", extra={"ids": len(ids)})

    def get_examples(self, tenant: str, domain: str, ids: Sequence[str]) -> list[Example]:
        id_list = json.dumps(list(dict.fromkeys(ids)))
        where = f"{scope(tenant, domain)} and id in {id_list}"
        rows = self.query(
            "get_examples", self.collections.examples, where, ["id", "text", "entities"]
        )
        by_id = {r["id"]: example_of(r) for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    def ids(self, tenant: str, domain: str) -> list[str]:
        """The ids of the domain's examples, oldest first."""
        where, examples = scope(tenant, domain), self.collections.examples

        def run() -> list[tuple[int, str]]:
            if self.is_lite:
                # Milvus Lite answers an unbounded query; its iterator logs server errors.
                rows = self.client.query(
                    examples, filter=where, output_fields=["id", "seq"], timeout=self.timeout_s
                )
                return sorted((int(r["seq"]), r["id"]) for r in rows)
            # A server caps one query's window (16,384 rows): iterate.
            iterator = self.client.query_iterator(
                examples, batch_size=_QUERY_BATCH, filter=where, output_fields=["id", "seq"]
            )
            found: list[tuple[int, str]] = []
            try:
                while batch := iterator.next():
                    found.extend((int(r["seq"]), r["id"]) for r in batch)
            finally:
                iterator.close()
            return sorted(found)

        return [example_id for _, example_id in self.call("list_ids", run)]

    def delete_example(self, tenant: str, domain: str, example_id: str) -> bool:
        where, key, c = scope(tenant, domain), _quote(example_id), self.collections
        found = self.call(
            "find_example",
            lambda: self.client.query(
                c.examples, filter=f"{where} and id == {key}", output_fields=["id"]
            ),
        )
        if not found:
            return False
        self.call(
            "delete_words",
            lambda: self.client.delete(c.words, filter=f"{where} and example_id == {key}"),
        )
        self.call(
            "delete_example",
            lambda: self.client.delete(c.examples, filter=f"{where} and id == {key}"),
        )
        self._flush(c.words, c.examples)
        return True

    def read_domain(self, tenant: str, domain: str) -> list[IndexedExample]:
        """Every example of the domain with its vectors, oldest first (slow on a big domain:
        Milvus Lite reads row by row)."""
        where, timeout, c = scope(tenant, domain), _READ_DOMAIN_TIMEOUT_S, self.collections
        fields = ["id", "seq", "text", "entities", "vector"]
        examples = self.query("load_examples", c.examples, where, fields, timeout=timeout)
        fields = ["example_id", "word_index", "vector"]
        words = self.query("load_words", c.words, where, fields, timeout=timeout)
        by_example: dict[str, list[tuple[int, list[float]]]] = {}
        for row in words:
            by_example.setdefault(row["example_id"], []).append(
                (int(row["word_index"]), row["vector"])
            )
        found = []
        for row in sorted(examples, key=lambda r: int(r["seq"])):
            vectors = [v for _, v in sorted(by_example.get(row["id"], []), key=lambda p: p[0])]
            found.append(
                IndexedExample(
                    example_of(row),
                    np.asarray(row["vector"], dtype=np.float32),
                    np.asarray(vectors, dtype=np.float32).reshape(-1, self.dimension),
                )
            )
        return found

    # --- search (Milvus' own: with a server, whose rows other processes write) ---------------
    def search(
        self, what: str, tenant: str, domain: str, vectors: np.ndarray, limit: int, nprobe: int
    ) -> list[list[dict[str, Any]]]:
        """Milvus' hits (``entity`` and ``distance``) for each of ``vectors``: the word vectors
        with ``what`` = ``search_words``, else the sentence vectors."""
        words = what == "search_words"
        fields = ["example_id", "word_index"] if words else ["id"]
        return self.call(
            what,
            lambda: self.client.search(
                self.collections.words if words else self.collections.examples,
                data=[v.astype(np.float32).tolist() for v in vectors],
                anns_field="vector",
                limit=limit,
                filter=scope(tenant, domain),
                output_fields=fields,
                search_params={"metric_type": "COSINE", "params": {"nprobe": nprobe}},
                timeout=self.timeout_s,
            ),
        )

    # --- lifecycle -------------------------------------------------------------------------
    def ready(self) -> bool:
        try:
            self.client.list_collections(timeout=self.timeout_s)
            return True
        except Exception:
            return False

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # closing a broken connection must not mask shutdown
            log.warning("closing Milvus failed", exc_info=True)


def example_of(row: dict[str, Any]) -> Example:
    spans = [Span.model_validate(s) for s in json.loads(row["entities"])]
    return Example(id=row["id"], text=row["text"], entities=spans)
