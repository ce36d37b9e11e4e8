"""The ``nerve`` spaCy component: a blank English pipeline against a real ``nerve serve`` (the
demo domain), with emoji and combining characters, batching through /v1/ner/batch, and
entities off token boundaries counted, never dropped silently."""

from __future__ import annotations

import importlib.metadata

import httpx
import pytest

spacy = pytest.importorskip("spacy")  # the client's optional extra

from nerve_client import NerveClient  # noqa: E402
from nerve_client.models import Entity, NERResponse, Timings  # noqa: E402
from nerve_client.spacy import USER_DATA_KEY, NerveComponent, align  # noqa: E402
from spacy.language import Language  # noqa: E402
from spacy.tokens import Doc  # noqa: E402

from tests.client_server import DEMO_DOMAIN, NerveServer  # noqa: E402

# Emoji (a ZWJ family: five code points), a flag, and combining accents before and after the
# entities: any offset counted in bytes or UTF-16 units would land inside a word.
TEXTS = [
    "🙂 Je\u0301ro\u0302me: my order ORD-5521 for the StreamBox Family never reached Zu\u0308rich.",
    "👩‍👩‍👧 Tom from Leeds 🇬🇧 returned his AirFlow 300, says Maria Lo\u0301pez.",
    "",  # an empty doc is never sent (the server refuses empty texts)
    "Thanks for the quick help yesterday!",
]
# "Ticket#ORD-5521" is one token for spaCy, while the service finds ORD-5521 inside it.
GLUED = "Ticket#ORD-5521 is about the AirFlow 300 I bought in Leeds."


# Each module starts one server (~20-30 s here); the rest is quick.
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def server(demo_server: NerveServer) -> NerveServer:
    return demo_server


def pipeline(server: NerveServer, **config: object) -> Language:
    nlp: Language = spacy.blank("en")
    nlp.add_pipe(
        "nerve", config={"url": server.url, "domain": DEMO_DOMAIN, "method": "baner", **config}
    )
    return nlp


def service_entities(server: NerveServer, text: str) -> list[Entity]:
    answer = httpx.post(
        f"{server.url}/v1/ner",
        json={"text": text, "domain": DEMO_DOMAIN, "method": "baner"},
        timeout=60,
    )
    answer.raise_for_status()
    return [Entity.model_validate(e) for e in answer.json()["entities"]]


def token_bounds(doc: Doc) -> tuple[set[int], set[int]]:
    return {t.idx for t in doc}, {t.idx + len(t) for t in doc}


@pytest.mark.integration
def test_ents_from_the_service_with_emoji_and_combining_characters(server: NerveServer) -> None:
    nlp = pipeline(server)
    doc = nlp(TEXTS[0])
    expected = service_entities(server, TEXTS[0])
    assert expected, "the demo domain finds entities in this text"
    # Every entity of the answer is an ent, at the same Python str offsets, with its type.
    assert [(e.start_char, e.end_char, e.label_) for e in doc.ents] == [
        (e.start, e.end, e.type) for e in expected
    ]
    assert [e.text for e in doc.ents] == [e.text for e in expected]
    assert "Zu\u0308rich" in {e.text for e in doc.ents}
    assert [s.text for s in doc.spans["nerve"]] == [e.text for e in doc.ents]
    assert doc.spans["nerve"].attrs["scores"] == [e.score for e in expected]
    data = doc.user_data[USER_DATA_KEY]
    assert data["request_id"] and data["method"] == "baner" and data["misaligned"] == []


