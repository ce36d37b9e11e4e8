"""What the format converters share: their error, and the check every span passes."""

from __future__ import annotations

from nerve.vocab.types import Span
from nerve.vocab.words import split_words


class FormatError(ValueError):
    """A file in one of the interchange formats that cannot be read; the message names where."""


def make_span(text: str, start: object, end: object, label: object, where: str) -> Span:
    """A :class:`Span` of ``text``, or :class:`FormatError` naming ``where`` and the problem."""
    if not isinstance(start, int) or isinstance(start, bool):
        raise FormatError(f"{where}: start must be an integer; got {start!r}")
    if not isinstance(end, int) or isinstance(end, bool):
        raise FormatError(f"{where}: end must be an integer; got {end!r}")
    if not isinstance(label, str) or not label:
        raise FormatError(f"{where}: the label must be a non-empty string; got {label!r}")
    if not 0 <= start < end <= len(text):
        raise FormatError(
            f"{where}: offsets must satisfy 0 <= start < end <= {len(text)} (the text's length "
            f"in code points); got start={start}, end={end}"
        )
    return Span(start=start, end=end, type=label)


def token_bounds(text: str, spans: list[Span]) -> list[tuple[int, int]]:
    """(start, end) of the text's words (:func:`nerve.vocab.words.split_words`), cut further at
    every span boundary inside a word, so each span is a whole run of tokens."""
    cuts = sorted({s.start for s in spans} | {s.end for s in spans})
    bounds: list[tuple[int, int]] = []
    for word in split_words(text):
        start = word.start
        for cut in cuts:
            if start < cut < word.end:
                bounds.append((start, cut))
                start = cut
        bounds.append((start, word.end))
    return bounds
