"""The API end to end on the embedded default: Milvus Lite, the real embedder, the real GGUF."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.gateway import SUPPORT_DOMAIN, SUPPORT_EXAMPLES

pytestmark = pytest.mark.integration


def assert_error(response, status: int, code: str, *fragments: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    for fragment in fragments:
        assert fragment in body["error"]["message"], body["error"]["message"]
    assert "Traceback" not in response.text


def example_count(api: TestClient, domain: str = "support") -> int:
    return api.get(f"/v1/domains/{domain}").json()["examples"]


# --- domains -------------------------------------------------------------------------------
def test_domain_crud(api: TestClient) -> None:
    spec = {"name": "crud", "entity_types": [{"name": "a", "description": "x"}, {"name": "b"}]}
    created = api.post("/v1/domains", json=spec)
    assert created.status_code == 201
    assert created.json()["version"] == 1 and created.json()["examples"] == 0
    assert "crud" in [d["name"] for d in api.get("/v1/domains").json()["domains"]]
    assert_error(api.post("/v1/domains", json=spec), 409, "conflict", "crud")
    assert api.delete("/v1/domains/crud").json() == {"deleted": "crud", "examples_deleted": 0}
    assert_error(api.get("/v1/domains/crud"), 404, "not_found", "crud")


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"name": "Bad Name", "entity_types": [{"name": "a"}]}, "name"),
        ({"name": "dup", "entity_types": [{"name": "a"}, {"name": "A"}]}, "duplicate"),
        ({"name": "many", "entity_types": [{"name": f"t{i}"} for i in range(51)]}, "at most 50"),
        ({"name": "req", "entity_types": [{"name": "a"}], "required_types": ["b"]}, "['b']"),
        ({"name": "none", "entity_types": []}, "entity_types"),
        ({"name": "extra", "entity_types": [{"name": "a"}], "colour": 1}, "colour"),
    ],
)
def test_domain_validation(api: TestClient, spec: dict, fragment: str) -> None:
    assert_error(api.post("/v1/domains", json=spec), 422, "invalid_request", fragment)


# --- examples ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("example", "fragment"),
    [
        ({"text": "Anna", "entities": [{"start": 0, "end": 9, "type": "person"}]}, "0 <= start"),
        ({"text": "Anna", "entities": [{"start": 0, "end": 4, "type": "alien"}]}, "unknown type"),
        ({"text": "  ", "entities": []}, "empty"),
        (
            {
                "text": "a " * 600,
                "entities": [
                    {"start": 2 * i, "end": 2 * i + 1, "type": "order_id"} for i in range(600)
                ],
            },
            "at most 500 per example",
        ),
        (
            {
                "text": "Anna Berg",
                "entities": [
                    {"start": 0, "end": 9, "type": "person"},
                    {"start": 5, "end": 9, "type": "person"},
                ],
            },
            "overlaps",
        ),
    ],
)
def test_bad_examples_leave_nothing_behind(api: TestClient, example: dict, fragment: str) -> None:
    before = example_count(api)
    good = SUPPORT_EXAMPLES[0]
    response = api.post("/v1/domains/support/examples", json={"examples": [good, example]})
    assert_error(response, 422, "invalid_request", "examples[1]", fragment)
    assert example_count(api) == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/v1/domains/café"),
        ("delete", "/v1/domains/Support"),
        ("get", "/v1/domains/caf%C3%A9/examples"),
        ("delete", "/v1/domains/support/examples/é"),
        ("delete", "/v1/domains/support/examples/%22%20or%20id%20!=%20%22"),
    ],
)
def test_names_no_domain_can_have_are_404(api: TestClient, method: str, path: str) -> None:
    """Never a 503 blaming the vector store for a name the client got wrong."""
    before = example_count(api)
    assert_error(getattr(api, method)(path), 404, "not_found")
    assert example_count(api) == before


def test_ner_on_a_name_no_domain_can_have_is_404(api: TestClient) -> None:
    response = api.post("/v1/ner", json={"text": "Anna called.", "domain": "é"})
    assert_error(response, 404, "not_found", "unknown domain")


def test_malformed_bodies(api: TestClient) -> None:
    url = "/v1/domains/support/examples"
    assert_error(
        api.post(url, content=b'{"examples": [', headers={"content-type": "application/json"}),
        400,
        "malformed_body",
        "JSON",
    )
    assert_error(
        api.post(url, content=b"Anna\tB-person\nBerg\n", headers={"content-type": "text/plain"}),
        400,
        "malformed_body",
        "line 2",
    )
    assert_error(
        api.post(url, content=b"Anna\tB-planet\n", headers={"content-type": "text/plain"}),
        422,
        "invalid_request",
        "unknown type",
    )
    assert_error(
        api.post("/v1/domains/nope/examples", json={"examples": SUPPORT_EXAMPLES}), 404, "not_found"
    )


def test_conll_upload_list_and_delete(api: TestClient) -> None:
    body = "Maria\tB-person\nLopez\tI-person\nin\tO\nRome\tB-location\n\nok\tO\n"
    before = example_count(api)
    added = api.post(
        "/v1/domains/support/examples", content=body, headers={"content-type": "text/plain"}
    )
    assert added.status_code == 201, added.text
    ids = added.json()["ids"]
    assert len(ids) == 2 and example_count(api) == before + 2

    page = api.get("/v1/domains/support/examples", params={"offset": before, "limit": 10}).json()
    assert page["total"] == before + 2
    first = page["examples"][0]
    assert first["id"] == ids[0]
    assert first["text"] == "Maria Lopez in Rome"
    assert [(e["text"], e["type"]) for e in first["entities"]] == [
        ("Maria Lopez", "person"),
        ("Rome", "location"),
    ]
    version = api.get("/v1/domains/support").json()["version"]
    for example_id in ids:
        assert api.delete(f"/v1/domains/support/examples/{example_id}").status_code == 200
    assert api.get("/v1/domains/support").json()["version"] == version + 2
    assert example_count(api) == before
    assert_error(api.delete(f"/v1/domains/support/examples/{ids[0]}"), 404, "not_found")
    assert_error(
        api.get("/v1/domains/support/examples", params={"limit": 0}),
        422,
        "invalid_request",
        "limit",
    )


# --- /v1/ner -------------------------------------------------------------------------------
def check_response(text: str, body: dict, allowed: set[str]) -> None:
    assert body["request_id"]
    for entity in body["entities"]:
        assert text[entity["start"] : entity["end"]] == entity["text"]
        assert entity["type"] in allowed
        assert 0.0 <= entity["score"] <= 1.0
    assert set(body["timings_ms"]) == {"embed", "retrieve", "generate", "parse", "total"}
    assert isinstance(body["escalate"], bool)
    assert body["escalate"] == bool(body["escalation_reasons"])


def test_ner_answers_with_grounded_entities(api: TestClient) -> None:
    text = "Anna Berg says her Pixel 8 arrived broken in Oslo."  # an example's own words
    response = api.post(
        "/v1/ner",
        json={"text": text, "domain": "support", "top_k": 3},
        headers={"X-Request-ID": "req-123"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert response.headers["X-Request-ID"] == body["request_id"] == "req-123"
    check_response(text, body, {t["name"] for t in SUPPORT_DOMAIN["entity_types"]})
    assert body["examples_used"] == 3
    assert body["model"] and body["method"] == "wraner"
    # The pool holds this very sentence: even the untuned model copies its answer.
    assert {(e["text"], e["type"]) for e in body["entities"]} >= {("Anna Berg", "person")}


def test_ner_restricts_types_and_accepts_ad_hoc_ones(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    generator = api.app.state.components.generator
    prompts: list[str] = []
    real_generate = generator.generate

    async def recording(request):  # type: ignore[no-untyped-def]
        prompts.append(request.prompt)
        return await real_generate(request)

    monkeypatch.setattr(generator, "generate", recording)
    text = "Tom Walsh wants a refund for the Kindle he bought in Dublin."
    body = api.post(
        "/v1/ner",
        json={
            "text": text,
            "domain": "support",
            "entity_types": ["location", {"name": "city_name", "description": "a city"}],
        },
    ).json()
    check_response(text, body, {"location", "city_name"})
    # The model was asked for exactly these two types (the ad hoc one with its description).
    (prompt,) = prompts
    type_list = prompt.split("### Sentence")[0]
    assert "- city_name: a city" in type_list and "- location:" in type_list
    assert "- person" not in type_list and "- product" not in type_list


def test_long_pool_examples_are_left_out_of_the_prompt_not_a_422(api: TestClient) -> None:
    """A pool example may be 10,000 characters; the prompt drops the least similar examples
    until it fits the LLM's context instead of failing a valid request."""
    spec = {**SUPPORT_DOMAIN, "name": "longpool"}
    assert api.post("/v1/domains", json=spec).status_code == 201
    long_text = ("Tom Walsh in Dublin asked about a refund for the Kindle. " * 160)[:9000]
    examples = [{"text": long_text, "entities": []}, SUPPORT_EXAMPLES[0]]
    assert api.post("/v1/domains/longpool/examples", json={"examples": examples}).status_code == 201
    text = "Tom Walsh in Dublin wants a refund for the Kindle."
    response = api.post("/v1/ner", json={"text": text, "domain": "longpool", "top_k": 2})
    assert response.status_code == 200, response.text
    assert response.json()["examples_used"] < 2
    check_response(text, response.json(), {t["name"] for t in SUPPORT_DOMAIN["entity_types"]})


