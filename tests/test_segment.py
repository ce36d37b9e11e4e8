"""Sentence segmentation for long texts: hand-checked cases and seeded random properties."""

from __future__ import annotations

import random

import pytest

from app.demo import load_demo_domain
from nerve.vocab.segment import split_segments, split_sentences


def _pieces(text: str, ranges: list[tuple[int, int]]) -> list[str]:
    return [text[start:end] for start, end in ranges]


def test_sentences_split_on_final_punctuation_and_line_breaks() -> None:
    text = 'Where is my parcel? It left Leeds! "I paid." Thanks.\nLine two\r\n\r\n  Line three  '
    assert _pieces(text, split_sentences(text)) == [
        "Where is my parcel?",
        "It left Leeds!",
        '"I paid."',
        "Thanks.",
        "Line two",
        "Line three",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "Dr. Smith called Mr. Jones at St. Mary's.",
        "J. K. Rowling lives in the U.S. and writes books.",
        "Use a plan, e.g. Premium, or i.e. the best one.",
        "It costs 3.50 dollars, approx. 4 euros.",
        "Acme Inc. and Foo Ltd. merged in Jan. 2020 after Ph.D. students left.",
        "Call me at 5 p.m. today...and then stop.",
    ],
)
def test_abbreviations_initials_and_decimals_do_not_end_a_sentence(text: str) -> None:
    assert _pieces(text, split_sentences(text)) == [text]


def test_packing_and_exact_offsets() -> None:
    text = "One two. Three four. Five six seven eight nine ten.\n\nEleven."
    # "One two. Three four." is 20 characters; the third sentence alone is 30.
    assert _pieces(text, split_segments(text, 20)) == [
        "One two. Three four.",
        "Five six seven eight",
        "nine ten.\n\nEleven.",
    ]
    assert _pieces(text, split_segments(text, 1000)) == [text]
    for start, end in split_segments(text, 7):
        assert text[start:end] == text[start:end].strip()


def test_a_word_longer_than_the_budget_is_its_own_segment() -> None:
    text = "see https://example.com/a/very/long/path now"
    assert _pieces(text, split_segments(text, 10)) == [
        "see",
        "https://example.com/a/very/long/path",
        "now",
    ]


def test_whitespace_and_bad_budget() -> None:
    assert split_segments("", 10) == []
    assert split_segments(" \n\r\n\t\u2028 ", 10) == []
    with pytest.raises(ValueError, match="at least 1"):
        split_segments("text", 0)


def test_demo_entities_survive_segmentation_and_shift_back() -> None:
    # A long "document" of demo tickets: every entity lands inside one segment and its
    # segment-local offsets, shifted by the segment's start, are the document's offsets.
    demo = load_demo_domain()
    parts: list[str] = []
    spans: list[tuple[int, int, str]] = []
    offset = 0
    for example in demo.examples:
        spans += [(s.start + offset, s.end + offset, s.type) for s in example.entities]
        parts.append(example.text)
        offset += len(example.text) + 1
    document = "\n".join(parts)
    segments = split_segments(document, 250)
    assert len(segments) > 10
    for start, end, etype in spans:
        (segment,) = [(s, e) for s, e in segments if s <= start and end <= e]
        local = (start - segment[0], end - segment[0])
        piece = document[segment[0] : segment[1]]
        assert piece[local[0] : local[1]] == document[start:end], etype


_VOCABULARY = [
    "the", "order", "ORD-123", "Dr.", "U.S.", "e.g.", "J.", "3.5", "$12.99", "Müller",
    "naïve", "Jose\u0301", "東京都", "हिन्दी", "😀", "(see", "it)", '"quoted"', "’tis", "...",
    "a", "I", "NEW", "supercalifragilisticexpialidocious",
]  # fmt: skip
_ENDINGS = ["", "", "", ".", "!", "?", ",", "?!", '."', ".)"]
_GAPS = [" ", " ", " ", "  ", "\n", "\r\n", "\n\n", "\t", "\u00a0", "\u2028", " \n ", "\r"]


def _random_text(rng: random.Random) -> str:
    words = [rng.choice(_VOCABULARY) + rng.choice(_ENDINGS) for _ in range(rng.randint(0, 60))]
    pieces = [rng.choice(["", " ", "\n", "\r\n "])]
    for word in words:
        pieces += [word, rng.choice(_GAPS)]
    return "".join(pieces)


def test_random_texts_segment_properties() -> None:
    rng = random.Random(20240521)
    for _ in range(1500):
        text = _random_text(rng)
        max_chars = rng.randint(1, 90)
        segments = split_segments(text, max_chars)
        covered = set()
        for index, (start, end) in enumerate(segments):
            piece = text[start:end]
            assert 0 <= start < end <= len(text)
            assert piece == piece.strip(), "a segment starts and ends on content"
            # Never cut a word: a segment boundary is the text's edge or whitespace.
            assert start == 0 or text[start - 1].isspace()
            assert end == len(text) or text[end].isspace()
            assert end - start <= max_chars or not any(c.isspace() for c in piece)
            if index + 1 < len(segments):
                next_start, next_end = segments[index + 1]
                assert end < next_start, "in order, apart"
                # Greedy packing: the next segment would not have fitted into this one.
                assert next_end - start > max_chars
            covered.update(range(start, end))
        content = {i for i, c in enumerate(text) if not c.isspace()}
        assert content <= covered, (text, max_chars)
