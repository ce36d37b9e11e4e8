"""The labelled sets BANER's span detector trains on, and the folds that keep evaluation honest.

A source is ``<collection>/<set>:<split>`` under the data root (``../shared/data``), e.g.
``crossner/conll2003:train`` or ``extra/bc5cdr:train``; each keeps its own type names, with a
description where one is known. A fold names the sets it must never see (any split): a set is
scored only by an artefact trained in a fold that holds it out, and :func:`sources_for` refuses
a source from a held-out set, so a mistyped command cannot leak a scored set into training.

Two folds cover the ten scored sets (the five CrossNER domains and the five extra sets), each
trained on CoNLL-2003 plus the other half: ``multi-a`` scores music, literature, ai, bc5cdr,
ncbi_disease and genia_jnlpba; ``multi-b`` scores politics, science, btc and wikineural_en. The
shipped artefact (``multi-all``) trains on every source and scores nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nerve.data.crossner_types import CROSSNER_TYPE_DESCRIPTIONS, entity_types_for
from nerve.data.readers import entity_types_of, read_split
from nerve.vocab.types import EntityType, Example

# The extra sets' types as their annotation guidelines define them (training prompts only:
# evaluation's curated variant of these sets keeps their bare names, as before).
EXTRA_TYPE_DESCRIPTIONS: dict[str, str] = {
    "Chemical": "name of a chemical or drug",
    "Disease": "name of a disease, disorder or symptom",
    "PER": CROSSNER_TYPE_DESCRIPTIONS["person"],
    "ORG": CROSSNER_TYPE_DESCRIPTIONS["organisation"],
    "LOC": "name of a place: country, city, region, street, building, river, ...",
    "MISC": CROSSNER_TYPE_DESCRIPTIONS["misc"],
    "protein": "name of a protein, protein family or complex",
    "DNA": "name of a gene, DNA sequence, element or region",
    "RNA": "name of an RNA molecule or transcript",
    "cell_type": "name of a type of cell",
    "cell_line": "name of a cell line",
}

CROSSNER_DOMAINS = ("politics", "science", "music", "literature", "ai")
EXTRA_SETS = ("bc5cdr", "ncbi_disease", "btc", "wikineural_en", "genia_jnlpba")


@dataclass(frozen=True)
class Source:
    collection: str  # crossner | extra
    name: str  # the set: conll2003, politics, bc5cdr, ...
    split: str

    @property
    def set_id(self) -> str:
        return f"{self.collection}/{self.name}"

    def __str__(self) -> str:
        return f"{self.set_id}:{self.split}"


@dataclass(frozen=True)
class Fold:
    sources: tuple[str, ...]
    held_out: tuple[str, ...]  # set ids this fold's artefact scores, so never trains on


def _crossner(names: Iterable[str], split: str) -> tuple[str, ...]:
    return tuple(f"crossner/{name}:{split}" for name in names)


def _extra(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(f"extra/{name}:train" for name in names)


_A_SCORES = ("music", "literature", "ai"), ("bc5cdr", "ncbi_disease", "genia_jnlpba")
_B_SCORES = ("politics", "science"), ("btc", "wikineural_en")

FOLDS: dict[str, Fold] = {
    "multi-a": Fold(
        sources=(
            "crossner/conll2003:train",
            *_crossner(_B_SCORES[0], "dev"),
            *_extra(_B_SCORES[1]),
        ),
        held_out=tuple(f"crossner/{n}" for n in _A_SCORES[0])
        + tuple(f"extra/{n}" for n in _A_SCORES[1]),
    ),
    "multi-b": Fold(
        sources=(
            "crossner/conll2003:train",
            *_crossner(_A_SCORES[0], "dev"),
            *_extra(_A_SCORES[1]),
        ),
        held_out=tuple(f"crossner/{n}" for n in _B_SCORES[0])
        + tuple(f"extra/{n}" for n in _B_SCORES[1]),
    ),
    "multi-all": Fold(
        sources=(
            "crossner/conll2003:train",
            *_crossner(CROSSNER_DOMAINS, "dev"),
            *_extra(EXTRA_SETS),
        ),
        held_out=(),
    ),
}


def parse_source(text: str) -> Source:
    """``collection/set:split`` into a :class:`Source`; a malformed text raises ValueError."""
    where, _, split = text.partition(":")
    collection, _, name = where.partition("/")
    if not (collection and name and split) or "/" in name:
        raise ValueError(f"a training source is collection/set:split, got {text!r}")
    return Source(collection, name, split)


def sources_for(texts: Sequence[str], held_out: Sequence[str]) -> list[Source]:
    """The sources named by ``texts``; refuses any split of a set in ``held_out``."""
    sources = [parse_source(t) for t in texts]
    leaked = sorted({str(s) for s in sources if s.set_id in set(held_out)})
    if leaked:
        raise ValueError(
            f"refusing to train on {', '.join(leaked)}: the fold scores that set "
            f"(held out: {', '.join(held_out)})"
        )
    return sources


def check_unseen(trained_on: str, set_ids: Sequence[str]) -> None:
    """Refuse an artefact whose training data (its ``baner.json`` ``training.data``) names one
    of ``set_ids``: continuing a fold from it, or scoring the set with it, would leak."""
    # Set names as the data record writes them: "conll2003/train (...)", "extra/btc:train (...)".
    leaked = sorted(
        s for s in set_ids if re.search(rf"(^|[\s,/]){re.escape(s.split('/')[-1])}[/:]", trained_on)
    )
    if leaked:
        raise ValueError(
            f"refusing an artefact trained on {', '.join(leaked)} "
            f"(its training data: {trained_on or 'not recorded'})"
        )


def source_types(source: Source, examples: Iterable[Example]) -> list[EntityType]:
    """The source's entity types (order of first use) with their descriptions."""
    names = entity_types_of(examples)
    if source.collection == "crossner":
        return entity_types_for(names)
    return [EntityType(name=n, description=EXTRA_TYPE_DESCRIPTIONS.get(n, "")) for n in names]


def read_source(data_root: Path, source: Source) -> list[Example]:
    return read_split(data_root / source.collection, source.name, source.split)
