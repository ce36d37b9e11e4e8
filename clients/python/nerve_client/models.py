"""Typed request and answer models of the nerve API.

Each mirrors one schema of the server's OpenAPI document (``SERVER_SCHEMAS`` names which);
a test compares them with a running server's ``/openapi.json`` so they cannot drift silently.
Requests forbid unknown fields (a typo fails here, not after a round trip); answers ignore
fields they do not know, so an older client keeps working against a newer server.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")


# --- /v1/ner, /v1/ner/batch, /v1/methods -------------------------------------------------


class EntityType(_Request):
    name: str
    description: str = ""


class NERRequest(_Request):
    text: str
    domain: str
    entity_types: list[str | EntityType] | None = None
    top_k: int | None = None
    method: str | None = None
    # ms this request may take; method=auto answers a sentence with its encoder alone
    # (escalation reason llm_shed) rather than wait for the LLM past it. None: the server's.
    deadline_ms: int | None = Field(None, ge=1, le=600_000)


class Entity(_Answer):
    text: str
    type: str
    start: int = Field(description="Offset of the first character (a Python str index).")
    end: int
    score: float


class Timings(_Answer):
    embed: float = 0.0
    retrieve: float = 0.0
    generate: float = 0.0
    parse: float = 0.0
    total: float = 0.0


class NERResponse(_Answer):
    request_id: str
    domain: str
    method: str
    model: str
    entities: list[Entity]
    escalate: bool
    escalation_reasons: list[str]
    examples_used: int
    timings_ms: Timings
    cached: bool = False


class BatchResponse(_Answer):
    request_id: str
    results: list[NERResponse]


class Method(_Answer):
    name: str
    model: str
    summary: str


class MethodsResponse(_Answer):
    default: str
    methods: list[Method]


# --- /v1/ner/jobs -------------------------------------------------------------------------

JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
FINISHED_STATUSES: frozenset[str] = frozenset({"done", "failed", "cancelled"})


class JobProgress(_Answer):
    done: int
    total: int


class JobError(_Answer):
    code: str
    message: str


class Job(_Answer):
    job_id: str
    status: JobStatus
    status_url: str
    domain: str
    method: str | None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    progress: JobProgress
    result: NERResponse | None = None
    error: JobError | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES


# --- /v1/domains and their examples -------------------------------------------------------


class DomainSpec(_Request):
    name: str
    description: str = ""
    entity_types: list[EntityType]
    required_types: list[str] = Field(default_factory=list)
    score_threshold: float | None = None


class AdaptedVersion(_Answer):
    """A model fitted on the domain's pool, with the held-out scores that decided it."""

    version: int
    created_at: float
    examples: int
    heldout_f1_domain: float
    heldout_f1_fewshot: float
    wins: bool
    promoted: bool
    reason: str
    serving: bool


class AdaptationRun(_Answer):
    run_id: str
    trigger: Literal["auto", "manual"]
    status: Literal["queued", "running", "succeeded", "not_promoted", "failed"]
    queued_at: float
    started_at: float | None
    finished_at: float | None
    examples: int | None
    version: int | None
    error: str | None


class Adaptation(_Answer):
    """The domain's own model: what serves (None: the few-shot path), its versions, the last run."""

    status: Literal["none", "queued", "running", "served", "few_shot", "failed"]
    enabled: bool
    examples: int
    min_examples: int
    next_run_at: int
    served_version: int | None
    served: AdaptedVersion | None
    latest: AdaptedVersion | None
    versions: list[AdaptedVersion]
    last_run: AdaptationRun | None
    error: str | None


class Rollback(_Request):
    to: int | None = None


class Domain(_Answer):
    name: str
    description: str
    entity_types: list[EntityType]
    required_types: list[str]
    score_threshold: float
    version: int
    examples: int
    adaptation: Adaptation | None = None


class DomainList(_Answer):
    domains: list[Domain]


class Span(_Request):
    start: int
    end: int
    type: str


class Example(_Request):
    text: str
    entities: list[Span] = Field(default_factory=list)


class ExamplesUpload(_Request):
    examples: list[Example]


class SpanText(_Answer):
    start: int
    end: int
    type: str
    text: str


class StoredExample(_Answer):
    id: str
    text: str
    entities: list[SpanText]


class ExamplesAdded(_Answer):
    domain: str
    added: int
    ids: list[str]
    version: int


class ExamplePage(_Answer):
    domain: str
    total: int
    offset: int
    limit: int
    examples: list[StoredExample]


class Deleted(_Answer):
    deleted: str
    examples_deleted: int = 0


# --- /v1/feedback ---------------------------------------------------------------------------

Outcome = Literal["resolved", "escalated"]


class Feedback(_Request):
    request_id: str
    outcome: Outcome
    entities: list[Span] | None = None


class FeedbackAnswer(_Answer):
    request_id: str
    domain: str
    outcome: Outcome
    predicted: Outcome
    example_id: str | None
    domain_version: int


class QueuedSpan(_Answer):
    start: int
    end: int
    type: str
    score: float
    text: str


class Escalation(_Answer):
    request_id: str
    domain: str
    method: str
    text: str
    reasons: list[str]
    entities: list[QueuedSpan]
    created_at: float


class EscalationPage(_Answer):
    domain: str
    total: int
    offset: int
    limit: int
    escalations: list[Escalation]


class Hour(_Answer):
    start: float
    answers: int
    escalated: int
    rate: float | None


class EscalationRate(_Answer):
    domain: str
    hours: list[Hour]


# The server's schema each model mirrors (components.schemas of /openapi.json).
SERVER_SCHEMAS: dict[type[BaseModel], str] = {
    EntityType: "EntityTypeIn",
    NERRequest: "NERRequest",
    Entity: "EntityOut",
    Timings: "Timings",
    NERResponse: "NERResponse",
    BatchResponse: "BatchResponse",
    Method: "MethodOut",
    MethodsResponse: "MethodsResponse",
    JobProgress: "JobProgress",
    JobError: "JobError",
    Job: "JobOut",
    DomainSpec: "DomainIn",
    Domain: "DomainOut",
    AdaptedVersion: "AdaptedVersionOut",
    AdaptationRun: "AdaptationRunOut",
    Adaptation: "AdaptationOut",
    Rollback: "RollbackIn",
    DomainList: "DomainList",
    Span: "SpanIn",
    Example: "ExampleIn",
    ExamplesUpload: "ExamplesIn",
    SpanText: "SpanOut",
    StoredExample: "ExampleOut",
    ExamplesAdded: "ExamplesAdded",
    ExamplePage: "ExamplePage",
    Deleted: "Deleted",
    Feedback: "FeedbackIn",
    FeedbackAnswer: "FeedbackOut",
    QueuedSpan: "QueuedSpan",
    Escalation: "EscalationOut",
    EscalationPage: "EscalationPage",
    Hour: "HourOut",
    EscalationRate: "EscalationRate",
}
