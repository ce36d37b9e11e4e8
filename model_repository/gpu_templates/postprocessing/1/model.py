"""Triton glue for the GPU ensemble's detokenizer step; the logic is app.generation.trtllm_io."""

import triton_python_backend_utils as pb_utils

from app.generation.trtllm_io import TokenizerIO, postprocess

INPUTS = ("TOKENS_BATCH", "SEQUENCE_LENGTH", "CUM_LOG_PROBS", "OUTPUT_LOG_PROBS")


class TritonPythonModel:
    def initialize(self, args):
        import json

        params = json.loads(args["model_config"])["parameters"]
        self.io = TokenizerIO.from_dir(params["tokenizer_dir"]["string_value"])

    def execute(self, requests):
        responses = []
        for request in requests:
            tensors = {}
            for name in INPUTS:
                tensor = pb_utils.get_input_tensor_by_name(request, name)
                tensors[name] = None if tensor is None else tensor.as_numpy()
            try:
                outputs = postprocess(self.io, tensors)
            except Exception as exc:  # this request's error, never a crash of the instance
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
                continue
            responses.append(
                pb_utils.InferenceResponse([pb_utils.Tensor(k, v) for k, v in outputs.items()])
            )
        return responses
