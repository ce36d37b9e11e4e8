"""Triton entry point of the GPU ensemble's detokenizer step: the adapter over
triton_models.trtllm_io.Postprocessing."""

from triton_models.adapter import PythonModel
from triton_models.trtllm_io import Postprocessing


class TritonPythonModel(PythonModel):
    load = staticmethod(Postprocessing.from_config)
