"""The in-process search copy of Milvus Lite domains: its IVF index really has the lists it was
sized for (faiss is read back, not trusted), it returns what Milvus' own exact search returns, it
follows every write, and a reopened store rebuilds it from Milvus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nerve.retrieval.retriever import QueryEmbedding, Retriever
from nerve.retrieval.store.base import IndexedExample
from nerve.retrieval.store.local_index import DomainIndex, IvfFlat, scaled_nlist
from nerve.retrieval.store.milvus import MilvusStore
from nerve.vocab.types import Example, Span

DIM = 8


def _pool(rng: np.random.Generator, sentences: int, words: int = 12) -> list[IndexedExample]:
    return [
        IndexedExample(
            Example(
                text=f"sentence {n}", id=f"e{n}", entities=[Span(start=0, end=8, type="thing")]
            ),
            rng.normal(size=DIM).astype(np.float32),
            rng.normal(size=(words, DIM)).astype(np.float32),
        )
        for n in range(sentences)
    ]


def _normalised(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_nlist_scales_with_the_pool_and_keeps_39_points_a_list() -> None:
    assert scaled_nlist(0, 4.0) == 1
    assert scaled_nlist(30, 4.0) == 1  # too few points to cluster: one list, exact search
    assert scaled_nlist(3_953, 4.0) == 101  # 4 * sqrt = 251, bounded by 3953 // 39
    assert scaled_nlist(200_000, 4.0) == 1_789
    assert scaled_nlist(2_000_000, 4.0) == 5_657


def test_faiss_uses_the_nlist_asked_for() -> None:
    """The DESIGN.md trap (Milvus Lite once clustered into 128 lists when asked for 16)."""
    vectors = _normalised(np.random.default_rng(0).normal(size=(4_000, DIM)).astype(np.float32))
    index = IvfFlat(DIM, vectors, 50)
    assert index.nlist == index.index.invlists.nlist == index.index.quantizer.ntotal == 50
    sizes = [index.index.invlists.list_size(i) for i in range(50)]
    assert sum(sizes) == 4_000 and sum(s > 0 for s in sizes) > 40


def test_the_copy_retrains_as_the_pool_grows_and_reports_what_faiss_uses() -> None:
    rng = np.random.default_rng(2)
    local = DomainIndex(DIM, nlist_per_sqrt=4.0)
    for item in _pool(rng, 100):  # 1,200 words: 30 lists
        local.add(item.example, item.sentence_vector, item.word_vectors)
    params = local.params(nprobe=8)["words"]
    assert (params.vectors, params.nlist, params.nprobe) == (1_200, 30, 8)
    for item in _pool(rng, 300)[100:]:  # 3,600 words: more than twice what it was trained on
        local.add(item.example, item.sentence_vector, item.word_vectors)
    params = local.params(nprobe=500)["words"]
    assert (params.vectors, params.nlist, params.nprobe) == (3_600, 92, 92)
    assert local.words.index is not None and local.words.index.index.ntotal == 3_600


def test_returned_examples_are_copies() -> None:
    local = DomainIndex(DIM, nlist_per_sqrt=4.0)
    item = _pool(np.random.default_rng(3), 1)[0]
    local.add(item.example, item.sentence_vector, item.word_vectors)
    local.get(["e0"])[0].entities.clear()
    assert len(local.get(["e0"])[0].entities) == 1


@pytest.mark.integration
def test_local_search_returns_what_milvus_exact_search_returns(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    pool = _pool(rng, 60)
    # nprobe above nlist: exact on both sides (see tests/test_bench_retrieval.py for Milvus).
    local = MilvusStore(str(tmp_path / "a.db"), DIM, prefix="l", nlist=16, nprobe=64)
    remote = MilvusStore(
        str(tmp_path / "b.db"), DIM, prefix="r", nlist=16, nprobe=64, local_search=False
    )
    try:
        assert local.local_search and not remote.local_search
        for store in (local, remote):
            store.add_examples("t", "d", pool)
        queries = rng.normal(size=(20, DIM)).astype(np.float32)
        got = local.search_words("t", "d", queries, 10)
        want = remote.search_words("t", "d", queries, 10)
        for got_hits, want_hits in zip(got, want, strict=True):
            assert [h[:2] for h in got_hits] == [h[:2] for h in want_hits]
            assert [h[2] for h in got_hits] == pytest.approx([h[2] for h in want_hits], abs=1e-5)
        sentence = pool[5].sentence_vector
        got_sentences = local.search_sentences("t", "d", sentence, 5)
        want_sentences = remote.search_sentences("t", "d", sentence, 5)
        assert [h.example_id for h in got_sentences] == [h.example_id for h in want_sentences]
        # The same Retriever ranks both the same.
        for n in range(10):
            words = rng.normal(size=(6, DIM)).astype(np.float32)
            query = QueryEmbedding("q", _FakeWords(words), None)  # type: ignore[arg-type]
            ranked = [
                [(r.example.id, r.example.text, round(r.score, 5)) for r in found]
                for found in (
                    Retriever(None, store, "word", 10).search("t", "d", query, 5)  # type: ignore[arg-type]
                    for store in (local, remote)
                )
            ]
            assert ranked[0] == ranked[1], n
        assert local.get_examples("t", "d", ["e3", "e1"]) == remote.get_examples(
            "t", "d", ["e3", "e1"]
        )
    finally:
        local.close()
        remote.close()


def _ids(hits: list[list[tuple[str, int, float]]]) -> list[list[tuple[str, int]]]:
    return [[h[:2] for h in word] for word in hits]


class _Word:
    def __init__(self, n: int) -> None:
        self.text = f"w{n}"


class _FakeWords:
    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors
        self.words = [_Word(n) for n in range(len(vectors))]


@pytest.mark.integration
def test_the_copy_follows_writes_and_a_reopened_store_reloads_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    pool = _pool(rng, 40)
    path = str(tmp_path / "m.db")
    store = MilvusStore(path, DIM, prefix="f", nprobe=64)
    try:
        store.add_examples("t", "d", pool[:30])
        store.add_examples("t", "other", pool[30:])
        target = pool[7].word_vectors[2:3]
        assert store.search_words("t", "d", target, 1)[0][0][:2] == ("e7", 2)
        assert store.delete_example("t", "d", "e7")
        assert "e7" not in {h[0] for h in store.search_words("t", "d", target, 50)[0]}
        assert store.get_examples("t", "d", ["e7", "e8"])[0].id == "e8"
        # Another domain's rows are never returned.
        assert {h[0] for h in store.search_words("t", "d", target, 500)[0]} <= {
            f"e{n}" for n in range(30)
        }
        before = _ids(store.search_words("t", "d", pool[3].word_vectors, 5))
    finally:
        store.close()

    store = MilvusStore(path, DIM, prefix="f", nprobe=64)  # the copy is rebuilt from Milvus
    try:
        assert _ids(store.search_words("t", "d", pool[3].word_vectors, 5)) == before
        assert store.index_params("t", "d")["words"].vectors == 29 * 12
        assert store.delete_domain("t", "d") == 29
        assert store.search_words("t", "d", target, 5) == [[]]
        assert store.get_examples("t", "other", ["e31"])[0].text == "sentence 31"
    finally:
        store.close()


def test_a_server_store_cannot_search_a_local_copy() -> None:
    with pytest.raises(ValueError, match="local_search"):
        MilvusStore("http://127.0.0.1:1", DIM, local_search=True)
