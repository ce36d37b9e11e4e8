"""Triton glue for the GPU ensemble's tokenizer step; the logic is app.generation.trtllm_io."""

import triton_python_backend_utils as pb_utils

from app.generation.trtllm_io import TokenizerIO, preprocess

INPUTS = ("QUERY", "REQUEST_OUTPUT_LEN", "STOP_WORDS_DICT", "BAD_WORDS_DICT", "END_ID", "PAD_ID")


class TritonPythonModel:
    def initialize(self, args):
        import json

        params = json.loads(args["model_config"])["parameters"]
        self.io = TokenizerIO.from_dir(
            params["tokenizer_dir"]["string_value"],
            add_special_tokens=params["add_special_tokens"]["string_value"].lower() == "true",
        )

    def execute(self, requests):
        responses = []
        for request in requests:
            tensors = {}
            for name in INPUTS:
                tensor = pb_utils.get_input_tensor_by_name(request, name)
                tensors[name] = None if tensor is None else tensor.as_numpy()
            try:
                outputs = preprocess(self.io, tensors)
            except Exception as exc:  # this request's error, never a crash of the instance
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
                continue
            responses.append(
                pb_utils.InferenceResponse([pb_utils.Tensor(k, v) for k, v in outputs.items()])
            )
        return responses
