"""Triton entry point of the CPU LLM: the adapter over triton_models.llm_cpu.CpuLLM."""

from triton_models.adapter import PythonModel
from triton_models.llm_cpu import CpuLLM


class TritonPythonModel(PythonModel):
    load = staticmethod(CpuLLM.from_config)
