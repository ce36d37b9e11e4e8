"""``nerve eval``: run a labelled split through the same pipeline the API uses, and score it.

The pool is the domain's train split, indexed in a fresh store; every test sentence goes
through :meth:`app.ner.pipeline.NERPipeline.extract` (retrieval, prompt, LLM, parser), with pool
sentences identical to the query excluded (CrossNER repeats some sentences across splits).

Two stress variants (issue 14) change what the service is given, never the gold answers or the
pool: ``bare_types`` registers each entity type with its name as its description (as a hurried
user writes them) instead of the curated ones, and ``lowercase`` sends each scored sentence
lowercased (text as people type it into a search box), scored against the same gold offsets.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from app.components import Components, build_components
from app.domains.protocol import DomainIn, EntityTypeIn
from app.ner.protocol import NERRequest
from nerve.data.crossner_types import entity_types_for
from nerve.data.readers import entity_types_of, read_split
from nerve.data.scoring import ScoreReport, score
from nerve.errors import BackendUnavailable
from nerve.retrieval.store.milvus import MilvusStore
from nerve.settings import Settings
from nerve.vocab.types import EntityType, Example

TENANT = "eval"
# A backend down for this many sentences in a row ends the run instead of scoring empty answers.
MAX_CONSECUTIVE_FAILURES = 5

log = logging.getLogger(__name__)


class LowercaseShiftsOffsets(ValueError):
    """Lowercasing a sentence changed its length, so its gold offsets would not fit it."""


@dataclass
class EvalResult:
    domain: str
    split: str
    sentences: int
    report: ScoreReport
    latencies_ms: list[float] = field(default_factory=list)
    escalated: int = 0
    pool_size: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    predictions: list[list[dict[str, Any]]] = field(default_factory=list)
    # Sentences whose request failed (backend timeout or outage): scored as "nothing found".
    failures: list[dict[str, Any]] = field(default_factory=list)
    # What the service's metrics counted while the components scored: answers repaired (per
    # kind), spans dropped (per kind, type_not_requested = unknown types), escalation reasons
    # (output_truncated, output_repeated, ...).
    parser: dict[str, dict[str, float]] = field(default_factory=dict)
    # The service's own stage timings (embed, retrieve, generate, parse, total; ms) of each
    # answered sentence, as its response reported them.
    stage_ms: list[dict[str, float]] = field(default_factory=list)

    @property
    def median_latency_ms(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else 0.0

    def sentence_latencies_ms(self) -> list[float | None]:
        failed = {f["sentence"] for f in self.failures}
        answered = iter(self.latencies_ms)
        return [None if i in failed else round(next(answered), 1) for i in range(self.sentences)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "split": self.split,
            "sentences": self.sentences,
            "pool_size": self.pool_size,
            "micro": {
                "precision": self.report.precision,
                "recall": self.report.recall,
                "f1": self.report.f1,
            },
            "median_latency_ms": self.median_latency_ms,
            "p95_latency_ms": _percentile(self.latencies_ms, 95),
            "stage_ms": _stage_summary(self.stage_ms),
            "escalated": self.escalated,
            "failed": len(self.failures),
            "failures": self.failures[:20],
            "settings": self.settings,
            "parser": self.parser,
            "report": self.report.to_dict(),
            # Per sentence, in order (null where it failed): lets a comparison take the same
            # sentences for every method.
            "latencies_ms": self.sentence_latencies_ms(),
        }


def scratch_settings(settings: Settings, scratch: Path) -> Settings:
    """``settings`` as an evaluation runs them: a scratch store (Milvus Lite in ``scratch``),
    the answer cache off, and no adaptation run starting by itself (a pool past
    ``NERVE_ADAPT_MIN_EXAMPLES`` would fit beside the timed sentences, and its promoted model
    would answer the rest; with ``adapt`` one runs before scoring)."""
    return settings.model_copy(
        update={
            "data_dir": scratch,
            "milvus": settings.milvus.model_copy(update={"uri": None}),
            "cache": settings.cache.model_copy(update={"entries": 0}),
            "adapt": settings.adapt.model_copy(update={"enabled": False, "dir": None}),
        }
    )


async def evaluate(
    settings: Settings,
    data_dir: Path,
    domain: str,
    split: str = "test",
    *,
    pool_split: str = "train",
    limit: int | None = None,
    top_k: int | None = None,
    method: str = "wraner",
    components: Components | None = None,
    progress: bool = True,
    offset: int = 0,
    bare_types: bool = False,
    lowercase: bool = False,
    pool_limit: int | None = None,
    adapt: bool = False,
) -> EvalResult:
    """Score ``split`` (from sentence ``offset``, at most ``limit`` sentences) with the pool
    ``pool_split`` (its first ``pool_limit`` sentences); ``bare_types`` and ``lowercase`` are the
    stress variants (module doc)."""
    if offset < 0:
        raise ValueError(f"offset must be at least 0; got {offset}")
    pool = read_split(data_dir, domain, pool_split)[:pool_limit]
    test = read_split(data_dir, domain, split)[offset:]
    if limit is not None:
        test = test[:limit]
    if lowercase:
        test = lowercased(test, first=offset)
    if adapt:
        # The domain model is fitted on the pool: a scored sentence in it would be memorised
        # (retrieval only skips it, with exclude_same_text).
        scored = {e.text for e in test}
        pool = [e for e in pool if e.text not in scored]
    variant = Variant(offset=offset, bare_types=bare_types, lowercase=lowercase, adapt=adapt)
    with tempfile.TemporaryDirectory(prefix="nerve-eval-") as scratch:
        if components is None:
            components = build_components(scratch_settings(settings, Path(scratch)))
            own = True
        else:
            own = False
        try:
            return await _run(
                components, domain, split, pool, test, top_k, method, progress, variant
            )
        finally:
            if own:
                await components.close()


async def setup_domain(
    components: Components,
    domain: str,
    pool: list[Example],
    test: list[Example],
    bare_types: bool = False,
) -> None:
    """The eval tenant's ``domain`` afresh: the types of pool and test (each described by its
    bare name with ``bare_types``), the pool indexed."""
    types = entity_types_for(entity_types_of([*pool, *test]))
    if bare_types:
        types = [EntityType(name=t.name, description=t.name) for t in types]
    if await components.domains.store_has(TENANT, domain):
        await components.domains.delete(TENANT, domain)
    await components.domains.create(
        TENANT,
        DomainIn(
            name=domain,
            entity_types=[EntityTypeIn(name=t.name, description=t.description) for t in types],
        ),
    )
    await components.domains.add_examples(TENANT, domain, pool, source="eval")


async def _run(
    components: Components,
    domain: str,
    split: str,
    pool: list[Example],
    test: list[Example],
    top_k: int | None,
    method: str,
    progress: bool,
    variant: Variant,
) -> EvalResult:
    # An unknown method fails here, naming the served ones, before the pool is indexed.
    handler = components.methods.resolve(method)
    await setup_domain(components, domain, pool, test, variant.bare_types)
    adaptation: dict[str, Any] | None = None
    if variant.adapt:
        state = await components.adaptation.runner.run_now(TENANT, domain)
        latest = state.latest
        adaptation = {
            "served_version": state.served,
            "last_run": None if state.last_run is None else state.last_run.model_dump(),
            "latest": None if latest is None else latest.model_dump(),
        }
        log.info("%s adapted: %s", domain, adaptation)

    predictions: list[list[dict[str, Any]]] = []
    latencies: list[float] = []
    stage_ms: list[dict[str, float]] = []
    failures: list[dict[str, Any]] = []
    consecutive = 0
    escalated = 0
    answered_by: set[str] = set()  # the answers' models (a domain model names its version)
    with Progress(
        TextColumn(f"[bold]{domain}/{split}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[f1]}"),
        disable=not progress,
    ) as bar:
        task = bar.add_task("eval", total=len(test), f1="")
        gold_so_far: list[list[Any]] = []
        for index, example in enumerate(test):
            request = NERRequest(text=example.text, domain=domain, top_k=top_k, method=method)
            started = time.perf_counter()
            try:
                response = await components.ner.extract(
                    TENANT, request, f"eval-{index}", exclude_same_text=True
                )
            except BackendUnavailable as exc:
                # One slow or failed request must not throw away hours of scoring; a dead
                # backend must not be scored as a model that finds nothing.
                failures.append({"sentence": index, "error": str(exc)})
                consecutive += 1
                if consecutive >= MAX_CONSECUTIVE_FAILURES:
                    raise
                log.warning("%s/%s sentence %d failed: %s", domain, split, index, exc)
                predictions.append([])
            else:
                consecutive = 0
                latencies.append((time.perf_counter() - started) * 1000)
                stage_ms.append(response.timings_ms.model_dump())
                escalated += int(response.escalate)
                answered_by.add(response.model)
                predictions.append([e.model_dump() for e in response.entities])
            gold_so_far.append(example.entities)
            if index % 10 == 9:
                running = score(gold_so_far, [_spans(p) for p in predictions])
                bar.update(task, f1=f"F1 {running.f1 * 100:.1f}")
                if not bar.console.is_terminal:  # a log file gets a line, not a bar
                    log.info(
                        "%s/%s %d/%d F1 %.1f median %.0f ms",
                        domain,
                        split,
                        index + 1,
                        len(test),
                        running.f1 * 100,
                        statistics.median(latencies),
                    )
            bar.advance(task)
    report = score([e.entities for e in test], [_spans(p) for p in predictions])
    settings = components.settings
    # The examples the pipeline retrieved: at least the handler's own minimum.
    k = max(settings.default_top_k if top_k is None else top_k, handler.min_examples)
    return EvalResult(
        domain=domain,
        split=split,
        sentences=len(test),
        report=report,
        latencies_ms=latencies,
        stage_ms=stage_ms,
        escalated=escalated,
        pool_size=len(pool),
        settings={
            "method": method,
            "model": handler.model,
            "generator": components.generator.name,
            "retrieval": settings.retrieval.mode,
            "word_embedding": settings.embedder.word_mode,
            "ivf_nlist": settings.milvus.ivf_nlist,
            "ivf_nprobe": settings.milvus.ivf_nprobe,
            # What the searches really used (the in-process faiss copy of a Milvus Lite pool
            # sizes its own nlist); absent with a Milvus server.
            "search_index": _search_index(components, domain),
            "top_k": k,
            "adapter": settings.llm.adapter,
            "constrained_decoding": settings.wraner.constrained_decoding,
            **variant.settings(),
            "adaptation": adaptation,
            "answered_by": sorted(answered_by),
        },
        predictions=predictions,
        failures=failures,
        parser=_parser_counts(components),
    )


@dataclass(frozen=True)
class Variant:
    """Which sentences were scored and how the service was given them."""

    offset: int = 0
    bare_types: bool = False
    lowercase: bool = False
    # The domain adapted to its pool (a run, the real job) before scoring.
    adapt: bool = False

    def settings(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "adapt": self.adapt,
            "type_descriptions": "bare" if self.bare_types else "curated",
            "text": "lowercased" if self.lowercase else "original",
        }


def lowercased(examples: list[Example], first: int = 0) -> list[Example]:
    """``examples`` with their text lowercased and the same gold spans; raises
    :class:`LowercaseShiftsOffsets` (naming the sentence, ``first`` + its index) where
    lowercasing changes a text's length (e.g. "İ" becomes two characters)."""
    out = []
    for index, example in enumerate(examples):
        lower = example.lowercased()
        if lower is None:
            changed = next(c for c in example.text if len(c.lower()) != 1)
            raise LowercaseShiftsOffsets(
                f"sentence {first + index}: lowercasing {changed!r} changes the text's length "
                f"({len(example.text)} -> {len(example.text.lower())} characters), so its gold "
                "offsets would not fit; score it without --lowercase"
            )
        out.append(lower)
    return out


