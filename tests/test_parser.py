"""The answer parser and span grounder against hostile LLM output."""

from __future__ import annotations

import random

import pytest

from nerve.prompting.parser import (
    DROP_DUPLICATE,
    DROP_MALFORMED,
    DROP_NOT_IN_TEXT,
    DROP_OVERLAP,
    DROP_TYPE,
    REPAIR_FUZZY,
    REPAIR_JSON,
    REPAIR_MARKUP,
    REPAIR_SEPARATOR,
    REPAIR_TRAILING,
    REPAIR_TYPE_CASE,
    ParsedAnswer,
    longest_line_run,
    parse_answer,
)

TEXT = "Maria Rossi flew from Paris to New York with Acme Corp on Monday ."
TYPES = ["person", "location", "organisation"]


def _triples(result: ParsedAnswer) -> list[tuple[str, str]]:
    return [(s.text, s.type) for s in result.spans]


def _check_invariants(result: ParsedAnswer, text: str, allowed: list[str]) -> None:
    previous_end = 0
    for span in result.spans:
        assert text[span.start : span.end] == span.text
        assert span.text and span.start >= previous_end, "sorted, non-overlapping"
        assert span.type in allowed
        previous_end = span.end


def test_clean_answer() -> None:
    raw = (
        "Maria Rossi | person\nParis | location\nNew York | location\nAcme Corp | organisation\n\n"
    )
    result = parse_answer(raw, TEXT, TYPES)
    assert _triples(result) == [
        ("Maria Rossi", "person"),
        ("Paris", "location"),
        ("New York", "location"),
        ("Acme Corp", "organisation"),
    ]
    assert [(s.start, s.end) for s in result.spans] == [(0, 11), (22, 27), (31, 39), (45, 54)]
    assert result.repairs == [] and not result.drops and not result.repaired
    # answer_start/answer_end locate each span's line in the raw answer.
    assert [raw[s.answer_start : s.answer_end] for s in result.spans] == raw.split("\n")[:4]


@pytest.mark.parametrize(
    "raw",
    [
        "- Maria Rossi | person\n* Paris | location\n• Acme Corp | organisation",
        "1. Maria Rossi | person\n2) Paris | location\n  3. Acme Corp | organisation",
    ],
)
def test_bullets_and_numbering(raw: str) -> None:
    result = parse_answer(raw, TEXT, TYPES)
    assert _triples(result) == [
        ("Maria Rossi", "person"),
        ("Paris", "location"),
        ("Acme Corp", "organisation"),
    ]
    assert REPAIR_MARKUP in result.repairs


def test_quotes_and_markdown() -> None:
    raw = (
        '"Maria Rossi" | person\n“Paris” | location\n'
        "`New York` | location\n**Acme Corp** | **organisation**"
    )
    result = parse_answer(raw, TEXT, TYPES)
    assert _triples(result) == [
        ("Maria Rossi", "person"),
        ("Paris", "location"),
        ("New York", "location"),
        ("Acme Corp", "organisation"),
    ]
    assert REPAIR_MARKUP in result.repairs
    assert not result.drops


def test_code_fence_around_lines() -> None:
    result = parse_answer("```\nMaria Rossi | person\nParis | location\n```", TEXT, TYPES)
    assert _triples(result) == [("Maria Rossi", "person"), ("Paris", "location")]
    assert not result.drops


@pytest.mark.parametrize(
    "raw",
    [
        '[{"text": "Maria Rossi", "type": "person"}, {"entity": "Paris", "label": "LOCATION"}]',
        '```json\n[{"span": "Maria Rossi", "type": "person"},'
        ' {"text": "Paris", "type": "location"}]\n```',
        '{"person": ["Maria Rossi"], "location": "Paris"}',
        '{"entities": [{"text": "Maria Rossi", "type": "person"},'
        ' {"text": "Paris", "type": "location"}]}',
    ],
)
def test_json_answers(raw: str) -> None:
    result = parse_answer(raw, TEXT, TYPES)
    assert _triples(result) == [("Maria Rossi", "person"), ("Paris", "location")]
    assert REPAIR_JSON in result.repairs
    assert not result.drops


def test_json_single_object_and_bad_items() -> None:
    single = parse_answer('{"text": "Paris", "type": "location"}', TEXT, TYPES)
    assert _triples(single) == [("Paris", "location")]
    assert not single.drops, "a lone object is one entity, not a type -> value map"
    bad = parse_answer('[{"text": "Paris"}, 5, {"text": "Acme Corp", "type": "org"}]', TEXT, TYPES)
    assert bad.spans == []
    assert bad.drops == {DROP_MALFORMED: 2, DROP_TYPE: 1}
    broken = parse_answer('[{"text": "Paris", "type": "location"', TEXT, TYPES)
    assert broken.spans == [] and REPAIR_JSON not in broken.repairs


