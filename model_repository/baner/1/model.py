"""Triton entry point of baner and lar: the adapter over triton_models.encoder."""

from triton_models.adapter import PythonModel
from triton_models.encoder import EncoderModelHandler


class TritonPythonModel(PythonModel):
    load = staticmethod(EncoderModelHandler.from_config)