@pytest.mark.integration
def test_pipe_batches_through_the_batch_route(server: NerveServer) -> None:
    nlp = pipeline(server, batch_size=2)
    docs = list(nlp.pipe(TEXTS * 2, batch_size=100))  # the component's batch_size bounds it
    assert [d.text for d in docs] == TEXTS * 2
    ids = [d.user_data[USER_DATA_KEY]["request_id"] for d in docs]
    # Batch items are answered as <batch id>-<index>; the empty docs were never sent.
    assert ids[2] is None and ids[6] is None
    sent = [i for i in ids if i is not None]
    assert all(i.rsplit("-", 1)[1] in {"0", "1"} for i in sent)
    assert len({i.rsplit("-", 1)[0] for i in sent}) == 4  # 6 texts, 2 per call
    for doc in docs:
        assert all(doc.text[e.start_char : e.end_char] == e.text for e in doc.ents)
    assert docs[0].ents and [e.text for e in docs[0].ents] == [e.text for e in docs[4].ents]
    assert "AirFlow 300" in {e.text for e in docs[1].ents}
    assert not docs[2].ents


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["strict", "contract", "expand"])
def test_off_boundary_entities_are_counted(server: NerveServer, mode: str) -> None:
    nlp = pipeline(server, alignment_mode=mode)
    component = nlp.get_pipe("nerve")
    assert isinstance(component, NerveComponent)
    doc = nlp(GLUED)
    starts, ends = token_bounds(doc)
    expected = service_entities(server, GLUED)
    off = [e for e in expected if e.start not in starts or e.end not in ends]
    assert off, f"the service was expected to find ORD-5521 inside 'Ticket#ORD-5521': {expected}"
    misaligned = doc.user_data[USER_DATA_KEY]["misaligned"]
    assert [(m["start"], m["end"], m["type"]) for m in misaligned] == [
        (e.start, e.end, e.type) for e in off
    ]
    assert component.misaligned == len(off)
    placed = [m for m in misaligned if m["aligned"] is not None]
    if mode == "strict":
        assert not placed and component.unplaced == len(off)
    if mode == "expand":
        # Widened to the whole token: placed, and said so.
        assert component.unplaced == 0 and placed[0]["aligned"] == [0, len("Ticket#ORD-5521")]
        assert "Ticket#ORD-5521" in {e.text for e in doc.ents}
    # Every entity is either a span or recorded as not placed: nothing vanished.
    assert len(doc.spans["nerve"]) + component.unplaced == len(expected)


@pytest.mark.integration
def test_the_factory_is_found_through_the_entry_point() -> None:
    points = importlib.metadata.entry_points(group="spacy_factories")
    assert "nerve_client.spacy:make_nerve_component" in {
        p.value for p in points if p.name == "nerve"
    }


# --- alignment and overlap, on answers written here ------------------------------------------


def entity(text: str, doc_text: str, type_: str, start: int | None = None) -> Entity:
    begin = doc_text.index(text) if start is None else start
    return Entity(text=text, type=type_, start=begin, end=begin + len(text), score=0.5)


def answer_with(entities: list[Entity]) -> NERResponse:
    return NERResponse(
        request_id="r1",
        domain="d",
        method="baner",
        model="m",
        entities=entities,
        escalate=False,
        escalation_reasons=[],
        examples_used=0,
        timings_ms=Timings(),
    )


def test_overlapping_answers_go_to_spans_only() -> None:
    doc = spacy.blank("en")("The New York Times office in New York.")
    overlapping = [
        entity("New York Times", doc.text, "organisation"),
        entity("New York", doc.text, "location", start=4),
        entity("New York", doc.text, "location", start=29),
    ]
    # Never called: set_annotations needs no server.
    component = NerveComponent(NerveClient("http://127.0.0.1:9"), domain="d")
    component.set_annotations(doc, answer_with(overlapping))
    assert not doc.ents  # spaCy's ents cannot overlap: nothing silently filtered out
    assert [(s.text, s.label_) for s in doc.spans["nerve"]] == [
        ("New York Times", "organisation"),
        ("New York", "location"),
        ("New York", "location"),
    ]
    assert doc.user_data[USER_DATA_KEY]["overlapping"] is True
    apart = spacy.blank("en")(doc.text)
    component.set_annotations(apart, answer_with(overlapping[1:]))
    assert [e.text for e in apart.ents] == ["New York", "New York"]
    assert apart.user_data[USER_DATA_KEY]["overlapping"] is False


def test_text_mismatch_is_recorded_not_guessed() -> None:
    doc = spacy.blank("en")("Anna lives in Oslo.")
    wrong = Entity(text="Oslo", type="location", start=13, end=17, score=0.9)  # off by one
    alignment = align(doc, [wrong], "expand")
    assert not alignment.spans and alignment.misaligned[0]["reason"] == "text_mismatch"
    assert alignment.unplaced == 1


def test_contract_and_expand_on_a_partial_token() -> None:
    doc = spacy.blank("en")("Visit ORD-5521x today.")  # one token "ORD-5521x"
    partial = entity("ORD-5521", doc.text, "order_id")
    assert align(doc, [partial], "strict").unplaced == 1
    assert align(doc, [partial], "contract").unplaced == 1  # no whole token inside
    expanded = align(doc, [partial], "expand")
    assert [s.text for s in expanded.spans] == ["ORD-5521x"]
    assert expanded.misaligned[0]["aligned"] == [6, 15]


def test_invalid_config_is_refused() -> None:
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="alignment_mode"):
        nlp.add_pipe("nerve", config={"domain": "d", "alignment_mode": "nearest"})
    with pytest.raises(ValueError, match="domain"):
        spacy.blank("en").add_pipe("nerve", config={})
