"""Caches for answers and query embeddings: in-process LRU or Redis."""
