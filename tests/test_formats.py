"""The interchange converters (nerve/data/formats): round trips, code points, clear errors."""

from __future__ import annotations

import json
import re

import pytest

from nerve.data.formats import FormatError, conll, labelstudio, spacy_docs
from nerve.vocab.types import Example, Span

TEXT = "🎉 Anna Berg flew  to\nOslo; her Pixel8 broke."


def _example() -> Example:
    def span(surface: str, kind: str) -> Span:
        start = TEXT.index(surface)
        return Span(start=start, end=start + len(surface), type=kind)

    return Example(
        text=TEXT,
        entities=[span("Anna Berg", "person"), span("Oslo", "location"), span("Pixel", "product")],
    )


def test_label_studio_round_trip_counts_code_points() -> None:
    example = _example()
    tasks = labelstudio.to_tasks([example])
    value = tasks[0]["annotations"][0]["result"][0]["value"]
    # One code point for the emoji, as Python and Label Studio count (UTF-16 would say 3).
    assert (value["start"], value["text"]) == (2, "Anna Berg")
    back = labelstudio.parse_export(json.dumps(tasks))
    assert back[0].text == TEXT and back[0].entities == example.entities


def test_label_studio_reads_an_older_export_counting_utf16_units() -> None:
    tasks = labelstudio.to_tasks([_example()])
    for result in tasks[0]["annotations"][0]["result"]:
        result["value"]["start"] += 1  # the emoji is two UTF-16 units
        result["value"]["end"] += 1
    assert labelstudio.parse_export(json.dumps(tasks))[0].entities == _example().entities


def test_label_studio_skips_unannotated_and_cancelled_tasks_and_uses_the_latest() -> None:
    tasks = labelstudio.to_tasks([_example()])
    tasks[0]["annotations"].append({"result": [], "was_cancelled": True})
    tasks.append({"id": 7, "data": {"text": "No annotation here."}})
    examples = labelstudio.parse_export(json.dumps(tasks))
    assert len(examples) == 1 and len(examples[0].entities) == 3


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda v: v.update(text="Anna"),
            "tasks[0] (id 3).annotations[0].result[0].value: text[2:11]",
        ),
        (lambda v: v.update(labels=["person", "product"]), "exactly one label"),
        (lambda v: v.update(start="2"), "start must be an integer"),
        (lambda v: v.update(end=999), "offsets must satisfy"),
    ],
)
def test_label_studio_errors_name_the_task_and_result(mutate, message) -> None:  # type: ignore[no-untyped-def]
    tasks = labelstudio.to_tasks([_example()])
    tasks[0]["id"] = 3
    mutate(tasks[0]["annotations"][0]["result"][0]["value"])
    with pytest.raises(FormatError, match=re.escape(message)):
        labelstudio.parse_export(json.dumps(tasks))


def test_label_studio_refuses_files_that_are_no_export() -> None:
    for raw, message in [
        ("{not json", "not JSON"),
        ('"text"', "expected a JSON list of tasks"),
        ('[{"data": {"a": "x", "b": "y"}, "annotations": [{"result": []}]}]', "no 'text' key"),
        ('[{"data": {"text": "x"}}]', "none of its 1 task"),
    ]:
        with pytest.raises(FormatError, match=message):
            labelstudio.parse_export(raw)


def test_label_config_names() -> None:
    config = labelstudio.parse_label_config(
        '<View><Labels name="ner" toName="ticket"><Label value="person"/>'
        '<Label value="location" background="red"/></Labels><Text name="ticket" value="$body"/>'
        "</View>"
    )
    assert config == labelstudio.LabelConfig("ner", "ticket", "body", ("person", "location"))
    with pytest.raises(FormatError, match="no <Labels> tag"):
        labelstudio.parse_label_config('<View><Text name="t" value="$t"/></View>')


def test_spacy_jsonl_round_trip_and_shapes() -> None:
    example = _example()
    assert spacy_docs.parse_jsonl(spacy_docs.to_jsonl([example]))[0].entities == example.entities
    triples = json.dumps({"text": "Tom in Oslo", "entities": [[7, 11, "location"]]})
    assert spacy_docs.parse_jsonl(triples)[0].entities == [Span(start=7, end=11, type="location")]
    with pytest.raises(FormatError, match="line 2: not JSON"):
        spacy_docs.parse_jsonl(triples + "\n{oops")
    with pytest.raises(FormatError, match=r"line 1, spans\[0\]: offsets must satisfy"):
        spacy_docs.parse_jsonl('{"text": "ab", "spans": [{"start": 1, "end": 5, "label": "x"}]}')


def test_spacy_docbin_round_trip_keeps_the_text_and_offsets() -> None:
    pytest.importorskip("spacy")
    example = _example()
    back = spacy_docs.parse_docbin(spacy_docs.to_docbin([example, Example(text="  x ")]))
    assert back[0].text == TEXT and back[0].entities == example.entities
    assert back[1].text == "  x " and back[1].entities == []
    with pytest.raises(FormatError, match="not a spaCy DocBin"):
        spacy_docs.parse_docbin(b"\x00not a docbin")


def test_conll_splits_words_at_entity_edges() -> None:
    text = conll.to_conll([_example()])
    assert "Pixel\tB-product\n8\tO\n" in text and "🎉\tO\n" in text
    back = conll.parse_conll(text)[0]
    assert back.mentions() == [("Anna Berg", "person"), ("Oslo", "location"), ("Pixel", "product")]
    with pytest.raises(FormatError, match="line 1"):
        conll.parse_conll("Anna\tX-person\n")
