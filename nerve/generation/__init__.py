"""Text generators: the LLM behind the prompt, in process or behind a server."""
