"""The gateway <-> Triton tensor contract of the encoder methods (``nerve_encoder.v2``).

Every tensor holds UTF-8 JSON strings (Triton ``TYPE_STRING``, numpy ``object`` dtype), one per
row: shape ``[rows, 1]`` (v2: the models declare ``max_batch_size`` for Triton's dynamic
batcher, so every tensor has a leading batch dimension; the gateway sends one row, ``[1, 1]``;
v1 was ``[1]``). One module encodes and decodes both ends, so the client
(``nerve.methods.encoders.triton``) and the Triton models (``model_repository/{baner,lar}/1/model.py``)
cannot drift apart.

Inputs: ``TEXT`` (the query), ``ENTITY_TYPES`` (``[{"name", "description"}]``), ``SUPPORT``
(``[{"id", "text", "entities": [{"start", "end", "type"}]}]``) and, for ``lar`` only, the optional
``MENTIONS`` (``[{"start", "end", "type", "score"}]``: spans to re-type instead of detecting).
Outputs: ``ENTITIES`` (``[{"start", "end", "type", "score", "text", "candidates": [...]}]``) and,
for ``lar``, ``ALIGNMENT`` (see :meth:`nerve.methods.lar.alignment.LabelAlignment.to_json`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TypeVar

from pydantic import BaseModel, Field, ValidationError

from nerve.vocab.types import Entity, EntityType, Example, Span

M = TypeVar("M", bound=BaseModel)

CONTRACT = "nerve_encoder.v2"

INPUT_TEXT = "TEXT"
INPUT_ENTITY_TYPES = "ENTITY_TYPES"
INPUT_SUPPORT = "SUPPORT"
INPUT_MENTIONS = "MENTIONS"
OUTPUT_ENTITIES = "ENTITIES"
OUTPUT_ALIGNMENT = "ALIGNMENT"


class ContractError(ValueError):
    """A tensor that does not follow ``nerve_encoder.v1``; the message names the tensor."""


class Candidate(BaseModel):
    type: str
    score: float


class TypedEntity(Entity):
    """An :class:`Entity` with the ranked alternatives its type was chosen among."""

    candidates: list[Candidate] = Field(default_factory=list)


def dump_types(entity_types: Sequence[EntityType]) -> str:
    return json.dumps([t.model_dump() for t in entity_types])


def dump_examples(examples: Sequence[Example]) -> str:
    return json.dumps([e.model_dump() for e in examples])


def dump_entities(entities: Sequence[Entity]) -> str:
    return json.dumps([e.model_dump() for e in entities])


def dump_spans(spans: Sequence[Span]) -> str:
    return json.dumps([s.model_dump() for s in spans])


def load_types(raw: str | bytes) -> list[EntityType]:
    return _load_items(EntityType, raw, INPUT_ENTITY_TYPES)


def load_examples(raw: str | bytes) -> list[Example]:
    return _load_items(Example, raw, INPUT_SUPPORT)


def load_mentions(raw: str | bytes) -> list[Span]:
    return _load_items(Span, raw, INPUT_MENTIONS)


def load_entities(raw: str | bytes) -> list[TypedEntity]:
    return _load_items(TypedEntity, raw, OUTPUT_ENTITIES)


def _load_items(model: type[M], raw: str | bytes, tensor: str) -> list[M]:
    """Validate every item of a JSON list; errors name the tensor, the item and the field."""
    try:
        value = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContractError(f"{tensor}: not UTF-8 JSON ({exc.__class__.__name__})") from None
    if not isinstance(value, list):
        raise ContractError(f"{tensor}: expected a JSON list, got {type(value).__name__}")
    items: list[M] = []
    for index, item in enumerate(value):
        try:
            items.append(model.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = "".join(f".{p}" for p in first.get("loc", ()))
            raise ContractError(
                f"{tensor}[{index}]{where}: {first.get('msg', 'invalid')}"
            ) from None
    return items
