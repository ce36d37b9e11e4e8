"""The domain's boundary conventions (nerve/pool_rules/boundaries.py): an entity's edges move to where
the pool's names of its type begin and end, only on the pool's evidence, never into another
entity; the gazetteer applies them first (or not, by its policy)."""

from __future__ import annotations

from nerve.pool_rules.boundaries import BoundaryConventions, BoundaryPolicy, word_class
from nerve.pool_rules.gazetteer import Gazetteer, GazetteerPolicy
from nerve.vocab.types import Entity, Example, Span


def example(text: str, *labels: tuple[str, str]) -> Example:
    spans = []
    for surface, type_ in labels:
        start = text.index(surface)
        spans.append(Span(start=start, end=start + len(surface), type=type_))
    return Example(text=text, entities=spans)


def entity(text: str, surface: str, type_: str) -> Entity:
    start = text.index(surface)
    return Entity(text=surface, type=type_, start=start, end=start + len(surface), score=0.8)


def spans(entities: list[Entity]) -> list[tuple[str, str]]:
    return [(e.text, e.type) for e in entities]


POOL = [
    # Elections are written with their year; parties without the article before them.
    example(
        "He won the 2004 European Parliament election .",
        ("2004 European Parliament election", "election"),
    ),
    example("The 1999 general election was close .", ("1999 general election", "election")),
    example(
        "After the 2010 local election , the Labour Party won .",
        ("2010 local election", "election"),
        ("Labour Party", "party"),
    ),
    example("He left the Green Party in 2001 .", ("Green Party", "party")),
    example("She joined the Liberal Party .", ("Liberal Party", "party")),
    # A country that ends with its dot, written glued to it.
    example("He moved to the U.S. in 1990 .", ("U.S.", "country")),
    example("The U.S. and the U.K. signed .", ("U.S.", "country"), ("U.K.", "country")),
]


def test_word_classes() -> None:
    assert word_class("1999") == word_class("2024") == "<year>"
    assert word_class("4") == word_class("2500") == "<number>"
    assert word_class("The") != word_class("the")  # a title's "The", an article's "the"
    assert word_class(".", glued=True) == "~." != word_class(".")


def test_a_year_the_pool_writes_inside_is_added() -> None:
    conventions = BoundaryConventions.from_examples(POOL)
    text = "The 2014 European Parliament election was won ."
    out = conventions.apply(text, [entity(text, "European Parliament election", "election")])
    assert spans(out) == [("2014 European Parliament election", "election")]
    assert text[out[0].start : out[0].end] == out[0].text


def test_an_article_the_pool_writes_outside_is_dropped() -> None:
    conventions = BoundaryConventions.from_examples(POOL)
    text = "He joined the Reform Party ."
    assert spans(conventions.apply(text, [entity(text, "the Reform Party", "party")])) == [
        ("Reform Party", "party")
    ]
    # The convention is the type's: a location keeps its "the" (no evidence either way).
    assert spans(conventions.apply(text, [entity(text, "the Reform Party", "location")])) == [
        ("the Reform Party", "location")
    ]


def test_glued_punctuation_is_not_spaced_punctuation() -> None:
    conventions = BoundaryConventions.from_examples(POOL)
    text = "They met in Germany . Then the U.S. agreed ."
    out = conventions.apply(
        text, [entity(text, "Germany", "country"), entity(text, "U.S.", "country")]
    )
    assert spans(out) == [("Germany", "country"), ("U.S.", "country")]


def test_one_example_is_no_convention() -> None:
    conventions = BoundaryConventions.from_examples(POOL[:1])
    text = "The 2014 European Parliament election was won ."
    found = [entity(text, "European Parliament election", "election")]
    assert conventions.apply(text, found) == found
    # ... and a stricter share needs more of them.
    strict = BoundaryConventions.from_examples(POOL, BoundaryPolicy(min_share=0.9))
    assert strict.apply(text, found) == found


def test_an_edge_never_moves_into_another_entity() -> None:
    conventions = BoundaryConventions.from_examples(POOL)
    text = "In 2014 European Parliament election results ."
    year = entity(text, "2014", "date")
    election = entity(text, "European Parliament election", "election")
    assert spans(conventions.apply(text, [election, year])) == spans([year, election])


def test_the_querys_own_stored_copy_is_left_out() -> None:
    text = POOL[0].text
    conventions = BoundaryConventions.from_examples([*POOL[:2], POOL[0]])
    found = [entity(text, "European Parliament election", "election")]
    assert spans(conventions.apply(text, found)) == [
        ("2004 European Parliament election", "election")
    ]
    # Without the query's two copies, one example is left: no convention.
    assert conventions.apply(text, found, exclude_text=text) == found


def test_the_gazetteer_moves_edges_first_unless_told_not_to() -> None:
    text = "The 2014 European Parliament election was won ."
    found = [entity(text, "European Parliament election", "election")]
    moved = Gazetteer.from_examples(POOL).apply(text, found, {"election"})
    assert spans(moved) == [("2014 European Parliament election", "election")]
    kept = Gazetteer.from_examples(POOL, GazetteerPolicy(boundaries=None))
    assert kept.apply(text, found, {"election"}) == found


def test_a_query_typed_in_lowercase_reads_the_case_folded_convention() -> None:
    pool = [
        example("He wrote The Hobbit in 1937 .", ("The Hobbit", "book")),
        example("Then came The Silmarillion .", ("The Silmarillion", "book")),
    ]
    conventions = BoundaryConventions.from_examples(pool)
    lowered = "she read the lord of the rings twice ."
    found = [entity(lowered, "lord of the rings", "book")]
    assert spans(conventions.apply(lowered, found)) == [("the lord of the rings", "book")]
    # Cased text keeps the difference: an article "the" is not a title's "The".
    cased = "She read the Lord of the Rings twice ."
    found = [entity(cased, "Lord of the Rings", "book")]
    assert conventions.apply(cased, found) == found
