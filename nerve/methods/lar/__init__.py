"""LAR (arXiv 2407.17344): label alignment (Hungarian) and label reassignment, standalone over
BANER's spans or as a post-processor of the LLM's answer."""
