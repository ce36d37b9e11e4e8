"""The Milvus collections of the record store: their schemas, and the checks that a reopened
store holds vectors this server can search.

Three collections, all filtered by tenant and domain:
- ``<prefix>_domains``: one row per domain (its JSON spec; a 2-d dummy vector, which Milvus
  requires);
- ``<prefix>_examples``: one row per example (text, entities JSON, sentence vector);
- ``<prefix>_words``: one row per word of each example (its vector, example id, word index).
Vectors are L2-normalised and indexed IVF_FLAT with COSINE.

The vector collections record which embedder made their vectors (a collection property): a
store reopened with another embedder or word-embedding mode would return nonsense neighbours
without any error, so it is refused instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

MAX_TEXT = 65_535
NAME_LEN = 128
VECTORS_PROPERTY = "nerve.vectors"


@dataclass(frozen=True)
class Collections:
    """The names of one prefix's three collections."""

    domains: str
    examples: str
    words: str

    @classmethod
    def of(cls, prefix: str) -> Collections:
        return cls(f"{prefix}_domains", f"{prefix}_examples", f"{prefix}_words")

    def all(self) -> tuple[str, str, str]:
        return (self.domains, self.examples, self.words)


def ensure_collections(
    client: Any, names: Collections, dimension: int, nlist: int, vectors_from: str | None
) -> None:
    """Create the missing collections, check the existing ones, and load all three."""
    from pymilvus import DataType, MilvusClient

    def varchar(schema: Any, name: str, length: int = NAME_LEN, pk: bool = False) -> None:
        schema.add_field(name, DataType.VARCHAR, max_length=length, is_primary=pk)

    specs: dict[str, tuple[Any, int, str]] = {}
    domains = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    varchar(domains, "key", 2 * NAME_LEN + 1, pk=True)
    varchar(domains, "tenant")
    varchar(domains, "spec", MAX_TEXT)
    domains.add_field("vector", DataType.FLOAT_VECTOR, dim=2)
    specs[names.domains] = (domains, 2, "FLAT")

    examples = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    varchar(examples, "id", 64, pk=True)
    varchar(examples, "tenant")
    varchar(examples, "domain")
    examples.add_field("seq", DataType.INT64)
    varchar(examples, "text", MAX_TEXT)
    varchar(examples, "entities", MAX_TEXT)
    examples.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
    specs[names.examples] = (examples, dimension, "IVF_FLAT")

    words = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    varchar(words, "id", 80, pk=True)
    varchar(words, "example_id", 64)
    varchar(words, "tenant")
    varchar(words, "domain")
    words.add_field("word_index", DataType.INT32)
    words.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
    specs[names.words] = (words, dimension, "IVF_FLAT")

    for name, (schema, dim, index_type) in specs.items():
        if client.has_collection(name):
            _check_dimension(client, name, dim)
            if name != names.domains:
                _check_vectors_from(client, name, vectors_from)
        else:
            index = client.prepare_index_params()
            params = {"nlist": nlist} if index_type == "IVF_FLAT" else {}
            metric = "COSINE" if index_type == "IVF_FLAT" else "L2"
            index.add_index(
                field_name="vector", index_type=index_type, metric_type=metric, params=params
            )
            client.create_collection(name, schema=schema, index_params=index)
            if name != names.domains:
                _record_vectors_from(client, name, vectors_from)
        # A reopened database starts released: load before any search or query.
        client.load_collection(name)


def _check_dimension(client: Any, name: str, dim: int) -> None:
    info = client.describe_collection(name)
    for field in info.get("fields", []):
        if field.get("name") == "vector":
            have = int(field.get("params", {}).get("dim", dim))
            if have != dim:
                raise ValueError(
                    f"collection {name} holds {have}-d vectors but the embedder makes "
                    f"{dim}-d ones; use another collection_prefix or re-index"
                )


def _record_vectors_from(client: Any, name: str, vectors_from: str | None) -> None:
    if vectors_from is not None:
        client.alter_collection_properties(name, properties={VECTORS_PROPERTY: vectors_from})


def _check_vectors_from(client: Any, name: str, vectors_from: str | None) -> None:
    if vectors_from is None:
        return
    have = client.describe_collection(name).get("properties", {}).get(VECTORS_PROPERTY)
    if have is None:  # made before stores recorded it: adopt the current embedder
        log.warning(
            "collection %s does not say which embedder made it: recording %s", name, vectors_from
        )
        _record_vectors_from(client, name, vectors_from)
    elif have != vectors_from:
        raise ValueError(
            f"collection {name} holds vectors made by {have!r} but this server embeds "
            f"with {vectors_from!r}; set the same embedder and NERVE_EMBEDDER_WORD_MODE, "
            "or use another NERVE_MILVUS_COLLECTION_PREFIX and re-add the examples"
        )
