"""The Triton Python-backend model class of ``baner`` and ``lar`` (one class, the method is a
config.pbtxt parameter). Runs only inside Triton's stub, where ``triton_python_backend_utils``
exists; all logic is in :class:`app.methods.serving.EncoderModelHandler`."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from app.methods import wire
from app.methods.serving import EncoderModelHandler, ModelParameters

log = logging.getLogger(__name__)

_INPUTS = (wire.INPUT_TEXT, wire.INPUT_ENTITY_TYPES, wire.INPUT_SUPPORT, wire.INPUT_MENTIONS)


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        import triton_python_backend_utils as pb_utils

        self._pb = pb_utils
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        model_dir = Path(args["model_repository"])
        self.handler = EncoderModelHandler(ModelParameters.parse(params, model_dir))
        self.outputs = [o["name"] for o in config.get("output", [])]

    def execute(self, requests: list[Any]) -> list[Any]:
        pb = self._pb
        responses = []
        for request in requests:
            try:
                inputs = {
                    name: _bytes(pb.get_input_tensor_by_name(request, name)) for name in _INPUTS
                }
                produced = self.handler.handle(inputs)
                tensors = [
                    pb.Tensor(name, np.array([produced[name].encode("utf-8")], dtype=np.object_))
                    for name in self.outputs
                ]
                responses.append(pb.InferenceResponse(output_tensors=tensors))
            except (wire.ContractError, UnicodeDecodeError) as exc:
                code = getattr(pb.TritonError, "INVALID_ARG", None)
                error = (
                    pb.TritonError(str(exc), code) if code is not None else pb.TritonError(str(exc))
                )
                responses.append(pb.InferenceResponse(error=error))
            except Exception as exc:  # one bad request must not take the model down
                log.exception("encoder model failed")
                responses.append(
                    pb.InferenceResponse(
                        error=pb.TritonError(f"internal error: {type(exc).__name__}")
                    )
                )
        return responses

    def finalize(self) -> None:
        self.handler = None  # type: ignore[assignment]


def _bytes(tensor: Any) -> bytes | None:
    if tensor is None:
        return None
    array = tensor.as_numpy().reshape(-1)
    if array.size != 1:
        raise wire.ContractError(f"expected one element per tensor, got {array.size}")
    value = array[0]
    return value if isinstance(value, bytes) else str(value).encode("utf-8")
