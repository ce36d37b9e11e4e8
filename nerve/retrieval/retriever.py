"""Retrieval of the labelled examples most similar to a query (IF-WRANER's word-level RAG).

Word level (default): every word of the query is searched in one batched call among the pool's
word vectors; an example's score is the mean, over the query's words, of its best word
similarity (0 when none of its words is among that query word's hits). Sentence level (for
comparison): one vector per sentence.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from nerve.retrieval.embedding.base import Embedder, WordVectors
from nerve.retrieval.store.base import IndexedExample, VectorStore
from nerve.vocab.types import Example
from nerve.vocab.words import same_text_key

RetrievalMode = Literal["word", "sentence"]

# Function words and punctuation match their like in every sentence: they carry no signal, and
# each searched word costs a Milvus search (Milvus Lite's cost grows with the hits returned).
_STOPWORD_TEXT = (
    "a an the of in on at to for from by with and or but is are was were be been has "
    "have had it its this that these those as which who whom whose he she they we you "
    "i his her their our s 's not no also than then there here into over after before "
    "during about"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def informative_words(words: Sequence[str]) -> list[int]:
    """Indices of the query words worth searching: first occurrences of content words."""
    seen: set[str] = set()
    keep: list[int] = []
    for index, word in enumerate(words):
        key = word.lower()
        if key in seen or key in _STOPWORDS or not any(c.isalnum() for c in word):
            continue
        seen.add(key)
        keep.append(index)
    if not keep:  # all function words: search them all rather than nothing
        keep = list(range(len(words)))
    return keep


@dataclass(frozen=True)
class Retrieved:
    example: Example
    score: float


@dataclass(frozen=True)
class QueryEmbedding:
    text: str
    words: WordVectors | None
    sentence: np.ndarray | None


@dataclass(frozen=True)
class Search:
    """One query's search: its ``k`` best examples, without ``exclude_ids`` and (when
    ``exclude_same_text``) without examples of the query's own text."""

    query: QueryEmbedding
    k: int
    exclude_ids: tuple[str, ...] = ()
    exclude_same_text: bool = False