@pytest.mark.parametrize(
    "raw",
    [
        "person: Maria Rossi\nlocation: Paris",
        "Maria Rossi: person\nParis: location",
        "Maria Rossi (person)\nParis (location)",
        "Maria Rossi -> person\nParis => location",
        "Maria Rossi\tperson\nParis\tlocation",
    ],
)
def test_other_separators_and_type_first(raw: str) -> None:
    result = parse_answer(raw, TEXT, TYPES)
    assert _triples(result) == [("Maria Rossi", "person"), ("Paris", "location")]
    assert REPAIR_SEPARATOR in result.repairs


def test_colon_inside_the_surface() -> None:
    text = "They watched Mission: Impossible in Rome ."
    result = parse_answer("Mission: Impossible: film\nlocation: Rome", text, ["film", "location"])
    assert _triples(result) == [("Mission: Impossible", "film"), ("Rome", "location")]


@pytest.mark.parametrize(
    "type_text",
    ["PERSON", "Person", "per son", "B-person", "I-PERSON", "person.", "'person'"],
)
def test_type_normalisation(type_text: str) -> None:
    result = parse_answer(f"Maria Rossi | {type_text}", TEXT, TYPES)
    assert _triples(result) == [("Maria Rossi", "person")]
    assert REPAIR_TYPE_CASE in result.repairs


def test_spaced_and_underscored_types() -> None:
    text = "Order ORD-1 for Maria ."
    result = parse_answer("ORD-1 | Order ID\nMaria | order-id", text, ["order_id"])
    assert _triples(result) == [("ORD-1", "order_id"), ("Maria", "order_id")]


def test_types_not_requested_are_dropped_and_counted() -> None:
    raw = "Maria Rossi | person\nParis | city\nMonday | date\nAcme Corp | organisation"
    result = parse_answer(raw, TEXT, ["person", "organisation"])
    assert _triples(result) == [("Maria Rossi", "person"), ("Acme Corp", "organisation")]
    assert result.drops == {DROP_TYPE: 2}


def test_spans_not_in_the_text_are_dropped_and_counted() -> None:
    raw = "Maria Rossi | person\nBerlin | location\nMaria Bianchi | person"
    result = parse_answer(raw, TEXT, TYPES)
    assert _triples(result) == [("Maria Rossi", "person")]
    assert result.drops == {DROP_NOT_IN_TEXT: 2}


def test_partial_words_never_ground() -> None:
    assert parse_answer("US | country", "Made in the USA .", ["country"]).drops == {
        DROP_NOT_IN_TEXT: 1
    }
    result = parse_answer("US | country", "USA and the US and USB", ["country"])
    assert [(s.start, s.end) for s in result.spans] == [(12, 14)]
    # Case-insensitive (fuzzy) grounding respects word boundaries too.
    assert parse_answer("york | location", "Yorkshire .", ["location"]).spans == []
    assert parse_answer("Ross | person", "Maria Rossi", ["person"]).spans == []


def test_repeated_strings() -> None:
    text = "Paris , Paris and Paris ."
    once = parse_answer("Paris | location", text, ["location"])
    assert [(s.start, s.end) for s in once.spans] == [(0, 5), (8, 13), (18, 23)]
    assert not once.drops
    only_first = parse_answer("Paris | location", text, ["location"], label_all_occurrences=False)
    assert [(s.start, s.end) for s in only_first.spans] == [(0, 5)]
    twice = parse_answer("Paris | location\nParis | location", text, ["location"])
    assert [(s.start, s.end) for s in twice.spans] == [(0, 5), (8, 13)]
    assert not twice.drops
    four = parse_answer("\n".join(["Paris | location"] * 4), text, ["location"])
    assert len(four.spans) == 3
    assert four.drops == {DROP_DUPLICATE: 1}


def test_repeated_string_with_two_types_takes_occurrences_in_order() -> None:
    text = "Jordan met Jordan in Amman ."
    result = parse_answer("Jordan | person\nJordan | location", text, ["person", "location"])
    assert [(s.start, s.type) for s in result.spans] == [(0, "person"), (11, "location")]


def test_overlapping_spans_keep_the_longer() -> None:
    text = "She reads the New York Times in York ."
    raw = "New York | location\nNew York Times | organisation\nYork | location"
    result = parse_answer(raw, text, ["location", "organisation"])
    assert [(s.text, s.type, s.start) for s in result.spans] == [
        ("New York Times", "organisation", 14),
        ("York", "location", 32),
    ]
    # "New York" inside the newspaper's name is dropped; "York" named once labels both of its
    # occurrences and the one inside the name is dropped as well.
    assert result.drops == {DROP_OVERLAP: 2}


