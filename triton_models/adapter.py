"""One adapter between Triton's Python backend and a model's handler, with one error policy.

A ``model.py`` is a few lines::

    class TritonPythonModel(PythonModel):
        load = staticmethod(SomeHandler.from_config)

:class:`PythonModel` reads the model's config (name, directory, ``parameters``, declared inputs)
into a :class:`ModelConfig`, builds the handler from it at ``initialize`` (a handler refuses a
config it cannot serve, e.g. another ``contract``: the model then fails to load with that
message), and for every request reads the declared input tensors, calls the handler and writes
the tensors it returns. A handler with a ``batch`` method (:class:`BatchHandler`: the encoder
models, behind Triton's dynamic batcher) gets every request of an ``execute`` call at once and
answers each, a result or an exception per request; if ``batch`` itself raises, each request is
retried alone, so that only the one that breaks the batch fails. Errors never crash the model;
they become that request's error (:func:`error_response`):

- the request breaks the contract or cannot be served as sent (:data:`INVALID_INPUT`):
  ``INVALID_ARG`` with the message (the LLM contract's ``invalid_request:`` marker added for
  :class:`InvalidRequest` and :class:`MalformedTensors`, which the gateway answers with a 422);
- the caller's deadline passed (:class:`BackendTimeout`): ``INTERNAL`` with the contract's
  ``deadline_exceeded:`` marker, which the gateway answers as a timeout;
- anything else: ``INTERNAL`` with ``"<model>: internal error (<ExceptionType>)"``, the
  traceback logged here and never sent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from nerve.errors import BackendTimeout, InvalidRequest
from nerve.wire.encoder import ContractError
from nerve.wire.llm import MalformedTensors, error_message

log = logging.getLogger(__name__)

INVALID_INPUT: tuple[type[Exception], ...] = (
    ContractError,
    MalformedTensors,
    InvalidRequest,
    UnicodeDecodeError,
)


class ConfigError(ValueError):
    """A config.pbtxt this code cannot serve; the model refuses to load with this message."""


@dataclass(frozen=True)
class ModelConfig:
    """What a handler is built from: the model's config.pbtxt as Triton loaded it."""

    name: str
    directory: Path
    parameters: dict[str, str] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> ModelConfig:
        """From the ``args`` of ``initialize`` (``model_config`` is the config as JSON)."""
        config = json.loads(args["model_config"])
        parameters = config.get("parameters", {})
        return cls(
            name=config.get("name") or args.get("model_name", "model"),
            directory=Path(args["model_repository"]),
            parameters={k: v.get("string_value", "") for k, v in parameters.items()},
            inputs=tuple(i["name"] for i in config.get("input", [])),
        )

    def require_contract(self, contract: str) -> None:
        declared = self.parameters.get("contract")
        if declared != contract:
            raise ConfigError(
                f"{self.name}: config.pbtxt declares contract {declared!r}; "
                f"this code speaks {contract!r}"
            )

    def text(self, key: str, default: str | None = None) -> str:
        value = self.parameters.get(key, default)
        if value is None:
            raise ConfigError(f"{self.name}: config.pbtxt has no parameter {key!r}")
        return value

    def integer(self, key: str, default: str | None = None, *, minimum: int = 1) -> int:
        value = self.text(key, default).strip()
        if not value.isdigit() or int(value) < minimum:
            raise ConfigError(
                f"{self.name}: config.pbtxt {key} must be an integer of at least {minimum}; "
                f"got {value!r}"
            )
        return int(value)

    def path(self, key: str, default: str | None = None) -> Path | None:
        """A path parameter, relative to the model's directory; ``None`` when empty."""
        value = self.text(key, default).strip()
        return (self.directory / value).resolve() if value else None


@dataclass(frozen=True)
class Call:
    """What a handler may want of the request besides its tensors."""

    parameters: Mapping[str, Any] = field(default_factory=dict)
    cancelled: Callable[[], bool] = lambda: False


Tensors = Mapping[str, "np.ndarray | None"]


class Handler(Protocol):
    def __call__(self, tensors: Tensors, call: Call) -> Mapping[str, np.ndarray]:
        """Output tensors by name, for the input tensors (``None``: an input not sent)."""
        ...


Outputs = Mapping[str, np.ndarray]


