"""How much the IVF_FLAT index changes retrieval: the store's results against exact search.

python -m tools.bench_retrieval --domain music --nprobe 16 --nprobe 128
python -m tools.bench_retrieval --pool-size 100 --pool-size 1000 --nprobe 16 --nprobe 32

With --pool-size, one synthetic domain per size is measured instead (see `scaling`): retrieval
time per query sentence, recall against exact search, the index parameters used, ingest time
and memory.

The pool (a domain's train split) is embedded once and put both in a fresh Milvus Lite store
and in an exact in-memory search over the same vectors; the same `Retriever` code ranks both,
so any difference is the index's. Per query (the first --limit test sentences) it reports the
recall of the exact word hits, and how many of the exact top-k examples the store returned,
at word and sentence level.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from app.components import build_embedder
from nerve.data.readers import read_split
from nerve.retrieval.retriever import QueryEmbedding, Retriever, informative_words
from nerve.retrieval.store.base import Hit, IndexedExample
from nerve.retrieval.store.local_index import DomainIndex, IndexParams
from nerve.retrieval.store.milvus import MilvusStore
from nerve.settings import CROSSNER_DIR, Settings
from nerve.vocab.types import Example

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
            top = (
                np.argpartition(-row, limit - 1)[:limit]
                if limit < len(row)
                else np.arange(len(row))
            )
            best = top[np.argsort(-row[top], kind="stable")]
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


SYNTHETIC_DOMAINS = ("politics", "science", "music", "literature", "ai")
NOISE = 0.3  # norm of the noise added to each copied unit vector: cosine to the original ~0.96


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def embedded_cached(
    retriever: Retriever, examples: Sequence[Example], cache: Path | None
) -> list[IndexedExample]:
    """``retriever.prepare(examples)``, saved to / read from ``cache`` (an .npz: the sentence
    vectors, all word vectors and each sentence's word count), so that a large real pool is
    embedded once. A cache made from other texts is refused."""
    digest = hashlib.sha256("\n".join(e.text for e in examples).encode()).hexdigest()
    if cache is not None and cache.exists():
        saved = np.load(cache)
        if str(saved["digest"]) != digest:
            raise ValueError(f"{cache} was embedded from other sentences: delete it")
        # Each ``saved[name]`` reads the whole array again: read each once (indexing
        # ``saved["words"]`` per sentence kept 14k copies of 310 MB alive and ran out of memory).
        sentences, words = saved["sentences"], saved["words"]
        bounds = np.concatenate([[0], np.cumsum(saved["lengths"])])
        return [
            IndexedExample(e, sentences[n], words[bounds[n] : bounds[n + 1]])
            for n, e in enumerate(examples)
        ]
    items = retriever.prepare(examples)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            cache,
            digest=np.array(digest),
            sentences=np.stack([i.sentence_vector for i in items]).astype(np.float32),
            words=np.concatenate([i.word_vectors for i in items]).astype(np.float32),
            lengths=np.array([len(i.word_vectors) for i in items], dtype=np.int64),
        )
    return items


def synthetic_pool(
    base: Sequence[IndexedExample], size: int, rng: np.random.Generator
) -> list[IndexedExample]:
    """``size`` sentences drawn with replacement from ``base``; every copy's vectors get noise
    of norm NOISE and are renormalised, so that no two pool vectors are equal (exact search
    then has one answer, and the IVF lists are not filled with duplicates)."""

    def jitter(vectors: np.ndarray) -> np.ndarray:
        noise = rng.normal(size=vectors.shape).astype(np.float32)
        noise *= NOISE / np.sqrt(vectors.shape[-1])
        return _normalised(
            vectors.reshape(-1, vectors.shape[-1]) + noise.reshape(-1, noise.shape[-1])
        )

    pool = []
    for n, pick in enumerate(rng.integers(0, len(base), size)):
        source = base[pick]
        example = source.example.model_copy(update={"id": f"s{n}"})
        pool.append(
            IndexedExample(example, jitter(source.sentence_vector)[0], jitter(source.word_vectors))
        )
    return pool


class CopyOnly:
    """A domain's in-process search copy (what `MilvusStore` searches with Milvus Lite) built
    straight from the vectors, without Milvus: for pools too big to ingest through Milvus Lite
    here. The same `DomainIndex` code, so the same search path and parameters."""

    def __init__(self, items: Sequence[IndexedExample], nlist_per_sqrt: float, nprobe: int) -> None:
        self.index = DomainIndex(items[0].word_vectors.shape[1], nlist_per_sqrt)
        self.nprobe = nprobe
        for item in items:
            self.index.add(item.example, item.sentence_vector, item.word_vectors)

    def search_words(
        self, tenant: str, domain: str, vectors: np.ndarray, limit: int
    ) -> list[list[tuple[str, int, float]]]:
        return self.index.search_words(np.asarray(vectors), limit, self.nprobe)

    def search_sentences(
        self, tenant: str, domain: str, vector: np.ndarray, limit: int
    ) -> list[Hit]:
        hits = self.index.search_sentences(np.asarray(vector), limit, self.nprobe)
        return [Hit(example_id, similarity) for example_id, _, similarity in hits]

    def get_examples(self, tenant: str, domain: str, ids: Sequence[str]) -> list[Example]:
        return self.index.get(ids)

    def index_params(self, tenant: str, domain: str) -> dict[str, IndexParams]:
        return self.index.params(self.nprobe)


def copy_mb(index: DomainIndex) -> float:
    """Bytes the copy's word and sentence columns hold, counted from its arrays: the vector
    matrix, faiss' inverted lists (vectors + 8-byte ids) and centroids."""
    total = 0
    for column in (index.words, index.sentences):
        total += sum(c.nbytes for c in column.chunks)
        if column.index is not None:
            ivf = column.index.index
            total += ivf.ntotal * (ivf.code_size + 8) + ivf.nlist * ivf.d * 4
    return total / 2**20


def real_or_synthetic_pool(
    base: Sequence[IndexedExample], size: int, rng: np.random.Generator, real: bool
) -> tuple[list[IndexedExample], str]:
    """The first ``size`` real sentences when ``real`` and there are enough; else noisy copies."""
    if real and size <= len(base):
        return list(base[:size]), "real"
    return synthetic_pool(base, size, rng), "synthetic"


def scaling(
    embedder: object,
    settings: Settings,
    data: Path,
    sizes: Sequence[int],
    queries: Sequence[Example],
    top_k: int,
    nprobes: Sequence[int],
    milvus_search_up_to: int,
    output: Path | None,
    base_splits: Sequence[str] = ("train", "dev"),
    base_domains: Sequence[str] = SYNTHETIC_DOMAINS,
    cache: Path | None = None,
    real: bool = False,
    milvus_up_to: int = 10**9,
    nlist_per_sqrt: float = 4.0,
) -> None:
    """Per pool size: ingest into a fresh Milvus Lite store (or, above ``milvus_up_to``, build
    its search copy straight from the vectors), then time `Retriever.search` (the query's word
    vectors are computed beforehand: embedding is not timed) and compare it with exact search."""
    retriever = Retriever(embedder, None, "word", settings.retrieval.word_hits)  # type: ignore[arg-type]
    base_examples = [
        e for d in base_domains for split in base_splits for e in read_split(data, d, split)
    ]
    started = time.perf_counter()
    base = embedded_cached(retriever, base_examples, cache)
    embedded = [retriever.embed_query(q.text) for q in queries]
    Console().print(
        f"embedded {len(base)} base sentences and {len(queries)} queries in "
        f"{time.perf_counter() - started:.0f} s"
    )
    rng = np.random.default_rng(0)
    table = Table(title="Word-level retrieval per query sentence (embedding excluded)")
    for column in (
        "pool sentences",
        "pool",
        "word vectors",
        "store",
        "ingest s",
        "ingest rows/s",
        "copy build s",
        "nlist",
        "nprobe",
        "median ms",
        "p95 ms",
        "CPU median ms",
        f"word hits recall@{settings.retrieval.word_hits}",
        f"top-{top_k} overlap",
        "Milvus Lite search median ms",
        "RSS delta MB",
        "copy MB",
        "disk MB",
    ):
        table.add_column(column, justify="right")
    for size in sizes:
        pool, kind = real_or_synthetic_pool(base, size, rng, real)
        with tempfile.TemporaryDirectory(prefix="nerve-bench-scaling-") as tmp:
            rss_before = _rss_mb()
            store: MilvusStore | CopyOnly
            started = time.perf_counter()
            if size <= milvus_up_to:
                store = MilvusStore(
                    str(Path(tmp) / "milvus.db"),
                    embedder.dimension,  # type: ignore[attr-defined]
                    nlist=settings.milvus.ivf_nlist,
                    timeout_s=settings.milvus.timeout_s,
                    nlist_per_sqrt=nlist_per_sqrt,
                )
                for start in range(0, len(pool), settings.max_examples_per_upload):
                    store.add_examples(
                        TENANT, "synthetic", pool[start : start + settings.max_examples_per_upload]
                    )
                ingest_s: float | None = time.perf_counter() - started
                started = time.perf_counter()
            else:  # the copy alone: its build is the add below plus the index
                store = CopyOnly(pool, nlist_per_sqrt, settings.milvus.ivf_nprobe)
                ingest_s = None
            params = store.index_params(TENANT, "synthetic")["words"]
            build_s = time.perf_counter() - started
            rss_after = _rss_mb()
            copy_of = store.search_copy if isinstance(store, MilvusStore) else None
            local = copy_of.index(TENANT, "synthetic") if copy_of is not None else None
            copy = copy_mb(local if local is not None else store.index)  # type: ignore[union-attr]
            rows = params.vectors + len(pool)
            exact = ExactSearch(pool)
            word_store = Retriever(embedder, store, "word", settings.retrieval.word_hits)  # type: ignore[arg-type]
            word_exact = Retriever(embedder, exact, "word", settings.retrieval.word_hits)  # type: ignore[arg-type]
            truths = []
            for query in embedded:
                assert query.words is not None
                keep = informative_words([w.text for w in query.words.words])
                vectors = query.words.vectors[keep]
                hits = exact.search_words(
                    TENANT, "synthetic", vectors, settings.retrieval.word_hits
                )
                truths.append(
                    (
                        vectors,
                        [{(e, w) for e, w, _ in h} for h in hits],
                        set(_top_ids(word_exact, "synthetic", query, top_k)),
                    )
                )
            del exact, word_exact
            milvus_ms = "not run"
            if size <= min(milvus_search_up_to, milvus_up_to):
                lite = MilvusStore(
                    str(Path(tmp) / "milvus.db"),
                    embedder.dimension,  # type: ignore[attr-defined]
                    nlist=settings.milvus.ivf_nlist,
                    timeout_s=settings.milvus.timeout_s,
                    nprobe=settings.milvus.ivf_nprobe,
                    local_search=False,
                )
                lite_retriever = Retriever(embedder, lite, "word", settings.retrieval.word_hits)  # type: ignore[arg-type]
                times = []
                for query in embedded[:20]:
                    t = time.perf_counter()
                    lite_retriever.search(TENANT, "synthetic", query, top_k, exclude_same_text=True)
                    times.append(1000 * (time.perf_counter() - t))
                milvus_ms = f"{statistics.median(times):.0f}"
            for probes in nprobes:
                store.nprobe = probes
                params = store.index_params(TENANT, "synthetic")["words"]
                times, cpu, found, total, same, wanted = [], [], 0, 0, 0, 0
                for query, (vectors, true_hits, true_top) in zip(embedded, truths, strict=True):
                    t, c = time.perf_counter(), time.thread_time()
                    got = word_store.search(
                        TENANT, "synthetic", query, top_k, exclude_same_text=True
                    )
                    times.append(1000 * (time.perf_counter() - t))
                    cpu.append(1000 * (time.thread_time() - c))
                    same += len(true_top & {r.example.id or "" for r in got})
                    wanted += len(true_top)
                    for got_hits, true_pairs in zip(
                        store.search_words(
                            TENANT, "synthetic", vectors, settings.retrieval.word_hits
                        ),
                        true_hits,
                        strict=True,
                    ):
                        found += len(true_pairs & {(e, w) for e, w, _ in got_hits})
                        total += len(true_pairs)
                row = {
                    "pool_sentences": size,
                    "pool": kind,
                    "word_vectors": params.vectors,
                    "store": "Milvus Lite" if ingest_s is not None else "copy only",
                    "ingest_s": None if ingest_s is None else round(ingest_s, 1),
                    "ingest_rows_per_s": None if ingest_s is None else round(rows / ingest_s),
                    "copy_build_s": round(build_s, 1),
                    "nlist": params.nlist,
                    "nprobe": params.nprobe,
                    "median_ms": round(statistics.median(times), 2),
                    "p95_ms": round(float(np.percentile(times, 95)), 2),
                    "cpu_median_ms": round(statistics.median(cpu), 2),
                    "word_hits_recall": round(100 * found / max(total, 1), 1),
                    "top_k_overlap": round(100 * same / max(wanted, 1), 1),
                    "milvus_lite_search_median_ms": milvus_ms,
                    "rss_delta_mb": round(rss_after - rss_before),
                    "copy_mb": round(copy),
                    "disk_mb": round(_disk_mb(Path(tmp))),
                    "queries": len(embedded),
                    "top_k": top_k,
                    "word_hits": settings.retrieval.word_hits,
                }
                table.add_row(*(str(v) for v in list(row.values())[:18]))
                Console().print(row)
                if output is not None:
                    with output.open("a") as f:
                        f.write(json.dumps(row) + "\n")
            if isinstance(store, MilvusStore):
                store.close()
    Console().print(table)


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
    pool_size: Annotated[
        list[int] | None,
        typer.Option(help="Measure synthetic pools of these sizes (sentences) instead."),
    ] = None,
    milvus_search_up_to: Annotated[
        int, typer.Option(help="Also time Milvus Lite's own search up to this pool size.")
    ] = 1_000,
    output: Annotated[Path | None, typer.Option(help="Append the rows here (JSON lines).")] = None,
    local_search: Annotated[
        bool,
        typer.Option(help="Search the in-process copy (default) or Milvus Lite's own search."),
    ] = True,
    base_split: Annotated[
        list[str] | None,
        typer.Option(help="Splits of the five CrossNER domains the synthetic pools draw from."),
    ] = None,
    base_domain: Annotated[
        list[str] | None,
        typer.Option(help="Domains the pools draw from (default: the five CrossNER domains)."),
    ] = None,
    embeddings_cache: Annotated[
        Path | None,
        typer.Option(help="An .npz holding the base sentences' vectors (made on first use)."),
    ] = None,
    real: Annotated[
        bool,
        typer.Option(help="Pools up to the base's size are its first N real sentences."),
    ] = False,
    milvus_up_to: Annotated[
        int,
        typer.Option(help="Larger pools skip Milvus: the search copy is built from the vectors."),
    ] = 10**9,
    nlist_per_sqrt: Annotated[
        float, typer.Option(help="IVF lists of the search copy per sqrt(vectors).")
    ] = 4.0,
) -> None:
    settings = Settings()
    if pool_size:
        queries = read_split(data, domain, "test")[:limit]
        scaling(
            build_embedder(settings),
            settings,
            data,
            pool_size,
            queries,
            top_k,
            nprobe or [settings.milvus.ivf_nprobe],
            milvus_search_up_to,
            output,
            base_split or ["train", "dev"],
            base_domain or list(SYNTHETIC_DOMAINS),
            embeddings_cache,
            real,
            milvus_up_to,
            nlist_per_sqrt,
        )
        return
    pool = read_split(data, domain, "train")
    queries = read_split(data, domain, "test")[:limit]
    embedder = build_embedder(settings)
    with tempfile.TemporaryDirectory(prefix="nerve-bench-retrieval-") as tmp:
        store = MilvusStore(
            str(Path(tmp) / "milvus.db"),
            embedder.dimension,
            nlist=settings.milvus.ivf_nlist,
            timeout_s=settings.milvus.timeout_s,
            local_search=local_search,
        )
        word_store = Retriever(embedder, store, "word", settings.retrieval.word_hits)
        items = word_store.prepare(pool)
        store.add_examples(TENANT, domain, items)
        for other in neighbour or []:
            store.add_examples(TENANT, other, word_store.prepare(read_split(data, other, "train")))
        exact = ExactSearch(items)
        word_exact = Retriever(embedder, exact, "word", settings.retrieval.word_hits)  # type: ignore[arg-type]
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
                for hits in exact.search_words(
                    TENANT, domain, vectors, settings.retrieval.word_hits
                )
            ]
            true_words = set(_top_ids(word_exact, domain, word_query, top_k))
            true_sentences = set(_top_ids(sentence_exact, domain, sentence_query, top_k))
            queries_with_truth.append(
                (word_query, sentence_query, vectors, true_hits, true_words, true_sentences)
            )

        nlist = (
            f"{store.index_params(TENANT, domain)['words'].nlist} in process (read back from faiss)"
            if local_search
            else f"{settings.milvus.ivf_nlist} per Milvus Lite segment"
        )
        table = Table(
            title=f"{domain}: IVF_FLAT vs exact ({len(pool)} pool sentences, "
            f"{len(exact.word_owner)} words, nlist {nlist}; "
            f"store shared with: {', '.join(neighbour or []) or 'none'})"
        )
        for column in (
            "nprobe",
            "queries",
            f"word hits recall@{settings.retrieval.word_hits}",
            f"word top-{top_k} overlap",
            f"sentence top-{top_k} overlap",
            "word-level search median ms",
            "p95 ms",
        ):
            table.add_column(column, justify="right")
        for probes in nprobe or [settings.milvus.ivf_nprobe]:
            store.nprobe = probes
            hits_found = hits_total = word_same = word_total = sentence_same = sentence_total = 0
            times = []
            for (
                word_query,
                sentence_query,
                vectors,
                true_hits,
                true_words,
                true_sentences,
            ) in queries_with_truth:
                got = store.search_words(TENANT, domain, vectors, settings.retrieval.word_hits)
                for got_hits, true_pairs in zip(got, true_hits, strict=True):
                    hits_found += len(true_pairs & {(e, w) for e, w, _ in got_hits})
                    hits_total += len(true_pairs)
                started = time.perf_counter()  # Retriever.search on the embedded query
                top = _top_ids(word_store, domain, word_query, top_k)
                times.append(1000 * (time.perf_counter() - started))
                word_same += len(true_words & set(top))
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
                f"{statistics.median(times):.1f}",
                f"{np.percentile(times, 95):.1f}",
            )
        store.close()
    Console().print(table)


if __name__ == "__main__":
    typer.run(main)
