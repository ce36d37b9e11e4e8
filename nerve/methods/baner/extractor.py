"""BANER at query time: detect spans, then type them against the request's support examples.

Stage 1 (span detection): the trained type-agnostic BIO tagger, its per-word distribution mixed
with a nearest-neighbour vote of the support examples' words, decoded by constrained Viterbi.
Stage 2 (type classification): each span, represented by its boundary representation and its
contextual word vectors, against the request's support spans: similarity to each type's nearest
support spans and prototype, plus a kernel ridge classifier fitted in closed form on the support
spans at query time; types without support fall back on their description.
Nothing is trained per domain: a new domain only brings its types and examples.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nerve.engines.smoothing import load_ranges
from nerve.methods.baner.artefact import artefact_digest, load_artefact
from nerve.methods.baner.backbone import SHAPE_DIM, make_word_batch, word_windows
from nerve.methods.baner.config import OPTIONS_FILE, BanerOptions, load_options
from nerve.methods.baner.decoding import WordSpan, viterbi_bio
from nerve.methods.baner.net import BanerNet
from nerve.methods.baner.support import (
    EncodedSupport,
    SupportSet,
    TypingWeights,
    softmax,
    span_features,
)
from nerve.methods.baner.tags import TAG_B, TAG_I, TAG_O
from nerve.methods.handler import SegmentTask
from nerve.methods.lar.alignment import type_text
from nerve.vocab.types import EntityType, Example
from nerve.vocab.words import Word, split_words
from nerve.wire.encoder import Candidate, TypedEntity

_BATCH = 16


@dataclass(frozen=True)
class EncodedText:
    text: str
    words: list[Word]
    states: torch.Tensor  # (W, hidden + shape) word states
    tag_probs: np.ndarray  # (W, 3) the tagger's own distribution
    word_vectors: np.ndarray  # (W, hidden) L2-normalised, for nearest-neighbour tagging


class _Lru:
    """A small thread-safe least-recently-used map (per extractor instance)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[Hashable, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> object | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            return None

    def pop(self, key: Hashable) -> object | None:
        with self._lock:
            return self._items.pop(key, None)

    def put(self, key: Hashable, value: object) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


def word_span_of(words: Sequence[Word], start: int, end: int) -> tuple[int, int] | None:
    """The words a character span ``[start, end)`` overlaps, as (first, last); None if none."""
    inside = [i for i, w in enumerate(words) if w.end > start and w.start < end]
    return (inside[0], inside[-1]) if inside else None


def bio_tags(words: Sequence[Word], example: Example) -> tuple[np.ndarray, np.ndarray]:
    """Type-agnostic BIO tags of ``words`` and the type covering each word."""
    tags = np.full(len(words), TAG_O, dtype=np.int64)
    kinds = np.full(len(words), "", dtype=object)
    for span in example.entities:
        covered = word_span_of(words, span.start, span.end)
        if covered is None:
            continue
        first, last = covered
        if (tags[first : last + 1] != TAG_O).any():
            continue  # overlapping annotation: keep the first
        tags[first] = TAG_B
        tags[first + 1 : last + 1] = TAG_I
        kinds[first : last + 1] = span.type
    return tags, kinds


class BanerExtractor:
    """Thread-safe: one forward pass at a time (torch modules are not re-entrant for us)."""

    # The tokenizer is a Hugging Face tokenizer (untyped: it is called like a function).
    def __init__(self, tokenizer: Any, net: BanerNet, options: BanerOptions | None = None):
        self.tokenizer = tokenizer
        self.net = net.eval()
        self.options = options or BanerOptions()
        # What runs the encoder: "torch", or "onnx"/"onnx-int8" (nerve/methods/baner/onnx.py).
        self.runtime = "torch"
        # Which trained weights and options (nerve.methods.baner.artefact.artefact_digest); set
        # by load(), empty for a network built in memory.
        self.artefact_id = ""
        # The int8 encoder's activation ranges (nerve.engines.smoothing), when the artefact has
        # them; set by load().
        self.activation_ranges: dict[str, torch.Tensor] | None = None
        self._lock = threading.Lock()
        self._support_cache = _Lru(self.options.cache_entries)
        self._type_cache = _Lru(self.options.cache_entries)
        # Query texts encoded ahead (warm), each taken once by the answer that needs it.
        self._warm_queries = _Lru(self.options.warm_entries)

    @classmethod
    def load(
        cls, directory: Path, encoder: str | None = None, options: BanerOptions | None = None
    ) -> BanerExtractor:
        """The artefact's network; ``options`` default to its calibrated ``options.json``."""
        tokenizer, net = load_artefact(directory, encoder)
        saved = Path(directory) / OPTIONS_FILE
        if options is None and saved.is_file():
            options = load_options(BanerOptions, saved)
        extractor = cls(tokenizer, net, options)
        extractor.artefact_id = artefact_digest(Path(directory))
        extractor.activation_ranges = load_ranges(Path(directory))
        return extractor

    @property
    def states_id(self) -> str:
        """The network whose word states a domain model's head reads: the base encoder and the
        artefact's digest (a head fitted on one BANER artefact is refused on another)."""
        artefact = f"#{self.artefact_id}" if self.artefact_id else ""
        return f"{self.net.config.encoder}{artefact}"

    @property
    def model_id(self) -> str:
        """:attr:`states_id` and, when not torch, what runs it (part of the answer cache key)."""
        suffix = "" if self.runtime == "torch" else f"@{self.runtime}"
        return f"{self.states_id}{suffix}"

    @property
    def source_types(self) -> list[EntityType]:
        return [EntityType.model_validate(t) for t in self.net.config.source_types]

    # --- encoding --------------------------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> list[EncodedText]:
        split = [split_words(t) for t in texts]
        windows: list[tuple[int, int, int]] = []  # (text index, first word, end word)
        for index, words in enumerate(split):
            for first, end in word_windows(
                self.tokenizer, [w.text for w in words], self.net.config.max_subtokens
            ):
                windows.append((index, first, end))
        # Windows of similar length share a batch: less padding when many texts come at once.
        windows.sort(key=lambda w: w[2] - w[1])
        pieces: list[dict[int, torch.Tensor]] = [{} for _ in texts]
        with self._lock, torch.inference_mode():
            for start in range(0, len(windows), _BATCH):
                chunk = windows[start : start + _BATCH]
                batch_words = [[w.text for w in split[i][a:b]] for i, a, b in chunk]
                batch = make_word_batch(self.tokenizer, batch_words, self.net.config.max_subtokens)
                states = self.net.word_states(batch)
                for row, (index, first, end) in enumerate(chunk):
                    pieces[index][first] = states[row, : end - first]
            out: list[EncodedText] = []
            for text, words, parts in zip(texts, split, pieces, strict=True):
                ordered = [parts[first] for first in sorted(parts)]
                states = torch.cat(ordered) if ordered else torch.zeros((0, self._state_dim()))
                probs = torch.softmax(self.net.tag_logits(states), dim=-1).numpy()
                vectors = torch.nn.functional.normalize(states[:, : self.net.hidden], dim=-1)
                out.append(EncodedText(text, words, states, probs, vectors.numpy()))
        return out

    def warm(self, texts: Sequence[str]) -> None:
        """Encode query ``texts`` ahead of their answer (the pipeline calls this while the
        examples are being retrieved): :meth:`prepare_batch` takes them instead of encoding
        again. The encoding needs the text alone, so it overlaps the embedding on another core.
        """
        todo = [t for t in dict.fromkeys(texts) if t.strip()]
        for text, encoded in zip(todo, self.encode(todo), strict=True):
            self._warm_queries.put(text, encoded)

    def prime(self, encoded: EncodedText) -> None:
        """Hand over a text already encoded (as :meth:`warm` would): the next answer for it
        takes this encoding instead of running the encoder again."""
        self._warm_queries.put(encoded.text, encoded)

    def prime_support(self, examples: Sequence[Example], encoded: Sequence[EncodedText]) -> None:
        """Cache ``examples`` as support from their encodings (a trainer encoded them already)."""
        for example, enc in zip(examples, encoded, strict=True):
            self._support_cache.put(_support_key(example), self._encoded_support(example, enc))

    def _encode_queries(self, texts: Sequence[str]) -> list[EncodedText]:
        """``encode(texts)``, taking the ones :meth:`warm` encoded (each once)."""
        found: dict[int, EncodedText] = {}
        for index, text in enumerate(texts):
            warmed = self._warm_queries.pop(text)
            if warmed is not None:
                found[index] = warmed  # type: ignore[assignment]
        missing = [i for i in range(len(texts)) if i not in found]
        if missing:
            fresh = self.encode([texts[i] for i in missing])
            found.update(zip(missing, fresh, strict=True))
        return [found[i] for i in range(len(texts))]

    def _state_dim(self) -> int:
        return self.net.hidden + SHAPE_DIM

    def span_reps(self, encoded: EncodedText, spans: Sequence[tuple[int, int]]) -> np.ndarray:
        """(N, D) boundary representations of word spans (first, last) of ``encoded``."""
        if not spans:
            return np.zeros((0, self.net.config.span_dim), dtype=np.float32)
        index = torch.tensor([(0, a, b) for a, b in spans], dtype=torch.long)
        with self._lock, torch.inference_mode():
            return self.net.span_reps(encoded.states.unsqueeze(0), index).numpy()

    def type_anchors(self, entity_types: Sequence[EntityType]) -> np.ndarray:
        """(T, D) the types' names and descriptions in the boundary space (cached per text)."""
        return self._type_vectors(entity_types)[0]

    def label_vectors(self, entity_types: Sequence[EntityType]) -> np.ndarray:
        """(T, hidden) normalised sentence embeddings of the types' names and descriptions.

        For comparing labels with labels (LAR's alignment): the boundary space was trained on
        four source types only and separates new labels poorly.
        """
        return self._type_vectors(entity_types)[1]

    def _type_vectors(self, entity_types: Sequence[EntityType]) -> tuple[np.ndarray, np.ndarray]:
        texts = [type_text(t) for t in entity_types]
        missing = [t for t in dict.fromkeys(texts) if self._type_cache.get(t) is None]
        if missing:
            encoded = self.tokenizer(
                missing, padding=True, truncation=True, max_length=64, return_tensors="pt"
            )
            with self._lock, torch.inference_mode():
                pooled = self.net.pooled(encoded["input_ids"], encoded["attention_mask"])
                anchors = torch.nn.functional.normalize(self.net.type_head(pooled), dim=-1)
                labels = torch.nn.functional.normalize(pooled, dim=-1)
            for text, anchor, label in zip(missing, anchors.numpy(), labels.numpy(), strict=True):
                self._type_cache.put(text, (anchor, label))
        if not texts:
            return (
                np.zeros((0, self.net.config.span_dim), dtype=np.float32),
                np.zeros((0, self.net.hidden), dtype=np.float32),
            )
        pairs = [self._type_cache.get(t) for t in texts]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])  # type: ignore[index]

    def encode_support(self, examples: Sequence[Example]) -> list[EncodedSupport]:
        """Each example as the network sees it: from the cache, the rest in one encoding."""
        keys = [_support_key(e) for e in examples]
        found: dict[Hashable, EncodedSupport] = {}
        todo: dict[Hashable, Example] = {}
        for key, example in zip(keys, examples, strict=True):
            cached = self._support_cache.get(key)
            if cached is not None:
                found[key] = cached  # type: ignore[assignment]
            else:
                todo.setdefault(key, example)
        if todo:
            encoded = self.encode([e.text for e in todo.values()])
            for (key, example), enc in zip(todo.items(), encoded, strict=True):
                found[key] = self._encoded_support(example, enc)
                self._support_cache.put(key, found[key])
        # From ``found``, not the cache: more new examples than it holds would be evicted.
        return [found[k] for k in keys]

    def _encoded_support(self, example: Example, enc: EncodedText) -> EncodedSupport:
        tags, kinds = bio_tags(enc.words, example)
        spans, span_types = [], []
        for span in example.entities:
            covered = word_span_of(enc.words, span.start, span.end)
            if covered is not None:
                spans.append(covered)
                span_types.append(span.type)
        return EncodedSupport(
            enc.word_vectors,
            tags,
            kinds,
            self.span_reps(enc, spans),
            span_features(enc.word_vectors, spans),
            tuple(span_types),
        )

    def support_set(self, examples: Sequence[Example], types: Sequence[str]) -> SupportSet:
        return SupportSet.build(
            self.encode_support(examples), types, self.net.hidden, self.net.config.span_dim
        )

    def prepare_batch(self, items: Sequence[SegmentTask]) -> list[tuple[EncodedText, SupportSet]]:
        """Every item's text encoded and its support set built, with one encoder pass over all
        the texts and one over all their distinct, not yet cached support examples."""
        encoded = self._encode_queries([item.text for item in items])
        distinct = {_support_key(e): e for item in items for e in item.examples}
        by_key = dict(zip(distinct, self.encode_support(list(distinct.values())), strict=True))
        return [
            (
                enc,
                SupportSet.build(
                    [by_key[_support_key(e)] for e in item.examples],
                    [t.name for t in item.entity_types],
                    self.net.hidden,
                    self.net.config.span_dim,
                ),
            )
            for item, enc in zip(items, encoded, strict=True)
        ]

    # --- the two stages --------------------------------------------------------------------
    def detect(self, encoded: EncodedText, support: SupportSet) -> list[WordSpan]:
        probs = encoded.tag_probs
        knn = support.knn_tag_probs(
            encoded.word_vectors, self.options.knn_neighbours, self.options.knn_temperature
        )
        if self.options.knn_weight > 0 and not np.isnan(knn).any():
            probs = (1 - self.options.knn_weight) * probs + self.options.knn_weight * knn
        return [s for s in viterbi_bio(probs) if s.score >= self.options.min_span_score]

    def classify(
        self,
        encoded: EncodedText,
        spans: Sequence[tuple[int, int]],
        entity_types: Sequence[EntityType],
        support: SupportSet,
    ) -> np.ndarray:
        """(N, T) type probabilities of ``spans`` among ``entity_types``."""
        o = self.options
        sims = support.type_similarities(
            self.span_reps(encoded, spans),
            span_features(encoded.word_vectors, spans),
            [t.name for t in entity_types],
            self.type_anchors(entity_types),
            TypingWeights(
                o.proto_weight,
                o.nearest_weight,
                o.nearest_k,
                o.feature_weight,
                o.ridge_weight,
                o.ridge_lambda,
            ),
        )
        return softmax(sims, o.type_temperature)

    def extract(
        self, text: str, entity_types: Sequence[EntityType], support: Sequence[Example]
    ) -> list[TypedEntity]:
        return self.extract_batch([SegmentTask(text, list(entity_types), list(support))])[0]

    def extract_batch(self, items: Sequence[SegmentTask]) -> list[list[TypedEntity]]:
        """:meth:`extract` of each item; the encoder runs once over all of them."""
        out: list[list[TypedEntity]] = [[] for _ in items]
        todo = [i for i, item in enumerate(items) if item.entity_types and item.text.strip()]
        # A domain model fitted on the domain's pool answers in place of the few-shot stages
        # (same encoder pass); only for the types it was fitted on.
        adapted = [i for i in todo if _adapted(items[i])]
        if adapted:
            encodings = self._encode_queries([items[i].text for i in adapted])
            for index, encoded in zip(adapted, encodings, strict=True):
                model = items[index].domain_model
                assert model is not None
                out[index] = model.predict(encoded, items[index].entity_types)
            todo = [i for i in todo if i not in set(adapted)]
        prepared = self.prepare_batch([items[i] for i in todo])
        for index, (encoded, support_set) in zip(todo, prepared, strict=True):
            entity_types = items[index].entity_types
            spans = self.detect(encoded, support_set)
            word_spans = [(s.first, s.last) for s in spans]
            probs = self.classify(encoded, word_spans, entity_types, support_set)
            out[index] = [
                typed_entity(encoded, span, row, entity_types, self.options.candidates, span.score)
                for span, row in zip(spans, probs, strict=True)
            ]
        return out


def typed_entity(
    encoded: EncodedText,
    span: WordSpan | tuple[int, int],
    type_probs: np.ndarray,
    entity_types: Sequence[EntityType],
    candidates: int,
    span_score: float,
) -> TypedEntity:
    first, last = (span.first, span.last) if isinstance(span, WordSpan) else span
    start, end = encoded.words[first].start, encoded.words[last].end
    order = np.argsort(-type_probs)
    best = int(order[0])
    return TypedEntity(
        text=encoded.text[start:end],
        type=entity_types[best].name,
        start=start,
        end=end,
        score=float(np.clip(span_score * type_probs[best], 0.0, 1.0)),
        candidates=[
            Candidate(type=entity_types[int(i)].name, score=round(float(type_probs[i]), 4))
            for i in order[:candidates]
        ],
    )


def _adapted(task: SegmentTask) -> bool:
    return task.domain_model is not None and task.domain_model.knows(task.entity_types)


def _support_key(example: Example) -> Hashable:
    return (
        example.id,
        example.text,
        tuple((s.start, s.end, s.type) for s in example.entities),
    )
