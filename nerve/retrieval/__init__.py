"""Retrieval: a query's most similar labelled examples from its domain's pool (IF-WRANER's
word-level RAG), in the order a request meets them.

1. Query embedding, ``embedding/``: the :class:`~nerve.retrieval.embedding.base.Embedder`
   protocol; sentence-transformers on torch (``sentence_transformers.py``) or ONNX Runtime
   (``onnx.py``, over :mod:`nerve.engines.onnx_encoder`, shared with BANER); whole sentences and
   word by word; ``mpnet.py`` assembles the packaged mpnet model from its parts.
2. Cache, ``embedding_cache.py``: a repeated query text skips the embedder.
3. Word-level search, ``store/``: the :class:`~nerve.retrieval.store.base.VectorStore`
   protocol and :class:`~nerve.retrieval.store.milvus.MilvusStore`, which composes the record
   store (``records.py``, collections in ``schema.py``, Milvus Lite's flush in
   ``lite_speedups.py``) and the in-process search copy (``search_copy.py`` over the faiss
   index of ``local_index.py``).
4. Ranking, ``retriever.py``: :class:`~nerve.retrieval.retriever.Retriever` embeds examples for
   ingest and queries for search, and ranks a pool's examples by their words' best matches;
   ``batched.py`` shares the embedder pass and the search among concurrent requests (through
   :mod:`nerve.batching`).

What is not here: the cache keys (:mod:`nerve.cache.keys`, with every other key), the generic
micro-batcher (:mod:`nerve.batching`, also the encoders'), and the wiring from settings
(``app/components.py``).
"""
