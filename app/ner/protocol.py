"""Wire models of /v1/ner and /v1/ner/batch."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.domains.protocol import EntityTypeIn

# The longest per-request deadline, ms (ten minutes: past any LLM call's timeout).
MAX_DEADLINE_MS = 600_000


class NERRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="The text to extract entities from.")
    domain: str = Field(description="A registered domain; its examples are the retrieval pool.")
    entity_types: list[str | EntityTypeIn] | None = Field(
        None,
        description="Types to extract: names registered in the domain, or {name, description} "
        "to define a type for this request. Default: all of the domain's types.",
    )
    top_k: int | None = Field(None, description="Examples retrieved into the prompt.")
    # Any name the deployment's method registry serves (listed by GET /v1/methods and in the
    # OpenAPI schema the running service publishes); None: its default method.
    method: str | None = Field(None, description="Which method answers (default: the service's).")
    deadline_ms: int | None = Field(
        None,
        ge=1,
        le=MAX_DEADLINE_MS,
        description="How long this request may take, in ms (1 to 600000; default: the "
        "service's NERVE_REQUEST_DEADLINE_MS; a job has none unless set). method=auto answers "
        "a sentence with its encoder alone, escalation reason llm_shed, instead of waiting for "
        "the LLM past it; an idle LLM is always asked. Other methods ignore it. Not part of the "
        "answer-cache key: a shed answer is never cached.",
    )


class EntityOut(BaseModel):
    text: str
    type: str
    start: int = Field(description="Character offset of the first character in the text.")
    end: int = Field(description="Character offset after the last character.")
    score: float = Field(description="Model confidence in [0, 1].")


class Timings(BaseModel):
    embed: float = 0.0
    retrieve: float = 0.0
    generate: float = 0.0
    parse: float = 0.0
    total: float = 0.0


class NERResponse(BaseModel):
    request_id: str
    domain: str
    method: str
    model: str
    entities: list[EntityOut]
    escalate: bool
    escalation_reasons: list[str]
    examples_used: int
    timings_ms: Timings
    cached: bool = False


class BatchResponse(BaseModel):
    request_id: str
    results: list[NERResponse]


class MethodOut(BaseModel):
    name: str
    model: str
    summary: str


class MethodsResponse(BaseModel):
    default: str
    methods: list[MethodOut]
