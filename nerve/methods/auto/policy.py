"""The cascade's pure parts: when the encoder is unsure, how its answer and the LLM's combine,
and one calibrated probability per returned entity.

Shared by ``method=auto`` (:mod:`nerve.methods.auto.handler`), its calibration fit
(:mod:`trainers.cascade_calibration`) and the offline analysis (:mod:`tools.cascade_eval`), so
that the numbers measured offline are the handler's.

- **Routing** (:meth:`CascadePolicy.route`): the encoder answers first; the segment goes to
  the LLM when its route score is below the routing threshold. With a fitted router (the
  artefact's ``router``) the score is 1 - P(the cascade's answer beats the encoder's), from
  the segment's :func:`router_features`; without one it is the least certain encoder
  entity's calibrated probability. The encoder model's features include the span's length
  (long titles break) and whether another requested type is of the same family (person vs
  politician), so those count either way.
- **Merging** (:func:`merge`): every distinct (span, type) either source proposed becomes a
  :class:`Candidate` with both sources' scores and how the other source relates to it (agrees,
  same span with another type, overlapping, alone). A rule then picks a non-overlapping subset,
  greedily in its own order of preference (:data:`RULES`).
- **Calibration** (:class:`Calibrator`): two small logistic models read from a JSON artefact,
  one over encoder-only features (unrouted segments and the router), one over the candidates
  of a routed segment. Their weights on the score features are non-negative (the fit
  constrains them), so a higher model score never lowers the probability.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from nerve.data.scoring import SpanLike
from nerve.vocab.types import Entity, EntityType

Rule = Literal["replace", "union", "trust", "best"]
# replace: on a routed segment the LLM's answer replaces the encoder's.
# union: agreed spans, then the LLM's, then the encoder's whose calibrated probability reaches
#        the keep threshold; overlaps go to the earlier (the LLM's type and boundaries).
# trust: per type family, which source is believed (learned on dev): "llm", "encoder" or
#        "both" (agreed spans first, then the trusted source, the LLM first when both are).
# best:  the candidates in order of calibrated probability, kept above the keep threshold.
RULES: tuple[Rule, ...] = ("replace", "union", "trust", "best")
TRUST_CHOICES = ("llm", "encoder", "both")

MISC = "misc"
FAMILIES = ("person", "organisation", "location", "work", "misc", "other")
# Type names by family (CrossNER's and CoNLL's); any other type is "other" unless its
# description says what it names (a domain's own types).
_FAMILY_OF: dict[str, str] = {
    **dict.fromkeys(
        ("person", "politician", "scientist", "writer", "researcher", "musicalartist"), "person"
    ),
    **dict.fromkeys(
        ("organisation", "organization", "politicalparty", "university", "band"), "organisation"
    ),
    **dict.fromkeys(("location", "country"), "location"),
    **dict.fromkeys(("book", "poem", "song", "album", "magazine", "academicjournal"), "work"),
    MISC: MISC,
}
_DESCRIPTION_HINTS = (
    ("person", "person"),
    ("title of", "work"),
    ("organisation", "organisation"),
    ("organization", "organisation"),
    ("place", "location"),
)


def type_family(name: str, description: str = "") -> str:
    """The family of an entity type: by its name, else a hint in its description."""
    family = _FAMILY_OF.get(name.lower())
    if family is not None:
        return family
    text = description.lower()
    for hint, hinted in _DESCRIPTION_HINTS:
        if hint in text:
            return hinted
    return "other"


class ScoredSpan(SpanLike, Protocol):
    """A span with its method's score: an :class:`Entity`, or anything shaped like one."""

    @property
    def score(self) -> float: ...


Relation = Literal["agree", "type_differs", "overlap", "alone"]


@dataclass(frozen=True)
class Candidate:
    """One distinct (start, end, type) that the encoder or the LLM proposed in a segment."""

    start: int
    end: int
    type: str
    encoder_score: float | None  # None: the encoder did not propose it
    llm_score: float | None  # None: the LLM did not propose it (or was not asked)
    relation: Relation  # what the other source says about this span
    words: int

    @property
    def source(self) -> str:
        if self.encoder_score is not None and self.llm_score is not None:
            return "both"
        return "encoder" if self.encoder_score is not None else "llm"

    @property
    def key(self) -> tuple[int, int, str]:
        return (self.start, self.end, self.type)


def _overlaps(a: ScoredSpan | Candidate, b: ScoredSpan | Candidate) -> bool:
    return a.start < b.end and b.start < a.end


