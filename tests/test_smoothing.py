"""SmoothQuant before int8 (nerve/engines/smoothing.py): the same function in fp32, closer int8
states where activations have outliers, ranges tied to their model and their artefact."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertModel

from nerve.engines.onnx_encoder import OnnxEncoder
from nerve.engines.smoothing import (
    RANGES_FILE,
    InputScaledLinear,
    layer_linears,
    load_ranges,
    measure_ranges,
    save_ranges,
    smoothed,
)
from nerve.methods.baner.artefact import artefact_digest
from nerve.methods.encoders.factory import DEFAULT_ARTEFACT
from tests.fixtures.encoders import tiny_bert

pytestmark = pytest.mark.integration


def _bert_with_outliers() -> BertModel:
    """A tiny BERT whose FFN has two channels 40x larger than the rest on every token, as the
    GELU outputs of mpnet's middle layers are (on a few tokens)."""
    model = tiny_bert(0)
    with torch.no_grad():
        for layer in model.encoder.layer:
            layer.intermediate.dense.weight[:2] *= 40.0
            layer.intermediate.dense.bias[:2] = 30.0
    return model


def _batches(count: int, seed: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        ids = torch.randint(1, 120, (2, 12), generator=generator)
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    return out


def test_ranges_cover_every_layer_projection_and_smoothing_keeps_the_function() -> None:
    model = _bert_with_outliers()
    ranges = measure_ranges(model, _batches(4, seed=1))
    # q, k, v, attention output, FFN in, FFN out: six per layer; the pooler is not a layer's.
    assert set(ranges) == set(layer_linears(model)) and len(ranges) == 12
    assert float(ranges["encoder.layer.0.output.dense"].max()) > 20  # the planted outliers
    smooth = smoothed(model, ranges)
    assert isinstance(smooth.get_submodule("encoder.layer.1.output.dense"), InputScaledLinear)
    assert not isinstance(model.get_submodule("encoder.layer.1.output.dense"), InputScaledLinear)
    batch = _batches(1, seed=2)[0]
    with torch.no_grad():
        expected = model(**batch).last_hidden_state
        got = smooth(**batch).last_hidden_state
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_smoothed_int8_is_closer_to_fp32_than_plain_int8(tmp_path: Path) -> None:
    model = _bert_with_outliers()
    ranges = measure_ranges(model, _batches(4, seed=1))
    plain = OnnxEncoder.from_model(model, runtime="onnx-int8", cache_dir=tmp_path, name="t")
    smooth = OnnxEncoder.from_model(
        smoothed(model, ranges), runtime="onnx-int8", cache_dir=tmp_path, name="t"
    )
    assert plain.path != smooth.path  # other weights, another cached file

    def cosine(encoder: OnnxEncoder) -> float:
        batch = _batches(3, seed=3)
        values = []
        for inputs in batch:
            with torch.no_grad():
                ref = model(**inputs).last_hidden_state
            got = encoder(**inputs).last_hidden_state
            values.append(torch.nn.functional.cosine_similarity(got, ref, dim=-1).mean().item())
        return float(np.mean(values))

    assert cosine(smooth) > cosine(plain)
    assert cosine(smooth) > 0.99


def test_ranges_of_another_model_are_refused() -> None:
    model = _bert_with_outliers()
    ranges = measure_ranges(model, _batches(1, seed=1))
    with pytest.raises(ValueError, match="activation ranges name"):
        smoothed(model, {k: v for k, v in ranges.items() if "layer.1." not in k})
    wrong_width = dict(ranges, **{"encoder.layer.0.output.dense": torch.ones(7)})
    with pytest.raises(ValueError, match="range of width"):
        smoothed(model, wrong_width)


def test_the_ranges_are_part_of_the_artefact_digest(tmp_path: Path) -> None:
    artefact = tmp_path / "baner"
    shutil.copytree(DEFAULT_ARTEFACT, artefact)
    (artefact / RANGES_FILE).unlink(missing_ok=True)
    assert load_ranges(artefact) is None
    without = artefact_digest(artefact)
    ranges = {"encoder.layer.0.output.dense": torch.ones(4)}
    save_ranges(ranges, artefact, {"data": "test"})
    assert artefact_digest(artefact) != without  # int8 answers change: the cache key too
    loaded = load_ranges(artefact)
    assert loaded is not None and torch.equal(loaded["encoder.layer.0.output.dense"], torch.ones(4))


def test_the_shipped_artefact_has_ranges_for_its_encoder() -> None:
    ranges = load_ranges(DEFAULT_ARTEFACT)
    assert ranges is not None, "regenerate with `nerve train baner-int8`"
    # mpnet: 12 layers of q, k, v, o, FFN in, FFN out
    assert len(ranges) == 72 and all(bool((r > 0).all()) for r in ranges.values())


def test_int8_without_ranges_serves_unsmoothed_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An artefact from before the ranges: plain int8, with a warning naming the fix."""
    from nerve.methods.baner.extractor import BanerExtractor
    from nerve.methods.baner.onnx import run_encoder_in_onnx
    from nerve.settings import load_settings

    artefact = tmp_path / "baner"
    shutil.copytree(DEFAULT_ARTEFACT, artefact)
    (artefact / RANGES_FILE).unlink()
    extractor = BanerExtractor.load(artefact)
    assert extractor.activation_ranges is None
    with caplog.at_level("WARNING", logger="nerve.methods.baner.onnx"):
        run_encoder_in_onnx(extractor, "onnx-int8", load_settings().onnx.dir)
    assert "nerve train baner-int8" in caplog.text
    plain = extractor.net.encoder
    assert isinstance(plain, OnnxEncoder)
    # The shipped artefact (same weights, with ranges) runs another, smoothed graph.
    shipped = BanerExtractor.load(DEFAULT_ARTEFACT)
    run_encoder_in_onnx(shipped, "onnx-int8", load_settings().onnx.dir)
    assert isinstance(shipped.net.encoder, OnnxEncoder) and shipped.net.encoder.path != plain.path
