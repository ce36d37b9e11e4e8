"""In-process search over one domain's vectors, for the embedded Milvus Lite.

Why: Milvus Lite 3.2 is pure Python, and its search builds every hit's whole row, 384-float
vector included, one pyarrow scalar at a time (~2.6 ms a hit here), and walks every row of the
searched segments in Python to build its validity mask. A word-level query asks for ~20 words x
16 hits, so a query cost 600 ms on a 100-sentence pool and grows with the pool
(docs/history/benchmarks.md, "Retrieval speed"). Milvus stays the store (durable, the one writer of the
data directory); searches read a copy of a domain's vectors held here, in a faiss IVF_FLAT index
sized to the pool. The copy is correct because Milvus Lite's data directory is locked by one
process: every write goes through this process's
:class:`~nerve.retrieval.store.search_copy.SearchCopy`, which updates the copy after Milvus
accepted the write.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from nerve.vocab.types import Example

# faiss warns below 39 training points per centroid: its k-means is unreliable there.
MIN_POINTS_PER_CENTROID = 39
# k-means trains on at most this many points per centroid (a sample): enough for the centroids,
# and it bounds the build time of a large pool.
MAX_POINTS_PER_CENTROID = 64
KMEANS_ITERATIONS = 10
# Rebuild (retrain) once the pool has grown this much since the centroids were trained; smaller
# additions go into the existing lists.
RETRAIN_GROWTH = 2.0


def scaled_nlist(vectors: int, per_sqrt: float) -> int:
    """IVF lists for a pool of ``vectors``: ``per_sqrt * sqrt(n)``, at least 39 points a list."""
    if vectors <= 0:
        return 1
    wanted = round(per_sqrt * math.sqrt(vectors))
    return max(1, min(wanted, vectors // MIN_POINTS_PER_CENTROID))


@dataclass(frozen=True)
class IndexParams:
    """What the index really uses (read back from faiss, not what was asked)."""

    vectors: int
    nlist: int
    nprobe: int


class IvfFlat:
    """A faiss IVF_FLAT inner-product index over L2-normalised vectors (inner product = cosine)."""

    def __init__(self, dimension: int, vectors: np.ndarray, nlist: int) -> None:
        import faiss

        self.dimension = dimension
        quantizer = faiss.IndexFlatIP(dimension)
        self.index = faiss.IndexIVFFlat(quantizer, dimension, nlist, faiss.METRIC_INNER_PRODUCT)
        self.index.cp.niter = KMEANS_ITERATIONS
        self.index.cp.min_points_per_centroid = 1  # nlist is already bounded by scaled_nlist
        self.index.cp.max_points_per_centroid = MAX_POINTS_PER_CENTROID
        self.index.cp.seed = 1234
        self.trained_on = len(vectors)
        if len(vectors):
            self.index.train(vectors)
            self.index.add(vectors)

    @property
    def nlist(self) -> int:
        return int(self.index.nlist)

    def add(self, vectors: np.ndarray) -> None:
        self.index.add(vectors)

    def search(self, queries: np.ndarray, limit: int, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, positions), each (len(queries), limit); position -1 = no hit."""
        import faiss

        # faiss' stubs miss the keyword constructor of its parameter structs.
        params = faiss.SearchParametersIVF(nprobe=min(nprobe, self.nlist))  # type: ignore[call-arg]
        return self.index.search(queries, limit, params=params)


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


