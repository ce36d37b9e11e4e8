"""The domain's gazetteer (nerve/pool_rules/gazetteer.py): retyping and adding by the stored examples'
labels, its thresholds, ``exclude_same_text``; then through the gateway in process, built from
Milvus Lite and rebuilt when the domain's version changes."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.components import Components, build_components
from app.main import build_app
from app.ner.pool_step import GazetteerCache
from nerve.errors import BackendUnavailable
from nerve.generation.base import Generation, GenerationRequest
from nerve.pool_rules.gazetteer import Gazetteer, GazetteerPolicy
from nerve.retrieval.embedding.sentence_transformers import SentenceTransformerEmbedder
from nerve.settings import Settings, load_settings
from nerve.vocab.types import Domain, Entity, Example, Span
from tests.fixtures.gateway import SUPPORT_DOMAIN, SUPPORT_EXAMPLES
from tests.test_lar_postprocess import ScriptedGenerator

TYPES = {"person", "politician", "party", "location", "product"}


def example(text: str, *labels: tuple[str, str]) -> Example:
    """``text`` with each (surface, type) labelled at the surface's first occurrence."""
    spans = []
    for surface, type_ in labels:
        start = text.index(surface)
        spans.append(Span(start=start, end=start + len(surface), type=type_))
    return Example(text=text, entities=spans)


def entity(text: str, surface: str, type_: str, score: float = 0.9) -> Entity:
    start = text.index(surface)
    return Entity(text=surface, type=type_, start=start, end=start + len(surface), score=score)


POOL = [
    example(
        "Barack Obama met the Labour Party.",
        ("Barack Obama", "politician"),
        ("Labour Party", "party"),
    ),
    example("Barack Obama spoke in Ohio.", ("Barack Obama", "politician"), ("Ohio", "location")),
    example("Obama is a person here.", ("Obama", "person")),
    example("Obama again, as a politician.", ("Obama", "politician")),
    # "Apple" labelled once in three occurrences: too rarely an entity to be added (1 / (3 + 1)).
    example("Apple sells the iPhone.", ("Apple", "product")),
    example("An apple a day."),
    example("One apple, two apples."),
]


def keys(entities: list[Entity]) -> list[tuple[str, str]]:
    return [(e.text, e.type) for e in entities]


def test_retypes_a_span_by_the_pools_majority_type_and_keeps_a_probability() -> None:
    gazetteer = Gazetteer.from_examples(POOL)
    text = "Yesterday Barack Obama visited Ohio."
    out = gazetteer.apply(text, [entity(text, "Barack Obama", "person", 0.8)], TYPES)
    assert keys(out) == [("Barack Obama", "politician"), ("Ohio", "location")]
    assert out[0].score == pytest.approx(0.8)  # type share 2/2
    assert 0.0 <= out[1].score <= 1.0


def test_a_tie_between_types_changes_nothing() -> None:
    gazetteer = Gazetteer.from_examples(POOL)
    text = "Obama said so."
    out = gazetteer.apply(text, [entity(text, "Obama", "person")], TYPES)
    assert keys(out) == [("Obama", "person")]
    assert gazetteer.lookup("obama") is None


def test_adds_only_names_the_pool_labels_in_most_of_their_occurrences() -> None:
    gazetteer = Gazetteer.from_examples(POOL)
    text = "She bought an Apple for the Labour Party."
    out = gazetteer.apply(text, [], TYPES)
    assert keys(out) == [("Labour Party", "party")]
    name = gazetteer.lookup("APPLE")
    assert name is not None and name.type == "product" and name.precision == pytest.approx(1 / 4)
    loose = Gazetteer.from_examples(POOL, GazetteerPolicy(min_entity_rate=0.25))
    assert keys(loose.apply(text, [], TYPES)) == [("Apple", "product"), ("Labour Party", "party")]


