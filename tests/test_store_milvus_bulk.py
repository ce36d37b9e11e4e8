"""A bulk upload through real Milvus Lite with its write buffer made small, so that inserts flush
synchronously in the middle of the upload (what stalled pools of 10,000 sentences): the columnar
flush (nerve/retrieval/store/lite_speedups.py) writes exactly the table Milvus Lite's own row-by-row flush
writes, on every flush of the upload, and every word vector comes back from Milvus where it was
put (the copy reloaded from Milvus after a reopen finds each word at its own example and index)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nerve.retrieval.store import lite_speedups
from nerve.retrieval.store.base import IndexedExample
from nerve.retrieval.store.milvus import MilvusStore
from nerve.vocab.types import Example, Span

pytestmark = pytest.mark.integration

DIM = 16
WORDS = 9


def _pool(rng: np.random.Generator, start: int, sentences: int) -> list[IndexedExample]:
    return [
        IndexedExample(
            Example(text=f"sentence {n}", id=f"e{n}", entities=[Span(start=0, end=8, type="x")]),
            rng.normal(size=DIM).astype(np.float32),
            rng.normal(size=(WORDS, DIM)).astype(np.float32),
        )
        for n in range(start, start + sentences)
    ]


def test_a_bulk_upload_flushes_mid_insert_and_keeps_every_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from milvus_lite.engine import collection as lite_collection
    from milvus_lite.storage.memtable import MemTable

    assert lite_speedups.install()
    row_by_row = getattr(MemTable, lite_speedups.ROW_BY_ROW)
    flushed: list[int] = []

    def both(memtable: Any, rows: list[tuple[int, int]]) -> Any:
        got = lite_speedups.columnar_build_data_table(memtable, rows)
        assert got.equals(row_by_row(memtable, rows))
        flushed.append(len(rows))
        return got

    monkeypatch.setattr(MemTable, "_build_data_table", both)
    # ~40 word rows of 16 floats fill 16 KB: every insert of 1,000 rows flushes inside the call.
    monkeypatch.setattr(lite_collection, "MEMTABLE_MEMORY_LIMIT", 16 * 1024)
    rng = np.random.default_rng(7)
    first, second = _pool(rng, 0, 120), _pool(rng, 120, 40)
    replaced = _pool(rng, 0, 10)  # e0..e9 again, new vectors: the buffer holds both versions
    path = str(tmp_path / "bulk.db")
    # A generous call timeout: this is about which rows are stored, not how fast.
    store = MilvusStore(path, DIM, prefix="bulk", nprobe=10_000, timeout_s=300)
    try:
        store.add_examples("t", "d", first)
        store.add_examples("t", "d", replaced)
        store.add_examples("t", "d", second)
        assert store.delete_example("t", "d", "e42")
    finally:
        store.close()
    # Flushes of whole 1,000-row inserts happened inside the insert calls, besides the store's own.
    assert 1_000 in flushed and sum(flushed) >= (120 + 10 + 40) * (WORDS + 1)

    want = {i.example.id: i for i in replaced + first[10:] + second if i.example.id != "e42"}
    store = MilvusStore(path, DIM, prefix="bulk", nprobe=10_000)  # the copy comes from Milvus
    try:
        assert store.count_examples("t", "d") == len(want) == 159
        assert store.index_params("t", "d")["words"].vectors == 159 * WORDS
        ids = sorted(want)
        vectors = np.concatenate([want[i].word_vectors for i in ids])
        hits = store.search_words("t", "d", vectors, 1)
        assert [h[0][:2] for h in hits] == [(i, w) for i in ids for w in range(WORDS)]
        assert [h[0][2] for h in hits] == pytest.approx([1.0] * len(hits), abs=1e-5)
        sentences = store.search_sentences("t", "d", want["e7"].sentence_vector, 1)
        assert sentences[0].example_id == "e7"
    finally:
        store.close()
