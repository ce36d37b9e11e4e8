"""The gateway on a real Redis: answers cached, a new example invalidates them, and Redis killed
mid-run makes requests slower, not failed."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.fixtures.gateway import SUPPORT_DOMAIN, SUPPORT_EXAMPLES
from tests.fixtures.redis import RedisServer

pytestmark = pytest.mark.integration

TEXT = "Lena Fischer wants her Pixel 8 replaced in Hamburg."
OTHER = "Omar Haddad asks where his Kindle order went in Cairo."


def metric(client: TestClient, name: str, **labels: str) -> float:
    """A sample's value from the /metrics text (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and all(part in match.group(1).split(",") for part in wanted.split(",") if part):
            total += float(match.group(2))
    return total


def ner(client: TestClient, text: str) -> dict[str, object]:
    response = client.post("/v1/ner", json={"text": text, "domain": "support"})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_answers_cached_in_redis_invalidated_and_served_without_it(
    make_client: Callable[..., contextlib.AbstractContextManager[TestClient]],
    disposable_redis: RedisServer,
    tmp_path: Path,
) -> None:
    settings = {"redis_url": disposable_redis.url, "redis_timeout_s": 0.3}
    with make_client(tmp_path / "data", **settings) as client:
        assert client.post("/v1/domains", json=SUPPORT_DOMAIN).status_code == 201
        examples = {"examples": SUPPORT_EXAMPLES}
        assert client.post("/v1/domains/support/examples", json=examples).status_code == 201
        assert client.get("/readyz").json()["checks"]["cache"] is True

        first, again = ner(client, TEXT), ner(client, TEXT)
        assert (first["cached"], again["cached"]) == (False, True)
        assert again["entities"] == first["entities"]
        assert again["request_id"] != first["request_id"]
        assert metric(client, "nerve_cache_requests_total", kind="answer", result="hit") == 1

        # A new example bumps the domain's version: the cached answer is stale.
        extra = {"examples": [{"text": "Ben lost his Kindle in Rome.", "entities": []}]}
        assert client.post("/v1/domains/support/examples", json=extra).status_code == 201
        assert ner(client, TEXT)["cached"] is False
        assert ner(client, TEXT)["cached"] is True
        # The answer was recomputed, but the text's embedding came from Redis.
        embedding_hits = metric(
            client, "nerve_cache_requests_total", kind="embedding", result="hit"
        )
        assert embedding_hits >= 1

        disposable_redis.kill()
        down = ner(client, OTHER)  # still answered
        assert down["cached"] is False and ner(client, TEXT)["cached"] is False
        assert metric(client, "nerve_cache_requests_total", cache="redis", result="error") >= 2
        assert metric(client, "nerve_backend_errors_total", backend="redis") >= 2
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["cache"] is False
        lost = client.post(
            "/v1/feedback", json={"request_id": down["request_id"], "outcome": "resolved"}
        )
        assert lost.status_code == 503
        assert lost.json()["error"]["code"] == "backend_unavailable"
        assert "redis" in lost.json()["error"]["message"]

        disposable_redis.start()  # empty: nothing persisted in the fixture's server
        assert ner(client, TEXT)["cached"] is False
        assert ner(client, TEXT)["cached"] is True