def _best(spans: Sequence[ScoredSpan]) -> dict[tuple[int, int, str], float]:
    out: dict[tuple[int, int, str], float] = {}
    for s in spans:
        key = (s.start, s.end, s.type)
        out[key] = max(out.get(key, 0.0), float(s.score))
    return out


def candidates(
    text: str, encoder: Sequence[ScoredSpan], llm: Sequence[ScoredSpan] | None
) -> list[Candidate]:
    """Every distinct span-and-type of both answers, in text order. ``llm`` None: not routed
    (every candidate is the encoder's, "alone")."""
    enc = _best(encoder)
    gen = _best(llm or [])
    out: list[Candidate] = []
    for key in sorted(set(enc) | set(gen), key=lambda k: (k[0], k[1], k[2])):
        start, end, etype = key
        other = gen if key in enc else enc
        relation: Relation
        if llm is not None and key in enc and key in gen:
            relation = "agree"
        elif any(k[:2] == key[:2] for k in other):
            relation = "type_differs"
        elif any(k[0] < end and start < k[1] for k in other):
            relation = "overlap"
        else:
            relation = "alone"
        out.append(
            Candidate(
                start=start,
                end=end,
                type=etype,
                encoder_score=enc.get(key),
                llm_score=gen.get(key),
                relation=relation,
                words=len(text[start:end].split()),
            )
        )
    return out


# --- calibration --------------------------------------------------------------------------
ENCODER_FEATURES = (
    "bias",
    "encoder_score",
    "long_span",
    "sibling_type",
    *(f"family_{f}" for f in FAMILIES[1:]),
)
MERGED_FEATURES = (
    "bias",
    "encoder_score",
    "llm_score",
    "agree",
    "type_differs",
    "overlap",
    "llm_alone",
    "encoder_alone",
    "long_span",
    "sibling_type",
    *(f"family_{f}" for f in FAMILIES[1:]),
    *(f"llm_family_{f}" for f in FAMILIES[1:]),
)
# Features whose weight must be >= 0: the calibrated probability rises with the model scores.
MONOTONE_FEATURES = ("encoder_score", "llm_score")
# The router's view of a segment, known before the LLM is called (measured in stop 29).
ROUTER_FEATURES = (
    "bias",
    "least_certain",
    "mean_certainty",
    "total_doubt",
    "doubtful_spans",
    "spans",
    "sibling_spans",
    "long_spans",
    "words",
    "untagged_capitalised",
)


@dataclass(frozen=True)
class TypeInfo:
    """What the features need to know of the requested types."""

    family: dict[str, str]
    siblings: set[str]  # types sharing their family with another requested type

    @classmethod
    def of(cls, types: Sequence[EntityType]) -> TypeInfo:
        family = {t.name: type_family(t.name, t.description) for t in types}
        counts: dict[str, int] = {}
        for f in family.values():
            counts[f] = counts.get(f, 0) + 1
        return cls(family, {n for n, f in family.items() if counts[f] > 1 and f != "other"})

    def family_of(self, name: str) -> str:
        return self.family.get(name) or type_family(name)


def encoder_features(candidate: Candidate, info: TypeInfo) -> dict[str, float]:
    family = info.family_of(candidate.type)
    features = {
        "bias": 1.0,
        "encoder_score": candidate.encoder_score or 0.0,
        "long_span": float(candidate.words >= 3),
        "sibling_type": float(candidate.type in info.siblings),
    }
    features.update({f"family_{f}": float(family == f) for f in FAMILIES[1:]})
    return features


def merged_features(candidate: Candidate, info: TypeInfo) -> dict[str, float]:
    features = encoder_features(candidate, info)
    from_llm = candidate.llm_score is not None
    alone = candidate.relation == "alone"
    features.update(
        {
            "llm_score": candidate.llm_score or 0.0,
            "agree": float(candidate.relation == "agree"),
            "type_differs": float(candidate.relation == "type_differs"),
            "overlap": float(candidate.relation == "overlap"),
            "llm_alone": float(alone and from_llm),
            "encoder_alone": float(alone and not from_llm),
        }
    )
    family = info.family_of(candidate.type)
    features.update({f"llm_family_{f}": float(from_llm and family == f) for f in FAMILIES[1:]})
    return features