class BatchHandler(Handler, Protocol):
    def batch(self, requests: Sequence[tuple[Tensors, Call]]) -> Sequence[Outputs | Exception]:
        """Every request's outputs (or the exception that request fails with), in order."""
        ...


def error_response(model: str, exc: Exception) -> tuple[str, str]:
    """The ``TritonError`` code name and the message a failed request answers with."""
    if isinstance(exc, INVALID_INPUT):
        return "INVALID_ARG", error_message(exc)[0]
    if isinstance(exc, BackendTimeout):
        return "INTERNAL", error_message(exc)[0]
    log.error("%s: internal error", model, exc_info=exc)
    return "INTERNAL", f"{model}: internal error ({type(exc).__name__})"


class PythonModel:
    """The ``TritonPythonModel`` of every nerve model: subclass it and set :attr:`load`."""

    load: ClassVar[Callable[[ModelConfig], Handler]]

    def initialize(self, args: dict[str, Any]) -> None:
        import triton_python_backend_utils as pb_utils

        self._pb = pb_utils
        self.config = ModelConfig.from_args(args)
        self.handler: Handler | None = type(self).load(self.config)

    def execute(self, requests: list[Any]) -> list[Any]:
        decoded = [self._decode(request) for request in requests]
        batch = getattr(self.handler, "batch", None)
        if batch is None:
            results = [self._call(item) for item in decoded]
        else:
            results = self._call_batch(batch, decoded)
        return [self._response(result) for result in results]

    def _decode(self, request: Any) -> tuple[Tensors, Call] | Exception:
        pb = self._pb
        try:
            tensors = {
                name: _numpy(pb.get_input_tensor_by_name(request, name))
                for name in self.config.inputs
            }
            return tensors, Call(_request_parameters(request), request.is_cancelled)
        except Exception as exc:  # one request's error, never a crashed model
            return exc

    def _call(self, item: tuple[Tensors, Call] | Exception) -> Outputs | Exception:
        if isinstance(item, Exception):
            return item
        try:
            return self.handler(*item)  # type: ignore[misc]
        except Exception as exc:
            return exc

    def _call_batch(
        self,
        batch: Callable[[Sequence[tuple[Tensors, Call]]], Sequence[Outputs | Exception]],
        decoded: Sequence[tuple[Tensors, Call] | Exception],
    ) -> list[Outputs | Exception]:
        """One ``batch`` call over the decoded requests; each retried alone if it raises."""
        results: list[Outputs | Exception] = [
            item if isinstance(item, Exception) else {} for item in decoded
        ]
        todo = [i for i, item in enumerate(decoded) if not isinstance(item, Exception)]
        items = [item for item in decoded if not isinstance(item, Exception)]
        try:
            answers = list(batch(items))
            if len(answers) != len(items):
                raise RuntimeError(f"batch answered {len(answers)} of {len(items)} requests")
        except Exception as exc:
            if len(items) <= 1:
                answers = [exc] * len(items)
            else:
                log.warning("%s: a batch of %d failed; each alone", self.config.name, len(items))
                answers = [self._call_batch(batch, [item])[0] for item in items]
        for index, answer in zip(todo, answers, strict=True):
            results[index] = answer
        return results

    def _response(self, result: Outputs | Exception) -> Any:
        pb = self._pb
        if not isinstance(result, Exception):
            try:
                return pb.InferenceResponse(
                    output_tensors=[pb.Tensor(name, value) for name, value in result.items()]
                )
            except Exception as exc:  # outputs Triton cannot send: that request's error
                result = exc
        code, message = error_response(self.config.name, result)
        return pb.InferenceResponse(error=pb.TritonError(message, getattr(pb.TritonError, code)))

    def finalize(self) -> None:
        close = getattr(self.handler, "close", None)
        self.handler = None
        if close is not None:
            close()


def _numpy(tensor: Any) -> np.ndarray | None:
    return None if tensor is None else tensor.as_numpy()


def _request_parameters(request: Any) -> dict[str, Any]:
    raw = request.parameters()
    if not raw:
        return {}
    parameters = json.loads(raw)
    if not isinstance(parameters, dict):
        raise MalformedTensors(f"request parameters must be a JSON object; got {raw!r}")
    return parameters