@dataclass
class _Column:
    """Vectors with the owner of each row, and the IVF index over them (built when searched)."""

    dimension: int
    chunks: list[np.ndarray] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)  # word index (0 for sentences)
    index: IvfFlat | None = None
    indexed: int = 0  # rows of ``chunks`` already in ``index``

    def append(self, vectors: np.ndarray, owner: str, positions: Iterable[int]) -> None:
        self.chunks.append(_normalised(vectors.reshape(-1, self.dimension)))
        self.owners.extend([owner] * len(self.chunks[-1]))
        self.positions.extend(positions)

    def matrix(self) -> np.ndarray:
        if len(self.chunks) > 1:
            self.chunks = [np.concatenate(self.chunks)]
        return self.chunks[0] if self.chunks else np.zeros((0, self.dimension), np.float32)

    def remove(self, owners: set[str]) -> None:
        keep = [i for i, owner in enumerate(self.owners) if owner not in owners]
        self.chunks = [self.matrix()[keep]]
        self.owners = [self.owners[i] for i in keep]
        self.positions = [self.positions[i] for i in keep]
        self.index = None

    def ready_index(self, per_sqrt: float) -> IvfFlat:
        rows = len(self.owners)
        if self.index is None or rows > RETRAIN_GROWTH * max(self.index.trained_on, 1):
            self.index = IvfFlat(self.dimension, self.matrix(), scaled_nlist(rows, per_sqrt))
            self.indexed = rows
        elif self.indexed < rows:
            self.index.add(self.matrix()[self.indexed :])
            self.indexed = rows
        return self.index


class DomainIndex:
    """One (tenant, domain): its examples, their sentence and word vectors, and the IVF indexes."""

    def __init__(self, dimension: int, nlist_per_sqrt: float) -> None:
        self.dimension = dimension
        self.nlist_per_sqrt = nlist_per_sqrt
        self.examples: dict[str, Example] = {}
        self.words = _Column(dimension)
        self.sentences = _Column(dimension)
        self.lock = threading.RLock()

    def add(self, example: Example, sentence_vector: np.ndarray, word_vectors: np.ndarray) -> None:
        example_id = example.id or ""
        with self.lock:
            self.examples[example_id] = example
            self.sentences.append(sentence_vector, example_id, [0])
            self.words.append(word_vectors, example_id, range(len(word_vectors)))

    def remove(self, example_ids: Iterable[str]) -> None:
        with self.lock:
            gone = {i for i in example_ids if i in self.examples}
            if not gone:
                return
            for example_id in gone:
                del self.examples[example_id]
            self.words.remove(gone)
            self.sentences.remove(gone)

    def get(self, ids: Sequence[str]) -> list[Example]:
        # Copies, so that a caller editing an example does not change the pool (spans are frozen
        # and shared; a pydantic deep copy costs ~0.3 ms an example).
        with self.lock:
            found = [self.examples[i] for i in ids if i in self.examples]
        return [
            Example.model_construct(text=e.text, entities=list(e.entities), id=e.id) for e in found
        ]

    def search_words(
        self, vectors: np.ndarray, limit: int, nprobe: int
    ) -> list[list[tuple[str, int, float]]]:
        return self._search(self.words, vectors, limit, nprobe)

    def search_sentences(
        self, vector: np.ndarray, limit: int, nprobe: int
    ) -> list[tuple[str, int, float]]:
        return self._search(self.sentences, vector[None, :], limit, nprobe)[0]

    def params(self, nprobe: int) -> dict[str, IndexParams]:
        """The parameters the word and sentence indexes use (built if stale)."""
        out = {}
        for name, column in (("words", self.words), ("sentences", self.sentences)):
            with self.lock:
                index = column.ready_index(self.nlist_per_sqrt)
            out[name] = IndexParams(len(column.owners), index.nlist, min(nprobe, index.nlist))
        return out

    def _search(
        self, column: _Column, queries: np.ndarray, limit: int, nprobe: int
    ) -> list[list[tuple[str, int, float]]]:
        if not column.owners or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        # One lock for reads and writes: faiss must not add to an index while it searches it,
        # and a search takes milliseconds.
        with self.lock:
            index = column.ready_index(self.nlist_per_sqrt)
            owners, positions = column.owners, column.positions
            similarities, rows = index.search(_normalised(queries), limit, nprobe)
        out = []
        for sims, hits in zip(similarities.tolist(), rows.tolist(), strict=True):
            out.append(
                [(owners[j], positions[j], s) for s, j in zip(sims, hits, strict=True) if j >= 0]
            )
        return out
