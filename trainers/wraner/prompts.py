"""Training prompts the IF-WRANER way, built with the gateway's own retrieval and prompt code.

Each training sentence gets the k most similar pool sentences (word-level retrieval through
:class:`nerve.retrieval.retriever.Retriever` over a Milvus Lite store, never the sentence itself nor a
copy of its text) and is rendered by :func:`nerve.prompting.prompt.build_prompt`; the target is
:func:`nerve.prompting.prompt.render_answer`. Two regularisers make the model read the prompt's types
instead of memorising the source label set: a share of prompts is duplicated with some entity
types removed (their gold spans leave the answer, and the examples' answers, with them), and
the entity-type order is shuffled in a share of prompts. A third, optional one renames the
types of a share of prompts to paraphrases (``person`` -> ``individual``, descriptions kept), so
that CoNLL's label names stop being an answer in themselves: the model must map the sentence to
whatever the type list calls things, as it must in a new domain. A fourth, optional one sends a
share of the training sentences lowercased (the retrieved examples keep their case), because
users type lowercase text into chats and search boxes and a model tuned on cased text alone
loses names there (measured in docs/history/benchmarks.md).

Besides the main source (CoNLL-2003 by default), ``extra_sources`` adds other labelled domains,
each retrieving from its own pool with its own type list: many fine-grained types per prompt and
denser annotation, as in a target domain. A domain used this way must not be evaluated on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import tempfile
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from nerve.data.crossner_types import (
    CROSSNER_TYPE_DESCRIPTIONS,
    LOCATION_WITH_COUNTRIES,
    entity_types_for,
)
from nerve.data.readers import entity_types_of, read_split
from nerve.prompting.prompt import PROMPT_VERSION, fit_prompt, render_answer
from nerve.vocab.types import EntityType, Example
from trainers.wraner.config import WranerConfig

if TYPE_CHECKING:
    from nerve.retrieval.retriever import Retriever
log = logging.getLogger(__name__)

TENANT = "trainer"
# Config fields the prompts depend on: a cached prompt file is reused only if they match.
_PROMPT_FIELDS = (
    "data_dir",
    "domain",
    "split",
    "entity_types",
    "pool_size",
    "num_prompts",
    "min_words",
    "extra_sources",
    "extra_pool_size",
    "extra_num_prompts",
    "k",
    "retrieval",
    "word_hits",
    "embedder_model",
    "word_embedding",
    "drop_types_share",
    "shuffle_types_share",
    "rename_types_share",
    "max_seq_tokens",
    "seed",
)


# Paraphrases of the source types for the renaming regulariser; none is a CrossNER type name,
# so a renamed prompt never teaches a target domain's label by accident.
TYPE_ALIASES: dict[str, tuple[str, ...]] = {
    "person": ("individual", "human", "personname", "people"),
    "organisation": ("organization", "institution", "group", "company"),
    "location": ("place", "geolocation", "site", "area"),
    "misc": ("other", "miscellaneous", "propername"),
}


@dataclass(frozen=True)
class TypeVariant:
    """Which entity types one prompt asks for, in prompt order, and what it calls them."""

    types: list[str]
    removed: list[str]
    shuffled: bool
    renamed: dict[str, str] = field(default_factory=dict)  # source type -> name in the prompt


@dataclass(frozen=True)
class TrainPrompt:
    id: str
    prompt: str
    answer: str
    types: list[str]
    removed: list[str]
    shuffled: bool
    k: int
    renamed: dict[str, str] = field(default_factory=dict)
    lowercased: bool = False


@dataclass(frozen=True)
class Source:
    """One labelled split that training sentences and their retrieval pool come from."""

    domain: str
    split: str
    entity_types: list[str]  # canonical order; empty = those of the data
    pool_size: int
    num_prompts: int

    @property
    def name(self) -> str:
        return f"{self.domain}-{self.split}"


def sources_of(config: WranerConfig) -> list[Source]:
    """The main source, then the extra ones (in config order)."""
    main = Source(
        config.domain, config.split, config.entity_types, config.pool_size, config.num_prompts
    )
    extra = [
        Source(domain, split, [], config.extra_pool_size, config.extra_num_prompts)
        for domain, split in (s.split(":") for s in config.extra_sources)
    ]
    return [main, *extra]


def split_source(
    examples: Sequence[Example], pool_size: int, num_prompts: int, min_words: int, seed: int
) -> tuple[list[Example], list[Example]]:
    """Disjoint (pool, training sentences), drawn at random with ``seed``."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    pool = [examples[i] for i in order[:pool_size]]
    rest = [examples[i] for i in order[pool_size:]]
    queries = [e for e in rest if len(e.text.split()) >= min_words][:num_prompts]
    return pool, queries


