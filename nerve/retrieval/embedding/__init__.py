"""Text embedders: whole sentences and word by word."""
