"""A domain model: typed decoding, fitting on a real pool over BANER's states, the artefact's
digests, and the per-process cache of served models."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from nerve.adaptation.fit import FitOptions, fit_domain, fit_head, heldout_count, judging_splits
from nerve.adaptation.head import DomainHead, decode_typed, typed_tags
from nerve.adaptation.model import (
    MANIFEST_FILE,
    WEIGHTS_FILE,
    ArtefactRejected,
    DomainModel,
    load_model,
    save_model,
)
from nerve.adaptation.serving import DomainModels
from nerve.data.readers import read_split
from nerve.methods.baner.extractor import BanerExtractor
from nerve.methods.encoders.factory import DEFAULT_ARTEFACT
from nerve.methods.handler import SegmentTask
from nerve.vocab.types import EntityType, Example, Span
from nerve.vocab.words import split_words

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "crossner"


def _log(rows: list[list[float]]) -> np.ndarray:
    return np.log(np.asarray(rows, dtype=float))


def test_decoding_never_continues_another_type() -> None:
    # Tags: O, B-a, I-a, B-b, I-b. Word 1 prefers I-b after B-a: not allowed, so it
    # becomes I-a (the best legal path), never a span of b starting with I.
    spans = decode_typed(
        _log(
            [
                [0.01, 0.9, 0.03, 0.03, 0.03],
                [0.05, 0.05, 0.4, 0.05, 0.45],
                [0.9, 0.025, 0.025, 0.025, 0.025],
            ]
        ),
        2,
    )
    assert [(a, b, k) for a, b, k, _ in spans] == [(0, 1, 0)]


def test_decoding_never_starts_with_inside() -> None:
    spans = decode_typed(_log([[0.1, 0.1, 0.8], [0.8, 0.1, 0.1]]), 1)
    assert [(a, b, k) for a, b, k, _ in spans] in ([(0, 0, 0)], [])


def test_typed_tags_mark_each_type() -> None:
    text = "Kate Bush sang in London"
    example = Example(
        text=text,
        entities=[Span(start=0, end=9, type="person"), Span(start=18, end=24, type="place")],
    )
    assert typed_tags(split_words(text), example, ["person", "place"]).tolist() == [1, 2, 0, 0, 3]


def test_the_newest_block_of_the_pool_is_held_out() -> None:
    assert heldout_count(100, 0.2) == 20 and heldout_count(7, 0.2) == 1
    assert heldout_count(4, 0.2) == 0  # too small to split: nothing to judge on
    assert judging_splits(10, FitOptions(folds=1)) == [(list(range(8)), [8, 9])]


def test_the_gates_other_splits_hold_out_every_example_once_or_a_stable_sample() -> None:
    splits = judging_splits(10, FitOptions())  # five blocks: the shipped gate
    assert [held for _, held in splits] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert all(sorted(fitted + held) == list(range(10)) for fitted, held in splits)
    texts = [f"sentence {i}" for i in range(200)]
    ((fitted, held),) = judging_splits(200, FitOptions(folds=1, heldout="hashed"), texts)
    assert 20 < len(held) < 60 and sorted(fitted + held) == list(range(200))
    # A text keeps its side as the pool grows.
    ((_, held_more),) = judging_splits(
        300, FitOptions(folds=1, heldout="hashed"), [*texts, *texts[:100]]
    )
    assert set(held) <= set(held_more)


def test_a_packed_batch_reads_each_text_as_inference_does() -> None:
    """Trained packed (``FitOptions.packed``), the BiLSTM sees each row as it sees one text at
    inference; padded, the backward direction also reads the padding."""
    torch.manual_seed(0)
    head = DomainHead("bilstm", 8, 2).eval()
    texts = [torch.randn(3, 8), torch.randn(6, 8)]
    batch = torch.zeros(2, 6, 8)
    for row, text in enumerate(texts):
        batch[row, : len(text)] = text
    with torch.inference_mode():
        packed = head(batch, torch.tensor([3, 6]))
        padded = head(batch)
        alone = head(texts[0].unsqueeze(0))[0]
    assert torch.allclose(packed[0, :3], alone, atol=1e-5)
    assert not torch.allclose(padded[0, :3], alone, atol=1e-5)
    states = [texts[0], texts[1]]
    tags = [np.array([1, 2, 0]), np.array([0, 3, 4, 0, 0, 1])]
    fitted = fit_head(states, tags, 2, FitOptions(epochs=2, packed=True))
    assert isinstance(fitted, DomainHead)


def _toy_model(tmp_path: Path, seed: int = 0) -> tuple[Path, str]:
    states = torch.randn(5, 8, generator=torch.Generator().manual_seed(seed))
    options = FitOptions(design="mlp", epochs=2, seed=seed)
    head = fit_head([states], [np.array([1, 2, 0, 0, 1])], 1, options)
    model = DomainModel(head, ["thing"], "mlp", "enc-a", {"domain": "d", "version": 1})
    directory = tmp_path / "v1"
    return directory, save_model(model, directory)


def test_artefact_round_trip(tmp_path: Path) -> None:
    directory, digest = _toy_model(tmp_path)
    model = load_model(directory, encoder="enc-a", manifest_sha256=digest)
    assert model.types == ["thing"] and model.info["version"] == 1
    assert model.nbytes < 20 * 2**20


def test_corrupt_weights_are_refused(tmp_path: Path) -> None:
    directory, digest = _toy_model(tmp_path)
    weights = directory / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtefactRejected, match="weights digest"):
        load_model(directory, encoder="enc-a", manifest_sha256=digest)


def test_a_foreign_manifest_is_refused_by_the_pointer_digest(tmp_path: Path) -> None:
    directory, digest = _toy_model(tmp_path)
    other, _ = _toy_model(tmp_path / "other", seed=1)
    (directory / MANIFEST_FILE).write_bytes((other / MANIFEST_FILE).read_bytes())
    (directory / WEIGHTS_FILE).write_bytes((other / WEIGHTS_FILE).read_bytes())
    with pytest.raises(ArtefactRejected, match="manifest digest"):
        load_model(directory, encoder="enc-a", manifest_sha256=digest)


def test_a_model_for_another_encoder_is_refused(tmp_path: Path) -> None:
    directory, digest = _toy_model(tmp_path)
    with pytest.raises(ArtefactRejected, match="encoder"):
        load_model(directory, encoder="enc-b", manifest_sha256=digest)
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    assert manifest["encoder"] == "enc-a"


@dataclass(frozen=True)
class _Version:
    version: int
    directory: Path
    manifest_sha256: str


class _Source:
    """Stands in for the adaptation store (its own tests cover it): what is served, by domain."""

    def __init__(self) -> None:
        self.versions: dict[tuple[str, str], _Version] = {}
        self.stamps: dict[tuple[str, str], int] = {}
        self.reads = 0

    def set(self, domain: str, version: _Version | None) -> None:
        key = ("t", domain)
        if version is None:
            self.versions.pop(key, None)
        else:
            self.versions[key] = version
        self.stamps[key] = self.stamps.get(key, 0) + 1

    def served(self, tenant: str, domain: str) -> _Version | None:
        self.reads += 1
        return self.versions.get((tenant, domain))

    def state_stamp(self, tenant: str, domain: str) -> int | None:
        return self.stamps.get((tenant, domain))


def test_served_models_follow_the_store_and_fall_back_on_a_bad_artefact(tmp_path: Path) -> None:
    now = [0.0]
    source = _Source()
    models = DomainModels(source, "enc-a", max_bytes=2**30, poll_s=2.0, clock=lambda: now[0])
    directory, digest = _toy_model(tmp_path)

    async def scenario() -> None:
        assert (await models.get("t", "d")).model is None  # nothing promoted: few-shot
        source.set("d", _Version(1, directory, digest))
        assert (await models.get("t", "d")).model is None  # not looked again within poll_s
        now[0] += 2.5
        served = await models.get("t", "d")
        assert served.model is not None and served.label == "domain-v1"
        reads = source.reads
        now[0] += 2.5
        await models.get("t", "d")
        assert source.reads == reads  # the stamp did not change: nothing re-read
        source.set("d", _Version(2, directory, "0" * 64))  # a promotion whose files do not match
        now[0] += 2.5
        failed = await models.get("t", "d")
        assert failed.model is None and failed.failure and "digest" in failed.failure
        source.set("d", None)  # rolled back to few-shot
        now[0] += 2.5
        back = await models.get("t", "d")
        assert back.model is None and back.failure is None

    asyncio.run(scenario())


def test_least_recently_used_domain_models_leave_within_the_budget(tmp_path: Path) -> None:
    now = [0.0]
    source = _Source()
    directory, digest = _toy_model(tmp_path)
    size = load_model(directory, encoder="enc-a", manifest_sha256=digest).nbytes
    models = DomainModels(source, "enc-a", max_bytes=2 * size, poll_s=0.0, clock=lambda: now[0])
    for name in ("a", "b", "c"):
        source.set(name, _Version(1, directory, digest))

    async def scenario() -> None:
        for name in ("a", "b", "c"):
            assert (await models.get("t", name)).model is not None
        assert models.loaded_bytes <= 2 * size
        assert ("t", "a", 1) not in models._loaded

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def extractor() -> BanerExtractor:
    return BanerExtractor.load(DEFAULT_ARTEFACT)


def test_a_model_fitted_on_a_real_pool_answers_through_the_extractor(
    extractor: BanerExtractor,
) -> None:
    """Fitted on 60 music sentences over the real BANER states, the model answers in place of the
    few-shot stages, finds more of the pool's own entities than chance, and only asked types."""
    pool = read_split(DATA, "music", "train")[:60]
    names = sorted({s.type for e in pool for s in e.entities})
    types = [EntityType(name=n, description=n) for n in names]
    options = FitOptions(design="bilstm", epochs=15, folds=2)  # two probes, not five: a test
    model, report = fit_domain(extractor, pool, types, options)
    assert (report.examples, report.heldout, report.fitted_on) == (60, 60, 30)  # all judged
    assert 0 <= report.heldout_f1_domain <= 100 and 0 <= report.heldout_f1_fewshot <= 100
    sample = pool[:10]
    answers = extractor.extract_batch(
        [SegmentTask(e.text, types, [], domain_model=model) for e in sample]
    )
    gold = {(i, s.start, s.end, s.type) for i, e in enumerate(sample) for s in e.entities}
    found = {(i, a.start, a.end, a.type) for i, ans in enumerate(answers) for a in ans}
    assert len(gold & found) >= len(gold) // 2  # it learned its own pool
    only_band = extractor.extract_batch(
        [SegmentTask(sample[0].text, [EntityType(name="band")], [], domain_model=model)]
    )[0]
    assert all(a.type == "band" for a in only_band)
    assert isinstance(model.head, DomainHead)
