"""Choosing BANER's and LAR's query-time weights on labelled dev data (no network training).

Queries and their support are encoded once; each candidate setting then only re-runs the cheap
numpy stages (nearest-neighbour tag votes, Viterbi, type scores), so a grid of dozens of settings
costs about one evaluation pass. One setting is chosen for all domains together (micro-F1 summed
over domains), never per domain: a new domain must work without its own calibration.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from app.core.scoring import score
from app.core.types import EntityType, Example
from app.methods.baner.config import BanerOptions
from app.methods.baner.extractor import BanerExtractor, EncodedText
from app.methods.baner.support import SupportSet
from app.methods.lar.reassign import LabelReassigner, LarOptions

SupportOf = Callable[[Example], list[Example]]


@dataclass(frozen=True)
class PreparedQuery:
    example: Example
    encoded: EncodedText
    support: SupportSet


@dataclass(frozen=True)
class PreparedDomain:
    name: str
    types: list[EntityType]
    queries: list[PreparedQuery]


def prepare_domain(
    extractor: BanerExtractor,
    name: str,
    queries: Sequence[Example],
    types: list[EntityType],
    support_of: SupportOf,
) -> PreparedDomain:
    encoded = extractor.encode([q.text for q in queries])
    names = [t.name for t in types]
    prepared = [
        PreparedQuery(q, enc, extractor.support_set(support_of(q), names))
        for q, enc in zip(queries, encoded, strict=True)
    ]
    return PreparedDomain(name, types, prepared)


def baner_predictions(extractor: BanerExtractor, domain: PreparedDomain) -> list[list[Any]]:
    out = []
    for query in domain.queries:
        spans = extractor.detect(query.encoded, query.support)
        pairs = [(s.first, s.last) for s in spans]
        probs = extractor.classify(query.encoded, pairs, domain.types, query.support)
        out.append(
            [
                (query.encoded.words[a].start, query.encoded.words[b].end, domain.types[int(r.argmax())].name)
                for (a, b), r in zip(pairs, probs, strict=True)
            ]
        )
    return out


def lar_predictions(reassigner: LabelReassigner, domain: PreparedDomain) -> list[list[Any]]:
    extractor = reassigner.extractor
    alignment = reassigner.align(domain.types)
    out = []
    for query in domain.queries:
        spans = extractor.detect(query.encoded, query.support)
        pairs = [(s.first, s.last) for s in spans]
        probs = reassigner.type_probabilities(
            query.encoded, pairs, domain.types, query.support, alignment
        )
        out.append(
            [
                (query.encoded.words[a].start, query.encoded.words[b].end, domain.types[int(r.argmax())].name)
                for (a, b), r in zip(pairs, probs, strict=True)
            ]
        )
    return out


def micro_f1(domains: Sequence[PreparedDomain], predictions: Sequence[list[list[Any]]]) -> float:
    gold = [q.example.entities for d in domains for q in d.queries]
    return score(gold, [p for per_domain in predictions for p in per_domain]).f1


def grid(space: dict[str, Iterable[Any]]) -> list[dict[str, Any]]:
    keys = list(space)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*space.values())]


def calibrate_baner(
    extractor: BanerExtractor, domains: Sequence[PreparedDomain], space: dict[str, Iterable[Any]]
) -> tuple[BanerOptions, float, list[tuple[dict[str, Any], float]]]:
    """The best :class:`BanerOptions` over ``space`` (others kept), its F1, and every trial."""
    base = extractor.options
    trials = []
    try:
        for point in grid(space):
            extractor.options = replace(base, **point)
            trials.append((point, micro_f1(domains, [baner_predictions(extractor, d) for d in domains])))
    finally:
        extractor.options = base
    best, f1 = max(trials, key=lambda t: t[1])
    return replace(base, **best), f1, trials


def calibrate_lar(
    reassigner: LabelReassigner, domains: Sequence[PreparedDomain], space: dict[str, Iterable[Any]]
) -> tuple[LarOptions, float, list[tuple[dict[str, Any], float]]]:
    base = reassigner.options
    trials = []
    try:
        for point in grid(space):
            reassigner.options = replace(base, **point)
            trials.append((point, micro_f1(domains, [lar_predictions(reassigner, d) for d in domains])))
    finally:
        reassigner.options = base
    best, f1 = max(trials, key=lambda t: t[1])
    return replace(base, **best), f1, trials
