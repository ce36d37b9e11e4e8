"""CoNLL/BIO text (``token<TAB>tag`` lines, a blank line between sentences) to and from examples.

Reading is :func:`nerve.data.readers.parse_bio` (the sentence is its tokens joined by spaces).
Writing splits a text into words (:func:`nerve.vocab.words.split_words`), cut at entity edges,
so every entity is a whole run of tokens; the text's own spacing is not kept.
"""

from __future__ import annotations

from collections.abc import Iterable

from nerve.data.formats.base import FormatError, token_bounds
from nerve.data.readers import BioFormatError, parse_bio
from nerve.vocab.types import Example


def parse_conll(text: str, *, source: str = "CoNLL file") -> list[Example]:
    try:
        examples = parse_bio(text, source=source)
    except BioFormatError as exc:
        raise FormatError(str(exc)) from exc
    if not examples:
        raise FormatError(f"{source} holds no sentence ('token<TAB>tag' lines expected)")
    return examples


def conll_lines(example: Example) -> list[str]:
    """``token<TAB>IOB2 tag`` lines of one example."""
    spans = sorted(example.entities, key=lambda s: (s.start, s.end))
    lines = []
    for start, end in token_bounds(example.text, spans):
        tag = "O"
        for span in spans:
            if span.start <= start and end <= span.end:
                tag = ("B-" if span.start == start else "I-") + span.type
                break
        lines.append(f"{example.text[start:end]}\t{tag}")
    return lines


def to_conll(examples: Iterable[Example]) -> str:
    """Examples as CoNLL text: a blank line after each sentence (one with no word is left out)."""
    blocks = [lines for lines in (conll_lines(e) for e in examples) if lines]
    return "".join("\n".join(lines) + "\n\n" for lines in blocks)
