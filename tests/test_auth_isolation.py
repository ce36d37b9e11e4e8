"""Tenant isolation through the real app with auth on: every /v1 route needs a key, and a key
of one tenant can neither read, write nor infer anything of another tenant's."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.auth import KEY_HEADER, TENANT_HEADER, key_entry, new_api_key
from tests.fixtures.gateway import SUPPORT_DOMAIN, SUPPORT_EXAMPLES

pytestmark = pytest.mark.integration

ACME, GLOBEX, ROOT = new_api_key(), new_api_key(), new_api_key()
TEXT = "Maria Lopez says her Pixel 8 never arrived in Madrid."


def as_(key: str, **extra: str) -> dict[str, str]:
    return {KEY_HEADER: key, **extra}


@pytest.fixture(scope="module")
def secure(
    make_client: Callable[..., contextlib.AbstractContextManager[TestClient]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("auth")
    keys = root / "keys.json"
    keys.write_text(
        json.dumps(
            [
                key_entry(ACME, "acme").model_dump(),
                key_entry(GLOBEX, "globex").model_dump(),
                key_entry(ROOT, "ops", admin=True).model_dump(),
            ]
        )
    )
    with make_client(root / "data", auth={"enabled": True, "api_keys_file": keys}) as client:
        assert client.post("/v1/domains", json=SUPPORT_DOMAIN, headers=as_(ACME)).status_code == 201
        added = client.post(
            "/v1/domains/support/examples",
            json={"examples": SUPPORT_EXAMPLES},
            headers=as_(ACME),
        )
        assert added.status_code == 201, added.text
        yield client


@pytest.fixture(scope="module")
def acme_state(secure: TestClient) -> dict[str, Any]:
    """Things of tenant acme another tenant might try to reach."""
    answer = secure.post("/v1/ner", json={"text": TEXT, "domain": "support"}, headers=as_(ACME))
    assert answer.status_code == 200, answer.text
    page = secure.get("/v1/domains/support/examples", headers=as_(ACME)).json()
    job = secure.post(
        "/v1/ner/jobs",
        json={"text": TEXT, "domain": "support", "method": "baner"},
        headers=as_(ACME),
    )
    assert job.status_code == 202, job.text
    return {
        "request_id": answer.json()["request_id"],
        "example_id": page["examples"][0]["id"],
        "job_id": job.json()["job_id"],
    }


def v1_routes(client: TestClient) -> set[tuple[str, str]]:
    """Every (method, path) the app serves under /v1, from its OpenAPI schema."""
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    return {
        (method.upper(), path)
        for path, operations in paths.items()
        if path.startswith("/v1")
        for method in operations
    }


def fill(path: str, state: dict[str, Any], domain: str = "support") -> str:
    return (
        path.replace("{name}", domain)
        .replace("{example_id}", state["example_id"])
        .replace("{job_id}", state["job_id"])
    )


def test_every_v1_route_needs_a_valid_key(secure: TestClient, acme_state: dict[str, Any]) -> None:
    routes = v1_routes(secure)
    assert len(routes) >= 9
    for method, path in sorted(routes):
        url = fill(path, acme_state)
        for headers in ({}, as_(new_api_key())):
            response = secure.request(method, url, headers=headers, json={})
            assert response.status_code == 401, (method, path, response.text)
            assert response.json()["error"]["code"] == "unauthenticated"
            assert response.headers["WWW-Authenticate"] == "Bearer"


def test_probes_need_no_key(secure: TestClient) -> None:
    assert secure.get("/healthz").status_code == 200
    assert secure.get("/readyz").status_code == 200


def _probes(state: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """What globex tries on acme's domain, for every /v1 route (the test checks the coverage)."""
    ner = {"text": TEXT, "domain": "support"}
    example = {"examples": [{"text": "Sam broke a Pixel 8.", "entities": []}]}
    return {
        ("GET", "/v1/domains"): {},
        ("POST", "/v1/domains"): {"json": SUPPORT_DOMAIN},
        ("GET", "/v1/domains/{name}"): {},
        ("DELETE", "/v1/domains/{name}"): {},
        ("POST", "/v1/domains/{name}/examples"): {"json": example},
        ("GET", "/v1/domains/{name}/examples"): {},
        ("GET", "/v1/domains/{name}/export"): {},
        ("DELETE", "/v1/domains/{name}/examples/{example_id}"): {},
        ("GET", "/v1/domains/{name}/adaptation"): {},
        ("POST", "/v1/domains/{name}/adaptation"): {},
        ("POST", "/v1/domains/{name}/adaptation/rollback"): {"json": {"to": 1}},
        ("POST", "/v1/ner"): {"json": ner},
        ("POST", "/v1/ner/batch"): {"json": [ner]},
        ("POST", "/v1/ner/jobs"): {"json": ner},
        ("GET", "/v1/ner/jobs/{job_id}"): {},
        ("DELETE", "/v1/ner/jobs/{job_id}"): {},
        ("GET", "/v1/methods"): {},
        ("POST", "/v1/feedback"): {
            "json": {"request_id": state["request_id"], "outcome": "resolved", "entities": []}
        },
        ("GET", "/v1/feedback/escalations"): {"params": {"domain": "support"}},
        ("GET", "/v1/feedback/escalation-rate"): {"params": {"domain": "support"}},
    }


