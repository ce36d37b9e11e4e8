"""spaCy's formats to and from examples: ``DocBin`` bytes (``.spacy``) and JSONL.

JSONL: one object a line, ``{"text": ..., "spans": [{"start", "end", "label"}]}`` (Prodigy's and
spacy-llm's shape); ``"entities"`` instead of ``"spans"``, as objects or ``[start, end, label]``
triples (spaCy v2 training data), is read too. Offsets are character offsets (code points).

spaCy is imported only by the ``DocBin`` functions, so the rest of nerve never loads it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from nerve.data.formats.base import FormatError, make_span, token_bounds
from nerve.vocab.types import Example, Span

SPACY_MISSING = "spaCy is not installed (pip install 'spacy>=3.7,<4'): DocBin needs it"


def parse_jsonl(text: str, *, source: str = "spaCy JSONL") -> list[Example]:
    examples = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source}, line {line_no}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FormatError(f"{where}: not JSON: {exc.msg}") from exc
        examples.append(_record_example(record, where))
    if not examples:
        raise FormatError(f"{source} holds no line with a record")
    return examples


def _record_example(record: Any, where: str) -> Example:
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise FormatError(f"{where}: expected an object with a 'text' string")
    text = record["text"]
    key = "spans" if "spans" in record else "entities"
    items = record.get(key) or []
    if not isinstance(items, list):
        raise FormatError(f"{where}: '{key}' must be a list")
    spans: list[Span] = []
    for index, item in enumerate(items):
        here = f"{where}, {key}[{index}]"
        if isinstance(item, list | tuple) and len(item) == 3:
            start, end, label = item
        elif isinstance(item, dict):
            start, end = item.get("start"), item.get("end")
            label = item.get("label", item.get("type"))
        else:
            raise FormatError(f"{here}: expected {{start, end, label}} or [start, end, label]")
        spans.append(make_span(text, start, end, label, here))
    return Example(text=text, entities=spans)


def to_jsonl(examples: Iterable[Example]) -> str:
    lines = []
    for example in examples:
        record: dict[str, Any] = {
            "text": example.text,
            "spans": [
                {
                    "start": s.start,
                    "end": s.end,
                    "label": s.type,
                    "text": example.text[s.start : s.end],
                }
                for s in sorted(example.entities, key=lambda s: (s.start, s.end))
            ],
        }
        if example.id is not None:
            record["meta"] = {"id": example.id}
        lines.append(json.dumps(record, ensure_ascii=False))
    return "".join(line + "\n" for line in lines)


def parse_docbin(data: bytes, *, source: str = "spaCy DocBin") -> list[Example]:
    """The docs of a serialized ``DocBin``: their text, and ``doc.ents`` as spans (a doc without
    entities but with exactly one span group gives that group's spans)."""
    try:
        from spacy.tokens import DocBin
        from spacy.vocab import Vocab
    except ImportError as exc:
        raise FormatError(SPACY_MISSING) from exc
    try:
        docs = list(DocBin().from_bytes(data).get_docs(Vocab()))
    except Exception as exc:  # spaCy raises ValueError, KeyError, msgpack's errors...
        raise FormatError(f"{source}: not a spaCy DocBin ({type(exc).__name__}: {exc})") from exc
    if not docs:
        raise FormatError(f"{source} holds no doc")
    examples = []
    for index, doc in enumerate(docs):
        spans: Iterable[Any] = doc.ents
        if not doc.ents and len(doc.spans) == 1:
            spans = next(iter(doc.spans.values()))
        examples.append(
            Example(
                text=doc.text,
                entities=[
                    make_span(
                        doc.text, s.start_char, s.end_char, s.label_, f"{source}, doc {index}"
                    )
                    for s in spans
                ],
            )
        )
    return examples


def to_docbin(examples: Iterable[Example]) -> bytes:
    """A ``DocBin`` of the examples: tokens are words cut at entity edges, every whitespace run
    but a single space is a token of its own (``doc.text`` is the example's text), entities are
    ``doc.ents`` (overlapping ones, which ``ents`` cannot hold, go to ``doc.spans["sc"]``)."""
    try:
        from spacy.tokens import Doc, DocBin
        from spacy.vocab import Vocab
    except ImportError as exc:
        raise RuntimeError(SPACY_MISSING) from exc
    vocab = Vocab()
    docs = DocBin(store_user_data=False)
    for example in examples:
        spans = sorted(example.entities, key=lambda s: (s.start, s.end))
        words, spaces = _tokens(example.text, spans)
        doc = Doc(vocab, words=words, spaces=spaces)
        entities = [doc.char_span(s.start, s.end, label=s.type) for s in spans]
        kept = [e for e in entities if e is not None]
        try:
            doc.ents = kept
        except ValueError:  # overlapping spans: keep them all in a span group
            doc.spans["sc"] = kept
        docs.add(doc)
    return bytes(docs.to_bytes())


def _tokens(text: str, spans: list[Span]) -> tuple[list[str], list[bool]]:
    words: list[str] = []
    spaces: list[bool] = []
    position = 0
    for start, end in [*token_bounds(text, spans), (len(text), len(text))]:
        gap = text[position:start]
        if gap:
            if gap.startswith(" ") and words and not spaces[-1]:
                spaces[-1] = True
                gap = gap[1:]
            if gap:
                words.append(gap)
                spaces.append(False)
        if end > start:
            words.append(text[start:end])
            spaces.append(False)
        position = end
    return words, spaces
