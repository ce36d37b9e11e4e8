"""Word segmentation with character offsets (retrieval embeds a query word by word)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# A word is a run of letters/digits (with inner apostrophes, hyphens and dots: "e-mail", "U.S"),
# or a single other non-space character: punctuation is its own word, as in CoNLL.
_WORD = re.compile(r"\w+(?:[-'’.]\w+)*|[^\w\s]")


@dataclass(frozen=True)
class Word:
    text: str
    start: int
    end: int


def split_words(text: str) -> list[Word]:
    """Split ``text`` into words with their character offsets."""
    words: list[Word] = []
    for match in _WORD.finditer(text):
        start, end = match.start(), match.end()
        # Python's \w has no combining marks (NFD accents, Indic vowel signs): a mark, and the
        # letters right after it, continue the word before it instead of splitting it apart.
        if (
            words
            and words[-1].end == start
            and (_is_mark(text[start]) or (_is_mark(text[start - 1]) and _is_word(text[start])))
        ):
            first = words.pop().start
            words.append(Word(text[first:end], first, end))
            continue
        words.append(Word(match.group(), start, end))
    return words


def same_text_key(text: str) -> str:
    """What makes two sentences "the same" for ``exclude_same_text``: spacing and case aside
    (a lowercased test sentence must not find its own cased copy in the pool)."""
    return " ".join(text.split()).lower()


def _is_mark(char: str) -> bool:
    return unicodedata.category(char).startswith("M")


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"