def test_another_tenant_can_neither_read_nor_write(
    secure: TestClient, acme_state: dict[str, Any]
) -> None:
    probes = _probes(acme_state)
    assert set(probes) == v1_routes(secure), "a /v1 route has no isolation probe"
    before = secure.get("/v1/domains/support/examples", headers=as_(ACME)).json()["total"]

    for (method, path), kwargs in probes.items():
        if path in ("/v1/domains", "/v1/methods"):
            continue  # checked below: they act on globex's own list; no tenant data
        response = secure.request(method, fill(path, acme_state), headers=as_(GLOBEX), **kwargs)
        assert response.status_code == 404, (method, path, response.text)
        # Indistinguishable from a domain that exists nowhere: nothing to infer from the answer.
        if "{name}" in path or path.startswith("/v1/ner"):
            if "{example_id}" in path:
                continue  # the domain check comes first: same message as below
            nowhere = secure.request(
                method,
                fill(path.replace("{name}", "nowhere"), acme_state),
                headers=as_(GLOBEX),
                **_with_domain(kwargs, "nowhere"),
            )
            assert nowhere.status_code == 404
            assert response.json()["error"]["message"] == nowhere.json()["error"][
                "message"
            ].replace("nowhere", "support"), (method, path)

    assert secure.get("/v1/domains", headers=as_(GLOBEX)).json()["domains"] == []
    # Creating a domain of the same name is not a conflict: names are per tenant.
    created = secure.post("/v1/domains", json=SUPPORT_DOMAIN, headers=as_(GLOBEX))
    assert created.status_code == 201 and created.json()["examples"] == 0
    assert secure.delete("/v1/domains/support", headers=as_(GLOBEX)).status_code == 200
    # acme's job is untouched: still acme's, not cancelled by globex's DELETE.
    job = secure.get(fill("/v1/ner/jobs/{job_id}", acme_state), headers=as_(ACME))
    assert job.status_code == 200 and job.json()["status"] != "cancelled"
    # acme's domain is untouched by all of the above.
    after = secure.get("/v1/domains/support/examples", headers=as_(ACME)).json()["total"]
    assert after == before == len(SUPPORT_EXAMPLES)
    assert secure.get("/v1/domains/support", headers=as_(ACME)).status_code == 200


def _with_domain(kwargs: dict[str, Any], domain: str) -> dict[str, Any]:
    body = kwargs.get("json")
    if isinstance(body, dict) and "domain" in body:
        return {"json": {**body, "domain": domain}}
    if isinstance(body, list):
        return {"json": [{**item, "domain": domain} for item in body]}
    return kwargs


def test_the_answer_cache_is_per_tenant(secure: TestClient) -> None:
    text = "Order B-77 with a Kindle went to Porto instead of Braga."
    for key in (ACME, GLOBEX):
        spec = {**SUPPORT_DOMAIN, "name": "helpdesk"}
        assert secure.post("/v1/domains", json=spec, headers=as_(key)).status_code == 201
        examples = {"examples": SUPPORT_EXAMPLES}
        added = secure.post("/v1/domains/helpdesk/examples", json=examples, headers=as_(key))
        assert added.status_code == 201
    body = {"text": text, "domain": "helpdesk"}
    first = secure.post("/v1/ner", json=body, headers=as_(ACME)).json()
    again = secure.post("/v1/ner", json=body, headers=as_(ACME)).json()
    other = secure.post("/v1/ner", json=body, headers=as_(GLOBEX)).json()
    assert (first["cached"], again["cached"]) == (False, True)
    assert other["cached"] is False, "another tenant's identical request hit acme's cache"


def test_admin_key_acts_for_a_named_tenant_only_when_asked(secure: TestClient) -> None:
    assert secure.get("/v1/domains/support", headers=as_(ROOT)).status_code == 404
    as_acme = as_(ROOT, **{TENANT_HEADER: "acme"})
    assert secure.get("/v1/domains/support", headers=as_acme).status_code == 200
    refused = secure.get("/v1/domains", headers=as_(ACME, **{TENANT_HEADER: "globex"}))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"


def test_metrics_need_an_admin_key(secure: TestClient) -> None:
    # Metric labels name every tenant's domains: only an admin key may read them.
    assert secure.get("/metrics").status_code == 401
    assert secure.get("/metrics", headers=as_(ACME)).status_code == 403
    answer = secure.get("/metrics", headers=as_(ROOT))
    assert answer.status_code == 200
    assert "nerve_requests_total" in answer.text