def test_matches_lowercased_text_whole_words_longest_first() -> None:
    gazetteer = Gazetteer.from_examples(POOL)
    text = "barack obama and the labour party in ohioans"
    # "ohio" is no word here; a returned piece of a name is replaced by the whole name ...
    out = gazetteer.apply(text, [entity(text, "labour", "person")], TYPES)
    assert keys(out) == [("barack obama", "politician"), ("labour party", "party")]
    # ... unless that is switched off, or a returned span crosses the name's edge.
    keep = Gazetteer.from_examples(POOL, GazetteerPolicy(extend=False))
    assert keys(keep.apply(text, [entity(text, "labour", "person")], TYPES)) == [
        ("barack obama", "politician"),
        ("labour", "person"),
    ]
    crossing = [entity(text, "party in", "location")]
    assert keys(gazetteer.apply(text, crossing, TYPES)) == [
        ("barack obama", "politician"),
        ("party in", "location"),
    ]


def test_short_names_are_retyped_but_not_added() -> None:
    pool = [example("The EU and the EU again.", ("EU", "party"))] * 2
    gazetteer = Gazetteer.from_examples(pool)
    text = "The EU met."
    assert gazetteer.apply(text, [], TYPES) == []
    assert keys(gazetteer.apply(text, [entity(text, "EU", "location")], TYPES)) == [("EU", "party")]


def test_only_requested_types_are_given() -> None:
    gazetteer = Gazetteer.from_examples(POOL)
    text = "Barack Obama in Ohio."
    out = gazetteer.apply(text, [entity(text, "Barack Obama", "person")], {"person", "location"})
    assert keys(out) == [("Barack Obama", "person"), ("Ohio", "location")]


def test_exclude_text_answers_as_if_the_querys_own_stored_copy_were_absent() -> None:
    pool = [example("Zorba Quill signed.", ("Zorba Quill", "person")), *POOL]
    gazetteer = Gazetteer.from_examples(pool)
    assert keys(gazetteer.apply("Zorba Quill signed.", [], TYPES)) == [("Zorba Quill", "person")]
    assert (
        gazetteer.apply("Zorba Quill signed.", [], TYPES, exclude_text="zorba  quill SIGNED.") == []
    )
    # Another sentence naming it still sees the stored label.
    assert keys(
        gazetteer.apply("Then Zorba Quill left.", [], TYPES, exclude_text="Then Zorba Quill left.")
    ) == [("Zorba Quill", "person")]


def test_an_empty_pool_returns_the_answer_unchanged() -> None:
    text = "Barack Obama."
    answer = [entity(text, "Barack Obama", "person")]
    assert Gazetteer.from_examples([]).apply(text, answer, TYPES) == answer


# --- through the gateway ------------------------------------------------------------------------

MakeClient = Callable[..., contextlib.AbstractContextManager[TestClient]]
# Names of the support pool, in a sentence the encoder answers only partly.
TEXT = "tom walsh from dublin asked about the kindle again."
NEW_EXAMPLE = {
    "text": "The Zephyr Nine speaker from Quillon broke.",
    "entities": [
        {"start": 4, "end": 15, "type": "product"},
        {"start": 29, "end": 36, "type": "location"},
    ],
}
# A name only the uploaded example holds.
LATER = "i love my zephyr nine"


def answer(client: TestClient, text: str) -> list[Entity]:
    response = client.post("/v1/ner", json={"text": text, "domain": "support", "method": "baner"})
    assert response.status_code == 200, response.text
    return [Entity(**e) for e in response.json()["entities"]]


def pool_examples(*extra: dict[str, Any]) -> list[Example]:
    return [Example(**e) for e in [*SUPPORT_EXAMPLES, *extra]]


