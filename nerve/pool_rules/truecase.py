"""Casing given back to a lowercased query from the domain's stored examples (issue 14).

The LLM was tuned on cased text and loses ~13 F1 on text typed all in lowercase (names of books
and bands are no longer capitalised). A word-casing table from the domain's pool (each word's
commonest form where it is not the first word of its sentence: that capital is positional)
restores 27-50% of the capitalised words of CrossNER's entities at 0.9-3.3% miscasing of the
other words (docs/history/benchmarks.md, "Stop 27"), yet on 400 lowercased test sentences wraner with
it scored 1.4 F1 lower than without (49.0 vs 50.4, "Stop 28"): hence off by default. Only a text
with no capital at all is changed, and each word only by a form of the same length, so every
offset into it is an offset into the query.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from nerve.vocab.types import Example
from nerve.vocab.words import split_words


class CasingTable:
    def __init__(self, forms: dict[str, str]) -> None:
        self._forms = forms

    @classmethod
    def from_examples(cls, examples: Iterable[Example]) -> CasingTable:
        seen: defaultdict[str, Counter[str]] = defaultdict(Counter)
        for example in examples:
            for word in split_words(example.text)[1:]:
                seen[word.text.lower()][word.text] += 1
        forms = {}
        for lower, counts in seen.items():
            form = counts.most_common(1)[0][0]
            if form != lower and len(form) == len(lower):
                forms[lower] = form
        return cls(forms)

    def __len__(self) -> int:
        return len(self._forms)

    def restore(self, text: str) -> str | None:
        """``text`` with the pool's casing (and a capital first letter), or None where the
        text has a capital already (it was not typed in lowercase) or nothing changes."""
        if any(c.isupper() for c in text):
            return None
        chars = list(text)
        for word in split_words(text):
            form = self._forms.get(word.text)
            if form is not None:
                chars[word.start : word.end] = form
        for i, c in enumerate(chars):
            if c.isalpha():
                upper = c.upper()
                if len(upper) == 1:
                    chars[i] = upper
                break
        restored = "".join(chars)
        return restored if restored != text else None
