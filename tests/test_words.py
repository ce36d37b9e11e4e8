"""Word segmentation: exact offsets, punctuation as words, unicode words kept whole."""

from __future__ import annotations

import random

import pytest

from nerve.vocab.words import Word, split_words


def _texts(text: str) -> list[str]:
    return [w.text for w in split_words(text)]


def test_offsets_exact() -> None:
    assert split_words("  New York's e-mail, U.S. ") == [
        Word("New", 2, 5),
        Word("York's", 6, 12),
        Word("e-mail", 13, 19),
        Word(",", 19, 20),
        Word("U.S", 21, 24),
        Word(".", 24, 25),
    ]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Hello, world!", ["Hello", ",", "world", "!"]),
        ("It costs $3.50 (approx.)", ["It", "costs", "$", "3.50", "(", "approx", ".", ")"]),
        ("don't rock’n’roll", ["don't", "rock’n’roll"]),
        ("state-of-the-art--really", ["state-of-the-art", "-", "-", "really"]),
        ('"quoted" ... ?!', ['"', "quoted", '"', ".", ".", ".", "?", "!"]),
        ("snake_case x2", ["snake_case", "x2"]),
        ("", []),
        (" \n\t\u00a0", []),
    ],
)
def test_punctuation(text: str, words: list[str]) -> None:
    assert _texts(text) == words


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("José Müller-Lüdenscheidt", ["José", "Müller-Lüdenscheidt"]),
        # NFD: the accent is a separate combining character and stays in its word.
        ("Jose\u0301. Zoe\u0308", ["Jose\u0301", ".", "Zoe\u0308"]),
        # Devanagari vowel signs and viramas are combining marks inside the word.
        ("हिन्दी भाषा", ["हिन्दी", "भाषा"]),
        ("東京都 Tōkyō", ["東京都", "Tōkyō"]),
        ("hi😀there", ["hi", "😀", "there"]),
        ("Ⅻ ﬁne", ["Ⅻ", "ﬁne"]),
    ],
)
def test_unicode_words(text: str, words: list[str]) -> None:
    assert _texts(text) == words


def test_random_offsets_always_slice_the_text() -> None:
    rng = random.Random(7)
    alphabet = "ab é\u0301ि्हक.,'’-–\n\t😀東_1"
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        words = split_words(text)
        previous_end = 0
        for word in words:
            assert text[word.start : word.end] == word.text
            assert word.start >= previous_end and word.end > word.start
            assert not any(c.isspace() for c in word.text)
            previous_end = word.end
        # Every non-space character belongs to exactly one word.
        assert "".join(w.text for w in words) == "".join(c for c in text if not c.isspace())
