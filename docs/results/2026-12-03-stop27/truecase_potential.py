"""How much of a lowercased sentence's casing could the domain's pool give back? (issue 14,
an estimate for a truecasing step before the LLM; no model run)

    PYTHONPATH=. python docs/results/2026-12-03-stop27/truecase_potential.py > truecase.md

A word-casing table from the domain's train pool (each lowercased word's commonest form, the
sentence-initial word left out: its capital is positional). Over the test set: the share of
capitalised words inside gold entities the table restores, and the share of all other
non-initial words it would case wrongly.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from app.core.readers import read_split
from app.core.words import split_words

DATA = Path("/work/shared/data/crossner")

print("| domain | capitalised entity words restored | other words cased wrongly |")
print("| --- | ---: | ---: |")
for domain in ("music", "literature", "ai", "politics", "science"):
    forms: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for example in read_split(DATA, domain, "train"):
        for word in split_words(example.text)[1:]:
            forms[word.text.lower()][word.text] += 1
    table = {lower: counts.most_common(1)[0][0] for lower, counts in forms.items()}
    restored = capitalised = wrong = others = 0
    for example in read_split(DATA, domain, "test"):
        words = split_words(example.text)
        inside = {
            i
            for i, w in enumerate(words)
            for s in example.entities
            if s.start <= w.start and w.end <= s.end
        }
        for i, word in enumerate(words):
            if i in inside and any(c.isupper() for c in word.text):
                capitalised += 1
                restored += table.get(word.text.lower()) == word.text
            elif i > 0 and i not in inside:
                others += 1
                found = table.get(word.text.lower())
                wrong += found is not None and found != word.text
    print(
        f"| {domain} | {restored:,} / {capitalised:,} ({restored / capitalised:.0%}) | "
        f"{wrong:,} / {others:,} ({wrong / others:.1%}) |"
    )
