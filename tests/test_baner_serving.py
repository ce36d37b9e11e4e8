"""The Triton models' logic (triton_models.encoder) without Triton: contract checks and answers,
on the committed BANER artefact."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from nerve.settings import REPO_ROOT
from nerve.wire import encoder as wire
from triton_models.adapter import Call
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


def _tensors(rows: list[dict[str, bytes | None]]) -> dict[str, np.ndarray | None]:
    """Rows as a request's ``[rows, 1]`` tensors (as Triton's dynamic batcher delivers them)."""
    names = {name for row in rows for name in row}
    return {
        name: None
        if rows[0].get(name) is None
        else np.array([[row[name]] for row in rows], dtype=np.object_)
        for name in names
    }


def _text(i: int) -> str:
    people = ["Angela Merkel", "Barack Obama", "Theresa May", "Emmanuel Macron"]
    places = ["Paris", "Berlin", "London", "Madrid", "Rome"]
    return f"{people[i % 4]} visited {places[i % 5]} ." + " again" * (i % 3)


def test_a_batch_answers_each_request_as_alone_and_a_bad_one_fails_alone(
    baner: EncoderModelHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    alone = [baner.handle(_inputs(**{wire.INPUT_TEXT: _text(i)})) for i in range(6)]
    passes: list[int] = []  # the texts of each extract_batch call (one encoder pass each)
    real = baner.extractor.extract_batch

    def counted(items: list) -> list:  # type: ignore[type-arg]
        passes.append(len(items))
        return real(items)

    monkeypatch.setattr(baner.extractor, "extract_batch", counted)
    requests = [(_tensors([_inputs(**{wire.INPUT_TEXT: _text(i)})]), Call()) for i in range(6)]
    two_rows = _tensors([_inputs(**{wire.INPUT_TEXT: _text(i)}) for i in (4, 1)])
    broken = _tensors([_inputs(**{wire.INPUT_SUPPORT: '[{"text": 3}]'})])
    order = [5, 0, 3, 1, 2, 4]
    answers = baner.batch([*(requests[i] for i in order[:3]), (broken, Call()),
                           *(requests[i] for i in order[3:]), (two_rows, Call())])  # fmt: skip
    assert passes == [8]  # every good row (6 requests + 2 rows) in one pass, the bad one not in it
    assert isinstance(answers[3], wire.ContractError)
    assert "SUPPORT[0].text" in str(answers[3])
    got = [a for a in answers[:3] + answers[4:7]]
    for index, outputs in zip(order, got, strict=True):
        assert not isinstance(outputs, Exception)
        (row,) = outputs[wire.OUTPUT_ENTITIES]  # one row, [1, 1]
        assert _same(row[0].decode(), alone[index][wire.OUTPUT_ENTITIES])
    last = answers[7]
    assert not isinstance(last, Exception) and last[wire.OUTPUT_ENTITIES].shape == (2, 1)
    for row, index in zip(last[wire.OUTPUT_ENTITIES][:, 0], (4, 1), strict=True):
        assert _same(row.decode(), alone[index][wire.OUTPUT_ENTITIES])


def test_lar_batches_detection_and_retyping_requests_together(lar: EncoderModelHandler) -> None:
    mentions = {wire.INPUT_MENTIONS: json.dumps([{"start": 22, "end": 27, "type": "?"}])}
    rows = [_inputs(), _inputs(**mentions), _inputs(**{wire.INPUT_TEXT: _text(2)})]
    alone = [lar.handle(row) for row in rows]
    answers = lar.batch([(_tensors([row]), Call()) for row in rows])
    for outputs, expected in zip(answers, alone, strict=True):
        assert not isinstance(outputs, Exception)
        assert set(outputs) == {wire.OUTPUT_ENTITIES, wire.OUTPUT_ALIGNMENT}
        assert _same(outputs[wire.OUTPUT_ENTITIES][0, 0].decode(), expected[wire.OUTPUT_ENTITIES])
        assert json.loads(outputs[wire.OUTPUT_ALIGNMENT][0, 0]) == json.loads(
            expected[wire.OUTPUT_ALIGNMENT]
        )


def test_rows_of_different_lengths_break_the_contract(baner: EncoderModelHandler) -> None:
    tensors = _tensors([_inputs(), _inputs()])
    tensors[wire.INPUT_TEXT] = np.array([[TEXT.encode()]], dtype=np.object_)
    (answer,) = baner.batch([(tensors, Call())])
    assert isinstance(answer, wire.ContractError) and "row counts" in str(answer)


def _same(got: str, expected: str) -> bool:
    """The same entities (offsets, text, type) and scores to float rounding."""
    a, b = wire.load_entities(got), wire.load_entities(expected)
    return [(e.start, e.end, e.text, e.type) for e in a] == [
        (e.start, e.end, e.text, e.type) for e in b
    ] and all(abs(x.score - y.score) < 1e-4 for x, y in zip(a, b, strict=True))
