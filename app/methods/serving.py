"""The logic of the ``baner`` and ``lar`` Triton models, importable and tested without Triton.

``model_repository/{baner,lar}/1/model.py`` only moves tensors in and out of
:class:`EncoderModelHandler`, which decodes the ``nerve_encoder.v1`` inputs, runs the method and
encodes the outputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from app.methods import wire
from app.methods.baner.config import load_options
from app.methods.baner.extractor import BanerExtractor
from app.methods.lar.reassign import LabelReassigner, LarOptions

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
        contract = params.get("contract")
        if contract != wire.CONTRACT:
            raise ValueError(
                f"config.pbtxt contract is {contract!r}; this code speaks {wire.CONTRACT!r}"
            )
        method = params.get("method")
        if method not in ("baner", "lar"):
            raise ValueError(f"config.pbtxt method must be 'baner' or 'lar'; got {method!r}")
        artefact = params.get("artefact_dir", "")
        if not artefact:
            raise ValueError("config.pbtxt names no artefact_dir")
        threads = params.get("threads", "1")
        if not threads.isdigit() or int(threads) < 1:
            raise ValueError(f"config.pbtxt threads must be a positive integer; got {threads!r}")
        options = params.get("lar_options", "")
        return cls(
            method=method,  # type: ignore[arg-type]
            artefact_dir=(model_dir / artefact).resolve(),
            encoder=params.get("encoder") or None,
            threads=int(threads),
            lar_options=(model_dir / options).resolve() if options else None,
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
