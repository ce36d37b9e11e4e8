"""Triton Python-backend glue for the CPU LLM; the logic is app.generation.cpu_llm_model."""

import triton_python_backend_utils as pb_utils

from app.generation.cpu_llm_model import INPUT_NAMES, CpuLLM, timeout_from_parameters
from app.generation.llm_tensors import error_message


class TritonPythonModel:
    def initialize(self, args):
        self.llm = CpuLLM.from_settings()

    def execute(self, requests):
        return [self._one(request) for request in requests]

    def _one(self, request):
        tensors = {}
        for name in INPUT_NAMES:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            tensors[name] = None if tensor is None else tensor.as_numpy()
        try:
            timeout_s = timeout_from_parameters(request.parameters())
            outputs = self.llm.run(tensors, cancelled=request.is_cancelled, timeout_s=timeout_s)
        except Exception as exc:  # every failure becomes this request's error, never a crash
            message, invalid = error_message(exc)
            code = pb_utils.TritonError.INVALID_ARG if invalid else pb_utils.TritonError.INTERNAL
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor(name, value) for name, value in outputs.items()]
        )

    def finalize(self):
        self.llm.close()
