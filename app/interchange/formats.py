"""Upload and export of a domain's examples in Label Studio, spaCy and CoNLL formats.

The converters are the library's (:mod:`nerve.data.formats`); this module picks one from the
request (``?format=`` or the content type), turns a :class:`FormatError` into one 400 naming what
is wrong, and names the source item (a Label Studio task, a JSONL line) in a 422 from the
domain's own checks (unknown type, overlap), so nothing is stored from a bad file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from nerve.data.formats import FormatError, conll, labelstudio, spacy_docs
from nerve.errors import InvalidRequest, MalformedBody
from nerve.vocab.types import Example

UploadFormat = Literal["json", "conll", "labelstudio", "spacy", "spacy-jsonl"]
ExportFormat = Literal["labelstudio", "spacy", "spacy-jsonl", "conll"]

# Content types that name a format on their own (besides application/json and text/plain).
CONTENT_TYPES: dict[str, UploadFormat] = {
    "application/x-spacy": "spacy",
    "application/octet-stream": "spacy",
    "application/x-ndjson": "spacy-jsonl",
    "application/jsonl": "spacy-jsonl",
    "application/x-jsonlines": "spacy-jsonl",
    "application/vnd.label-studio+json": "labelstudio",
}


# The request bodies these formats add to the examples route's OpenAPI description.
UPLOAD_CONTENT = {
    "application/octet-stream": {
        "schema": {"type": "string", "format": "binary", "description": "spaCy DocBin (.spacy)"}
    },
    "application/x-ndjson": {
        "schema": {"type": "string", "description": "spaCy JSONL: {text, spans} per line"}
    },
}


@dataclass(frozen=True)
class Export:
    body: bytes
    media_type: str
    suffix: str


def upload_format(content_type: str, fmt: str | None, raw: bytes) -> UploadFormat | None:
    """The format of an upload that this module reads; None for the gateway's own JSON and
    CoNLL bodies (read by the examples route as before)."""
    if fmt is not None:
        return None if fmt in ("json", "conll") else fmt  # type: ignore[return-value]
    if content_type in CONTENT_TYPES:
        return CONTENT_TYPES[content_type]
    # A JSON list is no ``{examples: [...]}`` body: it is a Label Studio export.
    if content_type in ("application/json", "") and raw.lstrip()[:1] == b"[":
        return "labelstudio"
    return None


def parse_upload(raw: bytes, fmt: UploadFormat) -> tuple[list[Example], list[str]]:
    """The examples of an upload and, for each, where it came from (for error messages)."""
    try:
        if fmt == "spacy":
            examples = spacy_docs.parse_docbin(raw, source="DocBin")
            return examples, [f"DocBin doc {i}" for i in range(len(examples))]
        text = _utf8(raw)
        if fmt == "labelstudio":
            tasks = labelstudio.annotated_tasks(text)
            return [e for _, e in tasks], [where for where, _ in tasks]
        if fmt == "spacy-jsonl":
            examples = spacy_docs.parse_jsonl(text, source="JSONL")
            return examples, [f"JSONL record {i + 1}" for i in range(len(examples))]
        examples = conll.parse_conll(text, source="CoNLL body")
        return examples, [f"CoNLL sentence {i + 1}" for i in range(len(examples))]
    except FormatError as exc:
        raise MalformedBody(f"{_NAMES[fmt]}: {exc}") from exc


_NAMES: dict[str, str] = {
    "labelstudio": "Label Studio export",
    "spacy": "spaCy DocBin",
    "spacy-jsonl": "spaCy JSONL",
    "conll": "CoNLL",
}


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBody(f"body is not UTF-8: {exc.reason} at byte {exc.start}") from exc


_INDEX = re.compile(r"^examples\[(\d+)\]")


def name_source(exc: InvalidRequest, sources: Sequence[str]) -> InvalidRequest:
    """The domain's check of ``examples[i]`` restated with the item of the file it came from."""
    match = _INDEX.match(exc.message)
    if match is None or int(match.group(1)) >= len(sources):
        return exc
    return InvalidRequest(
        f"{sources[int(match.group(1))]} ({match.group(0)}){exc.message[match.end() :]}"
    )


def export(examples: Sequence[Example], fmt: ExportFormat) -> Export:
    if fmt == "labelstudio":
        body = labelstudio.dump_tasks(examples).encode("utf-8")
        return Export(body, "application/json", "json")
    if fmt == "spacy":
        try:
            return Export(spacy_docs.to_docbin(examples), "application/octet-stream", "spacy")
        except RuntimeError as exc:
            raise InvalidRequest(f"format=spacy: {exc}; use format=spacy-jsonl") from exc
    if fmt == "spacy-jsonl":
        return Export(
            spacy_docs.to_jsonl(examples).encode("utf-8"), "application/x-ndjson", "jsonl"
        )
    return Export(conll.to_conll(examples).encode("utf-8"), "text/plain; charset=utf-8", "conll")
