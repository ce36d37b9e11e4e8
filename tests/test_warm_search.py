"""The in-process search copies are loaded at start-up, in the background: /readyz says not
ready until they are, and the first request after a restart does not load its domain."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.components import Components, build_components
from app.main import build_app
from nerve.retrieval.embedding.sentence_transformers import SentenceTransformerEmbedder
from nerve.retrieval.store.milvus import MilvusStore
from nerve.settings import Settings, load_settings
from tests.fixtures.gateway import SUPPORT_DOMAIN, SUPPORT_EXAMPLES
from tests.fixtures.settings import merged

pytestmark = pytest.mark.integration


class GatedStore:
    """Holds the store's warm-up until ``release``; counts the domain loads."""

    def __init__(self, store: MilvusStore) -> None:
        self.release = threading.Event()
        self.loads: list[tuple[str, str]] = []
        copy = store.search_copy
        assert copy is not None
        real_warm, real_load = store.warm, copy._load

        def warm(domains: Any) -> int:
            assert self.release.wait(120)
            return real_warm(domains)

        def load(tenant: str, domain: str) -> Any:
            self.loads.append((tenant, domain))
            return real_load(tenant, domain)

        store.warm = warm  # type: ignore[method-assign]
        copy._load = load  # type: ignore[method-assign]


@contextlib.contextmanager
def app_on(
    data_dir: Path, base: dict[str, Any], embedder: SentenceTransformerEmbedder, **overrides: Any
) -> Iterator[tuple[TestClient, list[GatedStore]]]:
    settings = load_settings(**merged(base, {"data_dir": data_dir}, overrides))
    gates: list[GatedStore] = []

    def factory(s: Settings) -> Components:
        components = build_components(s, embedder=embedder)
        gates.append(GatedStore(components.store))  # type: ignore[arg-type]
        return components

    try:
        with TestClient(build_app(settings, components_factory=factory)) as client:
            yield client, gates
    finally:  # a failed test must not leave the warm-up thread waiting
        for gate in gates:
            gate.release.set()


def warm_check(client: TestClient) -> object:
    return client.get("/readyz").json()["checks"]["search_warm"]


def wait_until_warm(client: TestClient) -> None:
    components = client.app.state.components  # type: ignore[attr-defined]
    deadline = time.monotonic() + 120
    while not components.warm:  # a state, polled
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_search_copies_load_at_start_up_and_readiness_waits_for_them(
    tmp_path: Path, base_settings: dict[str, Any], embedder: SentenceTransformerEmbedder
) -> None:
    data_dir = tmp_path / "state"
    with app_on(data_dir, base_settings, embedder) as (client, gates):
        # Nothing to warm: ready at once. (The other checks' answers are not this test's:
        # on a loaded machine the embedder's may time out.)
        assert warm_check(client) is True
        gates[0].release.set()
        assert client.post("/v1/domains", json=SUPPORT_DOMAIN).status_code == 201
        added = client.post("/v1/domains/support/examples", json={"examples": SUPPORT_EXAMPLES})
        assert added.status_code == 201

    with app_on(data_dir, base_settings, embedder) as (client, gates):
        gate = gates[0]
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["search_warm"] is False
        assert gate.loads == []
        gate.release.set()
        wait_until_warm(client)
        assert gate.loads == [("default", "support")]
        assert warm_check(client) is True
        answer = client.post(
            "/v1/ner",
            json={"text": "Anna Berg says her Pixel 8 broke in Oslo.", "domain": "support"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["examples_used"] > 0
        assert gate.loads == [("default", "support")]  # the request found its copy loaded


def test_warming_can_be_turned_off(
    tmp_path: Path, base_settings: dict[str, Any], embedder: SentenceTransformerEmbedder
) -> None:
    data_dir = tmp_path / "state"
    with app_on(data_dir, base_settings, embedder) as (client, gates):
        assert client.post("/v1/domains", json=SUPPORT_DOMAIN).status_code == 201
        added = client.post("/v1/domains/support/examples", json={"examples": SUPPORT_EXAMPLES})
        assert added.status_code == 201
    with app_on(data_dir, base_settings, embedder, milvus={"warm_search": False}) as (
        client,
        gates,
    ):
        assert warm_check(client) is True
        assert gates[0].loads == []
        response = client.post("/v1/ner", json={"text": "Anna in Oslo.", "domain": "support"})
        assert response.status_code == 200
        assert gates[0].loads == [("default", "support")]  # loaded by the first request
