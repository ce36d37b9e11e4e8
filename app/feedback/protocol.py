"""Wire models of /v1/feedback."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.domains.protocol import SpanIn

Outcome = Literal["resolved", "escalated"]


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(
        min_length=1,
        max_length=140,  # a client's 128-character id plus a batch item's "-<index>"
        description="The request_id of the /v1/ner answer (of the batch item).",
    )
    outcome: Outcome = Field(description="What happened to the case: resolved or escalated.")
    entities: list[SpanIn] | None = Field(
        None,
        description="The correct entities of the request's text (character offsets). Given, "
        "the text becomes a new example of the domain; [] means it has none.",
    )


class FeedbackOut(BaseModel):
    request_id: str
    domain: str
    outcome: Outcome
    predicted: Outcome = Field(description="What the answer predicted (escalate or not).")
    example_id: str | None = Field(description="Id of the example added, if entities were given.")
    domain_version: int = Field(description="The domain's version after this feedback.")


class QueuedSpan(BaseModel):
    start: int
    end: int
    type: str
    score: float
    text: str = Field(description="text[start:end] of the request.")


class EscalationOut(BaseModel):
    request_id: str
    domain: str
    method: str
    text: str = Field(description="The request's text, as submitted.")
    reasons: list[str] = Field(description="Why the answer was escalated.")
    entities: list[QueuedSpan] = Field(description="The entities the service answered.")
    created_at: float = Field(description="When it was answered, Unix seconds.")


class EscalationPage(BaseModel):
    domain: str
    total: int = Field(description="Escalated answers of the domain waiting for feedback.")
    offset: int
    limit: int
    escalations: list[EscalationOut] = Field(description="Newest first.")


class HourOut(BaseModel):
    start: float = Field(description="Start of the hour, Unix seconds.")
    answers: int = Field(description="Answers given in that hour.")
    escalated: int = Field(description="Of which escalated.")
    rate: float | None = Field(description="escalated / answers; null without answers.")


class EscalationRate(BaseModel):
    domain: str
    hours: list[HourOut] = Field(description="Oldest first; the last is the current hour.")
