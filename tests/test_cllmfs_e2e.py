"""Two CLLMFS steps on the real Gemma-3-270M, exported, then served by llama.cpp with the LoRA.

Slow on a shared 2-core CPU (~1-2 min): the LoRA GGUF must fit the real base GGUF the server
loads, so the real model is trained. The run, export and serving checks are IF-WRANER's
(:func:`tests.test_trainer_e2e.train_export_and_serve`), with the CLLMFS objective.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.fixtures.gateway import SUPPORT_DOMAIN, SUPPORT_EXAMPLES
from tests.test_trainer_e2e import E2E_SETTINGS, train_export_and_serve
from trainers.cllmfs.cli import NAME
from trainers.cllmfs.config import CllmfsConfig
from trainers.cllmfs.objective import ContrastiveObjective

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_tiny_cllmfs_run_changes_adapter_and_llama_cpp_serves_it(
    tmp_path: Path, make_client: Callable[..., contextlib.AbstractContextManager[TestClient]]
) -> None:
    config = CllmfsConfig(**E2E_SETTINGS, run_dir=tmp_path / "run", log_every=1)
    objective = ContrastiveObjective(config)
    gguf = train_export_and_serve(config, tmp_path, objective, NAME)
    assert gguf.name == "cllmfs-lora.gguf"
    # the hidden state read is the output of block 14 of 18 (about 80% of the depth)
    assert objective.last_capture is not None and objective.last_capture.layer == 14
    lines = (config.run_dir / "train_log.jsonl").read_text().splitlines()
    assert all(json.loads(line)["contrastive_loss"] > 0 for line in lines)
    exported = (gguf.parent / "cllmfs-train-config.yaml").read_text()
    assert "contrastive_weight: 0.1" in exported

    # The adapter served as method=cllmfs through the gateway, beside wraner.
    with make_client(tmp_path / "gateway", cllmfs={"adapter": str(gguf)}) as client:
        assert client.post("/v1/domains", json=SUPPORT_DOMAIN).status_code == 201
        added = client.post("/v1/domains/support/examples", json={"examples": SUPPORT_EXAMPLES})
        assert added.status_code == 201, added.text
        served = {m["name"]: m["model"] for m in client.get("/v1/methods").json()["methods"]}
        assert served["cllmfs"].endswith("+cllmfs-lora") and "cllmfs-lora" not in served["wraner"]
        text = "Maria Lopez lost her Pixel 8 in Oslo."
        body = client.post(
            "/v1/ner", json={"text": text, "domain": "support", "method": "cllmfs"}
        ).json()
        assert body["method"] == "cllmfs" and body["model"] == served["cllmfs"], body
        assert body["examples_used"] > 0
        assert all(text[e["start"] : e["end"]] == e["text"] for e in body["entities"])
        assert client.get("/readyz").json()["methods"]["cllmfs"] is True
