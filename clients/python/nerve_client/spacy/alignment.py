"""The service's character offsets as spaCy spans, with every span that does not fit the
tokens recorded (spaCy itself would return None and the entity would vanish)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Literal

from spacy.tokens import Doc, Span

from nerve_client.models import Entity

AlignmentMode = Literal["strict", "contract", "expand"]
ALIGNMENT_MODES: tuple[str, ...] = ("strict", "contract", "expand")


@dataclass
class Alignment:
    spans: list[Span] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    # Entities whose offsets are not token boundaries: how they were placed (``aligned``:
    # the span's character offsets) or why they were not (``aligned`` None, ``reason``).
    misaligned: list[dict[str, Any]] = field(default_factory=list)

    @property
    def unplaced(self) -> int:
        return sum(1 for m in self.misaligned if m["aligned"] is None)

    @property
    def overlapping(self) -> bool:
        ordered = sorted(self.spans, key=lambda s: (s.start, s.end))
        return any(a.end > b.start for a, b in pairwise(ordered))


def align(doc: Doc, entities: Sequence[Entity], mode: AlignmentMode) -> Alignment:
    """Spans of ``doc`` for the entities (Python ``str`` offsets into ``doc.text``)."""
    result = Alignment()
    for entity in entities:
        record = {
            "start": entity.start,
            "end": entity.end,
            "type": entity.type,
            "text": entity.text,
            "aligned": None,
            "reason": "",
        }
        if doc.text[entity.start : entity.end] != entity.text:
            # The offsets do not point at the answer's text: never guess where it is.
            result.misaligned.append({**record, "reason": "text_mismatch"})
            continue
        exact = doc.char_span(entity.start, entity.end, label=entity.type)
        span = exact or doc.char_span(
            entity.start, entity.end, label=entity.type, alignment_mode=mode
        )
        if span is None or len(span) == 0:
            result.misaligned.append({**record, "reason": f"no_token_boundary ({mode})"})
            continue
        if exact is None:
            result.misaligned.append(
                {**record, "aligned": [span.start_char, span.end_char], "reason": mode}
            )
        result.spans.append(span)
        result.scores.append(entity.score)
    return result
