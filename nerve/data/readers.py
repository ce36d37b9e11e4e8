"""Readers for labelled data: CoNLL/BIO token files and texts into :class:`Example` objects.

Used by the gateway (CoNLL uploads), ``nerve eval``, the trainers and the Triton models alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from nerve.vocab.types import Example, Span


class BioFormatError(ValueError):
    """A CoNLL/BIO text that cannot be read; the message names the line."""


def parse_bio(text: str, *, source: str = "<text>") -> list[Example]:
    """Parse ``token<TAB or space>tag`` lines, blank line between sentences (IOB2 or IOB1).

    The sentence text is the tokens joined by single spaces; entity offsets point into it.
    ``-DOCSTART-`` lines are skipped. A malformed line raises :class:`BioFormatError`.
    """
    examples: list[Example] = []
    tokens: list[tuple[str, str, int]] = []
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            if tokens:
                examples.append(_to_example(tokens, source))
                tokens = []
            continue
        if line.startswith("-DOCSTART-"):
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) < 2:
            raise BioFormatError(f"{source}, line {line_no}: expected 'token<TAB>tag', got {raw!r}")
        token, tag = parts[0].strip(), parts[-1].strip()
        if not token:
            raise BioFormatError(f"{source}, line {line_no}: empty token")
        if tag != "O" and (len(tag) < 3 or tag[:2] not in ("B-", "I-")):
            raise BioFormatError(
                f"{source}, line {line_no}: tag {tag!r} is not O, B-<type> or I-<type>"
            )
        tokens.append((token, tag, line_no))
    if tokens:
        examples.append(_to_example(tokens, source))
    return examples


def read_bio_file(path: str | Path) -> list[Example]:
    path = Path(path)
    return parse_bio(path.read_text(encoding="utf-8"), source=str(path))


def read_split(data_dir: str | Path, domain: str, split: str) -> list[Example]:
    """Read ``<data_dir>/<domain>/<split>.txt`` (the CrossNER layout)."""
    path = Path(data_dir) / domain / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"no {split} split for domain {domain!r}: {path} does not exist")
    examples = read_bio_file(path)
    for index, example in enumerate(examples):
        example.id = f"{domain}-{split}-{index}"
    return examples


def entity_types_of(examples: Iterable[Example]) -> list[str]:
    """The entity types used in ``examples``, in order of first appearance."""
    seen: dict[str, None] = {}
    for example in examples:
        for span in example.entities:
            seen.setdefault(span.type, None)
    return list(seen)


def to_bio(example: Example) -> Iterator[tuple[str, str]]:
    """(token, IOB2 tag) pairs of a space-tokenised example (the inverse of :func:`parse_bio`)."""
    return tagged_tokens(example, _space_bounds(example.text))


def tagged_tokens(example: Example, bounds: Iterable[tuple[int, int]]) -> Iterator[tuple[str, str]]:
    """(token, IOB2 tag) of each token of ``example`` at the character ranges ``bounds``."""
    for start, end in bounds:
        tag = "O"
        for span in example.entities:
            if span.start <= start and end <= span.end:
                tag = ("B-" if span.start == start else "I-") + span.type
                break
        yield example.text[start:end], tag


def _space_bounds(text: str) -> Iterator[tuple[int, int]]:
    offset = 0
    for token in text.split(" "):
        yield offset, offset + len(token)
        offset += len(token) + 1


def _to_example(tokens: list[tuple[str, str, int]], source: str) -> Example:
    words = [t for t, _, _ in tokens]
    starts: list[int] = []
    offset = 0
    for word in words:
        starts.append(offset)
        offset += len(word) + 1
    text = " ".join(words)

    spans: list[Span] = []
    open_type: str | None = None
    open_start = 0
    open_end = 0
    for (word, tag, _), start in zip(tokens, starts, strict=True):
        prefix, etype = (tag[:2], tag[2:]) if tag != "O" else ("O", "")
        # IOB1 tolerance: an I- tag after O or after another type opens a new entity.
        continues = prefix == "I-" and open_type == etype
        if open_type is not None and not continues:
            spans.append(Span(start=open_start, end=open_end, type=open_type))
            open_type = None
        if prefix == "O":
            continue
        if not continues:
            open_type, open_start = etype, start
        open_end = start + len(word)
    if open_type is not None:
        spans.append(Span(start=open_start, end=open_end, type=open_type))
    return Example(text=text, entities=spans)