@pytest.mark.integration
def test_gateway_applies_the_domains_gazetteer_and_rebuilds_it_after_an_upload(
    make_client: MakeClient, tmp_path: Path
) -> None:
    answers: dict[bool, list[list[Entity]]] = {}
    for on in (False, True):
        with make_client(tmp_path / str(on), gazetteer={"enabled": on}) as client:
            assert client.post("/v1/domains", json=SUPPORT_DOMAIN).status_code == 201
            added = client.post("/v1/domains/support/examples", json={"examples": SUPPORT_EXAMPLES})
            assert added.status_code == 201, added.text
            first = answer(client, TEXT)
            added = client.post("/v1/domains/support/examples", json={"examples": [NEW_EXAMPLE]})
            assert added.status_code == 201, added.text
            answers[on] = [first, answer(client, LATER)]
            if on:  # the gazetteer the second answer used holds the uploaded example's name
                cache = client.app.state.components.ner.pool_rules.gazetteers  # type: ignore[attr-defined]
                latest = next(reversed(cache._built.values()))
                assert ("zephyr nine", "product") in keys(latest.apply(LATER, [], {"product"}))
    types = {t["name"] for t in SUPPORT_DOMAIN["entity_types"]}  # type: ignore[union-attr, index]
    before, after = (
        Gazetteer.from_examples(pool_examples()),
        Gazetteer.from_examples(pool_examples(NEW_EXAMPLE)),
    )
    off_first, off_later = answers[False]
    on_first, on_later = answers[True]
    assert keys(on_first) == keys(before.apply(TEXT, off_first, types))
    assert keys(on_later) == keys(after.apply(LATER, off_later, types))
    # The second answer used the uploaded example's name: the gazetteer was built again (the
    # encoder may find the name itself now that the example is retrieved: not asserted).
    assert ("zephyr nine", "product") in keys(on_later)
    assert ("zephyr nine", "product") not in keys(before.apply(LATER, [], types))


class FlakyStore:
    """list_examples fails while ``down``; counts the pages read."""

    def __init__(self, examples: list[Example]) -> None:
        self.examples = examples
        self.down = True
        self.pages = 0

    def list_examples(
        self, tenant: str, domain: str, offset: int, limit: int
    ) -> tuple[list[Example], int]:
        if self.down:
            raise BackendUnavailable("vector_store", "connection refused")
        self.pages += 1
        return self.examples[offset : offset + limit], len(self.examples)


def test_cache_answers_without_a_gazetteer_while_the_store_is_down_then_builds_once() -> None:
    store = FlakyStore(POOL * 300)  # 2,100 examples: three pages
    cache = GazetteerCache(store, GazetteerPolicy(), max_domains=2, max_examples=10_000, wait_s=5.0)  # type: ignore[arg-type]
    domain = Domain(tenant="t", name="politics", entity_types=[], version=1)

    async def scenario() -> None:
        assert await cache.get("t", domain) is None
        store.down = False
        built = await asyncio.gather(*(cache.get("t", domain) for _ in range(5)))
        assert all(g is built[0] and g is not None for g in built)
        assert store.pages == 3  # one build for five concurrent requests
        name = built[0].lookup("Barack Obama") if built[0] is not None else None
        assert name is not None and name.type == "politician"
        newer = await cache.get("t", domain.model_copy(update={"version": 2}))
        assert newer is not built[0] and store.pages == 6

    asyncio.run(scenario())


class GatedStore(FlakyStore):
    """list_examples blocks until ``gate`` is set: a pool that takes long to read."""

    def __init__(self, examples: list[Example]) -> None:
        super().__init__(examples)
        self.down = False
        self.gate = threading.Event()

    def list_examples(
        self, tenant: str, domain: str, offset: int, limit: int
    ) -> tuple[list[Example], int]:
        assert self.gate.wait(10)
        return super().list_examples(tenant, domain, offset, limit)


def test_a_slow_build_does_not_stall_answers_the_previous_version_answers_meanwhile() -> None:
    store = GatedStore(POOL)
    cache = GazetteerCache(
        store, GazetteerPolicy(), max_domains=2, max_examples=10_000, wait_s=0.05
    )  # type: ignore[arg-type]
    v1 = Domain(tenant="t", name="politics", entity_types=[], version=1)
    v2 = v1.model_copy(update={"version": 2})

    async def built(domain: Domain, other_than: Gazetteer | None) -> Gazetteer:
        for _ in range(500):
            found = await cache.get("t", domain)
            if found is not None and found is not other_than:
                return found
            await asyncio.sleep(0.01)
        raise AssertionError("never built")

    async def scenario() -> None:
        assert await cache.get("t", v1) is None  # nothing built yet: answered without one
        store.gate.set()
        first = await built(v1, None)
        store.gate.clear()
        assert await cache.get("t", v2) is first  # v2 building: v1's answers meanwhile
        store.gate.set()
        second = await built(v2, first)
        assert second is not first and await cache.get("t", v2) is second

    asyncio.run(scenario())


