"""The README's example answer is the one the shipped default gives today.

The README's curl request goes to a real ``nerve serve --demo`` with the shipped defaults (the
default method, the trained adapter, the encoder artefacts); its answer must equal the README's,
ids and times aside. When the default changes, ``NERVE_WRITE_README_EXAMPLE=1`` on this test (or
``python -m tools.readme_example --url ... --write``) writes the new answer.
"""

from __future__ import annotations

import json
import os

import httpx
import pytest

from tests.client_server import REPO, NerveServer
from tools.readme_example import (
    END,
    START,
    ask,
    example_answer,
    example_request,
    render,
    stable,
    with_answer,
)

README = REPO / "README.md"
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def server(demo_server: NerveServer) -> NerveServer:
    return demo_server


def test_the_readme_example_round_trips() -> None:
    readme = README.read_text(encoding="utf-8")
    answer = example_answer(readme)
    assert json.loads(render(answer)) == answer
    assert example_answer(with_answer(readme, answer)) == answer
    assert example_request(readme)["domain"] == "customer_care"
    with pytest.raises(ValueError, match="no answer"):
        with_answer(readme.replace(START, ""), answer)
    assert END in readme


def test_stable_drops_only_ids_and_times() -> None:
    answer = {
        "request_id": "a",
        "method": "auto",
        "entities": [{"text": "x", "score": 0.1234}],
        "timings_ms": {"total": 1.0},
    }
    assert stable(answer) == {"method": "auto", "entities": [{"text": "x", "score": 0.12}]}


@pytest.mark.integration
def test_the_readme_shows_the_answer_the_default_gives(server: NerveServer) -> None:
    readme = README.read_text(encoding="utf-8")
    answer = ask(server.url, readme)
    if os.environ.get("NERVE_WRITE_README_EXAMPLE") == "1":
        README.write_text(with_answer(readme, answer), encoding="utf-8")
    served = httpx.get(f"{server.url}/v1/methods", timeout=30).json()["default"]
    assert answer["method"] == served, "the example must show the default method"
    assert stable(example_answer(README.read_text(encoding="utf-8"))) == stable(answer), (
        "README.md's example answer is stale: rerun this test with NERVE_WRITE_README_EXAMPLE=1"
    )
