"""The adaptation store (nerve/adaptation/store.py): versions published from a job's output,
promoted only when they beat the few-shot path, rolled back, deleted; state.json always whole."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import get_args

import pytest

from nerve.adaptation.store import (
    RUNS,
    STATE_FILE,
    AdaptationStore,
    DomainGone,
    PublishRejected,
    RunRecord,
)
from nerve.errors import Conflict, NotFound
from nerve.settings import AdaptSettings
from tests.fixtures.adaptation_job import write_output

TENANT, DOMAIN, CREATED = "acme", "music", 1000.0


def run_record(run_id: str, examples: int = 60) -> RunRecord:
    return RunRecord(
        run_id=run_id, trigger="manual", status="queued", queued_at=time.time(), examples=examples
    )


def fit_version(
    store: AdaptationStore,
    run_id: str,
    *,
    wins: bool,
    examples: int = 60,
    domain: str = DOMAIN,
    report: bool = True,
) -> Path:
    """Queue and start a run, and leave its job's output as the job would: its output dir."""
    run = run_record(run_id, examples)
    store.queue(TENANT, domain, run, CREATED)
    store.start(TENANT, domain, run, CREATED)
    dirs = store.prepare_run(run_id)
    write_output(dirs.output, domain=domain, examples=examples, wins=wins, report=report)
    return dirs.output


def publish(store: AdaptationStore, run_id: str, *, wins: bool, examples: int = 60) -> None:
    output = fit_version(store, run_id, wins=wins, examples=examples)
    store.publish(TENANT, DOMAIN, run_id, output)
    store.discard_run(run_id)


@pytest.fixture
def store(tmp_path: Path) -> AdaptationStore:
    return AdaptationStore(tmp_path / "adaptation")


def test_a_winning_version_is_promoted_and_served(store: AdaptationStore) -> None:
    assert store.served(TENANT, DOMAIN) is None
    assert store.state_stamp(TENANT, DOMAIN) is None
    publish(store, "run1", wins=True)
    state = store.state(TENANT, DOMAIN)
    assert state.served == 1
    record = state.version(1)
    assert record is not None and record.promoted and record.wins
    assert (record.heldout_f1_domain, record.heldout_f1_fewshot) == (60.0, 50.0)
    assert "beats the few-shot path" in record.reason
    assert state.last_run is not None and state.last_run.status == "succeeded"
    assert state.last_run.version == 1 and state.examples_at_last_run == 60
    served = store.served(TENANT, DOMAIN)
    assert served is not None and served.version == 1
    assert (served.directory / "manifest.json").is_file()
    assert (served.directory / "head.safetensors").is_file()
    assert served.manifest_sha256 == record.manifest_sha256
    assert not (store.root / RUNS / "run1").exists()


def test_a_losing_version_is_kept_but_not_served(store: AdaptationStore) -> None:
    publish(store, "run1", wins=True)
    publish(store, "run2", wins=False, examples=80)
    state = store.state(TENANT, DOMAIN)
    assert [v.version for v in state.versions] == [1, 2]
    assert state.served == 1  # the earlier winner keeps serving
    loser = state.version(2)
    assert loser is not None and not loser.promoted
    assert "does not beat" in loser.reason
    assert state.last_run is not None and state.last_run.status == "not_promoted"
    assert state.examples_at_last_run == 80


def test_rollback_to_a_version_to_the_few_shot_path_and_back(store: AdaptationStore) -> None:
    publish(store, "run1", wins=True)
    publish(store, "run2", wins=True)
    assert store.state(TENANT, DOMAIN).served == 2
    assert store.rollback(TENANT, DOMAIN).served == 1  # default: the previous version
    assert store.rollback(TENANT, DOMAIN, None).served is None
    assert store.served(TENANT, DOMAIN) is None
    assert store.rollback(TENANT, DOMAIN).served == 1  # undo of the rollback to few-shot
    assert store.rollback(TENANT, DOMAIN, 2).served == 2  # any version, whatever its scores
    publish(store, "run3", wins=False)
    assert store.rollback(TENANT, DOMAIN, 3).served == 3  # a version that never won
    history = [change.why for change in store.state(TENANT, DOMAIN).history]
    assert history[0].startswith("promoted v1") and history[-1] == "rolled back to v3"


def test_rollback_refusals(store: AdaptationStore) -> None:
    with pytest.raises(Conflict, match="nothing to roll back"):
        store.rollback(TENANT, DOMAIN)
    with pytest.raises(NotFound, match="no adapted version 4"):
        store.rollback(TENANT, DOMAIN, 4)
    assert not store.domain_dir(TENANT, DOMAIN).exists()  # refusals make no tree
    publish(store, "run1", wins=True)
    with pytest.raises(Conflict, match="already serves v1"):
        store.rollback(TENANT, DOMAIN, 1)
    with pytest.raises(NotFound, match=r"versions: 1\)"):
        store.rollback(TENANT, DOMAIN, 2)
    store.rollback(TENANT, DOMAIN, None)
    manifest = store.version_dir(TENANT, DOMAIN, 1) / "model" / "manifest.json"
    manifest.write_text(manifest.read_text() + " ")  # tampered with
    with pytest.raises(Conflict, match="missing or corrupt"):
        store.rollback(TENANT, DOMAIN, 1)
    assert store.state(TENANT, DOMAIN).served is None


