"""The vector store holding domains and their labelled examples (Milvus)."""
