"""A domain learns from its pool, through the gateway, with the real job process
(``python -m nerve.adaptation.job``: the shipped BANER loads in it, ~15-30 s a run): a run starts
once the pool has min_examples and publishes a version with its held-out scores; a failed, a
killed and a stopped run keep what served; a domain deleted mid-run leaves nothing; rollback.
The same faults, each in a second with a stand-in job: tests/test_adaptation_runner.py."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.components import Components
from nerve.adaptation.model import load_model
from nerve.adaptation.store import RUNS
from nerve.data.readers import entity_types_of, read_split
from tests.fixtures.gateway import require_data

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

MIN_EXAMPLES = 40
RUN_TIMEOUT_S = 300.0
ClientMaker = Callable[..., contextlib.AbstractContextManager[TestClient]]


@pytest.fixture(scope="module")
def music() -> tuple[list[str], list[dict[str, Any]]]:
    """60 short labelled sentences of CrossNER music (its train split) and their types."""
    examples = sorted(read_split(require_data(), "music", "train"), key=lambda e: len(e.text))[:60]
    assert len(examples) == 60
    payload = [
        {
            "text": e.text,
            "entities": [{"start": s.start, "end": s.end, "type": s.type} for s in e.entities],
        }
        for e in examples
    ]
    return entity_types_of(examples), payload


def overrides() -> dict[str, Any]:
    return {"adapt": {"enabled": True, "min_examples": MIN_EXAMPLES, "epochs": 10, "poll_s": 0.1}}


@pytest.fixture(scope="module")
def gateway(
    make_client: ClientMaker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    with make_client(tmp_path_factory.mktemp("adapt"), **overrides()) as client:
        yield client


def components(client: TestClient) -> Components:
    found: Components = client.app.state.components  # type: ignore[attr-defined]
    return found


def create(client: TestClient, name: str, types: list[str]) -> None:
    spec = {"name": name, "entity_types": [{"name": t} for t in types]}
    assert client.post("/v1/domains", json=spec).status_code == 201


def add(client: TestClient, name: str, examples: list[dict[str, Any]]) -> None:
    response = client.post(f"/v1/domains/{name}/examples", json={"examples": examples})
    assert response.status_code == 201, response.text


def adaptation(client: TestClient, name: str) -> dict[str, Any]:
    response = client.get(f"/v1/domains/{name}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()["adaptation"]
    return found


def settled(client: TestClient, name: str) -> dict[str, Any]:
    """The adaptation once its run ended."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        state = adaptation(client, name)
        if state["status"] not in ("queued", "running"):
            return state
        time.sleep(0.5)
    raise AssertionError(f"the run of {name} did not end within {RUN_TIMEOUT_S} s")


def job_pid(client: TestClient, name: str, timeout_s: float = 60.0) -> int:
    runner = components(client).adaptation.runner
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pid = runner.job_pid("default", name)
        if pid is not None:
            return pid
        time.sleep(0.05)
    raise AssertionError(f"no job of {name} started within {timeout_s} s")