def test_publish_refuses_output_that_does_not_match_its_report(store: AdaptationStore) -> None:
    output = fit_version(store, "run1", wins=True, report=False)
    with pytest.raises(PublishRejected, match="missing or unreadable"):
        store.publish(TENANT, DOMAIN, "run1", output)
    write_output(output / "again", domain=DOMAIN, examples=60, wins=True)
    (output / "again" / "report.json").rename(output / "report.json")
    (output / "model" / "manifest.json").write_text("{}")  # not the manifest the report names
    with pytest.raises(PublishRejected, match="digest"):
        store.publish(TENANT, DOMAIN, "run1", output)
    assert store.state(TENANT, DOMAIN).versions == []


def test_a_failure_keeps_what_served(store: AdaptationStore) -> None:
    publish(store, "run1", wins=True)
    fit_version(store, "run2", wins=True, examples=90)
    state = store.record_failure(TENANT, DOMAIN, "run2", "the job exited with status 1: boom")
    assert state.served == 1 and len(state.versions) == 1
    assert state.last_run is not None and state.last_run.status == "failed"
    assert state.last_run.error == "the job exited with status 1: boom"
    assert state.examples_at_last_run == 90
    fit_version(store, "run3", wins=True, examples=120)
    stopped = store.record_failure(TENANT, DOMAIN, "run3", "gateway stopped", counts=False)
    assert stopped.examples_at_last_run == 90  # a stopped run does not count as a run


def test_a_deleted_domain_takes_everything_and_its_run_writes_nothing(
    store: AdaptationStore,
) -> None:
    publish(store, "run1", wins=True)
    output = fit_version(store, "run2", wins=True)
    assert store.delete(TENANT, DOMAIN)
    assert not store.domain_dir(TENANT, DOMAIN).exists()
    assert not (store.root / TENANT).exists()
    with pytest.raises(DomainGone):
        store.publish(TENANT, DOMAIN, "run2", output)
    with pytest.raises(DomainGone):
        store.record_failure(TENANT, DOMAIN, "run2", "late")
    assert not store.domain_dir(TENANT, DOMAIN).exists()  # nothing made again
    assert store.served(TENANT, DOMAIN) is None
    assert not store.delete(TENANT, DOMAIN)


def test_a_run_queued_before_a_delete_does_not_start_on_the_new_domain(
    store: AdaptationStore,
) -> None:
    run = run_record("old")
    store.queue(TENANT, DOMAIN, run, CREATED)
    store.delete(TENANT, DOMAIN)
    with pytest.raises(DomainGone):
        store.start(TENANT, DOMAIN, run, CREATED)
    store.queue(TENANT, DOMAIN, run_record("new"), CREATED + 5)  # the domain made again
    with pytest.raises(DomainGone):
        store.start(TENANT, DOMAIN, run, CREATED)


def test_a_leftover_of_an_earlier_domain_of_the_same_name_is_dropped(
    store: AdaptationStore,
) -> None:
    publish(store, "run1", wins=True)
    state = store.queue(TENANT, DOMAIN, run_record("next"), CREATED + 1)
    assert state.versions == [] and state.served is None
    assert not store.version_dir(TENANT, DOMAIN, 1).exists()


def test_state_is_replaced_whole_and_every_write_changes_the_stamp(
    store: AdaptationStore,
) -> None:
    publish(store, "run1", wins=True)
    publish(store, "run2", wins=True)
    path = store.domain_dir(TENANT, DOMAIN) / STATE_FILE
    seen: list[int] = []
    errors: list[Exception] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                json.loads(path.read_text())  # never half a file
                stamp = store.state_stamp(TENANT, DOMAIN)
                assert stamp is not None
                seen.append(stamp)
            except Exception as exc:  # pragma: no cover - the failure is the assertion below
                errors.append(exc)

    done: list[int] = []

    def roll(first: int) -> None:
        for step in range(12):
            try:
                store.rollback(TENANT, DOMAIN, first if step % 2 else 3 - first)
                done.append(1)
            except Conflict:  # the other thread served that version just before
                pass

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=roll, args=(n,)) for n in (1, 2)]
    before = store.state_stamp(TENANT, DOMAIN)
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    stop.set()
    reader.join()
    assert not errors
    # Under the state lock no write is lost: one history entry per rollback done.
    assert len(store.state(TENANT, DOMAIN).history) == 2 + len(done)
    assert store.state_stamp(TENANT, DOMAIN) != before
    assert len(set(seen)) > 1
    assert not list(store.domain_dir(TENANT, DOMAIN).glob("*.tmp"))


def test_names_must_be_safe_path_parts(store: AdaptationStore) -> None:
    for tenant, domain in (("../x", DOMAIN), (TENANT, ".runs"), (TENANT, "a/b"), ("A", DOMAIN)):
        with pytest.raises(ValueError, match="safe path part"):
            store.state(tenant, domain)


def test_the_settings_defaults_are_the_fit_options_defaults() -> None:
    from nerve.adaptation.fit import FitOptions
    from nerve.adaptation.head import HEAD_DESIGNS

    options, adapt = FitOptions(), AdaptSettings()
    assert (adapt.design, adapt.epochs, adapt.folds) == (
        options.design,
        options.epochs,
        options.folds,
    )
    assert get_args(AdaptSettings.model_fields["design"].annotation) == HEAD_DESIGNS
