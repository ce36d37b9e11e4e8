"""Milvus as the vector store: Milvus Lite (a local file) by default, a server by URI.

:class:`MilvusStore` is the :class:`~nerve.retrieval.store.base.VectorStore` the gateway, the
tools and the trainers use. It composes two parts, each with one job:

- :class:`~nerve.retrieval.store.records.MilvusRecords`, the record store: the collections
  (:mod:`~nerve.retrieval.store.schema`), every read and write of domains, examples and word
  vectors, and the undo of a partial ingest;
- :class:`~nerve.retrieval.store.search_copy.SearchCopy`, the search copy (with Milvus Lite in
  this process only): each domain's vectors in faiss, loaded on first use or warmed at start-up,
  updated after every write the record store accepted, and searched instead of Milvus Lite.

With a Milvus server there is no copy: searches and example look-ups go to Milvus.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from typing import Unpack

import numpy as np

from nerve.retrieval.store.base import Hit, IndexedExample
from nerve.retrieval.store.local_index import IndexParams
from nerve.retrieval.store.records import MilvusRecords, RecordOptions
from nerve.retrieval.store.search_copy import SearchCopy
from nerve.vocab.types import Domain, Example


class MilvusStore:
    """:class:`nerve.retrieval.store.base.VectorStore` over Milvus, with the search copy."""

    name = "milvus"

    def __init__(
        self,
        uri: str,
        dimension: int,
        *,
        nprobe: int = 16,
        local_search: bool | None = None,
        nlist_per_sqrt: float = 4.0,
        **options: Unpack[RecordOptions],
    ) -> None:
        """``options`` are the record store's (:class:`MilvusRecords`: ``token``, ``prefix``,
        ``nlist``, Milvus' IVF lists per segment, ``timeout_s``, and ``vectors_from``, the
        embedder and its mode, None to skip the check).

        ``local_search`` (default: on for Milvus Lite in process) searches an in-process copy of
        each domain instead, whose IVF_FLAT index has ``nlist_per_sqrt * sqrt(vectors)`` lists;
        ``nprobe`` applies to both.
        """
        self.uri = uri
        self.is_lite = "://" not in uri  # a file path: Milvus Lite
        self.dimension = dimension
        self.nprobe = nprobe  # read at each search: a benchmark changes it between runs
        self.local_search = self.is_lite if local_search is None else local_search
        if self.local_search and not self.is_lite:
            # Other processes write to a server: a copy here would go stale.
            raise ValueError("local_search needs Milvus Lite in this process (a file URI)")
        self.records = MilvusRecords(uri, dimension, **options)
        self.search_copy = SearchCopy(self.records, nlist_per_sqrt) if self.local_search else None

    # --- domains ---------------------------------------------------------------------------
    def put_domain(self, domain: Domain) -> None:
        spec = domain.model_dump_json()
        copy = self.search_copy
        with (
            copy.writing_spec(domain.tenant, domain.name, spec)
            if copy is not None
            else contextlib.nullcontext()
        ):
            self.records.put_domain_spec(domain.tenant, domain.name, spec)

    def get_domain(self, tenant: str, name: str) -> Domain | None:
        def read() -> str | None:
            return self.records.domain_spec(tenant, name)

        spec = read() if self.search_copy is None else self.search_copy.spec(tenant, name, read)
        return None if spec is None else Domain.model_validate_json(spec)

    def list_domains(self, tenant: str) -> list[Domain]:
        return sorted(self.records.domains(tenant), key=lambda d: d.name)

    def delete_domain(self, tenant: str, name: str) -> int:
        deleted = self.records.delete_domain(tenant, name)
        if self.search_copy is not None:
            self.search_copy.dropped(tenant, name)
        return deleted

    # --- examples --------------------------------------------------------------------------
    def add_examples(self, tenant: str, domain: str, items: Sequence[IndexedExample]) -> list[str]:
        if not items:
            return []
        ids = [item.example.id or uuid.uuid4().hex for item in items]
        copy = self.search_copy
        # Loaded before the write, so that the copy does not already hold the new rows.
        index = copy.index(tenant, domain) if copy is not None else None
        self.records.add_examples(tenant, domain, ids, items)  # raises: the copy is unchanged
        if copy is not None and index is not None:
            copy.added(index, ids, items)
        return ids

    def get_examples(self, tenant: str, domain: str, ids: Sequence[str]) -> list[Example]:
        if not ids:
            return []
        if self.search_copy is not None:
            return self.search_copy.get_examples(tenant, domain, ids)
        return self.records.get_examples(tenant, domain, ids)

    def list_examples(
        self, tenant: str, domain: str, offset: int, limit: int
    ) -> tuple[list[Example], int]:
        ids = self.records.ids(tenant, domain)
        return self.get_examples(tenant, domain, ids[offset : offset + limit]), len(ids)

    def count_examples(self, tenant: str, domain: str) -> int:
        return len(self.records.ids(tenant, domain))

    def delete_example(self, tenant: str, domain: str, example_id: str) -> bool:
        if not self.records.delete_example(tenant, domain, example_id):
            return False
        if self.search_copy is not None:
            self.search_copy.removed(tenant, domain, [example_id])
        return True

    # --- search ----------------------------------------------------------------------------
    def search_words(
        self, tenant: str, domain: str, vectors: np.ndarray, limit: int
    ) -> list[list[tuple[str, int, float]]]:
        if len(vectors) == 0:
            return []
        if self.search_copy is not None:
            return self.search_copy.search_words(tenant, domain, vectors, limit, self.nprobe)
        results = self.records.search("search_words", tenant, domain, vectors, limit, self.nprobe)
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
        if self.search_copy is not None:
            hits = self.search_copy.search_sentences(tenant, domain, vector, limit, self.nprobe)
            return [Hit(example_id, similarity) for example_id, _, similarity in hits]
        results = self.records.search(
            "search_sentences", tenant, domain, vector[None, :], limit, self.nprobe
        )
        return [Hit(h["entity"]["id"], float(h["distance"])) for h in results[0]]

    # --- the search copy -------------------------------------------------------------------
    def cold_domains(self) -> list[tuple[str, str]]:
        """(tenant, domain) of every domain whose search copy is not loaded (local search)."""
        if self.search_copy is None:
            return []
        found = self.records.domains(None, "list_all_domains")
        return self.search_copy.cold([(d.tenant, d.name) for d in found])

    def warm(self, domains: Sequence[tuple[str, str]]) -> int:
        """Load these domains' search copies now (see :meth:`SearchCopy.warm`); without a copy
        there is nothing to load, and every domain counts as ready."""
        if self.search_copy is None:
            return len(domains)
        return self.search_copy.warm(domains)

    def index_params(self, tenant: str, domain: str) -> dict[str, IndexParams]:
        """The IVF parameters a domain's searches use, read back from faiss (local search only)."""
        if self.search_copy is None:
            raise ValueError("index_params needs local_search (Milvus Lite in this process)")
        return self.search_copy.index_params(tenant, domain, self.nprobe)

    # --- lifecycle -------------------------------------------------------------------------
    def ready(self) -> bool:
        return self.records.ready()

    def close(self) -> None:
        if self.search_copy is not None:
            self.search_copy.close()
        self.records.close()