@pytest.mark.parametrize(
    ("text", "surface", "expected"),
    [
        ("José Müller visited Zürich .", "Jose Muller", "José Müller"),
        ("Jose\u0301 visited Zu\u0308rich .", "José", "Jose\u0301"),  # NFD text, NFC answer
        ("José visited Zürich .", "Jose\u0301", "José"),  # NFC text, NFD answer
        ("ＡＢＣ Corp said ﬁne things .", "ABC Corp", "ＡＢＣ Corp"),  # NFKC forms
        ("It said ﬁne things .", "fine", "ﬁne"),
        ("Kevin O’Brien called .", "O'Brien", "O’Brien"),  # curly apostrophe in the text
        ("Kevin O'Brien called .", "O’Brien", "O'Brien"),  # curly apostrophe in the answer
        ("Die Straße .", "STRASSE", "Straße"),
        ("Visit New  York today", "New York", "New  York"),  # whitespace runs
        ("Visit New\nYork today", "New York", "New\nYork"),
        ("the U.S . troops", "U.S.", "U.S ."),  # CoNLL-tokenised text
        ("New York 's mayor", "New York's", "New York 's"),
        ("the U.S. troops", "U.S .", "U.S."),
        ("हिन्दी भाषा", "हिन्दी", "हिन्दी"),
    ],
)
def test_unicode_and_whitespace_grounding(text: str, surface: str, expected: str) -> None:
    result = parse_answer(f"{surface} | thing", text, ["thing"])
    assert _triples(result) == [(expected, "thing")]
    _check_invariants(result, text, ["thing"])


def test_fuzzy_is_noted_and_never_cuts_a_grapheme() -> None:
    result = parse_answer("MARIA ROSSI | person", TEXT, TYPES)
    assert _triples(result) == [("Maria Rossi", "person")]
    assert REPAIR_FUZZY in result.repairs
    # "Jose" must not ground inside NFD "José" (it would cut the accent off).
    nfd = parse_answer("Jose | person", "Jose\u0301 said", ["person"])
    assert [s.text for s in nfd.spans] == ["Jose\u0301"], "accent-insensitive, whole grapheme"
    assert parse_answer("हिन | x", "हिन्दी", ["x"]).spans == []


@pytest.mark.parametrize(
    "raw",
    [
        "Maria Rossi | person\n\n### Sentence\nBob went home .\n### Entities\nBob | person",
        "Maria Rossi | person\n   \nThe sentence mentions Paris | location",
        "Maria Rossi | person\n### Sentence\nParis | location",
        "\n\nMaria Rossi | person\n\nParis | location",
    ],
)
def test_trailing_rambling_is_cut(raw: str) -> None:
    result = parse_answer(raw, TEXT + " Bob", TYPES)
    assert _triples(result) == [("Maria Rossi", "person")]
    assert REPAIR_TRAILING in result.repairs
    assert not result.drops


@pytest.mark.parametrize("raw", ["", "   ", "\n\n", "none", "None.", "NONE\n\n", " none \n\n###"])
def test_no_entity_answers(raw: str) -> None:
    result = parse_answer(raw, TEXT, TYPES)
    assert result.spans == []
    assert not result.drops


@pytest.mark.parametrize(
    ("raw", "drops", "repairs"),
    [
        ("lorem ipsum dolor sit amet", {DROP_MALFORMED: 1}, []),
        ("|||", {DROP_TYPE: 1}, []),  # "||" typed as ""
        ("| person", {DROP_MALFORMED: 1}, []),
        ("Maria Rossi |", {DROP_TYPE: 1}, []),
        ("{[}]", {DROP_MALFORMED: 1}, []),
        ("```json\n{not json}\n```", {DROP_MALFORMED: 1}, []),  # the fences are no lines
        ("\x00\x01\x02 | \ufffd", {DROP_TYPE: 1}, []),
        ("[1, 2, 3]", {DROP_MALFORMED: 3}, [REPAIR_JSON]),  # a JSON list of three non-entities
        ("null", {DROP_MALFORMED: 1}, []),
        ('"Maria Rossi"', {DROP_MALFORMED: 1}, []),
    ],
)
def test_garbage_yields_nothing_but_counts(
    raw: str, drops: dict[str, int], repairs: list[str]
) -> None:
    result = parse_answer(raw, TEXT, TYPES)
    assert result.spans == []
    assert result.drops == drops
    assert result.repairs == repairs
    _check_invariants(result, TEXT, TYPES)


def test_garbage_counts() -> None:
    assert parse_answer("lorem ipsum", TEXT, TYPES).drops == {DROP_MALFORMED: 1}
    assert parse_answer("| person", TEXT, TYPES).drops == {DROP_MALFORMED: 1}
    assert parse_answer("Paris |", TEXT, TYPES).drops == {DROP_TYPE: 1}


