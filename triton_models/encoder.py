"""The ``baner`` and ``lar`` Triton models' handler, importable and tested without Triton.

``model_repository/{baner,lar}/1/model.py`` is :class:`triton_models.adapter.PythonModel` over
:class:`EncoderModelHandler`, which decodes the ``nerve_encoder.v2`` inputs, runs the method and
encodes the outputs. Both models are one handler: the method is a config.pbtxt parameter.

Triton's dynamic batcher hands ``execute`` every request that queued while the model was busy
(``max_batch_size``/``dynamic_batching`` in config.pbtxt); :meth:`EncoderModelHandler.batch`
decodes each request's rows (a request's tensors are ``[rows, 1]``), runs one
``extract_batch`` over all of them (one encoder pass: as the gateway's in-process micro-batching
does) and answers each request with its own rows. A request that breaks the contract fails
alone, before the batch runs. ``lar`` requests with ``MENTIONS`` (re-typing) are answered one by
one: ``LabelReassigner.reassign`` has no batch form.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from nerve.methods.baner.config import load_options
from nerve.methods.baner.extractor import BanerExtractor
from nerve.methods.handler import SegmentTask
from nerve.methods.lar.reassign import LabelReassigner, LarOptions, Reassigned
from nerve.settings import EncoderRuntime, OnnxSettings
from nerve.threads import limit_numeric_threads
from nerve.vocab.types import Span
from nerve.wire import encoder as wire
from triton_models.adapter import Call, ConfigError, ModelConfig, Outputs, Tensors

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
    # What runs the encoder: the gateway's NERVE_ENCODER_RUNTIME (``nerve triton`` sets it).
    runtime: EncoderRuntime = "torch"
    # Where ONNX exports are cached (NERVE_ONNX_DIR; empty in config.pbtxt: its default).
    onnx_dir: Path | None = None

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
        runtime = config.text("runtime", "torch")
        if runtime not in get_args(EncoderRuntime):
            raise ConfigError(
                f"config.pbtxt runtime must be one of {', '.join(get_args(EncoderRuntime))}; "
                f"got {runtime!r}"
            )
        return cls(
            method=method,  # type: ignore[arg-type]
            artefact_dir=artefact,
            encoder=config.parameters.get("encoder") or None,
            threads=config.integer("threads", "1"),
            lar_options=config.path("lar_options", ""),
            runtime=runtime,  # type: ignore[arg-type]
            onnx_dir=config.path("onnx_dir", ""),
        )


class EncoderModelHandler:
    def __init__(self, parameters: ModelParameters) -> None:
        # numpy's BLAS too: BANER's typing is matrix products (nerve/threads.py).
        limit_numeric_threads(parameters.threads)
        self.method = parameters.method
        self.extractor = BanerExtractor.load(parameters.artefact_dir, parameters.encoder)
        if parameters.runtime != "torch":
            from nerve.methods.baner.onnx import run_encoder_in_onnx

            onnx_dir = parameters.onnx_dir or default_onnx_dir()
            run_encoder_in_onnx(self.extractor, parameters.runtime, onnx_dir, parameters.threads)
        self.reassigner = None
        if self.method == "lar":
            path = parameters.lar_options
            options = load_options(LarOptions, path) if path and path.is_file() else LarOptions()
            # Enhanced inference needs the LLM, which the gateway holds: direct here.
            self.reassigner = LabelReassigner(self.extractor, replace(options, inference="direct"))

    @classmethod
    def from_config(cls, config: ModelConfig) -> EncoderModelHandler:
        return cls(ModelParameters.from_config(config))

    def __call__(self, tensors: Tensors, call: Call) -> Outputs:
        """One request (the adapter calls :meth:`batch` when it can)."""
        (outputs,) = self.batch([(tensors, call)])
        if isinstance(outputs, Exception):
            raise outputs
        return outputs

    def batch(self, requests: Sequence[tuple[Tensors, Call]]) -> list[Outputs | Exception]:
        """Every request's outputs, ``[rows, 1]`` UTF-8 JSON strings; one encoder pass for all.

        A request whose tensors break the contract gets its :class:`wire.ContractError` (the
        others are answered); an error of the batch run itself propagates (the adapter then
        answers each request alone)."""
        answers: list[Outputs | Exception] = []
        jobs: list[Job] = []
        owners: list[int] = []
        for index, (tensors, _call) in enumerate(requests):
            try:
                parsed = [self.parse(row) for row in _rows(tensors)]
            except (wire.ContractError, UnicodeDecodeError) as exc:
                answers.append(exc)
                continue
            answers.append({})
            jobs += parsed
            owners += [index] * len(parsed)
        produced = self.run(jobs)
        rows: dict[int, list[dict[str, str]]] = {}
        for owner, result in zip(owners, produced, strict=True):
            rows.setdefault(owner, []).append(result)
        for owner, values in rows.items():
            answers[owner] = {
                name: np.array([[v[name].encode("utf-8")] for v in values], dtype=np.object_)
                for name in values[0]
            }
        return answers

    def handle(self, inputs: dict[str, bytes | None]) -> dict[str, str]:
        """One text's outputs by tensor name. Raises :class:`wire.ContractError` for a bad input."""
        return self.run([self.parse(inputs)])[0]

    def parse(self, inputs: dict[str, bytes | None]) -> Job:
        """One row's inputs, checked. Raises :class:`wire.ContractError` for a bad input."""
        text = _required(inputs, wire.INPUT_TEXT).decode("utf-8", errors="strict")
        types = wire.load_types(_required(inputs, wire.INPUT_ENTITY_TYPES))
        support = wire.load_examples(_required(inputs, wire.INPUT_SUPPORT))
        if not types:
            raise wire.ContractError(f"{wire.INPUT_ENTITY_TYPES}: no entity type")
        raw_mentions = inputs.get(wire.INPUT_MENTIONS)
        mentions = None
        if raw_mentions is not None:
            if self.reassigner is None:
                raise wire.ContractError(f"{wire.INPUT_MENTIONS}: only the lar model takes it")
            mentions = wire.load_mentions(raw_mentions)
            bad = [m for m in mentions if m.end > len(text) or m.start >= m.end]
            if bad:
                raise wire.ContractError(
                    f"{wire.INPUT_MENTIONS}: span ({bad[0].start}, {bad[0].end}) is outside the "
                    f"text of {len(text)} characters"
                )
        return Job(SegmentTask(text, types, support), mentions)

    def run(self, jobs: Sequence[Job]) -> list[dict[str, str]]:
        """Each job's outputs by tensor name; the jobs without mentions share one encoder pass."""
        plain = [i for i, job in enumerate(jobs) if job.mentions is None]
        tasks = [jobs[i].task for i in plain]
        out: list[dict[str, str]] = [{} for _ in jobs]
        if self.reassigner is None:
            for index, entities in zip(plain, self.extractor.extract_batch(tasks), strict=True):
                out[index] = {wire.OUTPUT_ENTITIES: wire.dump_entities(entities)}
            return out
        for index, result in zip(plain, self.reassigner.extract_batch(tasks), strict=True):
            out[index] = _lar_outputs(result)
        for index, job in enumerate(jobs):
            if job.mentions is not None:
                task = job.task
                result = self.reassigner.reassign(
                    task.text, job.mentions, task.entity_types, task.examples
                )
                out[index] = _lar_outputs(result)
        return out


