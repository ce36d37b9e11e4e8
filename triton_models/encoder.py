"""The ``baner`` and ``lar`` Triton models' handler, importable and tested without Triton.

``model_repository/{baner,lar}/1/model.py`` is :class:`triton_models.adapter.PythonModel` over
:class:`EncoderModelHandler`, which decodes the ``nerve_encoder.v1`` inputs, runs the method and
encodes the outputs. Both models are one handler: the method is a config.pbtxt parameter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from app.methods import wire
from app.methods.baner.config import load_options
from app.methods.baner.extractor import BanerExtractor
from app.methods.lar.reassign import LabelReassigner, LarOptions
from triton_models.adapter import Call, ConfigError, ModelConfig, Tensors

Method = Literal["baner", "lar"]


@dataclass(frozen=True)
class ModelParameters:
    """The ``parameters`` of a model's config.pbtxt, checked."""

    method: Method
    artefact_dir: Path
    encoder: str | None
    threads: int
    # LAR's calibrated options (python -m trainers.lar); None: the defaults.
    lar_options: Path | None = None

    @classmethod
    def parse(cls, params: dict[str, str], model_dir: Path) -> ModelParameters:
        return cls.from_config(ModelConfig(model_dir.name, model_dir, dict(params)))

    @classmethod
    def from_config(cls, config: ModelConfig) -> ModelParameters:
        """Raises :class:`ConfigError` (the model refuses to load) for a config it cannot serve."""
        config.require_contract(wire.CONTRACT)
        method = config.parameters.get("method")
        if method not in ("baner", "lar"):
            raise ConfigError(f"config.pbtxt method must be 'baner' or 'lar'; got {method!r}")
        artefact = config.path("artefact_dir", "")
        if artefact is None:
            raise ConfigError("config.pbtxt names no artefact_dir")
        return cls(
            method=method,  # type: ignore[arg-type]
            artefact_dir=artefact,
            encoder=config.parameters.get("encoder") or None,
            threads=config.integer("threads", "1"),
            lar_options=config.path("lar_options", ""),
        )


class EncoderModelHandler:
    def __init__(self, parameters: ModelParameters) -> None:
        import torch

        torch.set_num_threads(parameters.threads)
        self.method = parameters.method
        self.extractor = BanerExtractor.load(parameters.artefact_dir, parameters.encoder)
        self.reassigner = None
        if self.method == "lar":
            path = parameters.lar_options
            options = load_options(LarOptions, path) if path and path.is_file() else LarOptions()
            # Enhanced inference needs the LLM, which the gateway holds: direct here.
            self.reassigner = LabelReassigner(self.extractor, replace(options, inference="direct"))

    @classmethod
    def from_config(cls, config: ModelConfig) -> EncoderModelHandler:
        return cls(ModelParameters.from_config(config))

    def __call__(self, tensors: Tensors, call: Call) -> dict[str, np.ndarray]:
        """The adapter's entry point: one UTF-8 JSON string per tensor, both ways."""
        produced = self.handle({name: _single(value) for name, value in tensors.items()})
        return {
            name: np.array([value.encode("utf-8")], dtype=np.object_)
            for name, value in produced.items()
        }

    def handle(self, inputs: dict[str, bytes | None]) -> dict[str, str]:
        """Outputs by tensor name. Raises :class:`wire.ContractError` for a bad input."""
        text = _required(inputs, wire.INPUT_TEXT).decode("utf-8", errors="strict")
        types = wire.load_types(_required(inputs, wire.INPUT_ENTITY_TYPES))
        support = wire.load_examples(_required(inputs, wire.INPUT_SUPPORT))
        if not types:
            raise wire.ContractError(f"{wire.INPUT_ENTITY_TYPES}: no entity type")
        if self.reassigner is None:
            if inputs.get(wire.INPUT_MENTIONS) is not None:
                raise wire.ContractError(f"{wire.INPUT_MENTIONS}: only the lar model takes it")
            entities = self.extractor.extract(text, types, support)
            return {wire.OUTPUT_ENTITIES: wire.dump_entities(entities)}
        raw_mentions = inputs.get(wire.INPUT_MENTIONS)
        if raw_mentions is None:
            result = self.reassigner.extract(text, types, support)
        else:
            mentions = wire.load_mentions(raw_mentions)
            bad = [m for m in mentions if m.end > len(text) or m.start >= m.end]
            if bad:
                raise wire.ContractError(
                    f"{wire.INPUT_MENTIONS}: span ({bad[0].start}, {bad[0].end}) is outside the "
                    f"text of {len(text)} characters"
                )
            result = self.reassigner.reassign(text, mentions, types, support)
        alignment = result.alignment.to_json() if result.alignment is not None else {}
        return {
            wire.OUTPUT_ENTITIES: wire.dump_entities(result.entities),
            wire.OUTPUT_ALIGNMENT: json.dumps(alignment),
        }


def _required(inputs: dict[str, bytes | None], name: str) -> bytes:
    value = inputs.get(name)
    if value is None:
        raise wire.ContractError(f"{name}: missing input")
    return value


def _single(array: np.ndarray | None) -> bytes | None:
    if array is None:
        return None
    values = array.reshape(-1)
    if values.size != 1:
        raise wire.ContractError(f"expected one element per tensor, got {values.size}")
    value = values[0]
    return value if isinstance(value, bytes) else str(value).encode("utf-8")