def test_casing_table_restores_a_lowercased_text_without_moving_any_offset() -> None:
    pool = [
        example(
            "Yesterday Barack Obama met the Labour Party in Ohio.", ("Barack Obama", "politician")
        ),
        example("The iPhone sold well in Ohio."),
    ]
    casing = Gazetteer.from_examples(pool).casing
    text = "barack obama flew to ohio with an iphone."
    restored = casing.restore(text)
    assert restored == "Barack Obama flew to Ohio with an iPhone."
    assert restored is not None and len(restored) == len(text) and restored.lower() == text
    assert casing.restore("Barack obama") is None  # typed with a capital: left as it is
    assert casing.restore("1999.") is None  # nothing to change


class RecordingGenerator(ScriptedGenerator):
    """A scripted LLM that keeps the prompts it was given."""

    def __init__(self, answer: str) -> None:
        super().__init__(answer)
        self.prompts: list[str] = []

    async def generate(self, request: GenerationRequest) -> Generation:
        self.prompts.append(request.prompt)
        return await super().generate(request)


@pytest.mark.integration
@pytest.mark.parametrize("truecase", [False, True])
def test_a_lowercased_query_reaches_the_llm_with_the_pools_casing_offsets_unchanged(
    tmp_path: Path, embedder: SentenceTransformerEmbedder, truecase: bool
) -> None:
    generator = RecordingGenerator("Tom Walsh | person")
    settings = load_settings(data_dir=tmp_path, log_json=False, gazetteer={"truecase": truecase})

    def factory(s: Settings) -> Components:
        return build_components(s, embedder=embedder, generator=generator)

    with TestClient(build_app(settings, components_factory=factory)) as client:
        assert client.post("/v1/domains", json=SUPPORT_DOMAIN).status_code == 201
        added = client.post("/v1/domains/support/examples", json={"examples": SUPPORT_EXAMPLES})
        assert added.status_code == 201, added.text
        text = "tom walsh is in dublin"
        response = client.post(
            "/v1/ner", json={"text": text, "domain": "support", "method": "wraner", "top_k": 2}
        )
    assert response.status_code == 200, response.text
    seen = "Tom Walsh is in Dublin" if truecase else text
    assert generator.prompts and seen in generator.prompts[-1]
    entities = [(e["text"], e["type"], e["start"]) for e in response.json()["entities"]]
    if truecase:  # the answer is grounded in the cased text, returned with the query's own
        assert ("tom walsh", "person", 0) in entities
    # "dublin": the gazetteer's, either way.
    assert ("dublin", "location", 16) in entities


def test_the_pool_rules_step_cases_before_the_method_and_applies_the_gazetteer_after() -> None:
    from app.ner.pool_step import DomainPoolRules
    from nerve.methods.handler import SegmentAnswer

    gazetteer = Gazetteer.from_examples(POOL)
    text = "yesterday barack obama visited ohio."
    cased = DomainPoolRules(gazetteer, truecase=True)
    assert cased.before(text) == gazetteer.casing.restore(text)
    assert "Ohio" in cased.before(text) and len(cased.before(text)) == len(text)
    assert DomainPoolRules(gazetteer, truecase=False).before(text) == text
    answer = SegmentAnswer(entities=[entity(text, "barack obama", "person", 0.8)], examples_used=3)
    after = cased.after(text, answer, TYPES, exclude_same_text=False)
    assert keys(after.entities) == [("barack obama", "politician"), ("ohio", "location")]
    assert after.examples_used == answer.examples_used  # the rest of the answer is kept
