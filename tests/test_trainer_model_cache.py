"""trainers.wraner.model.base_model_dir: concurrent callers dequantise once and all get the model.

The suite's xdist workers (and two trainers on one machine) ask for the bf16 base model at the
same moment on a fresh clone; an earlier version raced on one staging directory and failed.
The dequantisation is replaced by a slow writer: this is a unit test of the locking.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from trainers.wraner import model
from trainers.wraner.config import WranerConfig


def test_concurrent_callers_materialise_the_model_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    lock = threading.Lock()

    def slow_dequantise(target: Path, gguf: Path) -> None:
        with lock:
            calls.append(1)
        time.sleep(0.3)  # long enough for every other caller to arrive meanwhile
        staged = target.with_name(target.name + ".staged")
        staged.mkdir()
        (staged / "config.json").write_text("{}")
        staged.rename(target)  # fails if a second writer already put the target in place

    monkeypatch.setattr(model, "_dequantise_into", slow_dequantise)
    monkeypatch.setattr(model, "base_gguf", lambda config: tmp_path / "base.gguf")
    config = WranerConfig(model_cache_dir=tmp_path / "models")

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: model.base_model_dir(config), range(4)))

    assert results == [tmp_path / "models" / model.GEMMA_HF_DIR] * 4
    assert len(calls) == 1
    assert (results[0] / "config.json").is_file()


def test_an_unfinished_earlier_directory_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "models" / model.GEMMA_HF_DIR
    target.mkdir(parents=True)
    (target / "model.safetensors").write_text("half")  # no config.json: never finished
    called: list[Path] = []
    monkeypatch.setattr(model, "_dequantise_into", lambda t, g: called.append(t))
    monkeypatch.setattr(model, "base_gguf", lambda config: tmp_path / "base.gguf")

    model.base_model_dir(WranerConfig(model_cache_dir=tmp_path / "models"))

    assert called == [target]