class Retriever:
    def __init__(
        self,
        embedder: Embedder,
        store: VectorStore,
        mode: RetrievalMode = "word",
        word_hits: int = 16,
    ) -> None:
        self.embedder = embedder
        self.store = store
        self.mode: RetrievalMode = mode
        self.word_hits = word_hits

    # --- ingest ----------------------------------------------------------------------------
    def prepare(self, examples: Sequence[Example], batch_size: int = 256) -> list[IndexedExample]:
        """Embed examples for the store (sentence vector + word vectors)."""
        items: list[IndexedExample] = []
        for start in range(0, len(examples), batch_size):
            batch = examples[start : start + batch_size]
            texts = [e.text for e in batch]
            sentences = self.embedder.embed_sentences(texts)
            words = self.embedder.embed_words(texts)
            items.extend(
                IndexedExample(example, sentence, word.vectors)
                for example, sentence, word in zip(batch, sentences, words, strict=True)
            )
        return items

    def index(self, tenant: str, domain: str, examples: Sequence[Example]) -> list[str]:
        """Embed and store ``examples`` (all or none); returns their ids."""
        return self.store.add_examples(tenant, domain, self.prepare(examples))

    # --- query -----------------------------------------------------------------------------
    def embed_query(self, text: str) -> QueryEmbedding:
        return self.embed_queries([text])[0]

    def embed_queries(self, texts: Sequence[str]) -> list[QueryEmbedding]:
        """Each text's query embedding, with one embedder call for all of them."""
        if self.mode == "word":
            words = self.embedder.embed_words(list(texts))
            return [QueryEmbedding(t, w, None) for t, w in zip(texts, words, strict=True)]
        vectors = self.embedder.embed_sentences(list(texts))
        return [QueryEmbedding(t, None, v) for t, v in zip(texts, vectors, strict=True)]

    def search(
        self,
        tenant: str,
        domain: str,
        query: QueryEmbedding,
        k: int,
        *,
        exclude_ids: Sequence[str] = (),
        exclude_same_text: bool = False,
    ) -> list[Retrieved]:
        """The ``k`` best distinct examples, best first."""
        search = Search(query, k, tuple(exclude_ids), exclude_same_text)
        return self.search_many(tenant, domain, [search])[0]

    def search_many(
        self, tenant: str, domain: str, searches: Sequence[Search]
    ) -> list[list[Retrieved]]:
        """Each search's :meth:`search` result, with one vector-store search for all of their
        words (word level); the same examples as one :meth:`search` per query."""
        wanted = [s for s in searches if s.k > 0]
        # Fetch extra candidates so that exclusions still leave k.
        fetch = [s.k + len(s.exclude_ids) + (2 if s.exclude_same_text else 0) for s in wanted]
        scores = (
            self._word_scores(tenant, domain, [s.query for s in wanted], fetch)
            if self.mode == "word"
            else [
                self._sentence_scores(tenant, domain, s.query, n)
                for s, n in zip(wanted, fetch, strict=True)
            ]
        )
        found = iter(
            [
                self._best(tenant, domain, s, n, scored)
                for s, n, scored in zip(wanted, fetch, scores, strict=True)
            ]
        )
        return [next(found) if s.k > 0 else [] for s in searches]

    def _best(
        self, tenant: str, domain: str, search: Search, fetch: int, scored: dict[str, float]
    ) -> list[Retrieved]:
        excluded = set(search.exclude_ids)
        ranked = [
            (i, s) for i, s in sorted(scored.items(), key=lambda kv: -kv[1]) if i not in excluded
        ]
        wanted = ranked[:fetch]
        examples = self.store.get_examples(tenant, domain, [i for i, _ in wanted])
        score_of = dict(wanted)
        query_key = same_text_key(search.query.text)
        out = [
            Retrieved(e, score_of[e.id or ""])
            for e in examples
            if not (search.exclude_same_text and same_text_key(e.text) == query_key)
        ]
        return out[: search.k]

    def retrieve(
        self,
        tenant: str,
        domain: str,
        text: str,
        k: int,
        *,
        exclude_ids: Sequence[str] = (),
        exclude_same_text: bool = False,
    ) -> list[Retrieved]:
        return self.search(
            tenant,
            domain,
            self.embed_query(text),
            k,
            exclude_ids=exclude_ids,
            exclude_same_text=exclude_same_text,
        )

    def _word_scores(
        self, tenant: str, domain: str, queries: Sequence[QueryEmbedding], fetch: Sequence[int]
    ) -> list[dict[str, float]]:
        """Each query's example scores, from one store search over all the queries' words."""
        keeps: list[list[int]] = []
        vectors: list[np.ndarray] = []
        for query in queries:
            assert query.words is not None
            keeps.append(informative_words([w.text for w in query.words.words]))
            vectors.append(query.words.vectors[keeps[-1]])
        limits = [max(self.word_hits, n) for n in fetch]
        rows = sum(len(keep) for keep in keeps)
        hits = (
            self.store.search_words(tenant, domain, np.concatenate(vectors), max(limits))
            if rows
            else []
        )
        out: list[dict[str, float]] = []
        first = 0
        for keep, limit in zip(keeps, limits, strict=True):
            mine = hits[first : first + len(keep)]
            first += len(keep)
            totals: dict[str, float] = defaultdict(float)
            for word_hits in mine:
                # Hits come best first: the top ``limit`` of a larger search are this query's.
                best: dict[str, float] = {}
                for example_id, _, similarity in word_hits[:limit]:
                    if similarity > best.get(example_id, -1.0):
                        best[example_id] = similarity
                for example_id, similarity in best.items():
                    totals[example_id] += similarity
            out.append({i: total / len(keep) for i, total in totals.items()} if keep else {})
        return out

    def _sentence_scores(
        self, tenant: str, domain: str, query: QueryEmbedding, k: int
    ) -> dict[str, float]:
        assert query.sentence is not None
        return {
            h.example_id: h.score
            for h in self.store.search_sentences(tenant, domain, query.sentence, k)
        }