def test_very_long_output_is_bounded() -> None:
    text = " ".join(f"word{i}" for i in range(400)) + " Maria Rossi ."
    lines = [f"Invented Name {i} | person" for i in range(3000)]
    lines += ["Maria Rossi | person"] * 2000 + ["x" * 5000 + " | person"]
    result = parse_answer("\n".join(lines), text, ["person"])
    assert _triples(result) == [("Maria Rossi", "person")]
    assert result.drops == {DROP_NOT_IN_TEXT: 3001, DROP_DUPLICATE: 1999}


_WORDS = [
    "Paris", "paris", "New", "York", "New York", "U.S.", "U.S", "US", "USA", "José", "Jose\u0301",
    "Müller", "O’Brien", "O'Brien", "ﬁne", "東京", "😀", "the", "a", ",", ".", "(", ")", '"',
    "Acme", "Corp", "Acme Corp", "hi|there", "x:y",
]  # fmt: skip
_DECORATIONS = ["{}", "- {}", "1. {}", '"{}"', "**{}**", "`{}`", "{}.", " {} "]
_TYPE_FORMS = ["{}", "{} ", "{}".upper(), "B-{}", "**{}**"]


def _random_case(rng: random.Random) -> tuple[str, str, list[str]]:
    text = "".join(rng.choice(_WORDS) + rng.choice([" ", " ", "  ", "\n", ""]) for _ in range(20))
    allowed = rng.sample(["person", "location", "org", "misc"], k=rng.randint(1, 3))
    lines = []
    for _ in range(rng.randint(0, 12)):
        roll = rng.random()
        if roll < 0.5 and text:
            start = rng.randrange(len(text))
            surface = text[start : start + rng.randint(1, 15)]
        elif roll < 0.8:
            surface = " ".join(rng.sample(_WORDS, k=rng.randint(1, 3)))
        else:
            surface = "".join(chr(rng.randint(32, 0x2FFF)) for _ in range(rng.randint(1, 8)))
        etype = rng.choice([*allowed, "date", "Person", "LOCATION"])
        line = rng.choice(_DECORATIONS).format(surface)
        type_form = rng.choice(_TYPE_FORMS).replace("{}".upper(), "{}").format(etype)
        sep = rng.choice([" | ", "|", ": ", " -> ", "\t"])
        lines.append(rng.choice([f"{line}{sep}{type_form}", f"{type_form}: {line}", line]))
    raw = rng.choice(["", "```\n"]) + "\n".join(lines) + rng.choice(["", "\n\n", "\n\nmore"])
    return raw, text, allowed


def test_random_answers_always_ground_to_text_slices() -> None:
    rng = random.Random(1234)
    total = 0
    for _ in range(1500):
        raw, text, allowed = _random_case(rng)
        for label_all in (True, False):
            result = parse_answer(raw, text, allowed, label_all_occurrences=label_all)
            _check_invariants(result, text, allowed)
            for span in result.spans:
                # Never a partial word.
                before = text[span.start - 1] if span.start else " "
                after = text[span.end] if span.end < len(text) else " "
                assert not (before.isalnum() and span.text[0].isalnum()), (raw, text, span)
                assert not (after.isalnum() and span.text[-1].isalnum()), (raw, text, span)
                assert 0 <= span.answer_start <= span.answer_end <= len(raw)
            total += len(result.spans)
    assert total > 500, "the random cases do exercise grounding"


def test_keep_conflicts_keeps_unrequested_types_and_overlaps_for_lar() -> None:
    text = "New York Times reporters met in New York."
    raw = "New York Times | newspaper\nNew York | location\nYork | city"
    strict = parse_answer(raw, text, ["location", "organisation"])
    # Strict: the unrequested span goes, so both occurrences of "New York" are labelled.
    assert [(s.start, s.type) for s in strict.spans] == [(0, "location"), (32, "location")]
    loose = parse_answer(raw, text, ["location", "organisation"], keep_conflicts=True)
    found = {(s.start, s.end, s.type) for s in loose.spans}
    assert (0, 14, "newspaper") in found  # an unrequested type, kept with its name
    assert (32, 40, "location") in found
    assert any(s.type == "city" for s in loose.spans)  # overlapping spans are all kept
    for span in loose.spans:
        assert text[span.start : span.end] == span.text


@pytest.mark.parametrize(
    ("answer", "run"),
    [
        ("", 0),
        ("Paris | location", 1),
        ("Paris | location\nParis | location\nRome | location", 2),
        ("A | x\nB | y\nB | y\nB | y\n\nA | x", 3),
        ("A | x\n\nA | x\n  A | x  \nA | x", 3),  # a blank line breaks a run; edges ignored
        ("\n\n\n", 0),
    ],
)
def test_longest_line_run(answer: str, run: int) -> None:
    assert longest_line_run(answer) == run
