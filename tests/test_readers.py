"""CoNLL/BIO readers: hand-checked parses, tolerance, errors and a round-trip on CrossNER."""

from __future__ import annotations

from pathlib import Path

import pytest

from nerve.data.readers import (
    BioFormatError,
    entity_types_of,
    parse_bio,
    read_bio_file,
    read_split,
    to_bio,
)
from nerve.vocab.types import Example, Span

# CI puts shared/ beside the checkout: <root>/../shared/data/crossner.
CROSSNER = Path(__file__).resolve().parents[2] / "shared" / "data" / "crossner"
needs_crossner = pytest.mark.skipif(
    not (CROSSNER / "music" / "train.txt").is_file(),
    reason=f"CrossNER data not found at {CROSSNER} (shared/data beside the checkout)",
)


def _spans(example: Example) -> list[tuple[str, str]]:
    return [(s.surface(example.text), s.type) for s in example.entities]


def test_iob2_sentences_and_exact_offsets() -> None:
    text = (
        "EU\tB-organisation\nrejects\tO\nGerman\tB-misc\ncall\tO\n.\tO\n"
        "\n"
        "Peter\tB-person\nBlackburn\tI-person\n"
    )
    first, second = parse_bio(text)
    assert first.text == "EU rejects German call ."
    assert first.entities == [
        Span(start=0, end=2, type="organisation"),
        Span(start=11, end=17, type="misc"),
    ]
    assert second.text == "Peter Blackburn"
    assert second.entities == [Span(start=0, end=15, type="person")]
    assert entity_types_of([first, second]) == ["organisation", "misc", "person"]


def test_iob1_and_type_changes_open_new_entities() -> None:
    (example,) = parse_bio(
        "Hans I-per\nMeier I-per\nof O\nBonn I-loc\nKöln B-loc\nand O\nX B-org\nY I-loc\n"
    )
    assert _spans(example) == [
        ("Hans Meier", "per"),
        ("Bonn", "loc"),
        ("Köln", "loc"),
        ("X", "org"),
        ("Y", "loc"),
    ]


def test_docstart_crlf_columns_and_blank_runs() -> None:
    text = (
        "-DOCSTART- -X- -X- O\r\n\r\n"
        "EU NNP B-NP B-ORG\r\nrejects VBZ B-VP O\r\n\r\n\r\n\r\n"
        "Paris\tNNP\tB-LOC"
    )
    first, second = parse_bio(text)
    assert (first.text, _spans(first)) == ("EU rejects", [("EU", "ORG")])
    assert (second.text, _spans(second)) == ("Paris", [("Paris", "LOC")])
    assert parse_bio("") == []
    assert parse_bio("\n\n-DOCSTART-\tO\n\n") == []


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("EU\tB-ORG\nrejects\n", 2, "expected 'token<TAB>tag'"),
        ("EU\tB-ORG\n\nrejects\tX-ORG\n", 3, "is not O, B-<type> or I-<type>"),
        ("EU\tB-\n", 1, "is not O, B-<type> or I-<type>"),
        ("EU\tO\n\tB-ORG\n", 2, "expected 'token<TAB>tag'"),
        ("EU\tO\nrejects\tb-org\n", 2, "'b-org'"),
    ],
)
def test_malformed_lines_name_the_line(text: str, line: int, what: str) -> None:
    with pytest.raises(BioFormatError) as error:
        parse_bio(text, source="upload.conll")
    message = str(error.value)
    assert f"upload.conll, line {line}:" in message
    assert what in message


def test_to_bio_writes_iob2() -> None:
    (example,) = parse_bio("Hans I-per\nMeier I-per\nKöln I-loc\nBonn B-loc\n. O\n")
    assert list(to_bio(example)) == [
        ("Hans", "B-per"),
        ("Meier", "I-per"),
        ("Köln", "B-loc"),
        ("Bonn", "B-loc"),
        (".", "O"),
    ]


def test_read_split_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no train split for domain 'nowhere'"):
        read_split(tmp_path, "nowhere", "train")


def test_read_bio_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("ok\tO\nbroken\n", encoding="utf-8")
    with pytest.raises(BioFormatError, match=r"bad\.txt, line 2"):
        read_bio_file(path)


@needs_crossner
def test_crossner_music_train_counts_and_round_trip() -> None:
    examples = read_split(CROSSNER, "music", "train")
    # shared/data/README.md: music train has 100 sentences and 648 entities.
    assert len(examples) == 100
    assert sum(len(e.entities) for e in examples) == 648
    assert examples[0].id == "music-train-0"
    assert set(entity_types_of(examples)) <= {
        "musicgenre", "song", "band", "album", "musicalartist", "musicalinstrument", "award",
        "event", "country", "location", "organisation", "person", "misc",
    }  # fmt: skip

    raw = (CROSSNER / "music" / "train.txt").read_text(encoding="utf-8")
    sentences = [
        [tuple(line.split("\t")) for line in block.splitlines()]
        for block in raw.strip().split("\n\n")
    ]
    assert len(sentences) == len(examples)
    for example, original in zip(examples, sentences, strict=True):
        # The file is IOB2, so writing the parse back gives the file's lines exactly.
        assert list(to_bio(example)) == original
        for span in example.entities:
            surface = span.surface(example.text)
            assert surface == surface.strip() and surface