def test_ner_long_text_is_segmented_with_exact_offsets(
    make_client: Callable[..., contextlib.AbstractContextManager[TestClient]], tmp_path: Path
) -> None:
    with make_client(tmp_path, segment={"chars": 80}) as client:
        client.post("/v1/domains", json=SUPPORT_DOMAIN)
        client.post("/v1/domains/support/examples", json={"examples": SUPPORT_EXAMPLES})
        text = "\n\n".join(e["text"] for e in SUPPORT_EXAMPLES[:3]) + "  Anna Berg called again."
        body = client.post("/v1/ner", json={"text": text, "domain": "support", "top_k": 2}).json()
        check_response(text, body, {t["name"] for t in SUPPORT_DOMAIN["entity_types"]})
        # Entities come from several segments, the later ones shifted by their offset.
        assert any(e["start"] > 120 for e in body["entities"]), body["entities"]


@pytest.mark.parametrize(
    ("payload", "status", "code", "fragment"),
    [
        ({"text": "", "domain": "support"}, 422, "invalid_request", "text is empty"),
        ({"text": "x" * 200_001, "domain": "support"}, 422, "invalid_request", "200000"),
        ({"text": "hi", "domain": "nope"}, 404, "not_found", "nope"),
        ({"text": "hi", "domain": "support", "top_k": 21}, 422, "invalid_request", "top_k"),
        ({"text": "hi", "domain": "support", "top_k": -1}, 422, "invalid_request", "-1"),
        (
            {"text": "hi", "domain": "support", "entity_types": ["alien"]},
            422,
            "invalid_request",
            "alien",
        ),
        (
            {"text": "hi", "domain": "support", "entity_types": ["person", "Person"]},
            422,
            "invalid_request",
            "duplicate",
        ),
        ({"text": "hi", "domain": "support", "entity_types": []}, 422, "invalid_request", "empty"),
        (
            {"text": "hi", "domain": "support", "entity_types": [f"t{i}" for i in range(51)]},
            422,
            "invalid_request",
            "at most 50",
        ),
        ({"text": "hi", "domain": "support", "method": "magic"}, 422, "invalid_request", "method"),
        ({"domain": "support"}, 422, "invalid_request", "text"),
        ({"text": 5, "domain": "support"}, 422, "invalid_request", "text"),
    ],
)
def test_ner_bad_input(
    api: TestClient, payload: dict, status: int, code: str, fragment: str
) -> None:
    assert_error(api.post("/v1/ner", json=payload), status, code, fragment)


