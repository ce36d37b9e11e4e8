"""Triton glue for the GPU ensemble's tokenizer step; the logic is app.generation.trtllm_io."""

import triton_python_backend_utils as pb_utils

from app.core.prompt import STOP_SEQUENCES
from app.generation.llm_tensors import error_message
from app.generation.trtllm_io import TokenizerIO, preprocess

INPUTS = ("QUERY", "REQUEST_OUTPUT_LEN", "STOP_WORDS_DICT", "BAD_WORDS_DICT", "END_ID", "PAD_ID")


class TritonPythonModel:
    def initialize(self, args):
        import json

        params = json.loads(args["model_config"])["parameters"]
        self.io = TokenizerIO.from_dir(
            params["tokenizer_dir"]["string_value"],
            add_special_tokens=params["add_special_tokens"]["string_value"].lower() == "true",
            # The engine's build limits: a prompt past them is the caller's error (a 422).
            max_input_len=params["max_input_len"]["string_value"],
            max_seq_len=params["max_seq_len"]["string_value"],
        )
        # The stop strings the gateway sends, tokenized now rather than on the first request.
        self.io.stop_words_to_ids(STOP_SEQUENCES)

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
                message, invalid = error_message(exc)
                code = (
                    pb_utils.TritonError.INVALID_ARG if invalid else pb_utils.TritonError.INTERNAL
                )
                responses.append(
                    pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))
                )
                continue
            responses.append(
                pb_utils.InferenceResponse([pb_utils.Tensor(k, v) for k, v in outputs.items()])
            )
        return responses
