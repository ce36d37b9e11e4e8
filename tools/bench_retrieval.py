"""How much the IVF_FLAT index changes retrieval: the store's results against exact search.

python -m tools.bench_retrieval --domain music --nprobe 16 --nprobe 128

The pool (a domain's train split) is embedded once and put both in a fresh Milvus Lite store
and in an exact in-memory search over the same vectors; the same `Retriever` code ranks both,
so any difference is the index's. Per query (the first --limit test sentences) it reports the
recall of the exact word hits, and how many of the exact top-k examples the store returned,
at word and sentence level.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from app.components import build_embedder
from app.core.readers import read_split
from app.core.types import Example
from app.retrieval import QueryEmbedding, Retriever, informative_words
from app.settings import CROSSNER_DIR, Settings
from app.store.base import Hit, IndexedExample
from app.store.milvus import MilvusStore

TENANT = "bench"


class ExactSearch:
    """Brute-force cosine search over one domain's vectors (the store calls `Retriever` uses)."""

    def __init__(self, items: Sequence[IndexedExample]) -> None:
        self.examples = {i.example.id or "": i.example for i in items}
        self.sentence_ids = [i.example.id or "" for i in items]
        self.sentences = _normalised(np.stack([i.sentence_vector for i in items]))
        self.word_owner = [
            (i.example.id or "", w) for i in items for w in range(len(i.word_vectors))
        ]
        self.words = _normalised(np.concatenate([i.word_vectors for i in items]))

    def search_words(
        self, tenant: str, domain: str, vectors: np.ndarray, limit: int
    ) -> list[list[tuple[str, int, float]]]:
        similarities = _normalised(vectors) @ self.words.T
        out = []
        for row in similarities:
            best = np.argsort(-row)[:limit]
            out.append([(*self.word_owner[j], float(row[j])) for j in best])
        return out

    def search_sentences(
        self, tenant: str, domain: str, vector: np.ndarray, limit: int
    ) -> list[Hit]:
        row = self.sentences @ _normalised(vector[None, :])[0]
        return [Hit(self.sentence_ids[j], float(row[j])) for j in np.argsort(-row)[:limit]]

    def get_examples(self, tenant: str, domain: str, ids: Sequence[str]) -> list[Example]:
        return [self.examples[i] for i in ids if i in self.examples]


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _top_ids(retriever: Retriever, domain: str, query: QueryEmbedding, k: int) -> list[str]:
    found = retriever.search(TENANT, domain, query, k, exclude_same_text=True)
    return [r.example.id or "" for r in found]


def main(
    domain: Annotated[str, typer.Option(help="CrossNER domain folder.")] = "music",
    data: Annotated[Path, typer.Option(help="Dataset root.")] = CROSSNER_DIR,
    limit: Annotated[int, typer.Option(help="Test sentences used as queries.")] = 200,
    top_k: Annotated[int, typer.Option(help="Examples per prompt.")] = 5,
    nprobe: Annotated[list[int] | None, typer.Option(help="IVF clusters searched.")] = None,
    neighbour: Annotated[
        list[str] | None,
        typer.Option(help="Other domains whose train pools share the store (as in production)."),
    ] = None,
) -> None:
    settings = Settings()
    pool = read_split(data, domain, "train")
    queries = read_split(data, domain, "test")[:limit]
    embedder = build_embedder(settings)
    with tempfile.TemporaryDirectory(prefix="nerve-bench-retrieval-") as tmp:
        store = MilvusStore(
            str(Path(tmp) / "milvus.db"), embedder.dimension, nlist=settings.ivf_nlist
        )
        word_store = Retriever(embedder, store, "word", settings.word_hits)
        items = word_store.prepare(pool)
        store.add_examples(TENANT, domain, items)
        for other in neighbour or []:
            store.add_examples(TENANT, other, word_store.prepare(read_split(data, other, "train")))
        exact = ExactSearch(items)
        word_exact = Retriever(embedder, exact, "word", settings.word_hits)  # type: ignore[arg-type]
        sentence_store = Retriever(embedder, store, "sentence")
        sentence_exact = Retriever(embedder, exact, "sentence")  # type: ignore[arg-type]
        # Exact answers do not depend on nprobe: compute them once per query.
        queries_with_truth = []
        for q in queries:
            word_query = word_store.embed_query(q.text)
            sentence_query = sentence_store.embed_query(q.text)
            assert word_query.words is not None
            keep = informative_words([w.text for w in word_query.words.words])
            vectors = word_query.words.vectors[keep]
            true_hits = [
                {(e, w) for e, w, _ in hits}
                for hits in exact.search_words(TENANT, domain, vectors, settings.word_hits)
            ]
            true_words = set(_top_ids(word_exact, domain, word_query, top_k))
            true_sentences = set(_top_ids(sentence_exact, domain, sentence_query, top_k))
            queries_with_truth.append(
                (word_query, sentence_query, vectors, true_hits, true_words, true_sentences)
            )

        table = Table(
            title=f"{domain}: IVF_FLAT vs exact ({len(pool)} pool sentences, "
            f"{len(exact.word_owner)} words, nlist {settings.ivf_nlist}; "
            f"store shared with: {', '.join(neighbour or []) or 'none'})"
        )
        for column in (
            "nprobe",
            "queries",
            f"word hits recall@{settings.word_hits}",
            f"word top-{top_k} overlap",
            f"sentence top-{top_k} overlap",
        ):
            table.add_column(column, justify="right")
        for probes in nprobe or [settings.ivf_nprobe]:
            store.nprobe = probes
            hits_found = hits_total = word_same = word_total = sentence_same = sentence_total = 0
            for (
                word_query,
                sentence_query,
                vectors,
                true_hits,
                true_words,
                true_sentences,
            ) in queries_with_truth:
                got = store.search_words(TENANT, domain, vectors, settings.word_hits)
                for got_hits, true_pairs in zip(got, true_hits, strict=True):
                    hits_found += len(true_pairs & {(e, w) for e, w, _ in got_hits})
                    hits_total += len(true_pairs)
                word_same += len(true_words & set(_top_ids(word_store, domain, word_query, top_k)))
                word_total += len(true_words)
                found = set(_top_ids(sentence_store, domain, sentence_query, top_k))
                sentence_same += len(true_sentences & found)
                sentence_total += len(true_sentences)
            table.add_row(
                str(probes),
                str(len(queries_with_truth)),
                f"{100 * hits_found / max(hits_total, 1):.1f}%",
                f"{100 * word_same / max(word_total, 1):.1f}%",
                f"{100 * sentence_same / max(sentence_total, 1):.1f}%",
            )
        store.close()
    Console().print(table)


if __name__ == "__main__":
    typer.run(main)
