"""The Triton models' logic (triton_models.encoder) without Triton: contract checks and answers,
on the committed BANER artefact."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from app.methods import wire
from app.settings import REPO_ROOT
from triton_models.encoder import EncoderModelHandler, ModelParameters

MODEL_DIR = REPO_ROOT / "model_repository"
TEXT = "Angela Merkel visited Paris with Emmanuel Macron ."
TYPES = [
    {"name": "politician", "description": "name of a politician"},
    {"name": "location", "description": "name of a place"},
]
SUPPORT = [
    {
        "id": "s1",
        "text": "Barack Obama flew to Berlin .",
        "entities": [
            {"start": 0, "end": 12, "type": "politician"},
            {"start": 21, "end": 27, "type": "location"},
        ],
    }
]


def _params(method: str, artefact: str) -> dict[str, str]:
    return {"contract": wire.CONTRACT, "method": method, "artefact_dir": artefact, "threads": "1"}


@pytest.fixture(scope="module")
def baner() -> EncoderModelHandler:
    return EncoderModelHandler(ModelParameters.parse(_params("baner", "1"), MODEL_DIR / "baner"))


@pytest.fixture(scope="module")
def lar() -> EncoderModelHandler:
    return EncoderModelHandler(
        ModelParameters.parse(_params("lar", "../baner/1"), MODEL_DIR / "lar")
    )


def _inputs(**extra: str) -> dict[str, bytes | None]:
    base = {
        wire.INPUT_TEXT: TEXT,
        wire.INPUT_ENTITY_TYPES: json.dumps(TYPES),
        wire.INPUT_SUPPORT: json.dumps(SUPPORT),
        **extra,
    }
    return {k: v.encode() for k, v in base.items()}


def test_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="contract"):
        ModelParameters.parse({**_params("baner", "1"), "contract": "v0"}, Path("."))
    with pytest.raises(ValueError, match="method"):
        ModelParameters.parse(_params("gliner", "1"), Path("."))
    with pytest.raises(ValueError, match="threads"):
        ModelParameters.parse({**_params("baner", "1"), "threads": "two"}, Path("."))


def test_config_pbtxt_parameters_parse() -> None:
    """The committed configs name the contract, the method and an artefact that exists."""
    for method in ("baner", "lar"):
        config = (MODEL_DIR / method / "config.pbtxt").read_text()
        assert f'string_value: "{wire.CONTRACT}"' in config
        assert f'string_value: "{method}"' in config
    assert (MODEL_DIR / "baner" / "1" / "adapter.safetensors").stat().st_size < 20_000_000


def test_baner_answers_with_valid_offsets_and_requested_types(baner: EncoderModelHandler) -> None:
    out = baner.handle(_inputs())
    entities = wire.load_entities(out[wire.OUTPUT_ENTITIES])
    assert entities, "no entity found in an easy sentence"
    for e in entities:
        assert TEXT[e.start : e.end] == e.text
        assert e.type in {"politician", "location"}
        assert 0 <= e.score <= 1
    assert ("Paris", "location") in {(e.text, e.type) for e in entities}


def test_lar_retypes_given_mentions_and_exposes_the_alignment(lar: EncoderModelHandler) -> None:
    mentions = json.dumps([{"start": 22, "end": 27, "type": "?"}])
    out = lar.handle(_inputs(**{wire.INPUT_MENTIONS: mentions}))
    (entity,) = wire.load_entities(out[wire.OUTPUT_ENTITIES])
    assert (entity.start, entity.end, entity.text) == (22, 27, "Paris")
    assert {c.type for c in entity.candidates} == {"politician", "location"}
    alignment = json.loads(out[wire.OUTPUT_ALIGNMENT])
    assert alignment["target"] == ["politician", "location"]
    assert len(alignment["pairs"]) == 2


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ({wire.INPUT_ENTITY_TYPES: "not json"}, "ENTITY_TYPES: not UTF-8 JSON"),
        ({wire.INPUT_ENTITY_TYPES: "[]"}, "no entity type"),
        ({wire.INPUT_SUPPORT: '[{"text": 3}]'}, "SUPPORT[0].text: Input should be a valid string"),
        ({wire.INPUT_MENTIONS: "[]"}, "only the lar model"),
    ],
)
def test_baner_rejects_broken_inputs(
    baner: EncoderModelHandler, broken: dict[str, str], message: str
) -> None:
    with pytest.raises(wire.ContractError, match=re.escape(message)):
        baner.handle(_inputs(**broken))


def test_missing_input_and_out_of_text_mentions(lar: EncoderModelHandler) -> None:
    inputs = _inputs()
    inputs[wire.INPUT_TEXT] = None
    with pytest.raises(wire.ContractError, match="TEXT: missing"):
        lar.handle(inputs)
    far = json.dumps([{"start": 0, "end": 999, "type": "?"}])
    with pytest.raises(wire.ContractError, match="outside the text"):
        lar.handle(_inputs(**{wire.INPUT_MENTIONS: far}))
