"""Triton Python-backend entry point: the class lives in app.methods.triton_model (tested there)."""

from app.methods.triton_model import TritonPythonModel

__all__ = ["TritonPythonModel"]
