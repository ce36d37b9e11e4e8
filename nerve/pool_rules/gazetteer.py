"""The names a domain's stored examples labelled, applied to an answer (issue 14).

Few-shot retrieval shows a method the k most similar examples; the rest of the pool is unseen,
although it often names the very entity the query holds, with the type this domain gives it
(politics labels "Barack Obama" ``politician``, not ``person``). The gazetteer keeps every
labelled surface of the pool (lowercased: text typed into a chat box matches too) with how often
it carried each type and how often the surface occurred in the pool at all, and turns that into
two edits of an answer:

- **retype**: a returned span whose surface the pool labelled mostly with one type gets it;
- **add**: an occurrence of such a surface that no returned span overlaps becomes an entity,
  where the pool labels the surface in most of its occurrences (its precision in the pool);
- **extend**: where only pieces of such an occurrence were returned, the whole name replaces
  them (the encoder's "Zephyr" of "Zephyr Nine").

Before those, a returned entity's edges move to the pool's convention for its type (the year of
"2004 European Parliament election", the "The" of a title: :mod:`nerve.pool_rules.boundaries`).

Measured on the five full CrossNER test sets (docs/history/benchmarks.md, "Stop 27"): average micro-F1
+2.1 for ``auto`` (61.2 -> 63.3), +3.1 for ``wraner``, +1.1 for ``baner``. Used by the gateway
(:mod:`app.ner.pool_step`) and the offline tools alike.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from nerve.pool_rules.boundaries import BoundaryConventions, BoundaryPolicy
from nerve.pool_rules.truecase import CasingTable
from nerve.vocab.types import Entity, Example
from nerve.vocab.words import same_text_key, split_words

# Longest name looked up, in words: a longer labelled span is kept out of the gazetteer.
MAX_NAME_WORDS = 12


@dataclass(frozen=True)
class GazetteerPolicy:
    min_type_share: float = 0.5  # a surface's majority type must have > this share of its labels
    min_entity_rate: float = 0.5  # labelled occurrences / all occurrences in the pool, for "add"
    min_add_chars: int = 4  # shorter surfaces ("us", "may") are only retyped, never added
    extend: bool = True  # a name of which only pieces were returned replaces the pieces
    boundaries: BoundaryPolicy | None = field(default_factory=BoundaryPolicy)  # None: edges kept


@dataclass(frozen=True)
class Name:
    """What the pool says of a surface: its majority type, that type's share of the surface's
    labels, and how often the surface carries that label where it occurs in the pool (both
    with one pseudo-count against, so they can serve as scores)."""

    type: str
    type_share: float
    precision: float


@dataclass
class _Counts:
    types: Counter[str] = field(default_factory=Counter)
    occurrences: int = 0


class Gazetteer:
    """Built once per domain version from its examples; read-only afterwards (thread-safe)."""

    def __init__(self, policy: GazetteerPolicy | None = None) -> None:
        self.policy = policy or GazetteerPolicy()
        self._names: dict[str, _Counts] = {}
        # Each pool sentence's contribution, by its same-text key: a query that must not see
        # its own stored copy (``exclude_same_text``) is answered without it.
        self._by_text: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
        self._max_words = 0
        # How the pool writes its words: casing for a query typed in lowercase (truecase.py).
        self.casing = CasingTable({})
        # Where the pool's names of each type begin and end (boundaries.py).
        self.boundaries: BoundaryConventions | None = None

    @classmethod
    def from_examples(
        cls, examples: Iterable[Example], policy: GazetteerPolicy | None = None
    ) -> Gazetteer:
        gazetteer = cls(policy)
        pool = list(examples)
        gazetteer.casing = CasingTable.from_examples(pool)
        if gazetteer.policy.boundaries is not None:
            gazetteer.boundaries = BoundaryConventions.from_examples(
                pool, gazetteer.policy.boundaries
            )
        for example in pool:
            for span in example.entities:
                surface = _key(span.surface(example.text))
                words = len(split_words(surface))
                if not surface or words > MAX_NAME_WORDS:
                    continue
                gazetteer._names.setdefault(surface, _Counts()).types[span.type] += 1
                gazetteer._by_text[same_text_key(example.text)].append((surface, span.type))
                gazetteer._max_words = max(gazetteer._max_words, words)
        # Occurrences: every place a known surface appears in the pool, labelled or not.
        for example in pool:
            for start, end in gazetteer._matches(example.text):
                surface = _key(example.text[start:end])
                gazetteer._names[surface].occurrences += 1
                gazetteer._by_text[same_text_key(example.text)].append((surface, None))
        return gazetteer

    def __len__(self) -> int:
        return len(self._names)

    def lookup(self, surface: str, exclude_text: str | None = None) -> Name | None:
        """What the pool says of ``surface`` (without the sentences of ``exclude_text``), or
        None where it does not name it, or names it with no clear majority type."""
        return self._name(_key(surface), self._own(exclude_text))

    def _own(self, exclude_text: str | None) -> Sequence[tuple[str, str | None]]:
        """The contributions of the pool's copies of ``exclude_text`` (none without one)."""
        return () if exclude_text is None else self._by_text.get(same_text_key(exclude_text), ())

    def _name(self, key: str, own: Sequence[tuple[str, str | None]]) -> Name | None:
        counts = self._names.get(key)
        if counts is None:
            return None
        types, occurrences = counts.types, counts.occurrences
        mine = [t for s, t in own if s == key]
        if mine:
            types = types - Counter(t for t in mine if t is not None)
            occurrences -= sum(t is None for t in mine)
        labelled = sum(types.values())
        if labelled == 0:
            return None
        type_, n = types.most_common(1)[0]
        if n / labelled <= self.policy.min_type_share and len(types) > 1:  # no clear majority
            return None
        # One pseudo-occurrence: a name seen once, labelled once, is a coin flip, not a
        # certainty (measured: the unsmoothed 1.0s were right 62% of the time).
        return Name(type_, n / (labelled + 1), n / (max(occurrences, labelled) + 1))

    def apply(
        self,
        text: str,
        entities: Sequence[Entity],
        types: Collection[str],
        *,
        exclude_text: str | None = None,
    ) -> list[Entity]:
        """``entities`` with the pool's edges and types, plus the pool's names no entity
        overlaps; only types in ``types`` are given. Offsets are into ``text``."""
        if self.boundaries is not None:
            entities = self.boundaries.apply(text, entities, exclude_text=exclude_text)
        if not self._names:
            return list(entities)
        own = self._own(exclude_text)
        out: list[Entity] = []
        for entity in entities:
            name = self._name(_key(text[entity.start : entity.end]), own)
            if name is not None and name.type in types and name.type != entity.type:
                # The span was already returned as an entity and the pool decides its type:
                # right at least as often as the pool's labels agree.
                score = round(max(entity.score, name.type_share), 4)
                entity = entity.model_copy(update={"type": name.type, "score": score})
            out.append(entity)
        for start, end in self._matches(text):
            if end - start < self.policy.min_add_chars:
                continue
            inside = [e for e in out if start <= e.start and e.end <= end]
            overlapping = [e for e in out if e.start < end and start < e.end]
            if len(inside) != len(overlapping) or any(
                (e.start, e.end) == (start, end) for e in inside
            ):
                continue  # a returned span crosses the name's edge, or is the name itself
            if inside and not self.policy.extend:
                continue
            name = self._name(_key(text[start:end]), own)
            if (
                name is None
                or name.type not in types
                or name.precision < self.policy.min_entity_rate
            ):
                continue
            # add: nothing returned here; extend: only pieces of the name were returned.
            out = [e for e in out if e not in inside]
            out.append(
                Entity(
                    text=text[start:end],
                    type=name.type,
                    start=start,
                    end=end,
                    score=round(name.precision, 4),
                )
            )
        return sorted(out, key=lambda e: (e.start, e.end))

    def _matches(self, text: str) -> list[tuple[int, int]]:
        """Known surfaces in ``text``, left to right, the longest at each word, not overlapping."""
        words = split_words(text)
        found: list[tuple[int, int]] = []
        i = 0
        while i < len(words):
            for j in range(min(len(words), i + self._max_words), i, -1):
                start, end = words[i].start, words[j - 1].end
                if _key(text[start:end]) in self._names:
                    found.append((start, end))
                    i = j
                    break
            else:
                i += 1
        return found


def _key(surface: str) -> str:
    return surface.strip().lower()
