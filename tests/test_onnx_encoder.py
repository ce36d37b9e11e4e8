"""The ONNX Runtime encoders: the export and its cache (on a tiny random BERT), the embedder and
BANER through ONNX against torch on real CrossNER music sentences (with a real Milvus Lite pool),
the settings choosing the runtime, and the start-up errors when ONNX cannot run."""

from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from app.components import build_embedder, build_store
from nerve.data.crossner_types import entity_types_for
from nerve.data.readers import read_split
from nerve.engines import onnx_encoder
from nerve.engines.onnx_encoder import OnnxEncoder, OnnxUnavailable, ensure_onnx
from nerve.engines.smoothing import load_ranges
from nerve.methods.baner.artefact import artefact_digest
from nerve.methods.baner.extractor import BanerExtractor
from nerve.methods.baner.onnx import run_encoder_in_onnx
from nerve.methods.encoders.factory import (
    DEFAULT_ARTEFACT,
    EncoderBackendsConfig,
    build_encoder_backends,
)
from nerve.methods.encoders.inprocess import InProcessBaner
from nerve.retrieval.embedding.onnx import OnnxEmbedder
from nerve.retrieval.embedding.sentence_transformers import SentenceTransformerEmbedder
from nerve.retrieval.retriever import Retriever
from nerve.settings import load_settings
from nerve.vocab.types import Example
from tests.fixtures.encoders import tiny_bert
from tests.fixtures.gateway import require_data

pytestmark = pytest.mark.integration