def type_variants(
    example: Example,
    canonical: Sequence[str],
    drop_share: float,
    shuffle_share: float,
    rng: random.Random,
    rename_share: float = 0.0,
) -> list[TypeVariant]:
    """The prompt(s) one sentence yields: all types, plus (sometimes) a copy with types removed;
    each may have its types renamed.

    A removal always keeps at least one type and, when the sentence has entities, removes at
    least one type it contains, so that the copy's answer really differs.
    """
    variants = [_ordered(list(canonical), [], shuffle_share, rng)]
    if len(canonical) > 1 and rng.random() < drop_share:
        present = [t for t in canonical if any(s.type == t for s in example.entities)]
        count = rng.randint(1, len(canonical) - 1)
        removed: list[str] = [rng.choice(present)] if present else []
        others = [t for t in canonical if t not in removed]
        removed += rng.sample(others, count - len(removed)) if count > len(removed) else []
        kept = [t for t in canonical if t not in removed]
        variants.append(_ordered(kept, sorted(removed), shuffle_share, rng))
    # No draw at all when the share is 0: seeds give the prompts they gave before renaming.
    if rename_share > 0:
        variants = [
            _renamed_variant(v, rng) if rng.random() < rename_share else v for v in variants
        ]
    return variants


def _renamed_variant(variant: TypeVariant, rng: random.Random) -> TypeVariant:
    renamed = {t: rng.choice(TYPE_ALIASES[t]) for t in variant.types if t in TYPE_ALIASES}
    return TypeVariant(variant.types, variant.removed, variant.shuffled, renamed)


def _retyped(example: Example, names: Mapping[str, str]) -> Example:
    spans = [s.model_copy(update={"type": names.get(s.type, s.type)}) for s in example.entities]
    return example.model_copy(update={"entities": spans})


def _ordered(
    types: list[str], removed: list[str], shuffle_share: float, rng: random.Random
) -> TypeVariant:
    shuffled = len(types) > 1 and rng.random() < shuffle_share
    if shuffled:
        original = list(types)
        while types == original:
            rng.shuffle(types)
    return TypeVariant(types=types, removed=removed, shuffled=shuffled)


def render_prompt(
    example: Example,
    variant: TypeVariant,
    retrieved: Sequence[Example],
    count_tokens: Callable[[str], int] | None,
    max_tokens: int,
) -> tuple[str, str, int]:
    """(prompt, answer, examples used). ``retrieved`` is best first; the least similar example
    goes first when the prompt is too long, down to no examples at all."""
    names = variant.renamed
    entity_types = [
        EntityType(name=names.get(t.name, t.name), description=t.description)
        for t in entity_types_for(variant.types)
    ]
    shown = [t.name for t in entity_types]
    answer = render_answer(_retyped(example, names), shown)
    examples = [_retyped(e, names) for e in retrieved] if names else list(retrieved)

    def fits(prompt: str) -> bool:
        return count_tokens is None or count_tokens(prompt + answer) <= max_tokens

    # The gateway puts the most similar example last, nearest to the query.
    prompt, used = fit_prompt(entity_types, list(reversed(examples)), example.text, fits)
    return prompt.text, answer, used


def fingerprint(config: WranerConfig) -> str:
    """What the cached prompts depend on: data fields, prompt version, type descriptions."""
    data: dict[str, object] = {f: getattr(config, f) for f in _PROMPT_FIELDS}
    if config.lowercase_share:
        # Only when used: runs from before the setting keep their cached prompts. The draw's
        # stream is named so prompts cached under the old shared-stream draw are rebuilt.
        data["lowercase_share"] = config.lowercase_share
        data["lowercase_draw"] = "own-stream"
    data["prompt_version"] = PROMPT_VERSION
    data["descriptions"] = [CROSSNER_TYPE_DESCRIPTIONS, LOCATION_WITH_COUNTRIES]
    return hashlib.sha256(json.dumps(data, default=str, sort_keys=True).encode()).hexdigest()[:16]


