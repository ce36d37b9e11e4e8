"""Label Studio both ways (issue 33 item 3), against a real ``nerve serve`` (auth on) and a real
Label Studio (tests/fixtures/labelstudio.py): uploads and exports in Label Studio, spaCy and
CoNLL formats, and nerve as a project's ML backend (predictions, the annotation webhook)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from app.auth import add_key
from nerve.data.formats.labelstudio import text_sha
from tests.fixtures.gateway import SUPPORT_DOMAIN, SUPPORT_EXAMPLES, ServerProcess
from tests.fixtures.labelstudio import LabelStudio
from tests.fixtures.settings import as_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# from_name/to_name/the data key are not Label Studio's defaults: nerve must read them.
LABEL_CONFIG = """<View>
  <Labels name="ner" toName="ticket">
    <Label value="person"/><Label value="product"/><Label value="location"/>
    <Label value="order_id"/>
  </Labels>
  <Text name="ticket" value="$body"/>
</View>"""

EMOJI_TEXT = "🎉🎉 Anna Berg says her Pixel 8 never reached Oslo."
TASK_TEXTS = [
    EMOJI_TEXT,
    "Tom Walsh asked where order A-1234 is.",
    "Anna Berg wants a refund for the Kindle she bought in Dublin.",
]


@dataclass
class Nerve:
    server: ServerProcess
    key: str
    client: httpx.Client
    other_key: str  # another tenant's

    def pool(self) -> dict[str, Any]:
        page = self.client.get("/v1/domains/support/examples", params={"limit": 500})
        assert page.status_code == 200, page.text
        return {e["id"]: e for e in page.json()["examples"]}


@pytest.fixture(scope="module")
def nerve(
    base_settings: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Nerve]:
    """``nerve serve`` with auth on and the support domain (four examples) for tenant acme."""
    root = tmp_path_factory.mktemp("labelstudio-nerve")
    keys = root / "keys.json"
    key = add_key(keys, "acme", name="labelstudio")
    other_key = add_key(keys, "globex", name="another tenant")
    env = as_env(base_settings)
    env |= {"NERVE_AUTH_ENABLED": "true", "NERVE_AUTH_API_KEYS_FILE": str(keys)}
    server = ServerProcess(root / "data", root / "server.log", env)
    server.start(timeout_s=300)
    try:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=600
        ) as client:
            assert client.post("/v1/domains", json=SUPPORT_DOMAIN).status_code == 201
            added = client.post("/v1/domains/support/examples", json={"examples": SUPPORT_EXAMPLES})
            assert added.status_code == 201, added.text
            yield Nerve(server, key, client, other_key)
    finally:
        server.stop()


# --- uploads and exports -------------------------------------------------------------------


def _ls_task(text: str, spans: list[tuple[str, str]], task_id: int = 1) -> dict[str, Any]:
    results = []
    for surface, label in spans:
        start = text.index(surface)
        value = {"start": start, "end": start + len(surface), "text": surface, "labels": [label]}
        results.append({"from_name": "label", "to_name": "text", "type": "labels", "value": value})
    return {"id": task_id, "data": {"text": text}, "annotations": [{"id": 1, "result": results}]}


def test_a_label_studio_export_uploads_all_or_nothing(nerve: Nerve) -> None:
    before = set(nerve.pool())
    good = _ls_task(
        "🙂 Lena Fox lost her Pixel 8 in Bergen.", [("Lena Fox", "person"), ("Bergen", "location")]
    )
    # The second task's value.text does not sit at its offsets: the whole file is refused.
    bad = _ls_task("Order B-77 for Sam Lee.", [("B-77", "order_id")], task_id=2)
    bad["annotations"][0]["result"][0]["value"]["start"] += 1
    refused = nerve.client.post(
        "/v1/domains/support/examples", params={"format": "labelstudio"}, json=[good, bad]
    )
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "malformed_body"
    assert "tasks[1] (id 2).annotations[0].result[0].value" in error["message"]
    # A label the domain does not have: 422 naming the task, nothing stored either.
    unknown = _ls_task("Sam Lee called.", [("Sam Lee", "caller")], task_id=9)
    refused = nerve.client.post("/v1/domains/support/examples", json=[good, unknown])
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["message"].startswith("tasks[1] (id 9) (examples[1])")
    assert set(nerve.pool()) == before

    # A JSON list is a Label Studio export without ?format= too; offsets are code points.
    added = nerve.client.post("/v1/domains/support/examples", json=[good])
    assert added.status_code == 201, added.text
    (example,) = [e for i, e in nerve.pool().items() if i in added.json()["ids"]]
    assert [(s["text"], s["start"]) for s in example["entities"]] == [
        ("Lena Fox", 2),
        ("Bergen", 31),
    ]


def test_spacy_uploads_and_bad_files(nerve: Nerve) -> None:
    before = set(nerve.pool())
    jsonl = json.dumps(
        {"text": "Ida Holm is in Tromsø.", "spans": [{"start": 15, "end": 21, "label": "location"}]}
    )
    garbage = nerve.client.post(
        "/v1/domains/support/examples",
        content=b"\x93NUMPY not a docbin",
        headers={"content-type": "application/octet-stream"},
    )
    assert garbage.status_code == 400, garbage.text
    assert "spaCy DocBin" in garbage.json()["error"]["message"]
    broken = nerve.client.post(
        "/v1/domains/support/examples",
        params={"format": "spacy-jsonl"},
        content=(jsonl + "\n{broken\n").encode(),
    )
    assert broken.status_code == 400 and "line 2" in broken.json()["error"]["message"]
    assert set(nerve.pool()) == before
    added = nerve.client.post(
        "/v1/domains/support/examples",
        content=jsonl.encode(),
        headers={"content-type": "application/x-ndjson"},
    )
    assert added.status_code == 201, added.text


def test_exports_in_every_format(nerve: Nerve) -> None:
    pool = nerve.pool()
    ls_export = nerve.client.get("/v1/domains/support/export", params={"format": "labelstudio"})
    assert ls_export.status_code == 200
    assert "attachment" in ls_export.headers["content-disposition"]
    tasks = ls_export.json()
    assert len(tasks) == len(pool)
    for task in tasks:
        text = task["data"]["text"]
        for result in task["annotations"][0]["result"]:
            value = result["value"]
            assert text[value["start"] : value["end"]] == value["text"]
    jsonl = nerve.client.get("/v1/domains/support/export", params={"format": "spacy-jsonl"})
    assert len(jsonl.text.splitlines()) == len(pool)
    conll = nerve.client.get("/v1/domains/support/export", params={"format": "conll"})
    assert "Anna\tB-person\nBerg\tI-person\n" in conll.text
    pytest.importorskip("spacy")
    docbin = nerve.client.get("/v1/domains/support/export", params={"format": "spacy"})
    assert (
        docbin.status_code == 200 and docbin.headers["content-type"] == "application/octet-stream"
    )
    from nerve.data.formats.spacy_docs import parse_docbin

    assert sorted(e.text for e in parse_docbin(docbin.content)) == sorted(
        e["text"] for e in pool.values()
    )


# --- the ML backend --------------------------------------------------------------------------


def test_ml_backend_routes_follow_the_api_keys(nerve: Nerve) -> None:
    url = f"{nerve.server.url}/labelstudio/support/health"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, auth=("anyone", "nrv_not-a-key")).status_code == 401
    assert httpx.get(url, auth=("nerve", nerve.key)).json()["status"] == "UP"
    missing = httpx.get(f"{nerve.server.url}/labelstudio/nope/health", auth=("nerve", nerve.key))
    assert missing.status_code == 404
    # Another tenant's key sees no such domain, on every route of the backend.
    for method, route in [("GET", "health"), ("POST", "setup"), ("POST", "predict")]:
        other = httpx.request(
            method,
            f"{nerve.server.url}/labelstudio/support/{route}",
            auth=("nerve", nerve.other_key),
            json={"schema": LABEL_CONFIG, "label_config": LABEL_CONFIG, "tasks": []},
        )
        assert other.status_code == 404, (route, other.text)
    webhook = {"action": "ANNOTATION_CREATED", "project": {}, "task": {}, "annotation": {}}
    other = httpx.post(
        f"{nerve.server.url}/labelstudio/support/webhook",
        auth=("nerve", nerve.other_key),
        json=webhook,
    )
    assert other.status_code == 404, other.text
    setup = httpx.post(
        f"{nerve.server.url}/labelstudio/support/setup",
        auth=("nerve", nerve.key),
        json={"project": "1.1", "schema": LABEL_CONFIG.replace("order_id", "ticket_no")},
    )
    assert setup.status_code == 422 and "ticket_no" in setup.json()["error"]["message"]


@dataclass
class Project:
    id: int
    task_ids: list[int]
    predictions: dict[int, list[dict[str, Any]]]
    seconds: float


@pytest.fixture(scope="module")
def project(nerve: Nerve, labelstudio: LabelStudio) -> Project:
    made = labelstudio.sdk(
        "setup_project",
        title="nerve e2e",
        label_config=LABEL_CONFIG,
        ml_url=f"{nerve.server.url}/labelstudio/support",
        key=nerve.key,
    )
    assert made["state"] == "CO", made  # connected: /health and /setup answered
    assert made["webhooks"], "Label Studio created no webhook for the ML backend"
    tasks = labelstudio.sdk(
        "import_tasks", project=made["project"], tasks=[{"body": t} for t in TASK_TEXTS]
    )["task_ids"]
    predicted = labelstudio.sdk("predict", project=made["project"], task_ids=tasks)
    predictions = {int(k): v for k, v in predicted["predictions"].items()}
    return Project(made["project"], tasks, predictions, predicted["seconds"])


def test_predictions_have_the_config_names_and_code_point_offsets(project: Project) -> None:
    for task_id, text in zip(project.task_ids, TASK_TEXTS, strict=True):
        (prediction,) = project.predictions[task_id]
        assert prediction["model_version"] == "nerve-support"
        for result in prediction["result"]:
            assert (result["from_name"], result["to_name"], result["type"]) == (
                "ner",
                "ticket",
                "labels",
            )
            value = result["value"]
            assert text[value["start"] : value["end"]] == value["text"], (text, value)
            assert value["labels"][0] in {"person", "product", "location", "order_id"}
            assert result["meta"]["nerve_text_sha"] == text_sha(text)
    emoji = {
        r["value"]["text"]: r["value"]
        for r in project.predictions[project.task_ids[0]][0]["result"]
    }
    # The pool labels "Oslo" a location (the gazetteer adds it): after the two emoji, its offset
    # is in code points (44), not UTF-16 units (46).
    assert emoji["Oslo"]["start"] == EMOJI_TEXT.index("Oslo") == 44
    assert emoji["Oslo"]["labels"] == ["location"]


def _wait_for(nerve: Nerve, example_id: str, timeout_s: float = 60) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = nerve.pool().get(example_id)
        if found is not None:
            return found
        time.sleep(1)
    return None


def test_an_annotation_reaches_the_pool(
    nerve: Nerve, labelstudio: LabelStudio, project: Project
) -> None:
    # The annotator accepts nerve's prediction of the emoji task and adds a product.
    task = project.task_ids[0]
    result = [r for r in project.predictions[task][0]["result"] if r["value"]["text"] != "Pixel 8"]
    start = EMOJI_TEXT.index("Pixel 8")
    result.append(
        {
            "from_name": "ner",
            "to_name": "ticket",
            "type": "labels",
            "value": {"start": start, "end": start + 7, "text": "Pixel 8", "labels": ["product"]},
        }
    )
    annotation = labelstudio.sdk("annotate", task=task, result=result)["annotation"]
    example_id = f"ls-{project.id}-{task}"
    example = _wait_for(nerve, example_id)
    assert example is not None, "the annotated task did not arrive in the pool"
    assert example["text"] == EMOJI_TEXT
    spans = {(s["text"], s["type"], s["start"]) for s in example["entities"]}
    assert ("Pixel 8", "product", 22) in spans and ("Oslo", "location", 44) in spans

    # The annotator takes "Oslo" back (ANNOTATION_UPDATED): the task's example is replaced.
    result = [r for r in result if r["value"]["text"] != "Oslo"]
    labelstudio.sdk("update_annotation", annotation=annotation, result=result)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        example = nerve.pool()[example_id]
        if "Oslo" not in {s["text"] for s in example["entities"]}:
            break
        time.sleep(1)
    assert {s["text"] for s in example["entities"]} == {r["value"]["text"] for r in result}
    page = nerve.client.get("/v1/domains/support/examples", params={"limit": 500}).json()
    assert [e["id"] for e in page["examples"]].count(example_id) == 1


def test_a_task_whose_text_changed_is_refused(
    nerve: Nerve, labelstudio: LabelStudio, project: Project
) -> None:
    task = project.task_ids[2]
    predicted = project.predictions[task][0]["result"]
    assert predicted, "nerve predicted nothing for the third task"
    labelstudio.sdk("update_task", task=task, data={"body": "Re: " + TASK_TEXTS[2]})
    annotation = labelstudio.sdk("annotate", task=task, result=predicted)["annotation"]
    # Label Studio swallows its webhook's answer: the pool must not have the task...
    assert _wait_for(nerve, f"ls-{project.id}-{task}", timeout_s=10) is None
    # ...and the same webhook, sent again, is refused with a 409 naming the change.
    payload = labelstudio.sdk(
        "webhook_payload", project=project.id, task=task, annotation=annotation
    )
    refused = httpx.post(
        f"{nerve.server.url}/labelstudio/support/webhook",
        json=payload,
        headers={"Authorization": f"Bearer {nerve.key}"},
        timeout=60,
    )
    assert refused.status_code == 409, refused.text
    assert "text changed since nerve predicted it" in refused.json()["error"]["message"]
    # Without nerve's digest (a hand-made result) the offsets are checked: 422, not mis-stored.
    for result in payload["annotation"]["result"]:
        result.pop("meta", None)
    refused = httpx.post(
        f"{nerve.server.url}/labelstudio/support/webhook",
        json=payload,
        headers={"Authorization": f"Bearer {nerve.key}"},
        timeout=60,
    )
    assert refused.status_code == 422, refused.text
    assert f"ls-{project.id}-{task}" not in nerve.pool()
