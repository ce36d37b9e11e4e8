"""Labelled-data interchange formats, as pure functions between files and :class:`Example` lists.

- :mod:`nerve.data.formats.labelstudio`: Label Studio JSON exports (NER ``labels`` results) and
  the labeling config's names; offsets in Python code points (as Label Studio stores them).
- :mod:`nerve.data.formats.spacy_docs`: spaCy ``DocBin`` bytes (spaCy imported lazily) and
  spaCy's JSONL (``{"text", "spans"|"entities"}``).
- :mod:`nerve.data.formats.conll`: CoNLL/BIO text (reading is :func:`nerve.data.readers.parse_bio`).

Every reader raises :class:`FormatError` naming the item and the field that is wrong; the gateway
turns it into one 4xx answer and stores nothing.
"""

from __future__ import annotations

from nerve.data.formats.base import FormatError

__all__ = ["FormatError"]
