"""CoNLL/BIO text (``token<TAB>tag`` lines, a blank line between sentences) to and from examples.

Reading is :func:`nerve.data.readers.parse_bio` (the sentence is its tokens joined by spaces).
Writing splits a text into words (:func:`nerve.vocab.words.split_words`), cut at entity edges,
so every entity is a whole run of tokens; the text's own spacing is not kept.
"""

from __future__ import annotations

from collections.abc import Iterable

from nerve.data.formats.base import FormatError, token_bounds
from nerve.data.readers import BioFormatError, parse_bio, tagged_tokens
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
    bounds = token_bounds(example.text, example.entities)
    return [f"{token}\t{tag}" for token, tag in tagged_tokens(example, bounds)]


def to_conll(examples: Iterable[Example]) -> str:
    """Examples as CoNLL text: a blank line after each sentence (one with no word is left out)."""
    blocks = [lines for lines in (conll_lines(e) for e in examples) if lines]
    return "".join("\n".join(lines) + "\n\n" for lines in blocks)
