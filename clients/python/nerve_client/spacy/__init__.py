"""spaCy integration: ``nlp.add_pipe("nerve", config={"url": ..., "domain": ...})``.

Importing this module registers the factory; the ``spacy_factories`` entry point (in
pyproject.toml) makes spaCy import it by itself, so ``add_pipe("nerve")`` also works without
an import.
"""

# No ``from __future__ import annotations`` here: spaCy validates a factory's arguments from
# its annotations, which must then be real types.
from typing import Optional, cast

from spacy.language import Language

from nerve_client.client import DEFAULT_URL, NerveClient
from nerve_client.spacy.alignment import ALIGNMENT_MODES, Alignment, AlignmentMode, align
from nerve_client.spacy.component import DEFAULT_BATCH_SIZE, USER_DATA_KEY, NerveComponent

__all__ = [
    "ALIGNMENT_MODES",
    "USER_DATA_KEY",
    "Alignment",
    "NerveComponent",
    "align",
    "make_nerve_component",
]


@Language.factory(
    "nerve",
    default_config={
        "url": DEFAULT_URL,
        "domain": None,
        "method": None,
        "entity_types": None,
        "top_k": None,
        "alignment_mode": "strict",
        "spans_key": "nerve",
        "batch_size": DEFAULT_BATCH_SIZE,
        "api_key": None,
        "timeout": 60.0,
    },
    assigns=["doc.ents", "doc.spans"],
)
def make_nerve_component(
    nlp: Language,
    name: str,
    url: str,
    domain: Optional[str],  # noqa: UP045 (spaCy's config validation reads these annotations)
    method: Optional[str],  # noqa: UP045
    entity_types: Optional[list[str]],  # noqa: UP045
    top_k: Optional[int],  # noqa: UP045
    alignment_mode: str,
    spans_key: str,
    batch_size: int,
    api_key: Optional[str],  # noqa: UP045
    timeout: float,
) -> NerveComponent:
    if not domain:
        raise ValueError('the "nerve" component needs a domain: config={"domain": ...}')
    if alignment_mode not in ALIGNMENT_MODES:
        raise ValueError(f"alignment_mode must be one of {ALIGNMENT_MODES}: {alignment_mode!r}")
    return NerveComponent(
        NerveClient(url, api_key=api_key, timeout=timeout),
        domain=domain,
        method=method,
        entity_types=entity_types,
        top_k=top_k,
        alignment_mode=cast(AlignmentMode, alignment_mode),
        spans_key=spans_key,
        batch_size=batch_size,
    )
