"""Where a domain's names begin and end, learned from its stored examples (issue 14).

Every domain has its own convention at a name's edges, and a few-shot method sees only k
examples of it: politics writes "2004 European Parliament election" with its year, science
"4 Vesta" with its number, music "the Beatles" with its article but "rock" without "music"
(or the other way round). One-word boundary errors were 572 of the cascade's 2,034
wrong-boundary spans on the five CrossNER test sets (docs/history/benchmarks.md, "Stop 28").

The pool says, for each entity type, side (left or right) and word class (the word lowercased;
a year and any other number each stand for their class), how often that word was the outer
word of a multi-word name of the type (**inside**) and how often it stood right next to one
(**outside**). An answer's entity then grows over a neighbouring word the pool mostly puts
inside, or loses an outer word the pool mostly puts outside, a word at a time, never into
another returned entity.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from nerve.vocab.types import Entity, Example
from nerve.vocab.words import Word, same_text_key, split_words

Side = Literal["left", "right"]
_YEAR = re.compile(r"1[0-9]{3}|20[0-9]{2}")
# A name grows or shrinks by at most this many words a side (a title's article and its year).
MAX_STEPS = 3


@dataclass(frozen=True)
class BoundaryPolicy:
    min_share: float = 0.5  # inside (or outside) / (inside + outside + 1) to move the edge
    min_support: int = 2  # and that many pool names agree


def word_class(word: str, glued: bool = False) -> str:
    """What the convention is kept by: the word as written ("The" opens titles, "the" rarely
    does), a number's class, and whether it touches the name without a space ("U.S." ends with
    its dot, "Germany ." does not)."""
    if _YEAR.fullmatch(word):
        word = "<year>"
    elif word.isdigit():
        word = "<number>"
    return "~" + word if glued else word


_Key = tuple[str, Side, str, bool]  # (type, side, word class, case folded)


class BoundaryConventions:
    """Built once per domain version with its gazetteer; read-only afterwards."""

    def __init__(self, policy: BoundaryPolicy | None = None) -> None:
        self.policy = policy or BoundaryPolicy()
        self._inside: Counter[_Key] = Counter()
        self._outside: Counter[_Key] = Counter()
        # Each pool sentence's counts, so a query can be answered without its own stored copy.
        self._by_text: dict[str, list[tuple[_Key, bool]]] = defaultdict(list)

    @classmethod
    def from_examples(
        cls, examples: Iterable[Example], policy: BoundaryPolicy | None = None
    ) -> BoundaryConventions:
        conventions = cls(policy)
        for example in examples:
            words = split_words(example.text)
            own: list[tuple[_Key, bool]] = []
            for span in example.entities:
                inner = _covered(words, span.start, span.end)
                if inner is None:
                    continue
                first, last = inner
                if last > first:  # the outer words of a multi-word name
                    own.append(((span.type, "left", _class(words, first, first + 1), False), True))
                    own.append(((span.type, "right", _class(words, last, last - 1), False), True))
                if first > 0 and _adjacent(example.text, words[first - 1].end, span.start):
                    own.append(((span.type, "left", _class(words, first - 1, first), False), False))
                if last + 1 < len(words) and _adjacent(
                    example.text, span.end, words[last + 1].start
                ):
                    own.append(((span.type, "right", _class(words, last + 1, last), False), False))
            # Each also case-folded: a query typed in lowercase reads those counts.
            own += [((t, side, c.lower(), True), inside) for (t, side, c, _), inside in own]
            for key, inside in own:
                (conventions._inside if inside else conventions._outside)[key] += 1
            conventions._by_text[same_text_key(example.text)].extend(own)
        return conventions

    def __len__(self) -> int:
        return len(self._inside) + len(self._outside)

    def apply(
        self, text: str, entities: Sequence[Entity], *, exclude_text: str | None = None
    ) -> list[Entity]:
        """``entities`` with their edges moved to the pool's convention. Offsets into ``text``."""
        if not self._inside:
            return list(entities)
        own: Sequence[tuple[_Key, bool]] = ()
        if exclude_text is not None:
            own = self._by_text.get(same_text_key(exclude_text), ())
        words = split_words(text)
        folded = not any(c.isupper() for c in text)
        out = sorted(entities, key=lambda e: (e.start, e.end))
        for i, entity in enumerate(out):
            inner = _covered(words, entity.start, entity.end)
            if inner is None:
                continue
            lo = out[i - 1].end if i > 0 else 0
            hi = out[i + 1].start if i + 1 < len(out) else len(text)
            first, last = self._edges(text, words, (entity.type, folded), inner, lo, hi, own)
            if (first, last) != inner:
                start, end = words[first].start, words[last].end
                out[i] = entity.model_copy(
                    update={"start": start, "end": end, "text": text[start:end]}
                )
        return out

    def _edges(
        self,
        text: str,
        words: Sequence[Word],
        type_: tuple[str, bool],
        inner: tuple[int, int],
        lo: int,
        hi: int,
        own: Sequence[tuple[_Key, bool]],
    ) -> tuple[int, int]:
        """The entity's first and last word after moving each edge, a word at a time."""
        first, last = inner
        for _ in range(MAX_STEPS):  # the left edge
            grow = first > 0 and words[first - 1].start >= lo
            grow = grow and _adjacent(text, words[first - 1].end, words[first].start)
            if grow and self._says(type_, "left", _class(words, first - 1, first), own) == "inside":
                first -= 1
            elif (
                last > first
                and self._says(type_, "left", _class(words, first, first + 1), own) == "outside"
            ):
                first += 1
            else:
                break
        for _ in range(MAX_STEPS):  # the right edge
            grow = last + 1 < len(words) and words[last + 1].end <= hi
            grow = grow and _adjacent(text, words[last].end, words[last + 1].start)
            if grow and self._says(type_, "right", _class(words, last + 1, last), own) == "inside":
                last += 1
            elif (
                last > first
                and self._says(type_, "right", _class(words, last, last - 1), own) == "outside"
            ):
                last -= 1
            else:
                break
        return first, last

    def _says(
        self,
        type_: tuple[str, bool],
        side: Side,
        class_: str,
        own: Sequence[tuple[_Key, bool]],
    ) -> str | None:
        name, folded = type_
        key = (name, side, class_.lower() if folded else class_, folded)
        inside, outside = self._inside[key], self._outside[key]
        for k, was_inside in own:
            if k == key:
                inside -= was_inside
                outside -= not was_inside
        total = inside + outside + 1  # one pseudo-count: a single example is no convention
        if inside >= self.policy.min_support and inside / total >= self.policy.min_share:
            return "inside"
        if outside >= self.policy.min_support and outside / total >= self.policy.min_share:
            return "outside"
        return None


def _class(words: Sequence[Word], i: int, inner: int) -> str:
    """The class of word ``i`` at a name's edge, ``inner`` being its neighbour on the name's side."""
    a, b = sorted((words[i], words[inner]), key=lambda w: w.start)
    return word_class(words[i].text, glued=a.end == b.start)


def _covered(words: Sequence[Word], start: int, end: int) -> tuple[int, int] | None:
    """The first and last word of ``text[start:end]``, if its edges are word edges."""
    first = next((i for i, w in enumerate(words) if w.start == start), None)
    last = next((i for i, w in enumerate(words) if w.end == end), None)
    if first is None or last is None or last < first:
        return None
    return first, last


def _adjacent(text: str, end: int, start: int) -> bool:
    """Only spaces between two words (not a comma or a line break: another name may follow)."""
    return end <= start and text[end:start].strip(" ") == ""
