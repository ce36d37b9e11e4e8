"""Parse the LLM's answer and ground every span to character offsets in the query.

The model is a small LLM and its output is untrusted: lines may carry bullets, quotes or code
fences, a type may be mis-cased, an answer may be JSON, a span may be paraphrased or absent from
the text. Everything that can be repaired is repaired and named (``repairs``); everything that
cannot is dropped and counted by kind (``drops``), so the gateway can export both as metrics.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from nerve.prompting.prompt import NO_ENTITY, SEPARATOR

# Drop kinds (metric label values).
DROP_MALFORMED = "malformed_line"
DROP_TYPE = "type_not_requested"
DROP_NOT_IN_TEXT = "not_in_text"
DROP_OVERLAP = "overlap"
DROP_DUPLICATE = "duplicate"

# Repair kinds (metric label values).
REPAIR_MARKUP = "markup_stripped"
REPAIR_JSON = "json_answer"
REPAIR_SEPARATOR = "other_separator"
REPAIR_TYPE_CASE = "type_normalised"
REPAIR_FUZZY = "fuzzy_grounding"
REPAIR_TRAILING = "trailing_text"
# The closed sets, exported at zero from the start (nerve.metrics) so that a dashboard shows 0,
# not "no data", for a service that never needed a repair.
DROP_KINDS = (DROP_MALFORMED, DROP_TYPE, DROP_NOT_IN_TEXT, DROP_OVERLAP, DROP_DUPLICATE)
REPAIR_KINDS = (
    REPAIR_MARKUP,
    REPAIR_JSON,
    REPAIR_SEPARATOR,
    REPAIR_TYPE_CASE,
    REPAIR_FUZZY,
    REPAIR_TRAILING,
)

_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")
_QUOTES = "\"'`“”‘’«»"
# "*" too: markdown bold ("**Paris** | **location**") is a common small-LLM habit.
_EDGE_PUNCT = _QUOTES + ".,;:!?()[]{}*"
# Typographic quotes and primes folded to ASCII for fuzzy grounding ("O’Brien" = "O'Brien").
_QUOTE_FOLD = str.maketrans("‘’‚‛′“”„‟″", "'''''\"\"\"\"\"")


@dataclass(frozen=True)
class GroundedSpan:
    """A span of the query. ``answer_start/answer_end`` locate its line in the raw answer."""

    start: int
    end: int
    type: str
    text: str
    answer_start: int
    answer_end: int


@dataclass
class ParsedAnswer:
    spans: list[GroundedSpan] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)
    drops: Counter[str] = field(default_factory=Counter)

    @property
    def repaired(self) -> bool:
        return bool(self.repairs)


@dataclass(frozen=True)
class _Mention:
    surface: str
    type: str
    answer_start: int
    answer_end: int


def parse_answer(
    raw: str,
    text: str,
    allowed_types: Sequence[str],
    *,
    label_all_occurrences: bool = True,
    keep_conflicts: bool = False,
) -> ParsedAnswer:
    """Parse ``raw`` (the model's answer) into spans of ``text`` of the ``allowed_types``.

    ``label_all_occurrences``: a mention the model names once is labelled wherever it occurs
    (as annotators do); a mention it names n times takes the occurrences in textual order.
    ``keep_conflicts``: keep spans of types not asked for (with the model's type name) and
    overlapping spans, for a post-processor (LAR) to decide instead of dropping them.
    """
    result = ParsedAnswer()
    mentions = _read_mentions(raw, allowed_types, result, keep_conflicts)
    grounded: list[GroundedSpan] = []
    used: set[tuple[int, int]] = set()
    # How often the model named each surface: named once, it labels every occurrence.
    named = Counter(m.surface for m in mentions)
    # Normalised once: a long answer of unfindable lines must not re-normalise the text each time.
    normalised = _normalise_with_index(text)
    cursor = 0
    for mention in mentions:
        found, fuzzy = _occurrences(mention.surface, text, normalised)
        if not found:
            result.drops[DROP_NOT_IN_TEXT] += 1
            continue
        if fuzzy and REPAIR_FUZZY not in result.repairs:
            result.repairs.append(REPAIR_FUZZY)
        free = [o for o in found if o not in used]
        if not free:
            result.drops[DROP_DUPLICATE] += 1
            continue
        after = [o for o in free if o[0] >= cursor]
        start, end = (after or free)[0]
        used.add((start, end))
        cursor = end
        grounded.append(_grounded(text, start, end, mention))
        if label_all_occurrences and named[mention.surface] == 1:
            for other in free:
                if other != (start, end):
                    used.add(other)
                    grounded.append(_grounded(text, other[0], other[1], mention))
    result.spans = (
        sorted(grounded, key=lambda s: (s.start, s.end))
        if keep_conflicts
        else _resolve_overlaps(grounded, result.drops)
    )
    return result


def longest_line_run(answer: str) -> int:
    """How many times one non-blank line repeats back to back in ``answer``, at most.

    Greedy decoding that writes the same line twice is usually in a loop it will not leave:
    a small model lists "X | type" until the token limit. Generators stop on it and the service
    escalates it, whatever the backend."""
    best, run, previous = 0, 0, None
    for line in answer.split("\n"):
        line = line.strip()
        run = run + 1 if line and line == previous else (1 if line else 0)
        previous = line
        best = max(best, run)
    return best


def _grounded(text: str, start: int, end: int, mention: _Mention) -> GroundedSpan:
    return GroundedSpan(
        start, end, mention.type, text[start:end], mention.answer_start, mention.answer_end
    )


def _read_mentions(
    raw: str, allowed: Sequence[str], result: ParsedAnswer, keep_unknown: bool = False
) -> list[_Mention]:
    body = _cut_trailing(raw, result)
    stripped = body.strip()
    if stripped.startswith(("[", "{", "```")):
        from_json = _read_json(stripped, raw, allowed, result, keep_unknown)
        if from_json is not None:
            return from_json

    type_lookup = _type_lookup(allowed)
    mentions: list[_Mention] = []
    offset = 0
    for line in body.split("\n"):
        line_start = offset
        offset += len(line) + 1
        content = line.strip()
        if not content or content.startswith("```"):
            continue
        if content.lower().strip(_EDGE_PUNCT) == NO_ENTITY:
            continue
        cleaned = _BULLET.sub("", content)
        if cleaned != content:
            _note(result, REPAIR_MARKUP)
        pair = _split_line(cleaned, type_lookup, result)
        if pair is None:
            result.drops[DROP_MALFORMED] += 1
            continue
        surface, type_text = pair
        etype = _match_type(type_text, type_lookup, result, keep_unknown)
        if etype is None:
            result.drops[DROP_TYPE] += 1
            continue
        surface = surface.strip()
        if len(surface) >= 2 and surface[0] in _QUOTES and surface[-1] in _QUOTES:
            surface = surface[1:-1].strip()
            _note(result, REPAIR_MARKUP)
        if not surface:
            result.drops[DROP_MALFORMED] += 1
            continue
        mentions.append(_Mention(surface, etype, line_start, line_start + len(line)))
    return mentions


def _cut_trailing(raw: str, result: ParsedAnswer) -> str:
    """Stop at the first blank line or prompt block after the answer's first content.

    Anything after it is the model rambling on (inventing the next sentence, for one).
    """
    first = len(raw) - len(raw.lstrip())
    cut = len(raw)
    blank = _BLANK_LINE.search(raw, first)
    if blank is not None:
        cut = blank.start()
    marker = raw.find("###", first + 1)
    if 0 <= marker < cut:
        cut = marker
    if raw[cut:].strip():
        _note(result, REPAIR_TRAILING)
    return raw[:cut]


def _split_line(
    line: str, type_lookup: dict[str, str], result: ParsedAnswer
) -> tuple[str, str] | None:
    if SEPARATOR.strip() in line:
        surface, _, type_text = line.rpartition(SEPARATOR.strip())
        return surface, type_text
    # Tolerated variants: "text (type)", "text: type", "type: text", "text -> type".
    match = re.fullmatch(r"(.+?)\s*\(([^()]+)\)\s*", line)
    if match and _normalise_type(match.group(2)) in type_lookup:
        _note(result, REPAIR_SEPARATOR)
        return match.group(1), match.group(2)
    for sep in ("->", "=>", "\t", ":"):
        if sep in line:
            _note(result, REPAIR_SEPARATOR)
            surface, _, type_text = line.rpartition(sep)
            if _normalise_type(type_text) not in type_lookup:
                head, _, tail = line.partition(sep)
                if _normalise_type(head) in type_lookup:
                    return tail, head
            return surface, type_text
    return None


def _read_json(
    stripped: str, raw: str, allowed: Sequence[str], result: ParsedAnswer, keep_unknown: bool
) -> list[_Mention] | None:
    candidate = stripped.strip("`")
    if candidate.startswith("json"):
        candidate = candidate[4:]
    try:
        data = json.loads(candidate)
    except (json.JSONDecodeError, ValueError):
        return None
    pairs: list[tuple[str, str]] = []
    if isinstance(data, dict) and _json_surface(data) is not None:
        data = [data]
    elif isinstance(data, dict) and len(data) == 1:
        (only,) = data.values()
        if isinstance(only, list) and any(isinstance(item, dict) for item in only):
            data = only
    if isinstance(data, dict):
        for key, value in data.items():
            values = value if isinstance(value, list) else [value]
            pairs.extend((str(v), str(key)) for v in values if isinstance(v, str | int | float))
    elif isinstance(data, list):
        for item in data:
            if isinstance(item, dict):
                surface = _json_surface(item)
                etype = item.get("type", item.get("label"))
                if surface is not None and etype is not None:
                    pairs.append((str(surface), str(etype)))
                    continue
            result.drops[DROP_MALFORMED] += 1
    else:
        return None
    _note(result, REPAIR_JSON)
    type_lookup = _type_lookup(allowed)
    mentions: list[_Mention] = []
    for surface, type_text in pairs:
        etype = _match_type(type_text, type_lookup, result, keep_unknown)
        if etype is None:
            result.drops[DROP_TYPE] += 1
            continue
        where = raw.find(surface)
        start, end = (where, where + len(surface)) if where >= 0 else (0, len(raw))
        mentions.append(_Mention(surface.strip(), etype, start, end))
    return mentions


def _json_surface(item: dict[str, object]) -> object | None:
    return item.get("text", item.get("entity", item.get("span")))


def _normalise_type(text: str) -> str:
    text = text.strip().strip(_EDGE_PUNCT).lower()
    text = re.sub(r"^[bi]-", "", text)
    return re.sub(r"[\s_\-]+", "", text)


def _type_lookup(allowed: Sequence[str]) -> dict[str, str]:
    return {_normalise_type(name): name for name in allowed}


def _match_type(
    type_text: str, lookup: dict[str, str], result: ParsedAnswer, keep_unknown: bool = False
) -> str | None:
    etype = lookup.get(_normalise_type(type_text))
    if etype is None and keep_unknown:
        return type_text.strip().strip(_EDGE_PUNCT) or None
    if etype is not None and etype != type_text.strip():
        _note(result, REPAIR_TYPE_CASE)
    return etype


def _note(result: ParsedAnswer, repair: str) -> None:
    if repair not in result.repairs:
        result.repairs.append(repair)


def _occurrences(
    surface: str, text: str, normalised: tuple[str, list[int]]
) -> tuple[list[tuple[int, int]], bool]:
    """Word-aligned occurrences of ``surface`` in ``text``; second value: needed fuzzy match."""
    exact = _aligned(text, _find_all(surface, text))
    if exact:
        return exact, False
    for candidate in (surface, surface.strip(_EDGE_PUNCT)):
        if not candidate:
            continue
        found = _aligned(text, _normalised_find(candidate, text, normalised))
        if found:
            return found, True
    return [], False


def _find_all(needle: str, haystack: str, index: list[int] | None = None) -> list[tuple[int, int]]:
    """Non-overlapping occurrences of ``needle``, mapped to text offsets through ``index``.

    Plain ``str.find``: a regular expression per mention cost a compilation each (seconds for
    a long answer of distinct lines).
    """
    spans: list[tuple[int, int]] = []
    at = haystack.find(needle) if needle else -1
    while at >= 0:
        last = at + len(needle) - 1
        spans.append((index[at], index[last] + 1) if index is not None else (at, last + 1))
        at = haystack.find(needle, at + len(needle))
    return spans


def _aligned(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    # A span must not cut a word: "US" is not an occurrence inside "USA".
    def ok(start: int, end: int) -> bool:
        before = start == 0 or not (_word_char(text[start - 1]) and _word_char(text[start]))
        after = end == len(text) or not (_word_char(text[end - 1]) and _word_char(text[end]))
        return before and after

    return [(s, e) for s, e in spans if e > s and ok(s, e)]


def _word_char(char: str) -> bool:
    # Combining marks (NFD accents, Indic vowel signs) belong to the word they follow.
    return char.isalnum() or unicodedata.category(char).startswith("M")


def _normalised_find(
    surface: str, text: str, normalised: tuple[str, list[int]]
) -> list[tuple[int, int]]:
    """Find ``surface`` in ``text`` ignoring case, accents, unicode form and whitespace.

    ``normalised`` is the text's folded form and index (:func:`_normalise_with_index`).
    Whitespace is ignored, not just collapsed: the prompt shows CoNLL-tokenised sentences
    ("U.S ." / "New York 's") while the model may write "U.S." or "New York's".
    """
    norm_text, index = normalised
    needle, _ = _normalise_with_index(surface)
    spans = []
    for start, end in _find_all(needle, norm_text, index):
        # Marks are dropped from the normalised text; keep the ones the match ends on.
        while end < len(text) and unicodedata.combining(text[end]):
            end += 1
        spans.append((start, end))
    return spans


def _normalise_with_index(text: str) -> tuple[str, list[int]]:
    """Casefolded, accent-free NFKD form of ``text`` without whitespace, and for each of its
    characters the offset of the character of ``text`` it comes from."""
    chars: list[str] = []
    index: list[int] = []
    for position, char in enumerate(text):
        folded = unicodedata.normalize("NFKD", char.translate(_QUOTE_FOLD)).casefold()
        # Accents are ignored; a standalone mark (NFD text) folds to nothing, like its NFC twin.
        for piece in folded:
            if not piece.isspace() and not unicodedata.combining(piece):
                chars.append(piece)
                index.append(position)
    return "".join(chars), index


def _resolve_overlaps(spans: list[GroundedSpan], drops: Counter[str]) -> list[GroundedSpan]:
    """Keep non-overlapping spans, preferring the longer one (``New York Times`` over ``York``)."""
    kept: list[GroundedSpan] = []
    for span in sorted(spans, key=lambda s: (-(s.end - s.start), s.start)):
        if any(span.start < k.end and k.start < span.end for k in kept):
            drops[DROP_OVERLAP] += 1
            continue
        kept.append(span)
    return sorted(kept, key=lambda s: (s.start, s.end))
