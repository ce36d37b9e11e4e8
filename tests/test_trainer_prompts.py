"""IF-WRANER training prompts: regularisation (types removed, order shuffled) and retrieval."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from nerve.data.crossner_types import CROSSNER_TYPE_DESCRIPTIONS, entity_types_for
from nerve.data.readers import parse_bio
from nerve.prompting.prompt import ANSWER_END, build_prompt, render_answer
from nerve.settings import CROSSNER_DIR
from nerve.vocab.types import Example, Span
from trainers.wraner.config import WranerConfig
from trainers.wraner.prompts import (
    TYPE_ALIASES,
    TrainPrompt,
    TypeVariant,
    render_prompt,
    split_source,
    type_variants,
)

TYPES = ["person", "organisation", "location", "misc"]
DATA_README = CROSSNER_DIR.parent / "README.md"


def _example() -> Example:
    text = "Peter Blackburn met EU officials in Brussels ."
    return Example(
        id="q",
        text=text,
        entities=[
            Span(start=0, end=15, type="person"),
            Span(start=20, end=22, type="organisation"),
            Span(start=36, end=44, type="location"),
        ],
    )


def test_removed_types_leave_prompt_and_answer() -> None:
    example = _example()
    rng = random.Random(1)
    removals: set[tuple[str, ...]] = set()
    answers: set[str] = set()
    for _ in range(200):
        variants = type_variants(example, TYPES, drop_share=1.0, shuffle_share=0.0, rng=rng)
        assert len(variants) == 2
        full, copy = variants
        assert full.types == TYPES and not full.removed
        assert copy.types and copy.removed
        assert set(copy.types) | set(copy.removed) == set(TYPES)
        assert not set(copy.types) & set(copy.removed)
        # at least one removed type occurs in the sentence, so the answer really changes
        assert {"person", "organisation", "location"} & set(copy.removed)
        prompt, answer, _ = render_prompt(example, copy, [], None, 10_000)
        for removed in copy.removed:
            assert f"- {removed}:" not in prompt
            assert f"| {removed}\n" not in answer
        kept = [(s, t) for s, t in example.mentions() if t in copy.types]
        expected = "\n".join(f"{s} | {t}" for s, t in kept) if kept else "none"
        assert answer == expected + ANSWER_END
        removals.add(tuple(copy.removed))
        answers.add(answer)
    # The draws vary: every type is removed some time (misc too, which the sentence lacks),
    # one to three at a time, so that some copies keep mentions and some keep none.
    assert set().union(*removals) == set(TYPES)
    assert {len(r) for r in removals} == {1, 2, 3}
    assert "none" + ANSWER_END in answers and len(answers) > 2


def test_drop_share_zero_never_duplicates() -> None:
    rng = random.Random(0)
    for _ in range(50):
        assert len(type_variants(_example(), TYPES, 0.0, 0.0, rng)) == 1


def test_shuffle_is_seeded_and_really_shuffles() -> None:
    def run(seed: int) -> list[TypeVariant]:
        rng = random.Random(seed)
        return [v for _ in range(100) for v in type_variants(_example(), TYPES, 0.3, 0.5, rng)]

    first, again, other = run(7), run(7), run(8)
    assert first == again
    assert first != other
    shuffled = [v for v in first if v.shuffled]
    assert 20 < len(shuffled) < 90  # about half of the prompts
    assert all(v.types != TYPES for v in shuffled if not v.removed)
    assert all(v.types == TYPES for v in first if not v.shuffled and not v.removed)


def test_examples_answers_keep_only_prompt_types_and_most_similar_last() -> None:
    example = _example()
    best = Example(
        id="b",
        text="Anna works at Siemens .",
        entities=[Span(start=0, end=4, type="person"), Span(start=14, end=21, type="organisation")],
    )
    second = Example(
        id="s",
        text="Rome is in Italy .",
        entities=[Span(start=0, end=4, type="location"), Span(start=11, end=16, type="location")],
    )
    variant = TypeVariant(
        types=["organisation", "location"], removed=["misc", "person"], shuffled=True
    )
    prompt, answer, used = render_prompt(example, variant, [best, second], None, 10_000)
    assert used == 2
    # the gateway's builder, with the best example nearest the query
    expected = build_prompt(entity_types_for(variant.types), [second, best], example.text).text
    assert prompt == expected
    assert "Anna | person" not in prompt and "Siemens | organisation" in prompt
    assert prompt.index("Rome is in Italy") < prompt.index("Anna works at Siemens")
    assert answer == render_answer(example, variant.types)
    assert prompt.endswith(f"### Sentence\n{example.text}\n### Entities\n")


def test_long_prompts_drop_least_similar_examples() -> None:
    example = _example()
    pool = [
        Example(
            id=str(i),
            text=f"Sentence number {i} about Paris .",
            entities=[
                Span(
                    start=len(f"Sentence number {i} about "),
                    end=len(f"Sentence number {i} about Paris"),
                    type="location",
                )
            ],
        )
        for i in range(5)
    ]
    variant = TypeVariant(types=TYPES, removed=[], shuffled=False)
    full, _, used_all = render_prompt(example, variant, pool, len, 100_000)
    short, _, used = render_prompt(example, variant, pool, len, len(full) - 10)
    assert used_all == 5 and used == 4
    assert "Sentence number 0 about" in short and "Sentence number 4 about" not in short


def test_split_source_is_disjoint_and_seeded() -> None:
    examples = [Example(id=str(i), text=f"w{i} a b c") for i in range(50)]
    pool, queries = split_source(examples, 20, 10, 3, seed=3)
    assert len(pool) == 20 and len(queries) == 10
    assert not {e.id for e in pool} & {e.id for e in queries}
    assert split_source(examples, 20, 10, 3, seed=3) == (pool, queries)


def test_descriptions_cover_every_crossner_type() -> None:
    if not DATA_README.is_file():
        pytest.skip(f"{DATA_README} is missing (the shared CrossNER data)")
    # lines like "- politics (9): politician, person, ..."
    lines = [ln for ln in DATA_README.read_text().splitlines() if re.match(r"^- \w+ \(\d+\):", ln)]
    names = {n.strip() for ln in lines for n in ln.split(":", 1)[1].split(",")}
    assert len(lines) == 6
    assert len(names) > 30 and names <= set(CROSSNER_TYPE_DESCRIPTIONS)
    assert [t.description for t in entity_types_for(["person"])] == [
        CROSSNER_TYPE_DESCRIPTIONS["person"]
    ]


def _write_toy_split(
    path: Path, template: list[tuple[str, str]], fillers: dict[str, list[str]]
) -> list[Example]:
    """One sentence per filler row (``template`` words replaced), plus an exact duplicate of
    the first sentence; written as BIO to ``path``."""
    lines: list[str] = []
    for row in zip(*fillers.values(), strict=True):
        swap = dict(zip(fillers, row, strict=True))
        lines += [f"{swap.get(tok, tok)}\t{tag}" for tok, tag in template] + [""]
    first = dict(zip(fillers, (v[0] for v in fillers.values()), strict=True))
    lines += [f"{first.get(tok, tok)}\t{tag}" for tok, tag in template] + [""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return parse_bio("\n".join(lines))


PERSON_CITY = [("Peter", "B-person"), ("visited", "O"), ("Paris", "B-location"), ("today", "O")]
NAMES = ["Peter", "Anna", "John", "Maria", "Ivan", "Lena", "Paul", "Sara"]
CITIES = ["Paris", "Rome", "Oslo", "Lima", "Kyiv", "Bonn", "Riga", "Nice"]


def _toy_config(tmp_path: Path, **overrides: object) -> WranerConfig:
    """Two retrieved examples per prompt from the toy domain, no regularisers."""
    settings: dict[str, object] = {
        "data_dir": tmp_path,
        "domain": "toy",
        "entity_types": ["person", "location"],
        "pool_size": 6,
        "k": 2,
        "drop_types_share": 0.0,
        "shuffle_types_share": 0.0,
        "seed": 1,
        "run_dir": tmp_path / "run",
    }
    return WranerConfig.model_validate({**settings, **overrides})


def _sentence_blocks(prompt: str) -> tuple[str, list[str]]:
    """(the query sentence, the retrieved examples' blocks) of a rendered prompt."""
    query = prompt.rsplit("### Sentence\n", 1)[1].split("\n", 1)[0]
    return query, prompt.split("### Sentence\n")[1:-1]


@pytest.mark.integration
def test_build_prompts_retrieves_from_pool_never_the_sentence(tmp_path: Path) -> None:
    """Real retrieval (embedder + Milvus Lite); a duplicate of a query in the pool is skipped."""
    from trainers.wraner.prompts import build_prompts

    examples = _write_toy_split(
        tmp_path / "toy" / "train.txt", PERSON_CITY, {"Peter": NAMES, "Paris": CITIES}
    )
    assert len(examples) == 9
    config = _toy_config(tmp_path, num_prompts=3)
    pool, queries = split_source(examples, config.pool_size, 3, config.min_words, config.seed)
    # the case under test: a query whose exact text is also in the pool
    assert {q.text for q in queries} & {p.text for p in pool}
    prompts = build_prompts(config, None, work_dir=tmp_path, progress=False)
    assert len(prompts) == 3
    for p in prompts:
        query, blocks = _sentence_blocks(p.prompt)
        assert len(blocks) == 2 == p.k
        assert all(not b.startswith(query + "\n") for b in blocks)


@pytest.mark.integration
def test_lowercase_share_sends_the_sentence_lowercased_not_its_examples(tmp_path: Path) -> None:
    """Retrieval and prompt see the lowercased sentence; the gold spans (same offsets) give a
    lowercased answer; the retrieved examples keep their case; the cased copy of the query in
    the pool is still never retrieved."""
    from trainers.wraner.prompts import build_prompts

    _write_toy_split(tmp_path / "toy" / "train.txt", PERSON_CITY, {"Peter": NAMES, "Paris": CITIES})
    config = _toy_config(tmp_path, num_prompts=3, lowercase_share=1.0)
    prompts = build_prompts(config, None, work_dir=tmp_path, progress=False)
    assert len(prompts) == 3
    for p in prompts:
        query, blocks = _sentence_blocks(p.prompt)
        assert p.lowercased and query == query.lower() and query.endswith("today")
        name, city = query.split()[0], query.split()[2]
        assert p.answer.startswith(f"{name} | person\n{city} | location\n")
        assert len(blocks) == 2 and all(b[0].isupper() for b in blocks)
        assert all(b.split("\n", 1)[0].lower() != query for b in blocks)
    cased = build_prompts(_toy_config(tmp_path, num_prompts=3), None, tmp_path, progress=False)
    assert not any(p.lowercased for p in cased)
    assert [_sentence_blocks(p.prompt)[0].lower() for p in cased] == [
        _sentence_blocks(p.prompt)[0] for p in prompts
    ]


@pytest.mark.integration
def test_lowercase_share_changes_only_which_sentences_are_lowercased(tmp_path: Path) -> None:
    """The lowercase draw has its own random stream: the type variants (drops, shuffles,
    renames) are those of the same config without it, so a comparison of the two adapters
    measures the lowercasing, not another draw of the variants."""
    from trainers.wraner.prompts import build_prompts

    _write_toy_split(tmp_path / "toy" / "train.txt", PERSON_CITY, {"Peter": NAMES, "Paris": CITIES})
    shares = {"drop_types_share": 0.5, "shuffle_types_share": 0.5, "rename_types_share": 0.5}
    base = build_prompts(_toy_config(tmp_path, **shares), None, tmp_path, progress=False)
    mixed = build_prompts(
        _toy_config(tmp_path, lowercase_share=0.5, **shares), None, tmp_path, progress=False
    )

    def variants(prompts: list[TrainPrompt]) -> list[tuple[object, ...]]:
        return [(p.id, p.types, p.removed, p.shuffled, p.renamed) for p in prompts]

    assert variants(mixed) == variants(base)
    assert any(p.lowercased for p in mixed) and not any(p.lowercased for p in base)


def test_lowercase_share_zero_keeps_the_cached_prompts_fingerprint(tmp_path: Path) -> None:
    from trainers.wraner.prompts import fingerprint

    base = _toy_config(tmp_path)
    assert fingerprint(base) == fingerprint(_toy_config(tmp_path, lowercase_share=0.0))
    assert fingerprint(base) != fingerprint(_toy_config(tmp_path, lowercase_share=0.3))


def test_an_example_lowercased_keeps_its_spans_or_says_it_cannot() -> None:
    example = _example()
    lower = example.lowercased()
    assert lower is not None and lower.text == example.text.lower()
    assert lower.mentions() == [(m.lower(), t) for m, t in example.mentions()]
    assert Example(text="İstanbul is big").lowercased() is None


@pytest.mark.integration
def test_extra_sources_keep_their_own_types_and_pool(tmp_path: Path) -> None:
    """An extra domain's prompts list its types and retrieve only its own sentences."""
    from trainers.wraner.prompts import build_prompts

    _write_toy_split(tmp_path / "toy" / "train.txt", PERSON_CITY, {"Peter": NAMES, "Paris": CITIES})
    bands = ["Muse", "Blur", "Oasis", "Pulp", "Suede", "Queen", "Yes", "Genesis"]
    songs = ["Uprising", "Tender", "Wonderwall", "Disco", "Animal", "Innuendo", "Owner", "Mama"]
    band_song = [("Muse", "B-band"), ("played", "O"), ("Uprising", "B-song"), ("live", "O")]
    music = _write_toy_split(
        tmp_path / "tunes" / "dev.txt", band_song, {"Muse": bands, "Uprising": songs}
    )
    config = _toy_config(
        tmp_path,
        num_prompts=2,
        extra_sources=["tunes:dev"],
        extra_pool_size=5,
        extra_num_prompts=3,
    )
    prompts = build_prompts(config, None, work_dir=tmp_path, progress=False)
    toy = [p for p in prompts if p.id.startswith("toy-train-")]
    tunes = [p for p in prompts if p.id.startswith("tunes-dev-")]
    assert len(toy) == 2 and len(tunes) == 3
    assert all(p.types == ["person", "location"] for p in toy)
    music_texts = {e.text for e in music}
    for p in tunes:
        assert sorted(p.types) == ["band", "song"]
        query, blocks = _sentence_blocks(p.prompt)
        assert len(blocks) == 2
        assert all(b.split("\n", 1)[0] in music_texts - {query} for b in blocks)
        assert "- person:" not in p.prompt and "| band" in p.answer


def test_extra_source_needs_a_split() -> None:
    with pytest.raises(ValueError, match="domain:split"):
        WranerConfig(extra_sources=["politics"])


def test_location_includes_countries_only_when_no_country_type() -> None:
    conll = {t.name: t.description for t in entity_types_for(TYPES)}
    politics = {t.name: t.description for t in entity_types_for(["country", "location"])}
    assert "country" in conll["location"] and "not a country" not in conll["location"]
    assert "not a country" in politics["location"]


def test_renamed_types_are_consistent_in_types_examples_and_answer() -> None:
    example = _example()
    support = Example(
        id="s",
        text="Anna works at Siemens in Rome .",
        entities=[
            Span(start=0, end=4, type="person"),
            Span(start=14, end=21, type="organisation"),
            Span(start=25, end=29, type="location"),
        ],
    )
    rng = random.Random(5)
    for _ in range(50):
        variants = type_variants(example, TYPES, 0.5, 0.5, rng, rename_share=1.0)
        for variant in variants:
            names = variant.renamed
            assert set(names) == set(variant.types)
            assert all(names[t] in TYPE_ALIASES[t] for t in variant.types)
            prompt, answer, _ = render_prompt(example, variant, [support], None, 10_000)
            type_list = prompt.split("### Sentence")[0]
            described = {t.name: t.description for t in entity_types_for(variant.types)}
            for source in variant.types:
                # the alias, with the source type's own description
                assert f"- {names[source]}: {described[source]}" in type_list
                assert f"- {source}:" not in type_list
            expected_answer = [
                f"{s} | {names[t]}" for s, t in example.mentions() if t in variant.types
            ]
            assert answer == ("\n".join(expected_answer) or "none") + ANSWER_END
            if "person" in variant.types:
                assert f"Anna | {names['person']}\n" in prompt
            assert "| person\n" not in prompt + answer


def test_rename_share_zero_keeps_the_seeded_prompts() -> None:
    def run(**kwargs: float) -> list[TypeVariant]:
        rng = random.Random(3)
        return [
            v for _ in range(50) for v in type_variants(_example(), TYPES, 0.3, 0.5, rng, **kwargs)
        ]

    assert run() == run(rename_share=0.0)
    assert all(not v.renamed for v in run())
    renamed = [v for v in run(rename_share=0.4) if v.renamed]
    assert 5 < len(renamed) < 60
