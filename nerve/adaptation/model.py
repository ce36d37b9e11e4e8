"""A fitted domain model: a :class:`DomainHead` and its manifest, saved as two files and
refused on load unless both digests and the encoder agree.

Layout of one version's directory: ``head.safetensors`` (the weights) and ``manifest.json``
(format, design, types, the encoder whose states it reads, the weights' sha256, the fit report).
Whoever points at a version (the domain's adaptation state) records the manifest's sha256 too,
so neither file can be swapped for another domain's or a corrupt copy without being noticed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nerve.adaptation.head import DomainHead, HeadDesign, decode_typed
from nerve.adaptation.store import file_sha256
from nerve.errors import NerveError
from nerve.methods.baner.extractor import EncodedText
from nerve.vocab.types import EntityType
from nerve.wire.encoder import Candidate, TypedEntity

FORMAT = "nerve-domain-model/1"
WEIGHTS_FILE = "head.safetensors"
MANIFEST_FILE = "manifest.json"


class ArtefactRejected(NerveError):
    """A domain model's files are missing, corrupt, foreign or made for another encoder."""


@dataclass
class DomainModel:
    head: DomainHead
    types: list[str]
    design: HeadDesign
    encoder: str  # the BANER encoder whose word states the head reads
    info: dict[str, Any] = field(default_factory=dict)  # tenant, domain, version, report, ...

    @property
    def nbytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.head.parameters())

    def knows(self, entity_types: Sequence[EntityType]) -> bool:
        """True when every requested type is one the model was fitted on."""
        known = set(self.types)
        return all(t.name in known for t in entity_types)

    def predict(
        self, encoded: EncodedText, entity_types: Sequence[EntityType]
    ) -> list[TypedEntity]:
        """Entities of the requested types in ``encoded`` (the text's BANER encoding)."""
        if not encoded.words:
            return []
        with torch.inference_mode():
            logits = self.head(encoded.states.unsqueeze(0))[0]
            log_probs = torch.log_softmax(logits, dim=-1).numpy()
        wanted = {t.name for t in entity_types}
        found: list[TypedEntity] = []
        for first, last, kind, score in decode_typed(log_probs, len(self.types)):
            name = self.types[kind]
            if name not in wanted:
                continue
            start, end = encoded.words[first].start, encoded.words[last].end
            found.append(
                TypedEntity(
                    text=encoded.text[start:end],
                    type=name,
                    start=start,
                    end=end,
                    score=float(np.clip(score, 0.0, 1.0)),
                    candidates=[Candidate(type=name, score=round(score, 4))],
                )
            )
        return found


def save_model(model: DomainModel, directory: Path) -> str:
    """Write the model into ``directory`` (created); returns the manifest's sha256."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / WEIGHTS_FILE
    save_file({k: v.contiguous() for k, v in model.head.state_dict().items()}, str(weights))
    manifest = {
        "format": FORMAT,
        "design": model.design,
        "types": model.types,
        "encoder": model.encoder,
        "state_dim": _state_dim(model.head),
        "weights_sha256": file_sha256(weights),
        **model.info,
    }
    path = directory / MANIFEST_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(temporary, path)
    return file_sha256(path)


def load_model(directory: Path, *, encoder: str, manifest_sha256: str | None) -> DomainModel:
    """The model in ``directory``; :class:`ArtefactRejected` unless its manifest has the
    expected digest (when given), its weights the manifest's digest, and it reads ``encoder``."""
    from safetensors.torch import load_file

    path, weights = directory / MANIFEST_FILE, directory / WEIGHTS_FILE
    if not path.is_file() or not weights.is_file():
        raise ArtefactRejected(f"domain model {directory}: files missing")
    if manifest_sha256 is not None and file_sha256(path) != manifest_sha256:
        raise ArtefactRejected(f"domain model {directory}: manifest digest mismatch")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as error:
        raise ArtefactRejected(f"domain model {directory}: unreadable manifest") from error
    if manifest.get("format") != FORMAT:
        raise ArtefactRejected(f"domain model {directory}: format {manifest.get('format')!r}")
    if file_sha256(weights) != manifest.get("weights_sha256"):
        raise ArtefactRejected(f"domain model {directory}: weights digest mismatch")
    if manifest.get("encoder") != encoder:
        raise ArtefactRejected(
            f"domain model {directory}: made for encoder {manifest.get('encoder')!r}, "
            f"served encoder is {encoder!r}"
        )
    types = list(manifest["types"])
    head = DomainHead(manifest["design"], int(manifest["state_dim"]), len(types))
    try:
        head.load_state_dict(load_file(str(weights)))
    except (RuntimeError, OSError, ValueError) as error:
        raise ArtefactRejected(f"domain model {directory}: weights do not load: {error}") from error
    info = {k: v for k, v in manifest.items() if k not in _MANIFEST_KEYS}
    return DomainModel(head.eval(), types, manifest["design"], encoder, info)


_MANIFEST_KEYS = {"format", "design", "types", "encoder", "state_dim", "weights_sha256"}


def _state_dim(head: DomainHead) -> int:
    if head.design == "bilstm":
        return int(head.rnn.input_size)
    layer = head.inner if head.design == "mlp" else head.out
    return int(layer.in_features)
