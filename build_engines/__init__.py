"""Offline GPU build: merge a LoRA into its base model, build a TensorRT-LLM engine, and fill
the Triton model-repository templates (``model_repository/gpu_templates``)."""
