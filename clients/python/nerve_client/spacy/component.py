"""The ``nerve`` pipeline component: entities from the service, set on the Doc.

``doc.spans[spans_key]`` always holds every placed span (scores in its ``attrs["scores"]``);
``doc.ents`` is set as well when no two spans overlap (spaCy's ents cannot overlap).
``doc.user_data["nerve"]`` keeps the answer's request id, method, escalation and the
misaligned entities; ``component.misaligned`` / ``component.unplaced`` count them over the
component's life.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice

from spacy.tokens import Doc, SpanGroup

from nerve_client.calls import ner_request
from nerve_client.client import NerveClient
from nerve_client.models import NERRequest, NERResponse
from nerve_client.spacy.alignment import ALIGNMENT_MODES, AlignmentMode, align

log = logging.getLogger("nerve_client.spacy")

# The server's default NERVE_MAX_BATCH_ITEMS: a larger batch gets a 422.
DEFAULT_BATCH_SIZE = 32
USER_DATA_KEY = "nerve"


class NerveComponent:
    def __init__(
        self,
        client: NerveClient,
        *,
        domain: str,
        method: str | None = None,
        entity_types: Sequence[str] | None = None,
        top_k: int | None = None,
        alignment_mode: AlignmentMode = "strict",
        spans_key: str = "nerve",
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        if alignment_mode not in ALIGNMENT_MODES:
            raise ValueError(f"alignment_mode must be one of {ALIGNMENT_MODES}: {alignment_mode!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1: {batch_size}")
        self.client = client
        self.domain = domain
        self.method = method
        self.entity_types = list(entity_types) if entity_types is not None else None
        self.top_k = top_k
        self.alignment_mode: AlignmentMode = alignment_mode
        self.spans_key = spans_key
        self.batch_size = batch_size
        self.misaligned = 0  # entities not on token boundaries (placed by the mode, or not)
        self.unplaced = 0  # of which no span could be made

    def _request(self, doc: Doc) -> NERRequest:
        return ner_request(
            doc.text,
            self.domain,
            entity_types=self.entity_types,
            top_k=self.top_k,
            method=self.method,
        )

    def __call__(self, doc: Doc) -> Doc:
        if not doc.text.strip():
            return self.set_annotations(doc, None)  # nothing to ask; the server refuses empty texts
        answer = self.client.ner(
            doc.text,
            self.domain,
            entity_types=self.entity_types,
            top_k=self.top_k,
            method=self.method,
        )
        return self.set_annotations(doc, answer)

    def pipe(self, docs: Iterable[Doc], batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[Doc]:
        """One ``/v1/ner/batch`` call per batch of docs (at most ``self.batch_size``)."""
        size = max(1, min(batch_size, self.batch_size))
        stream = iter(docs)
        while batch := list(islice(stream, size)):
            asked = [doc for doc in batch if doc.text.strip()]
            answers: dict[int, NERResponse] = {}
            if asked:
                results = self.client.ner_batch([self._request(d) for d in asked]).results
                answers = {id(doc): answer for doc, answer in zip(asked, results, strict=True)}
            for doc in batch:
                yield self.set_annotations(doc, answers.get(id(doc)))

    def set_annotations(self, doc: Doc, answer: NERResponse | None) -> Doc:
        """Put an answer (None: no entities) on the doc; spaCy components name this so."""
        alignment = align(doc, answer.entities if answer else [], self.alignment_mode)
        group = SpanGroup(doc, name=self.spans_key, spans=alignment.spans)
        group.attrs["scores"] = alignment.scores
        doc.spans[self.spans_key] = group
        if not alignment.overlapping:  # else doc.ents stays as it was: spans cannot overlap there
            doc.ents = alignment.spans
        self.misaligned += len(alignment.misaligned)
        self.unplaced += alignment.unplaced
        if alignment.misaligned:
            # Placed by the alignment mode: worth a note; not placed at all: a warning.
            log.log(
                logging.WARNING if alignment.unplaced else logging.INFO,
                "%d entities off token boundaries (%d not placed) in request %s",
                len(alignment.misaligned),
                alignment.unplaced,
                answer.request_id if answer else "-",
            )
        doc.user_data[USER_DATA_KEY] = {
            "request_id": answer.request_id if answer else None,
            "method": answer.method if answer else None,
            "model": answer.model if answer else None,
            "escalate": answer.escalate if answer else False,
            "escalation_reasons": list(answer.escalation_reasons) if answer else [],
            "overlapping": alignment.overlapping,
            "misaligned": alignment.misaligned,
        }
        return doc

    def close(self) -> None:
        self.client.close()