def router_features(
    text: str, probabilities: Sequence[float], cands: Sequence[Candidate], info: TypeInfo
) -> dict[str, float]:
    """A segment's features for the router: how sure the encoder is of its spans
    (``probabilities``, one per candidate), which of them are risky (a type with a sibling, three
    words or more), and how many capitalised words it left untagged (a missed name, in cased
    text)."""
    covered = [False] * len(text)
    for c in cands:
        for i in range(c.start, c.end):
            covered[i] = True
    untagged = 0
    offset = 0
    for word in text.split():
        start = text.index(word, offset)
        offset = start + len(word)
        if start > 0 and word[:1].isupper() and not covered[start]:
            untagged += 1
    probs = list(probabilities) or [1.0]
    return {
        "bias": 1.0,
        "least_certain": min(probs),
        "mean_certainty": sum(probs) / len(probs),
        "total_doubt": sum(1.0 - p for p in probs),
        "doubtful_spans": float(sum(p < 0.5 for p in probs)),
        "spans": float(len(cands)),
        "sibling_spans": float(sum(c.type in info.siblings for c in cands)),
        "long_spans": float(sum(c.words >= 3 for c in cands)),
        "words": float(len(text.split())),
        "untagged_capitalised": float(untagged),
    }


@dataclass(frozen=True)
class Logistic:
    """p = sigmoid(w · x) over named features (missing features count 0)."""

    features: tuple[str, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.features) != len(self.weights):
            raise ValueError("a logistic model needs one weight per feature")
        for name, weight in zip(self.features, self.weights, strict=True):
            if name in MONOTONE_FEATURES and weight < 0:
                raise ValueError(f"weight of {name} is {weight}: must be >= 0 (monotone)")

    def __call__(self, x: Mapping[str, float]) -> float:
        z = sum(w * x.get(f, 0.0) for f, w in zip(self.features, self.weights, strict=True))
        return sigmoid(z)

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(self.features), "weights": list(self.weights)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Logistic:
        return cls(tuple(data["features"]), tuple(float(w) for w in data["weights"]))


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@dataclass(frozen=True)
class Calibrator:
    """The fitted artefact: both models, the per-family trust, the keep threshold and, when
    fitted (``nerve train cascade-router``), the router and its default threshold."""

    encoder: Logistic
    merged: Logistic
    trust: dict[str, str] = field(default_factory=dict)
    # Per rule ("union", "best"): an unconfirmed candidate is kept from this probability on.
    keep_thresholds: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    router: Logistic | None = None  # P(the cascade's answer beats the encoder's) of a segment
    route_threshold: float | None = None  # the router's threshold unless a setting overrides it

    def keep(self, rule: str) -> float:
        return self.keep_thresholds.get(rule, 0.5)

    def encoder_probability(self, candidate: Candidate, info: TypeInfo) -> float:
        return self.encoder(encoder_features(candidate, info))

    def merged_probability(self, candidate: Candidate, info: TypeInfo) -> float:
        return self.merged(merged_features(candidate, info))

    def to_dict(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder.to_dict(),
            "merged": self.merged.to_dict(),
            "trust": self.trust,
            "keep_thresholds": self.keep_thresholds,
            "meta": self.meta,
            **({"router": self.router.to_dict()} if self.router else {}),
            **(
                {"route_threshold": self.route_threshold}
                if self.route_threshold is not None
                else {}
            ),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibrator:
        trust = dict(data.get("trust", {}))
        for family, choice in trust.items():
            if choice not in TRUST_CHOICES:
                raise ValueError(f"trust[{family!r}] = {choice!r}; one of {TRUST_CHOICES}")
        return cls(
            encoder=Logistic.from_dict(data["encoder"]),
            merged=Logistic.from_dict(data["merged"]),
            trust=trust,
            keep_thresholds={k: float(v) for k, v in data.get("keep_thresholds", {}).items()},
            meta=dict(data.get("meta", {})),
            router=Logistic.from_dict(data["router"]) if "router" in data else None,
            route_threshold=(float(data["route_threshold"]) if "route_threshold" in data else None),
        )

    @classmethod
    def load(cls, path: Path) -> Calibrator:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


# --- routing and merging --------------------------------------------------------------------
@dataclass(frozen=True)
class Merged:
    """A segment's combined answer: entities with calibrated scores, where each came from, and
    the types the two sources disagreed on (empty when the LLM was not asked)."""

    entities: list[Entity]
    sources: list[str]
    disagreements: list[str]
    routed: bool


# Without a fitted router: route when the least certain encoder entity is below this.
LEAST_CERTAIN_ROUTE_THRESHOLD = 0.6


@dataclass(frozen=True)
class CascadePolicy:
    rule: Rule
    route_threshold: float
    calibrator: Calibrator

    @classmethod
    def of(cls, rule: Rule, calibrator: Calibrator, route_threshold: float | None) -> CascadePolicy:
        """The policy with ``route_threshold``, else the calibration's own, else the default of
        the least-certain-entity score."""
        if route_threshold is None:
            route_threshold = calibrator.route_threshold
        if route_threshold is None:
            route_threshold = LEAST_CERTAIN_ROUTE_THRESHOLD
        return cls(rule, route_threshold, calibrator)

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"cascade rule {self.rule!r}; one of {RULES}")

    def route_score(
        self, text: str, encoder: Sequence[ScoredSpan], types: Sequence[EntityType]
    ) -> float:
        """How well the encoder's answer stands alone: with a router, 1 - P(the cascade's
        answer beats it); without, its least certain entity's calibrated probability (1.0:
        none found)."""
        info = TypeInfo.of(types)
        cands = candidates(text, encoder, None)
        probs = [self.calibrator.encoder_probability(c, info) for c in cands]
        router = self.calibrator.router
        if router is None:
            return min(probs, default=1.0)
        return 1.0 - router(router_features(text, probs, cands, info))

    def route(self, text: str, encoder: Sequence[ScoredSpan], types: Sequence[EntityType]) -> bool:
        return bool(self.route_score(text, encoder, types) < self.route_threshold)

    def merge(
        self,
        text: str,
        encoder: Sequence[ScoredSpan],
        llm: Sequence[ScoredSpan] | None,
        types: Sequence[EntityType],
    ) -> Merged:
        return merge(self.rule, self.calibrator, text, encoder, llm, types)


