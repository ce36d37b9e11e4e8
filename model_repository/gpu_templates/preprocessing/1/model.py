"""Triton entry point of the GPU ensemble's tokenizer step: the adapter over
triton_models.trtllm_io.Preprocessing."""

from triton_models.adapter import PythonModel
from triton_models.trtllm_io import Preprocessing


class TritonPythonModel(PythonModel):
    load = staticmethod(Preprocessing.from_config)