def _batch(rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids, each row padded after its length (lengths differ from the export's probe)."""
    generator = torch.Generator().manual_seed(1)
    width = max(rows)
    ids = torch.randint(1, 120, (len(rows), width), generator=generator)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(rows):
        mask[row, :length] = 1
    return ids, mask


# --- the export and its cache, on a tiny model -----------------------------------------------
def test_export_agrees_with_torch_on_other_batch_and_sequence_sizes(tmp_path: Path) -> None:
    model = tiny_bert()
    encoder = OnnxEncoder.from_model(model, runtime="onnx", cache_dir=tmp_path, name="tiny")
    for rows in ([5], [3, 17, 9], [1, 1, 1, 1, 1, 1, 1, 30]):
        ids, mask = _batch(rows)
        with torch.no_grad():
            expected = model(input_ids=ids, attention_mask=mask).last_hidden_state
        got = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        keep = mask.bool()
        assert got.shape == expected.shape
        assert float((got - expected)[keep].abs().max()) < 1e-4


def test_an_int8_text_gets_the_same_states_whatever_it_is_batched_with(tmp_path: Path) -> None:
    # Dynamic int8 scales activations per run: batched together, texts would change each
    # other's states (and micro-batching would change answers). Run alone, they cannot.
    model = tiny_bert()
    encoder = OnnxEncoder.from_model(model, runtime="onnx-int8", cache_dir=tmp_path, name="tiny")
    ids, mask = _batch([7, 30, 12])
    together = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    for row, length in enumerate((7, 30, 12)):
        alone = encoder(
            input_ids=ids[row : row + 1, :length], attention_mask=mask[row : row + 1, :length]
        )
        assert torch.equal(together[row, :length], alone.last_hidden_state[0])
        assert not together[row, length:].any()  # padding positions stay empty
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).last_hidden_state
    keep = mask.bool()
    assert float((together - expected)[keep].abs().max()) < 0.5  # still the same model, roughly


@pytest.mark.parametrize("runtime", ["onnx", "onnx-int8"])
def test_each_text_runs_alone_without_padding(tmp_path: Path, runtime: str) -> None:
    # Padding a batch to its longest text cost more than one call per text saves (fp32
    # embedder: 25 vs 20 ms CPU a sentence at 8 a batch); int8 must also never mix texts.
    encoder = OnnxEncoder.from_model(
        tiny_bert(),
        runtime=runtime,  # type: ignore[arg-type]
        cache_dir=tmp_path,
        name="t",
        threads=1,  # one session, rows in turn (more threads: rows side by side)
    )
    shapes: list[tuple[int, ...]] = []
    real_run = encoder.session.run

    def spy(outputs: object, feed: dict[str, np.ndarray]) -> object:
        shapes.append(feed["input_ids"].shape)
        return real_run(outputs, feed)

    encoder.session.run = spy
    ids, mask = _batch([7, 30, 12])
    out = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    assert shapes == [(1, 7), (1, 30), (1, 12)]
    assert out.shape[:2] == ids.shape and not out[0, 7:].any()


def test_the_cache_is_keyed_by_the_weights(tmp_path: Path) -> None:
    first = ensure_onnx(tiny_bert(0), tmp_path, "tiny", "fp32")
    stamp = first.stat().st_mtime_ns
    assert ensure_onnx(tiny_bert(0), tmp_path, "tiny", "fp32") == first  # reused, not redone
    assert first.stat().st_mtime_ns == stamp
    other = ensure_onnx(tiny_bert(1), tmp_path, "tiny", "fp32")  # other weights, other file
    assert other != first
    int8 = ensure_onnx(tiny_bert(0), tmp_path, "tiny", "int8")
    assert int8.name == first.name.replace("fp32", onnx_encoder.INT8_RECIPE)
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_concurrent_processes_export_and_quantise_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The suite's workers (or a gateway and a Triton model) start together on a fresh cache;
    # without a lock they all exported, and ONNX Runtime's quantiser shared one scratch file.
    calls = tmp_path / "calls.txt"
    real_export, real_quantize = onnx_encoder.export_fp32, onnx_encoder.quantize_int8

    def counted_export(model: torch.nn.Module, path: Path) -> None:
        with calls.open("a") as out:
            out.write("export\n")
        real_export(model, path)

    def counted_quantize(source: Path, target: Path) -> None:
        with calls.open("a") as out:
            out.write("quantize\n")
        real_quantize(source, target)

    monkeypatch.setattr(onnx_encoder, "export_fp32", counted_export)
    monkeypatch.setattr(onnx_encoder, "quantize_int8", counted_quantize)
    cache = tmp_path / "onnx"
    # Forked workers inherit the counting functions; torch's export is not thread-safe, and
    # the failure this guards against was between processes.
    with ProcessPoolExecutor(3, mp_context=multiprocessing.get_context("fork")) as pool:
        paths = list(pool.map(_ensure_tiny_int8, [cache] * 3))
    assert len(set(paths)) == 1 and paths[0].is_file()
    assert sorted(calls.read_text().split()) == ["export", "quantize"]


def _ensure_tiny_int8(cache: Path) -> Path:
    # A forked child must not enter OpenMP: the parent's thread pool did not survive the fork
    # and torch hangs in its first parallel region (seen when the parent ran torch first).
    torch.set_num_threads(1)
    return ensure_onnx(tiny_bert(0), cache, "tiny", "int8")


def test_an_export_that_disagrees_with_torch_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_export = onnx_encoder.export_fp32

    def wrong_model(model: torch.nn.Module, path: Path) -> None:
        real_export(tiny_bert(seed=7), path)  # a graph of other weights

    monkeypatch.setattr(onnx_encoder, "export_fp32", wrong_model)
    with pytest.raises(OnnxUnavailable, match="disagrees with torch"):
        ensure_onnx(tiny_bert(0), tmp_path, "tiny", "fp32")
    assert not [p for p in tmp_path.iterdir() if p.suffix != ".lock"]  # nothing kept


def test_a_failing_export_names_the_model_and_the_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unsupported operator aten::foo")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(OnnxUnavailable, match=r"exporting tiny to ONNX failed .*aten::foo"):
        ensure_onnx(tiny_bert(0), tmp_path, "tiny", "fp32")


def test_a_missing_onnxruntime_is_a_clear_start_up_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    settings = load_settings(data_dir=tmp_path, embedder={"runtime": "onnx"})
    with pytest.raises(OnnxUnavailable, match="NERVE_EMBEDDER_RUNTIME needs the onnxruntime"):
        build_embedder(settings)
    config = EncoderBackendsConfig(runtime="onnx-int8", onnx_dir=tmp_path)
    with pytest.raises(OnnxUnavailable, match="NERVE_ENCODER_RUNTIME needs the onnxruntime"):
        build_encoder_backends(config)


# --- the real models --------------------------------------------------------------------------
@pytest.fixture(scope="session")
def onnx_dir() -> Path:
    """The tests' shared export cache (tests/conftest.py): a fresh checkout exports here."""
    return load_settings().onnx.dir


@pytest.fixture(scope="session")
def onnx_embedder(onnx_dir: Path) -> OnnxEmbedder:
    return OnnxEmbedder(runtime="onnx", cache_dir=onnx_dir)


@pytest.fixture(scope="module")
def music() -> tuple[list[Example], list[Example]]:
    data = require_data()
    return read_split(data, "music", "train")[:80], read_split(data, "music", "test")[:8]


def test_settings_choose_the_embedder_runtime(onnx_dir: Path, tmp_path: Path) -> None:
    torch_one = build_embedder(load_settings(data_dir=tmp_path, embedder={"runtime": "torch"}))
    assert type(torch_one) is SentenceTransformerEmbedder
    onnx_one = build_embedder(
        load_settings(data_dir=tmp_path, onnx={"dir": onnx_dir})
    )  # the default
    assert isinstance(onnx_one, OnnxEmbedder)
    assert isinstance(onnx_one.model[0].auto_model, OnnxEncoder)
    # fp32 gives the same vectors: a pool indexed by one is searched by the other.
    assert (onnx_one.name, onnx_one.signature) == (torch_one.name, torch_one.signature)


def test_the_exports_default_to_the_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NERVE_ONNX_DIR", raising=False)  # tests/conftest.py sets it
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_settings().onnx.dir == tmp_path / ".cache" / "nerve" / "onnx"


def test_onnx_embedder_vectors_match_torch(
    embedder: SentenceTransformerEmbedder,
    onnx_embedder: OnnxEmbedder,
    music: tuple[list[Example], list[Example]],
) -> None:
    texts = [e.text for e in music[1]]
    sentences = onnx_embedder.embed_sentences(texts)
    assert np.abs(sentences - embedder.embed_sentences(texts)).max() < 1e-4
    for got, expected in zip(
        onnx_embedder.embed_words(texts), embedder.embed_words(texts), strict=True
    ):
        assert got.words == expected.words
        assert np.abs(got.vectors - expected.vectors).max() < 1e-4


def test_onnx_embedder_retrieves_the_same_examples(
    tmp_path: Path,
    embedder: SentenceTransformerEmbedder,
    onnx_embedder: OnnxEmbedder,
    music: tuple[list[Example], list[Example]],
) -> None:
    pool, queries = music
    ranked: list[list[list[str]]] = []
    for name, which in (("torch", embedder), ("onnx", onnx_embedder)):
        store = build_store(load_settings(data_dir=tmp_path / name), which)
        try:
            retriever = Retriever(which, store, mode="word")
            retriever.index("t", "music", pool)
            ranked.append(
                [
                    [r.example.text for r in retriever.retrieve("t", "music", q.text, 5)]
                    for q in queries
                ]
            )
        finally:
            store.close()
    assert all(len(r) == 5 for r in ranked[0])
    assert ranked[1] == ranked[0]


def test_int8_embedder_is_its_own_signature_and_stays_close(
    embedder: SentenceTransformerEmbedder,
    onnx_dir: Path,
    music: tuple[list[Example], list[Example]],
) -> None:
    int8 = OnnxEmbedder(runtime="onnx-int8", cache_dir=onnx_dir)
    assert int8.signature != embedder.signature and int8.name.endswith("-int8")
    path = int8.model[0].auto_model.path
    assert (
        path.stat().st_size
        < 0.4 * path.with_name(path.name.replace(onnx_encoder.INT8_RECIPE, "fp32")).stat().st_size
    )
    texts = [e.text for e in music[1]]
    cosines = (int8.embed_sentences(texts) * embedder.embed_sentences(texts)).sum(axis=1)
    assert cosines.min() > 0.9


def _answers(extractor: BanerExtractor, queries: list[Example], support: list[Example]) -> list:
    types = entity_types_for(sorted({s.type for e in support for s in e.entities}))
    return [
        [
            (e.start, e.end, e.type, round(e.score, 3))
            for e in extractor.extract(q.text, types, support)
        ]
        for q in queries
    ]


def test_baner_through_onnx_finds_the_same_entities(
    onnx_dir: Path, music: tuple[list[Example], list[Example]]
) -> None:
    pool, queries = music
    support = pool[:20]
    extractor = BanerExtractor.load(DEFAULT_ARTEFACT)
    expected = _answers(extractor, queries, support)
    assert sum(len(a) for a in expected) >= 10  # the sentences do have entities
    fresh = BanerExtractor.load(DEFAULT_ARTEFACT)  # no cached support encodings
    run_encoder_in_onnx(fresh, "onnx", onnx_dir)
    assert isinstance(fresh.net.encoder, OnnxEncoder)
    assert _answers(fresh, queries, support) == expected


def test_baner_in_int8_finds_nearly_the_same_entities(
    onnx_dir: Path, music: tuple[list[Example], list[Example]]
) -> None:
    pool, queries = music
    support = pool[:20]
    spans = []
    for runtime in ("torch", "onnx-int8"):
        extractor = BanerExtractor.load(DEFAULT_ARTEFACT)
        if runtime != "torch":
            run_encoder_in_onnx(extractor, runtime, onnx_dir)
        found = _answers(extractor, queries, support)
        spans.append({(i, a[:3]) for i, answer in enumerate(found) for a in answer})
    # Smoothed by the artefact's activation ranges, int8 keeps nearly every span (plain int8 of
    # mpnet cost 4 F1 on music: docs/results.md, "The int8 encoder").
    assert load_ranges(DEFAULT_ARTEFACT) is not None
    assert len(spans[0] & spans[1]) >= 0.85 * len(spans[0] | spans[1])  # measured: 73 of 81


def test_settings_choose_the_encoder_runtime(onnx_dir: Path) -> None:
    settings = load_settings(encoder={"runtime": "onnx"}, onnx={"dir": onnx_dir})
    methods = build_encoder_backends(EncoderBackendsConfig.from_settings(settings))
    baner = methods.baner
    assert isinstance(baner, InProcessBaner)
    assert isinstance(baner.extractor.net.encoder, OnnxEncoder)
    # Answers of another runtime are another model's (the answer cache key holds it).
    assert baner.model.endswith("@onnx")
    assert methods.lar.model.endswith("@onnx")  # type: ignore[attr-defined]
    # The service's default: int8, smoothed (docs/results.md, "The int8 encoder").
    assert EncoderBackendsConfig.from_settings(load_settings()).runtime == "onnx-int8"
    torch_config = EncoderBackendsConfig.from_settings(load_settings(encoder={"runtime": "torch"}))
    digest = artefact_digest(DEFAULT_ARTEFACT)
    assert build_encoder_backends(torch_config).baner.model == (
        f"baner:pypi-parts:all-mpnet-base-v2#{digest}"
    )