def test_ner_malformed_json(api: TestClient) -> None:
    response = api.post(
        "/v1/ner", content=b'{"text": ', headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "malformed_body")


def test_batch_answers_in_order_and_validates_first(api: TestClient) -> None:
    # Two examples' own words (the untuned model copies their answers): each result, in the
    # order asked, must hold its own text's person.
    texts = [SUPPORT_EXAMPLES[2]["text"], SUPPORT_EXAMPLES[0]["text"]]
    people = [("Tom Walsh", "person"), ("Anna Berg", "person")]
    response = api.post(
        "/v1/ner/batch", json=[{"text": t, "domain": "support", "top_k": 3} for t in texts]
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 2
    for text, result, person in zip(texts, results, people, strict=True):
        check_response(text, result, {t["name"] for t in SUPPORT_DOMAIN["entity_types"]})
        assert person in {(e["text"], e["type"]) for e in result["entities"]}, result
    bad = api.post(
        "/v1/ner/batch",
        json=[{"text": "ok", "domain": "support"}, {"text": "", "domain": "support"}],
    )
    assert_error(bad, 422, "invalid_request", "[1].text")
    assert_error(api.post("/v1/ner/batch", json=[]), 422, "invalid_request", "empty")


def test_a_batch_checks_every_domain_and_type_before_any_generation(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    generator = api.app.state.components.generator
    calls: list[str] = []

    async def counting(request):  # type: ignore[no-untyped-def]
        calls.append(request.prompt)
        raise AssertionError("no generation may run for a batch with a bad item")

    monkeypatch.setattr(generator, "generate", counting)
    good = {"text": "Priya from Pune wrote in.", "domain": "support"}
    unknown_domain = api.post("/v1/ner/batch", json=[good, {**good, "domain": "nowhere"}])
    assert_error(unknown_domain, 404, "not_found", "[1].", "nowhere")
    unknown_type = api.post("/v1/ner/batch", json=[good, {**good, "entity_types": ["alien"]}])
    assert_error(unknown_type, 422, "invalid_request", "[1].entity_types", "alien")
    assert calls == []


def test_answers_are_cached_until_the_pool_changes(api: TestClient) -> None:
    payload = {"text": "Tom Walsh is in Lyon.", "domain": "support", "top_k": 2}
    first = api.post("/v1/ner", json=payload).json()
    second = api.post("/v1/ner", json=payload).json()
    assert not first["cached"] and second["cached"]
    assert second["entities"] == first["entities"]
    assert second["request_id"] != first["request_id"]
    api.post("/v1/domains/support/examples", json={"examples": [SUPPORT_EXAMPLES[3]]})
    assert not api.post("/v1/ner", json=payload).json()["cached"]


def test_a_domain_created_again_never_serves_the_old_ones_answers(api: TestClient) -> None:
    spec = {**SUPPORT_DOMAIN, "name": "reborn"}
    payload = {"text": "Tom Walsh is in Lyon.", "domain": "reborn", "top_k": 2}
    versions = []
    for _ in range(2):
        assert api.post("/v1/domains", json=spec).status_code == 201
        added = api.post("/v1/domains/reborn/examples", json={"examples": SUPPORT_EXAMPLES[:2]})
        versions.append(added.json()["version"])
        assert not api.post("/v1/ner", json=payload).json()["cached"]
        assert api.post("/v1/ner", json=payload).json()["cached"]
        assert api.delete("/v1/domains/reborn").status_code == 200
    assert versions[0] == versions[1]  # same name and version: only its creation differs


def test_an_unreadable_cached_answer_is_a_miss() -> None:
    from app.ner.pipeline import _cached_response

    assert _cached_response(None) is None
    assert _cached_response('{"entities": "an older schema"}') is None


# --- operations ----------------------------------------------------------------------------
def test_unknown_domains_mint_no_metric_series(api: TestClient) -> None:
    for name in ("ghost-one", "ghost-two"):
        api.post("/v1/ner", json={"text": "Anna called.", "domain": name})
        api.post("/v1/ner", json={"text": "", "domain": name})  # invalid and unknown
    metrics = api.get("/metrics").text
    assert "ghost" not in metrics
    assert 'route="/v1/ner"' in metrics and 'status="404"' in metrics


def metric_samples(api: TestClient) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of the gateway's ``/metrics`` page: name, labels, value."""
    text = api.get("/metrics").text
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def metric_sum(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(
        value
        for sample_name, sample_labels, value in samples
        if sample_name == name and labels.items() <= sample_labels.items()
    )


def test_health_ready_metrics(api: TestClient) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {
        "vector_store": True,
        "search_warm": True,
        "embedder": True,
        "llm": True,
        "cache": True,
    }
    before = metric_samples(api)
    answer = api.post("/v1/ner", json={"text": "Anna Berg in Oslo.", "domain": "support"})
    assert answer.status_code == 200, answer.text
    after = metric_samples(api)

    def rise(name: str, **labels: str) -> float:
        return metric_sum(after, name, **labels) - metric_sum(before, name, **labels)

    ner = {"route": "/v1/ner", "domain": "support", "method": "wraner", "status": "200"}
    assert rise("nerve_requests_total", **ner) == 1
    for stage in ("embed", "retrieve", "generate", "parse", "total"):
        assert rise("nerve_stage_seconds_count", stage=stage, method="wraner") == 1, stage
    assert rise("nerve_stage_seconds_sum", stage="total") > 0
    assert rise("nerve_answers_total", domain="support") == 1
    # The prompt and the answer, in tokens (llama.cpp reports both).
    for kind in ("prompt", "answer"):
        assert rise("nerve_llm_tokens_count", method="wraner", kind=kind) == 1, kind
        assert rise("nerve_llm_tokens_sum", method="wraner", kind=kind) >= 1, kind
    assert rise("nerve_llm_tokens_sum", kind="prompt") > 100  # the few-shot prompt
    # And how many of the prompt's tokens came from the KV cache (0 up to the instruction).
    assert rise("nerve_llm_tokens_count", method="wraner", kind="cached") == 1
    assert rise("nerve_entities_total", domain="support") == len(answer.json()["entities"])
    # The fixture's examples were counted when they were added.
    added = metric_sum(after, "nerve_examples_added_total", domain="support")
    assert added >= len(SUPPORT_EXAMPLES)


def test_unknown_routes_use_the_error_shape(api: TestClient) -> None:
    assert_error(api.get("/v2/nothing"), 404, "not_found")
    assert_error(api.put("/v1/ner", json={}), 405, "method_not_allowed")
    assert api.get("/docs").status_code == 200
    assert "/v1/ner" in api.get("/openapi.json").json()["paths"]


def test_a_bug_answers_500_with_the_request_id(api: TestClient) -> None:
    """An unhandled exception: the error shape, no traceback, and the request id in the
    header and the body (the id the server log has it under)."""

    async def broken() -> None:
        raise RuntimeError("a bug")

    api.app.add_api_route("/v1/_broken", broken)
    try:
        response = api.get("/v1/_broken", headers={"X-Request-ID": "rid-of-the-bug"})
    finally:
        api.app.router.routes.pop()
    assert_error(response, 500, "internal_error", "request id")
    assert response.headers["X-Request-ID"] == "rid-of-the-bug"
    assert response.json()["error"]["request_id"] == "rid-of-the-bug"
    assert "a bug" not in response.text