def _parser_counts(components: Components) -> dict[str, dict[str, float]]:
    """Repairs, drops and escalation reasons counted since ``components`` were built."""
    m = components.metrics
    counters = {
        "repairs": m.output_repairs,
        "drops": m.dropped_spans,
        "escalations": m.escalations,
        # method=auto: segments sent to the LLM too ("true") or answered by the encoder alone.
        "cascade_routed": m.cascade_segments,
    }
    labels = {"escalations": "reason", "cascade_routed": "routed"}
    out: dict[str, dict[str, float]] = {name: {} for name in counters}
    for name, counter in counters.items():
        label = labels.get(name, "kind")
        for metric in counter.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total") and sample.value:
                    key = sample.labels[label]
                    out[name][key] = out[name].get(key, 0.0) + sample.value
    return out


def _stage_summary(stage_ms: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Median and p95 of each stage over the answered sentences (ms)."""
    summary: dict[str, dict[str, float]] = {}
    for name in sorted({name for row in stage_ms for name in row}):
        values = [row.get(name, 0.0) for row in stage_ms]
        summary[name] = {"median": statistics.median(values), "p95": _percentile(values, 95)}
    return summary


def _search_index(components: Components, domain: str) -> dict[str, Any] | None:
    store = components.store
    if not isinstance(store, MilvusStore) or not store.local_search:
        return None
    return {part: dataclasses.asdict(p) for part, p in store.index_params(TENANT, domain).items()}


def _spans(entities: list[dict[str, Any]]) -> list[tuple[int, int, str]]:
    return [(e["start"], e["end"], e["type"]) for e in entities]


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]
