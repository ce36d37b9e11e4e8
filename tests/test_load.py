"""A bounded load test on loopback: more concurrent /v1/ner requests than the in-flight limit
against a real ``nerve serve`` process. No 5xx; the excess gets 429 with Retry-After, counted
in the metrics; every accepted request is answered."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.gateway import SUPPORT_DOMAIN, SUPPORT_EXAMPLES, ServerProcess
from tests.fixtures.settings import as_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

LIMIT = 2
REQUESTS = 12  # bounded in count...
DEADLINE_S = 180.0  # ...and in time
NAMES = ["Ana", "Bo", "Cy", "Di", "Ed", "Flo", "Gus", "Hal", "Ida", "Jo", "Kai", "Lu"]
PLACES = ["Oslo", "Lyon", "Porto", "Riga", "Bern", "Graz"]


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


async def _burst(url: str) -> list[tuple[int, dict[str, Any], dict[str, str], float]]:
    async with httpx.AsyncClient(base_url=url, timeout=120.0) as client:

        async def one(i: int) -> tuple[int, dict[str, Any], dict[str, str], float]:
            text = f"{NAMES[i]} says the Kindle never reached {PLACES[i % len(PLACES)]}."
            started = time.perf_counter()
            response = await client.post("/v1/ner", json={"text": text, "domain": "support"})
            elapsed = time.perf_counter() - started
            return response.status_code, response.json(), dict(response.headers), elapsed

        return await asyncio.wait_for(
            asyncio.gather(*(one(i) for i in range(REQUESTS))), DEADLINE_S
        )


def test_more_concurrent_requests_than_the_limit(
    tmp_path: Path, base_settings: dict[str, Any]
) -> None:
    env = as_env(base_settings)
    env["NERVE_MAX_IN_FLIGHT"] = str(LIMIT)
    server = ServerProcess(tmp_path / "data", tmp_path / "server.log", env)
    server.start()
    try:
        assert server.url.startswith("http://127.0.0.1:")  # loopback only
        with httpx.Client(base_url=server.url, timeout=60.0) as client:
            assert client.post("/v1/domains", json=SUPPORT_DOMAIN).status_code == 201
            examples = {"examples": SUPPORT_EXAMPLES}
            assert client.post("/v1/domains/support/examples", json=examples).status_code == 201

            results = asyncio.run(_burst(server.url))

            statuses = [status for status, *_ in results]
            assert all(s in (200, 429) for s in statuses), statuses  # no 5xx, nothing else
            accepted = [r for r in results if r[0] == 200]
            rejected = [r for r in results if r[0] == 429]
            assert len(accepted) >= LIMIT, "the limit's worth of requests must get through"
            assert rejected, "more than LIMIT requests at once must meet 429"
            for _, body, _, _ in accepted:  # every accepted request answered in full
                assert body["domain"] == "support" and isinstance(body["entities"], list)
            assert len({body["request_id"] for _, body, _, _ in accepted}) == len(accepted)
            for _, body, headers, _ in rejected:
                assert body["error"]["code"] == "overloaded"
                assert int(headers["retry-after"]) >= 1

            metrics = client.get("/metrics").text
            assert _metric(metrics, "nerve_rejected_total") == len(rejected)
            assert _metric(metrics, "nerve_in_flight") == 0
            # Once the burst is over the service answers again.
            after = client.post(
                "/v1/ner", json={"text": "Zoe lost her Pixel 8.", "domain": "support"}
            )
            assert after.status_code == 200
    finally:
        server.stop()