def merge(
    rule: Rule,
    calibrator: Calibrator,
    text: str,
    encoder: Sequence[ScoredSpan],
    llm: Sequence[ScoredSpan] | None,
    types: Sequence[EntityType],
) -> Merged:
    """The combined answer of one segment. ``llm`` None: the segment was not routed, and the
    answer is the encoder's with encoder-calibrated scores."""
    info = TypeInfo.of(types)
    cands = candidates(text, encoder, llm)
    if llm is None:
        probs = [calibrator.encoder_probability(c, info) for c in cands]
        return Merged(_entities(text, cands, probs), ["encoder"] * len(cands), [], False)
    probs = [calibrator.merged_probability(c, info) for c in cands]
    order = _preference(rule, calibrator, cands, probs, info)
    chosen: list[int] = []
    for index in order:
        if not any(_overlaps(cands[index], cands[j]) for j in chosen):
            chosen.append(index)
    chosen.sort(key=lambda i: (cands[i].start, cands[i].end))
    picked = [cands[i] for i in chosen]
    disagreements = sorted({c.type for c in cands if c.relation != "agree"})
    return Merged(
        _entities(text, picked, [probs[i] for i in chosen]),
        [c.source for c in picked],
        disagreements,
        True,
    )


def _preference(
    rule: Rule,
    calibrator: Calibrator,
    cands: Sequence[Candidate],
    probs: Sequence[float],
    info: TypeInfo,
) -> list[int]:
    """The eligible candidates' indices, most preferred first (ties: higher probability)."""
    keep = calibrator.keep(rule)
    ranked: list[tuple[int, float, int]] = []
    for i, c in enumerate(cands):
        from_llm = c.llm_score is not None
        from_encoder = c.encoder_score is not None
        rank: int | None
        if rule == "replace":
            rank = 0 if from_llm else None
        elif rule == "union":
            if c.relation == "agree":
                rank = 0
            elif from_llm:
                rank = 1
            else:
                rank = 2 if probs[i] >= keep else None
        elif rule == "trust":
            choice = calibrator.trust.get(info.family_of(c.type), "llm")
            if c.relation == "agree":
                rank = 0
            elif choice == "llm":
                rank = 1 if from_llm else None
            elif choice == "encoder":
                rank = 1 if from_encoder else None
            else:
                rank = 1 if from_llm else 2
        else:  # best
            rank = 0 if probs[i] >= keep else None
        if rank is not None:
            ranked.append((rank, -probs[i], i))
    return [i for _, _, i in sorted(ranked)]


def _entities(text: str, cands: Sequence[Candidate], probs: Sequence[float]) -> list[Entity]:
    return [
        Entity(
            text=text[c.start : c.end],
            type=c.type,
            start=c.start,
            end=c.end,
            score=min(1.0, max(0.0, p)),
        )
        for c, p in zip(cands, probs, strict=True)
    ]
