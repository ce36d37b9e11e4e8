"""The vector store holding domains and their labelled examples (Milvus): the record store and
the in-process search copy, composed by :class:`~nerve.retrieval.store.milvus.MilvusStore`."""
