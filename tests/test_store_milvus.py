"""The Milvus store on a real Milvus Lite file: it remembers which embedder made its vectors and
refuses another one (reopening under another embedder or NERVE_EMBEDDER_WORD_MODE would otherwise
return wrong neighbours without any error), and an upload is stored all or nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.components import build_store
from nerve.errors import BackendUnavailable
from nerve.retrieval.embedding.sentence_transformers import SentenceTransformerEmbedder
from nerve.retrieval.store.base import IndexedExample
from nerve.retrieval.store.milvus import MilvusStore
from nerve.settings import load_settings
from nerve.vocab.types import Example, Span

pytestmark = pytest.mark.integration

DIM = 4
CONTEXT = "bge-small; words context"
ALONE = "bge-small; words alone"


def _open(path: Path, vectors_from: str | None) -> MilvusStore:
    return MilvusStore(str(path), DIM, prefix="sig", vectors_from=vectors_from)


def _add_one(store: MilvusStore) -> str:
    vector = np.ones(DIM, dtype=np.float32) / 2.0
    example = Example(text="Anna Berg", entities=[Span(start=0, end=9, type="person")])
    (example_id,) = store.add_examples(
        "t", "d", [IndexedExample(example, vector, np.stack([vector, vector]))]
    )
    return example_id


def test_same_embedder_reopens_and_keeps_examples(tmp_path: Path) -> None:
    store = _open(tmp_path / "m.db", CONTEXT)
    example_id = _add_one(store)
    store.close()

    store = _open(tmp_path / "m.db", CONTEXT)
    try:
        assert [e.text for e in store.get_examples("t", "d", [example_id])] == ["Anna Berg"]
    finally:
        store.close()


def test_another_word_mode_is_refused_and_the_examples_stay(tmp_path: Path) -> None:
    store = _open(tmp_path / "m.db", CONTEXT)
    example_id = _add_one(store)
    store.close()

    with pytest.raises(BackendUnavailable) as refused:
        _open(tmp_path / "m.db", ALONE)
    message = str(refused.value)
    assert CONTEXT in message and ALONE in message and "NERVE_EMBEDDER_WORD_MODE" in message

    store = _open(tmp_path / "m.db", CONTEXT)  # the refusal changed nothing
    try:
        assert len(store.get_examples("t", "d", [example_id])) == 1
    finally:
        store.close()


def test_a_store_from_before_signatures_adopts_the_first_embedder(tmp_path: Path) -> None:
    _open(tmp_path / "m.db", None).close()  # no signature recorded, as older stores
    _open(tmp_path / "m.db", CONTEXT).close()  # adopted
    with pytest.raises(BackendUnavailable):
        _open(tmp_path / "m.db", ALONE)


def test_the_server_store_checks_its_embedder(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    """The wiring: build_store takes the signature from the embedder the server built."""
    assert embedder.word_mode == "context"
    settings = load_settings(data_dir=tmp_path / "data")
    build_store(settings, embedder).close()

    alone = SentenceTransformerEmbedder(word_mode="alone")
    assert alone.signature != embedder.signature
    with pytest.raises(BackendUnavailable, match="words alone"):
        build_store(settings, alone)


def test_a_failed_word_insert_takes_the_example_rows_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All or nothing: the examples row is written first; when the words insert fails, the
    rollback removes it (and an upload after the failure works)."""
    store = _open(tmp_path / "m.db", CONTEXT)
    try:
        records = store.records
        real_insert = records._insert

        def words_fail(collection: str, rows: list) -> None:
            if collection == records.collections.words:
                raise ConnectionError("milvus went away")
            real_insert(collection, rows)

        monkeypatch.setattr(records, "_insert", words_fail)
        with pytest.raises(BackendUnavailable, match="insert_words"):
            _add_one(store)
        assert store.count_examples("t", "d") == 0
        monkeypatch.undo()
        _add_one(store)
        assert store.count_examples("t", "d") == 1
    finally:
        store.close()


def test_a_lite_domain_spec_is_read_from_milvus_once_and_follows_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every /v1/ner request reads its domain; with Milvus Lite in this process (the only
    # writer) the spec is remembered beside the search copy instead of queried each time.
    from nerve.vocab.types import Domain, EntityType

    store = _open(tmp_path / "m.db", CONTEXT)
    other = _open(tmp_path / "m.db", CONTEXT)  # a second store of this process, same file
    try:
        store.put_domain(Domain(tenant="t", name="d", entity_types=[EntityType(name="person")]))
        queries: list[str] = []
        real_query = store.records.client.query

        def counted(*args: object, **kwargs: object) -> object:
            queries.append(str(args[0]))
            return real_query(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(store.records.client, "query", counted)
        for _ in range(3):
            domain = store.get_domain("t", "d")
            assert domain is not None and [t.name for t in domain.entity_types] == ["person"]
        assert queries == []  # written here: known without a query

        other.put_domain(
            Domain(
                tenant="t",
                name="d",
                entity_types=[EntityType(name="person"), EntityType(name="city")],
            )
        )
        updated = store.get_domain("t", "d")
        assert updated is not None and [t.name for t in updated.entity_types] == ["person", "city"]
        updated.entity_types.clear()  # a caller's copy: changing it changes nothing stored
        again = store.get_domain("t", "d")
        assert again is not None and len(again.entity_types) == 2

        store.delete_domain("t", "d")
        assert store.get_domain("t", "d") is None
        assert other.get_domain("t", "d") is None
    finally:
        other.close()
        store.close()


def test_a_reopened_lite_store_reads_the_spec_from_milvus(tmp_path: Path) -> None:
    from nerve.vocab.types import Domain, EntityType

    store = _open(tmp_path / "m.db", CONTEXT)
    store.put_domain(Domain(tenant="t", name="d", entity_types=[EntityType(name="person")]))
    store.close()
    store = _open(tmp_path / "m.db", CONTEXT)
    try:
        domain = store.get_domain("t", "d")
        assert domain is not None and [t.name for t in domain.entity_types] == ["person"]
        assert store.get_domain("t", "nope") is None
    finally:
        store.close()
