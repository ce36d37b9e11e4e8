"""The seam between the record store (:class:`MilvusRecords`) and the search copy
(:class:`SearchCopy`) that :class:`MilvusStore` composes: the copy follows exactly the writes
the record store accepted, loads once, warms and forgets; with a server there is no copy."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nerve.errors import BackendUnavailable, InvalidRequest
from nerve.retrieval.store.base import IndexedExample
from nerve.retrieval.store.milvus import MilvusStore
from nerve.retrieval.store.search_copy import SearchCopy
from nerve.vocab.types import Domain, EntityType, Example, Span

DIM = 4


def _item(n: int, entities: int = 1) -> IndexedExample:
    rng = np.random.default_rng(n)
    spans = [Span(start=0, end=4, type="thing")] * entities
    return IndexedExample(
        Example(text=f"text {n}", id=f"e{n}", entities=spans),
        rng.normal(size=DIM).astype(np.float32),
        rng.normal(size=(3, DIM)).astype(np.float32),
    )


class FakeRecords:
    """What SearchCopy reads from the record store: a domain's rows, counted."""

    def __init__(self, uri: str, rows: dict[tuple[str, str], list[IndexedExample]]) -> None:
        self.uri, self.prefix, self.is_lite, self.dimension = uri, "split", True, DIM
        self.rows = rows
        self.reads: list[tuple[str, str]] = []
        self.gate = threading.Event()
        self.gate.set()

    def read_domain(self, tenant: str, domain: str) -> list[IndexedExample]:
        self.reads.append((tenant, domain))
        assert self.gate.wait(10)
        if domain == "broken":
            raise BackendUnavailable("vector_store", "load_examples failed")
        return self.rows.get((tenant, domain), [])


def _copy(tmp_path: Path, **rows: list[IndexedExample]) -> tuple[SearchCopy, FakeRecords]:
    records = FakeRecords(str(tmp_path / "fake.db"), {("t", k): v for k, v in rows.items()})
    return SearchCopy(records), records  # type: ignore[arg-type]


def test_a_domain_loads_once_even_when_asked_concurrently(tmp_path: Path) -> None:
    copy, records = _copy(tmp_path, d=[_item(1), _item(2)])
    try:
        records.gate.clear()
        found: list[Any] = []
        threads = [
            threading.Thread(target=lambda: found.append(copy.index("t", "d"))) for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.1)
        records.gate.set()
        for thread in threads:
            thread.join(10)
        assert records.reads == [("t", "d")]
        assert len(found) == 4 and all(index is found[0] for index in found)
        assert [e.id for e in copy.get_examples("t", "d", ["e2", "e1"])] == ["e2", "e1"]
    finally:
        copy.close()


def test_warming_loads_the_cold_domains_and_skips_a_broken_one(tmp_path: Path) -> None:
    copy, records = _copy(tmp_path, a=[_item(1)], b=[_item(2)])
    try:
        copy.index("t", "a")
        assert copy.cold([("t", "a"), ("t", "b"), ("t", "broken")]) == [("t", "b"), ("t", "broken")]
        assert copy.warm([("t", "broken"), ("t", "b")]) == 1  # the failure logged, not raised
        assert copy.cold([("t", "a"), ("t", "b"), ("t", "broken")]) == [("t", "broken")]
        # A second copy of the same file and prefix sees the same loaded domains.
        other = SearchCopy(records)  # type: ignore[arg-type]
        assert other.cold([("t", "a"), ("t", "b")]) == []
    finally:
        copy.close()


def test_a_closed_copy_stops_warming_and_forgets_its_domains(tmp_path: Path) -> None:
    copy, records = _copy(tmp_path, a=[_item(1)])
    copy.index("t", "a")
    copy.close()
    assert copy.warm([("t", "a"), ("t", "b")]) == 0
    reopened = SearchCopy(records)  # type: ignore[arg-type]
    try:
        assert reopened.cold([("t", "a")]) == [("t", "a")]
    finally:
        reopened.close()


def test_the_spec_is_remembered_only_once_written(tmp_path: Path) -> None:
    copy, _ = _copy(tmp_path)
    try:
        reads: list[int] = []

        def read() -> str | None:
            reads.append(1)
            return None

        assert copy.spec("t", "d", read) is None  # nothing stored: not remembered
        with pytest.raises(BackendUnavailable), copy.writing_spec("t", "d", "new"):
            raise BackendUnavailable("vector_store", "put_domain failed")
        assert copy.spec("t", "d", read) is None and len(reads) == 2  # the failed write: not
        with copy.writing_spec("t", "d", "new"):
            pass
        assert copy.spec("t", "d", read) == "new" and len(reads) == 2
        copy.dropped("t", "d")
        assert copy.spec("t", "d", read) is None and len(reads) == 3
    finally:
        copy.close()


def test_a_server_store_has_no_copy() -> None:
    records = FakeRecords("http://127.0.0.1:1", {})
    records.is_lite = False
    with pytest.raises(ValueError, match="local_search"):
        SearchCopy(records)  # type: ignore[arg-type]


