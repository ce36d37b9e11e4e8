"""IF-WRANER instruction tuning: retrieval-augmented prompts, LoRA, export for llama.cpp."""
