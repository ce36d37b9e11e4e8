"""Prometheus metrics of the service, in their own registry (one per app instance).

The names here are the contract with ``deploy/grafana`` dashboards (a test checks every
dashboard query against :data:`METRIC_NAMES`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from nerve.prompting.parser import DROP_KINDS, REPAIR_KINDS

STAGES = ("embed", "retrieve", "generate", "parse", "total")
ADAPTATION_OUTCOMES = (
    "promoted",
    "not_promoted",
    "failed",
    "timed_out",
    "stopped",
    "deleted",
    "skipped",
)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "nerve_requests", "API requests.", ["route", "domain", "method", "status"], registry=r
        )
        self.stage_seconds = Histogram(
            "nerve_stage_seconds",
            "Latency of one pipeline stage of /v1/ner.",
            ["stage", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.entities = Counter(
            "nerve_entities", "Entities returned.", ["domain", "type"], registry=r
        )
        self.escalations = Counter(
            "nerve_escalations",
            "Answers the service flagged for a human (predicted escalations).",
            ["domain", "reason"],
            registry=r,
        )
        self.escalated_answers = Counter(
            "nerve_escalated_answers",
            "Answers flagged for a human (one per answer, whatever the number of reasons).",
            ["domain"],
            registry=r,
        )
        self.answers = Counter(
            "nerve_answers", "Answers given by /v1/ner, per domain.", ["domain"], registry=r
        )
        self.reported_outcomes = Counter(
            "nerve_reported_outcomes",
            "Outcomes reported through /v1/feedback (resolved or escalated).",
            ["domain", "outcome", "predicted"],
            registry=r,
        )
        self.output_repairs = Counter(
            "nerve_output_repairs", "LLM answers that needed a repair.", ["kind"], registry=r
        )
        self.dropped_spans = Counter(
            "nerve_dropped_spans", "Spans of the LLM answer dropped.", ["kind"], registry=r
        )
        # Known label values start at 0: rate() and alerts then see "none", not "no data".
        for kind in REPAIR_KINDS:
            self.output_repairs.labels(kind=kind)
        for kind in DROP_KINDS:
            self.dropped_spans.labels(kind=kind)
        self.llm_tokens = Histogram(
            "nerve_llm_tokens",
            "Tokens of one LLM generation: its prompt, its answer (generated tokens, "
            "including any cut off the answer), or its cached prompt head (prompt tokens taken "
            "from the KV cache, not evaluated). Prompt counts only from backends that report "
            "them (llama.cpp in process, OpenAI-compatible servers; not Triton); cached ones "
            "from llama.cpp in process.",
            ["method", "kind"],
            buckets=(8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192),
            registry=r,
        )
        self.lar_changes = Counter(
            "nerve_lar_changes",
            "Entities of an LLM answer LAR re-typed or dropped, by reason.",
            ["reason"],
            registry=r,
        )
        self.cascade_segments = Counter(
            "nerve_cascade_segments",
            "Segments method=auto answered, by whether the LLM was asked too (routed).",
            ["routed"],
            registry=r,
        )
        for routed in ("true", "false"):
            self.cascade_segments.labels(routed=routed)
        self.cascade_shed = Counter(
            "nerve_cascade_shed",
            "Routed segments method=auto answered with the encoder alone (escalation reason "
            "llm_shed), by why: queue (NERVE_CASCADE_MAX_QUEUED segments already waited for the "
            "LLM) or deadline (waiting would miss the request's deadline). Also counted as "
            "routed in nerve_cascade_segments_total.",
            ["reason"],
            registry=r,
        )
        for reason in ("queue", "deadline"):
            self.cascade_shed.labels(reason=reason)
        self.cache_requests = Counter(
            "nerve_cache_requests",
            "Cache look-ups by result (hit, miss, error).",
            ["cache", "kind", "result"],
            registry=r,
        )
        self.backend_errors = Counter(
            "nerve_backend_errors", "Failed calls to a dependency.", ["backend"], registry=r
        )
        self.in_flight = Gauge("nerve_in_flight", "/v1/ner requests in progress.", registry=r)
        self.rejected = Counter(
            "nerve_rejected", "Requests refused with 429 (in-flight limit).", registry=r
        )
        self.jobs = Counter(
            "nerve_jobs", "/v1/ner/jobs jobs entering each status.", ["status"], registry=r
        )
        for status in ("queued", "running", "done", "failed", "cancelled"):
            self.jobs.labels(status=status)
        self.jobs_queued = Gauge(
            "nerve_jobs_queued", "Jobs waiting for a worker (the queue depth).", registry=r
        )
        self.jobs_running = Gauge("nerve_jobs_running", "Jobs a worker is running.", registry=r)
        self.examples_added = Counter(
            "nerve_examples_added", "Examples added to a pool.", ["domain", "source"], registry=r
        )
        self.adaptation_runs = Counter(
            "nerve_adaptation_runs",
            "Adaptation runs by how they ended (promoted, not_promoted, failed, timed_out, "
            "stopped with the gateway, deleted with their domain, skipped: another run had it).",
            ["outcome"],
            registry=r,
        )
        for outcome in ADAPTATION_OUTCOMES:
            self.adaptation_runs.labels(outcome=outcome)
        self.adaptation_run_seconds = Histogram(
            "nerve_adaptation_run_seconds",
            "Wall time of an adaptation run's job (export, fit, publication), s.",
            buckets=(5, 10, 20, 30, 60, 120, 300, 600, 1200),
            registry=r,
        )


def metric_names(metrics: Metrics) -> set[str]:
    """Every sample name the registry exports (``_total``, ``_bucket``, ... included)."""
    names: set[str] = set()
    for family in metrics.registry.collect():
        for sample in family.samples:
            names.add(sample.name)
        names.add(family.name)
    return names