def build_prompts(
    config: WranerConfig,
    count_tokens: Callable[[str], int] | None,
    work_dir: Path | None = None,
    progress: bool = True,
) -> list[TrainPrompt]:
    """All training prompts of ``config`` (retrieval over a temporary Milvus Lite store)."""
    from nerve.retrieval.embedding.sentence_transformers import SentenceTransformerEmbedder
    from nerve.retrieval.retriever import Retriever
    from nerve.retrieval.store.milvus import MilvusStore

    embedder = SentenceTransformerEmbedder(config.embedder_model, word_mode=config.word_embedding)
    rng = random.Random(config.seed)
    # Its own stream: which sentences are lowercased must not change the type variants, so a
    # lowercase_share run differs from its base config only in those sentences.
    lowercase_rng = random.Random(f"{config.seed}:lowercase")
    prompts: list[TrainPrompt] = []
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        store = MilvusStore(uri=str(Path(tmp) / "pool.db"), dimension=embedder.dimension)
        try:
            retriever = Retriever(
                embedder, store, mode=config.retrieval, word_hits=config.word_hits
            )
            for source in sources_of(config):
                prompts += _source_prompts(
                    config, source, retriever, rng, lowercase_rng, count_tokens, progress
                )
        finally:
            store.close()
    return prompts


def _source_prompts(
    config: WranerConfig,
    source: Source,
    retriever: Retriever,
    rng: random.Random,
    lowercase_rng: random.Random,
    count_tokens: Callable[[str], int] | None,
    progress: bool,
) -> list[TrainPrompt]:
    """The prompts of one source; its pool is indexed as a domain of its own."""
    examples = read_split(config.data_dir, source.domain, source.split)
    canonical = source.entity_types or sorted(entity_types_of(examples), key=_type_rank)
    pool, queries = split_source(
        examples, source.pool_size, source.num_prompts, config.min_words, config.seed
    )
    ids_by_text: dict[str, list[str]] = defaultdict(list)
    for example in pool:
        ids_by_text[_key(example.text)].append(example.id or "")
    log.info("%s: indexing %d pool sentences", source.name, len(pool))
    retriever.index(TENANT, source.name, pool)
    prompts: list[TrainPrompt] = []
    for original in tqdm(queries, desc=f"prompts {source.name}", disable=not progress):
        lower = (
            original.lowercased()
            if config.lowercase_share > 0 and lowercase_rng.random() < config.lowercase_share
            else None
        )
        example = lower or original
        hits = retriever.retrieve(
            TENANT,
            source.name,
            example.text,
            config.k,
            exclude_ids=[example.id or "", *ids_by_text.get(_key(original.text), [])],
            exclude_same_text=True,
        )
        retrieved = [h.example for h in hits]
        variants = type_variants(
            example,
            canonical,
            config.drop_types_share,
            config.shuffle_types_share,
            rng,
            config.rename_types_share,
        )
        for index, variant in enumerate(variants):
            prompt, answer, used = render_prompt(
                example, variant, retrieved, count_tokens, config.max_seq_tokens
            )
            prompts.append(
                TrainPrompt(
                    id=f"{example.id}#{index}",
                    prompt=prompt,
                    answer=answer,
                    types=variant.types,
                    removed=variant.removed,
                    shuffled=variant.shuffled,
                    k=used,
                    renamed=variant.renamed,
                    lowercased=lower is not None,
                )
            )
    return prompts


def load_or_build_prompts(
    config: WranerConfig, count_tokens: Callable[[str], int] | None, progress: bool = True
) -> list[TrainPrompt]:
    """The run's prompts, from ``run_dir/prompts.jsonl`` when it was built by the same config."""
    path = config.run_dir / "prompts.jsonl"
    stamp = fingerprint(config)
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        if lines and json.loads(lines[0]).get("fingerprint") == stamp:
            return [TrainPrompt(**json.loads(line)) for line in lines[1:]]
        log.info("%s was built by another config; rebuilding", path)
    prompts = build_prompts(config, count_tokens, work_dir=config.run_dir, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        out.write(json.dumps({"fingerprint": stamp, "count": len(prompts)}) + "\n")
        for p in prompts:
            out.write(json.dumps(asdict(p), ensure_ascii=False) + "\n")
    tmp.replace(path)
    return prompts


_CONLL_ORDER = ("person", "organisation", "location", "misc")


def _type_rank(name: str) -> tuple[bool, int, str]:
    # CoNLL's usual order first, then alphabetical; misc last in any domain.
    order = _CONLL_ORDER.index(name) if name in _CONLL_ORDER else len(_CONLL_ORDER)
    return (name == "misc", order, name)


def _key(text: str) -> str:
    return " ".join(text.split())