# --- through MilvusStore, on a real Milvus Lite file ------------------------------------------


def _words_in_copy(store: MilvusStore) -> list[str]:
    assert store.search_copy is not None
    return sorted(set(store.search_copy.index("t", "d").words.owners))


@pytest.mark.integration
def test_the_copy_follows_accepted_writes_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MilvusStore(str(tmp_path / "m.db"), DIM, prefix="seam", nprobe=64)
    copy, records = store.search_copy, store.records
    assert copy is not None
    loads: list[tuple[str, str]] = []
    real_load = copy._load

    def load(tenant: str, domain: str) -> Any:
        loads.append((tenant, domain))
        return real_load(tenant, domain)

    monkeypatch.setattr(copy, "_load", load)
    try:
        assert store.add_examples("t", "d", [_item(1)]) == ["e1"]
        assert loads == [("t", "d")]  # loaded before the write, then updated, not reloaded
        assert _words_in_copy(store) == ["e1"]

        # Refused before writing: neither Milvus nor the copy has it.
        with pytest.raises(InvalidRequest):
            store.add_examples("t", "d", [_item(2, entities=2_000)])
        # Failed in Milvus (and undone there): the copy does not have it either.
        real_insert, words = records.client.insert, records.collections.words

        def insert(collection: str, rows: Any, **kwargs: Any) -> Any:
            if collection == words:  # after the example rows went in
                raise ConnectionError("milvus went away")
            return real_insert(collection, rows, **kwargs)

        monkeypatch.setattr(records.client, "insert", insert)
        with pytest.raises(BackendUnavailable, match="insert_words"):
            store.add_examples("t", "d", [_item(3)])
        monkeypatch.setattr(records.client, "insert", real_insert)
        assert _words_in_copy(store) == ["e1"] and records.ids("t", "d") == ["e1"]
        assert store.search_words("t", "d", _item(3).word_vectors, 5)[0][0][0] == "e1"

        # A delete Milvus did not do (no such example) leaves the copy; one it did, follows.
        assert not store.delete_example("t", "d", "e9")
        assert store.add_examples("t", "d", [_item(4)]) == ["e4"]
        assert _words_in_copy(store) == ["e1", "e4"]
        assert store.delete_example("t", "d", "e1")
        assert _words_in_copy(store) == ["e4"] and records.ids("t", "d") == ["e4"]

        # A failed domain delete keeps the copy; a done one drops it (reloaded from Milvus).
        def broken_delete(*args: Any, **kwargs: Any) -> None:
            raise ConnectionError("milvus went away")

        monkeypatch.setattr(records.client, "delete", broken_delete)
        with pytest.raises(BackendUnavailable):
            store.delete_domain("t", "d")
        monkeypatch.undo()
        monkeypatch.setattr(copy, "_load", load)
        assert _words_in_copy(store) == ["e4"] and loads == [("t", "d")]
        assert store.delete_domain("t", "d") == 1
        assert store.search_words("t", "d", _item(4).word_vectors, 5) == [[], [], []]
        assert loads == [("t", "d"), ("t", "d")]
    finally:
        store.close()


@pytest.mark.integration
def test_a_failed_spec_write_is_not_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MilvusStore(str(tmp_path / "m.db"), DIM, prefix="seam")
    domain = Domain(tenant="t", name="d", entity_types=[EntityType(name="person")])
    try:
        store.put_domain(domain)

        def broken_upsert(*args: Any, **kwargs: Any) -> None:
            raise ConnectionError("milvus went away")

        monkeypatch.setattr(store.records.client, "upsert", broken_upsert)
        changed = domain.model_copy(update={"entity_types": [EntityType(name="city")]})
        with pytest.raises(BackendUnavailable, match="put_domain"):
            store.put_domain(changed)
        monkeypatch.undo()
        found = store.get_domain("t", "d")
        assert found is not None and [t.name for t in found.entity_types] == ["person"]
    finally:
        store.close()


@pytest.mark.integration
def test_without_the_copy_every_read_goes_to_milvus(tmp_path: Path) -> None:
    store = MilvusStore(str(tmp_path / "m.db"), DIM, prefix="seam", local_search=False)
    try:
        assert store.search_copy is None and store.cold_domains() == []
        store.put_domain(Domain(tenant="t", name="d", entity_types=[EntityType(name="x")]))
        assert store.add_examples("t", "d", [_item(1), _item(2)]) == ["e1", "e2"]
        assert store.search_words("t", "d", _item(2).word_vectors, 1)[0][0][:2] == ("e2", 0)
        assert store.search_sentences("t", "d", _item(1).sentence_vector, 1)[0].example_id == "e1"
        assert [e.id for e in store.get_examples("t", "d", ["e2", "e1", "e2"])] == [
            "e2",
            "e1",
            "e2",
        ]
        with pytest.raises(ValueError, match="local_search"):
            store.index_params("t", "d")
    finally:
        store.close()
