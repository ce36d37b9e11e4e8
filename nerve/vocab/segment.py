"""Cut a long text into segments of whole sentences, with exact character offsets.

The LLM sees one segment at a time; entities it finds in ``text[start:end]`` are shifted by
``start`` to point into the whole text. Segments never cut a word, so no entity is cut either
(unless a single sentence is longer than the budget, where the cut falls between words).
"""

from __future__ import annotations

import re

# Sentence-final punctuation, then closing quotes or brackets, then whitespace.
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’»)\]]*(?=\s)")
# Every character str.splitlines() breaks on: a line break always ends a sentence.
_LINE_BREAK = re.compile(r"[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]+")
_NON_SPACE = re.compile(r"\S+")
# Initials ("J."), dotted abbreviations ("U.S.", "e.g.", "Ph.D."): letters separated by dots.
_DOTTED = re.compile(r"(?:[^\W\d_]+\.)*[^\W\d_]\.")
# Abbreviations whose period does not end a sentence ("Dr. Smith", "Acme Inc. said").
_ABBREVIATION = re.compile(
    r"mrs?|ms|mx|dr|prof|[sj]r|st|mt|ft|rev|gen|col|lt|sgt|capt|cmdr|gov|sen|rep|pres|supt"
    r"|vs|etc|al|approx|appr|apt|dept|est|inc|ltd|co|corp|bros|nos?|vols?|figs?|ch|sec"
    r"|jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec|mon|tues?|wed|thu|thurs?|fri|sat|sun"
    r"|ave|blvd|rd|hwy",
    re.IGNORECASE,
)


def split_segments(text: str, max_chars: int) -> list[tuple[int, int]]:
    """Character ranges ``(start, end)`` of ``text`` holding whole sentences, in order.

    Consecutive sentences are packed while a segment stays within ``max_chars``; a longer
    sentence is cut at whitespace, and a single word longer than ``max_chars`` is a segment of
    its own. Ranges start and end on non-space characters and skip whitespace-only stretches.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    units: list[tuple[int, int]] = []
    for start, end in _sentences(text):
        if end - start <= max_chars:
            units.append((start, end))
        else:
            units.extend(_pack(_words(text, start, end), max_chars))
    return _pack(units, max_chars)


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence ranges of ``text``, trimmed of surrounding whitespace, in order."""
    return list(_sentences(text))


def _sentences(text: str) -> list[tuple[int, int]]:
    sentences: list[tuple[int, int]] = []
    line_start = 0
    for brk in [*_LINE_BREAK.finditer(text), None]:
        line_end = brk.start() if brk is not None else len(text)
        piece_start = line_start
        for match in _SENTENCE_END.finditer(text, line_start, line_end):
            if _is_sentence_end(text, match.start(), match.end(), line_end):
                _add_trimmed(text, piece_start, match.end(), sentences)
                piece_start = match.end()
        _add_trimmed(text, piece_start, line_end, sentences)
        if brk is not None:
            line_start = brk.end()
    return sentences


def _is_sentence_end(text: str, punct_start: int, punct_end: int, line_end: int) -> bool:
    next_char = _next_non_space(text, punct_end, line_end)
    # A lower-case continuation ("approx. five", "... and then") is not a new sentence.
    if next_char is not None and next_char.islower():
        return False
    if text[punct_start] != "." or text[punct_start:punct_end].startswith(".."):
        return True
    word_start = punct_start
    while word_start > 0 and not text[word_start - 1].isspace():
        word_start -= 1
    # The word ending in the period, without opening quotes or brackets before it.
    word = text[word_start : punct_start + 1].lstrip("\"'“‘«([")
    if _DOTTED.fullmatch(word):
        return False
    return _ABBREVIATION.fullmatch(word[:-1]) is None


def _next_non_space(text: str, position: int, limit: int) -> str | None:
    while position < limit:
        if not text[position].isspace():
            return text[position]
        position += 1
    return None


def _add_trimmed(text: str, start: int, end: int, out: list[tuple[int, int]]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        out.append((start, end))


def _words(text: str, start: int, end: int) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in _NON_SPACE.finditer(text, start, end)]


def _pack(units: list[tuple[int, int]], max_chars: int) -> list[tuple[int, int]]:
    """Greedily merge consecutive units while the merged range fits in ``max_chars``."""
    packed: list[tuple[int, int]] = []
    for start, end in units:
        if packed and end - packed[-1][0] <= max_chars:
            packed[-1] = (packed[-1][0], end)
        else:
            packed.append((start, end))
    return packed