@dataclass(frozen=True)
class Job:
    """One row of a request: a text to answer, and for ``lar`` the mentions to re-type."""

    task: SegmentTask
    mentions: list[Span] | None = None


def default_onnx_dir() -> Path:
    """NERVE_ONNX_DIR's default (the models read no environment: only its default)."""
    default = OnnxSettings.model_fields["dir"].get_default(call_default_factory=True)
    return Path(default)


def _lar_outputs(result: Reassigned) -> dict[str, str]:
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


def _rows(tensors: Tensors) -> list[dict[str, bytes | None]]:
    """A request's tensors as rows: ``[rows, 1]`` (batched) or ``[1]``; one string each."""
    columns: dict[str, list[bytes] | None] = {}
    counts = set()
    for name, array in tensors.items():
        if array is None:
            columns[name] = None
            continue
        if array.ndim == 2 and array.shape[1] == 1:
            values = list(array[:, 0])
        elif array.ndim == 1 and array.shape[0] == 1:
            values = [array[0]]
        else:
            raise wire.ContractError(
                f"{name}: expected shape [rows, 1] of one string each, got {list(array.shape)}"
            )
        columns[name] = [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in values]
        counts.add(len(values))
    if len(counts) > 1:
        raise wire.ContractError(f"the tensors have different row counts: {sorted(counts)}")
    rows = counts.pop() if counts else 1  # no tensor at all: one row, missing its inputs
    return [
        {name: None if values is None else values[row] for name, values in columns.items()}
        for row in range(rows)
    ]