def gone(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split(")")[-1].split()[0] == "Z"


def start(client: TestClient, name: str) -> dict[str, Any]:
    response = client.post(f"/v1/domains/{name}/adaptation")
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def rollback(client: TestClient, name: str, body: dict[str, Any] | None) -> Any:
    return client.post(f"/v1/domains/{name}/adaptation/rollback", json=body)


@pytest.fixture(scope="module")
def music_run(gateway: TestClient, music: tuple[list[str], list[dict[str, Any]]]) -> dict[str, Any]:
    """The ``music`` domain taken to its first run: what the API said before, at and after its
    trigger (a fixture, not a test's side effect: the tests that need the domain may run
    without the one that checks this, e.g. on another pytest-xdist worker)."""
    types, examples = music
    create(gateway, "music", types)
    add(gateway, "music", examples[: MIN_EXAMPLES - 1])
    before = adaptation(gateway, "music")
    refused = gateway.post("/v1/domains/music/adaptation")
    add(gateway, "music", examples[MIN_EXAMPLES - 1 : MIN_EXAMPLES])  # the trigger
    triggered = adaptation(gateway, "music")
    busy = gateway.post("/v1/domains/music/adaptation")
    return {
        "types": types,
        "before": before,
        "refused": (refused.status_code, refused.json()),
        "triggered": triggered,
        "busy": (busy.status_code, busy.json()),
        "settled": settled(gateway, "music"),
    }


def serve_version_1(client: TestClient) -> None:
    """Music's first version serves, whether or not its run won the gate (a rollback to it)."""
    if adaptation(client, "music")["served_version"] is None:  # not promoted: serve it
        served = rollback(client, "music", {"to": 1})
        assert served.status_code == 200 and served.json()["served_version"] == 1


def test_a_run_starts_at_min_examples_and_publishes_a_version(
    gateway: TestClient, music_run: dict[str, Any]
) -> None:
    types, state = music_run["types"], music_run["before"]
    assert state["status"] == "none" and state["examples"] == MIN_EXAMPLES - 1
    assert state["next_run_at"] == MIN_EXAMPLES and state["enabled"]
    status, refused = music_run["refused"]
    assert status == 422 and refused["error"]["code"] == "invalid_request"
    assert (
        f"has {MIN_EXAMPLES - 1} examples; a run needs at least {MIN_EXAMPLES}"
        in (refused["error"]["message"])
    )
    assert music_run["triggered"]["status"] in ("queued", "running")
    status, busy = music_run["busy"]
    assert status == 409 and busy["error"]["code"] == "conflict"

    state = music_run["settled"]
    run = state["last_run"]
    assert run["status"] in ("succeeded", "not_promoted"), f"the run failed: {run}"
    assert run["trigger"] == "auto" and run["examples"] == MIN_EXAMPLES and run["version"] == 1
    latest = state["latest"]
    assert latest["version"] == 1 and latest["examples"] == MIN_EXAMPLES
    assert 0 <= latest["heldout_f1_domain"] <= 100 and 0 <= latest["heldout_f1_fewshot"] <= 100
    assert latest["promoted"] == latest["wins"] == (run["status"] == "succeeded")
    assert state["served_version"] == (1 if latest["wins"] else None)
    assert state["next_run_at"] == 50  # 40 grown by a quarter

    # The artefact the job made loads as the serving side will load it.
    store = components(gateway).adaptation.store
    record = store.state("default", "music").version(1)
    assert record is not None
    directory = store.version_dir("default", "music", 1) / "model"
    encoder = __import__("json").loads((directory / "manifest.json").read_text())["encoder"]
    model = load_model(directory, encoder=encoder, manifest_sha256=record.manifest_sha256)
    assert set(model.types) == set(types)

    metrics = gateway.get("/metrics").text
    outcome = "promoted" if latest["wins"] else "not_promoted"
    assert f'nerve_adaptation_runs_total{{outcome="{outcome}"}} 1.0' in metrics
    assert "nerve_adaptation_run_seconds_count " in metrics  # other tests' runs may count too


def test_rollback_to_a_version_to_the_few_shot_path_and_back(
    gateway: TestClient, music_run: dict[str, Any]
) -> None:
    serve_version_1(gateway)
    assert rollback(gateway, "music", {"to": 1}).status_code == 409  # serves it already
    fewshot = rollback(gateway, "music", {"to": None})
    assert fewshot.status_code == 200, fewshot.text
    assert fewshot.json()["served_version"] is None and fewshot.json()["status"] == "few_shot"
    assert components(gateway).adaptation.store.served("default", "music") is None
    back = rollback(gateway, "music", None)  # no body: the previous version
    assert back.status_code == 200 and back.json()["served_version"] == 1
    assert back.json()["status"] == "served" and back.json()["served"]["serving"]
    unknown = rollback(gateway, "music", {"to": 9})
    assert unknown.status_code == 404
    assert "no adapted version 9 (versions: 1)" in unknown.json()["error"]["message"]
    assert rollback(gateway, "nosuch", {"to": 1}).status_code == 404
    assert rollback(gateway, "music", {"to": "x"}).status_code == 422


def answers(client: TestClient, texts: list[str]) -> tuple[set[str], list[Any], list[Any]]:
    """The models that answered ``texts`` (method=baner), their entities, their reasons."""
    time.sleep(0.3)  # past poll_s: the gateway has looked at the store again
    bodies = []
    for text in texts:
        response = client.post("/v1/ner", json={"domain": "music", "text": text, "method": "baner"})
        assert response.status_code == 200, response.text
        bodies.append(response.json())
    return (
        {b["model"] for b in bodies},
        [[(e["start"], e["end"], e["type"]) for e in b["entities"]] for b in bodies],
        [b["escalation_reasons"] for b in bodies],
    )


def test_answers_name_the_served_version_and_a_rollback_restores_them(
    gateway: TestClient, music_run: dict[str, Any], music_queries: list[str]
) -> None:
    """The promoted model answers (its version in the answer's model), a rollback to the
    few-shot path restores the few-shot answers, and a corrupt artefact is never served."""
    serve_version_1(gateway)
    adapted_models, adapted, _ = answers(gateway, music_queries)
    assert len(adapted_models) == 1 and next(iter(adapted_models)).endswith("+domain-v1")
    assert rollback(gateway, "music", {"to": None}).status_code == 200
    fewshot_models, fewshot, _ = answers(gateway, music_queries)
    assert len(fewshot_models) == 1 and "+domain-v" not in next(iter(fewshot_models))
    assert fewshot != adapted  # the domain model answered, not the few-shot stages
    assert rollback(gateway, "music", {"to": 1}).status_code == 200
    assert answers(gateway, music_queries)[1] == adapted
    assert rollback(gateway, "music", {"to": None}).status_code == 200
    assert answers(gateway, music_queries)[1] == fewshot  # restored
    assert rollback(gateway, "music", {"to": 1}).status_code == 200

    # A corrupt weights file, met by a process loading it (a new replica, or this one after
    # its LRU let the model go): refused by its digest, the few-shot path answers, says so.
    store = components(gateway).adaptation.store
    served = components(gateway).ner.domain_models
    assert served is not None
    weights = store.version_dir("default", "music", 1) / "model" / "head.safetensors"
    original = weights.read_bytes()
    try:
        weights.write_bytes(original[:-8] + bytes(8))
        served.forget("default", "music")
        models, found, reasons = answers(gateway, music_queries)
        assert "+domain-v" not in next(iter(models)) and found == fewshot
        assert all("domain_model_unavailable" in r for r in reasons)
    finally:
        weights.write_bytes(original)
    assert answers(gateway, music_queries)[1] == adapted  # mended: served again


@pytest.fixture(scope="module")
def music_queries() -> list[str]:
    """Five music dev sentences (never in the pool)."""
    return [e.text for e in read_split(require_data(), "music", "dev")[:5]]


def test_a_failed_job_keeps_the_served_version_and_shows_the_error(
    gateway: TestClient, music_run: dict[str, Any]
) -> None:
    serve_version_1(gateway)
    runner = components(gateway).adaptation.runner
    settings = runner.settings
    bad = settings.adapt.model_copy(update={"design": "transformer"})  # no such head
    runner.settings = settings.model_copy(update={"adapt": bad})
    try:
        assert start(gateway, "music")["status"] in ("queued", "running")
        state = settled(gateway, "music")
    finally:
        runner.settings = settings
    assert state["status"] == "failed" and state["last_run"]["status"] == "failed"
    assert "exited with status 1" in state["error"]
    assert "'transformer'" in state["error"]  # the end of the job's traceback
    assert state["served_version"] == 1 and [v["version"] for v in state["versions"]] == [1]
    assert components(gateway).adaptation.store.served("default", "music") is not None


def test_a_killed_job_keeps_the_served_version(
    gateway: TestClient, music_run: dict[str, Any]
) -> None:
    serve_version_1(gateway)
    start(gateway, "music")
    pid = job_pid(gateway, "music")
    assert adaptation(gateway, "music")["status"] == "running"
    os.kill(pid, signal.SIGKILL)
    state = settled(gateway, "music")
    assert state["status"] == "failed"
    assert "killed by signal 9" in state["error"]
    assert state["served_version"] == 1 and len(state["versions"]) == 1


def test_a_domain_deleted_mid_run_leaves_no_directory(
    gateway: TestClient, music: tuple[list[str], list[dict[str, Any]]]
) -> None:
    types, examples = music
    create(gateway, "doomed", types)
    add(gateway, "doomed", examples[:MIN_EXAMPLES])  # starts a run
    pid = job_pid(gateway, "doomed")
    assert gateway.delete("/v1/domains/doomed").status_code == 200
    store = components(gateway).adaptation.store
    assert not store.domain_dir("default", "doomed").exists()
    assert not any((store.root / RUNS).iterdir())
    assert gone(pid)
    assert gateway.get("/v1/domains/doomed").status_code == 404
    # A domain of the same name starts afresh.
    create(gateway, "doomed", types)
    assert adaptation(gateway, "doomed")["status"] == "none"
    assert gateway.delete("/v1/domains/doomed").status_code == 200


def test_a_stopped_gateway_kills_its_run_and_says_so_after_a_restart(
    make_client: ClientMaker,
    tmp_path: Path,
    music: tuple[list[str], list[dict[str, Any]]],
) -> None:
    types, examples = music
    with make_client(tmp_path, **overrides()) as client:
        create(client, "music", types)
        add(client, "music", examples[:MIN_EXAMPLES])
        pid = job_pid(client, "music")
    assert gone(pid)
    with make_client(tmp_path, **overrides()) as client:
        state = adaptation(client, "music")
        assert state["status"] == "failed" and state["error"] == "gateway stopped"
        assert state["versions"] == [] and state["served_version"] is None
        assert state["next_run_at"] == MIN_EXAMPLES  # a stopped run does not count
        assert not any((tmp_path / "adaptation" / RUNS).iterdir())


def test_two_gateways_on_one_redis_serve_the_version_one_of_them_promoted(
    make_client: ClientMaker,
    tmp_path: Path,
    redis_url: str,
    music: tuple[list[str], list[dict[str, Any]]],
    music_queries: list[str],
) -> None:
    """Replicas share the adaptation directory (a shared volume in production; here one
    directory) and Redis (the run lock): a version one trains and promotes serves on the other
    within poll_s, a rollback too, and the other cannot start a run of the domain meanwhile."""
    types, examples = music
    shared = {"dir": str(tmp_path / "adaptation")}
    settings = {**overrides()["adapt"], **shared, "enabled": False}
    with (
        make_client(tmp_path / "a", adapt=settings, redis_url=redis_url) as first,
        make_client(tmp_path / "b", adapt=settings, redis_url=redis_url) as second,
    ):
        for client in (first, second):  # the domain's pool (one Milvus server in production)
            create(client, "music", types)
            add(client, "music", examples[:MIN_EXAMPLES])
        start(first, "music")
        job_pid(first, "music")
        busy = second.post("/v1/domains/music/adaptation")
        assert busy.status_code == 409, busy.text  # the first holds the domain's Redis lock
        state = settled(first, "music")
        if state["served_version"] is None:  # it did not win its held-out: serve it anyway
            assert rollback(first, "music", {"to": 1}).status_code == 200
        models, adapted, _ = answers(second, music_queries)
        assert models == {next(iter(answers(first, music_queries)[0]))}
        assert next(iter(models)).endswith("+domain-v1")
        assert adapted == answers(first, music_queries)[1]
        assert rollback(first, "music", {"to": None}).status_code == 200
        models, _, _ = answers(second, music_queries)
        assert "+domain-v" not in next(iter(models))
