"""The vector-store interface: domains, their examples, and similarity search over them.

Every call is scoped by tenant: a store never returns another tenant's rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from nerve.vocab.types import Domain, Example


@dataclass(frozen=True)
class IndexedExample:
    """An example ready for the store: its sentence vector and one vector per word."""

    example: Example
    sentence_vector: np.ndarray
    word_vectors: np.ndarray


@dataclass(frozen=True)
class Hit:
    example_id: str
    score: float


class VectorStore(Protocol):
    name: str

    def put_domain(self, domain: Domain) -> None:
        """Create or replace a domain's record (not its examples)."""
        ...

    def get_domain(self, tenant: str, name: str) -> Domain | None: ...

    def list_domains(self, tenant: str) -> list[Domain]: ...

    def delete_domain(self, tenant: str, name: str) -> int:
        """Delete the domain and all its examples; returns how many examples went."""
        ...

    def add_examples(self, tenant: str, domain: str, items: Sequence[IndexedExample]) -> list[str]:
        """Store examples (all or none), flushed and searchable on return; returns their ids."""
        ...

    def get_examples(self, tenant: str, domain: str, ids: Sequence[str]) -> list[Example]:
        """The examples with these ids, in the order of ``ids`` (missing ones skipped)."""
        ...

    def list_examples(
        self, tenant: str, domain: str, offset: int, limit: int
    ) -> tuple[list[Example], int]:
        """A page of a domain's examples (oldest first) and the domain's total count."""
        ...

    def count_examples(self, tenant: str, domain: str) -> int: ...

    def delete_example(self, tenant: str, domain: str, example_id: str) -> bool: ...

    def search_words(
        self, tenant: str, domain: str, vectors: np.ndarray, limit: int
    ) -> list[list[tuple[str, int, float]]]:
        """For each query word vector, the nearest pool words: (example id, word index, cosine)."""
        ...

    def search_sentences(
        self, tenant: str, domain: str, vector: np.ndarray, limit: int
    ) -> list[Hit]: ...

    def cold_domains(self) -> list[tuple[str, str]]:
        """(tenant, domain) of the domains whose searches would first load something into
        memory (none for a store that keeps nothing in memory)."""
        ...

    def warm(self, domains: Sequence[tuple[str, str]]) -> int:
        """Load what these domains' searches read (at start-up, so that no request waits for
        it); how many were loaded."""
        ...

    def ready(self) -> bool: ...

    def close(self) -> None: ...
