"""Each API operation as data: method, path, body and how to read the answer.

The sync and async clients both run these, so the API is described once and the two clients
differ only in how they send and sleep.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from nerve_client.models import (
    Adaptation,
    BatchResponse,
    Deleted,
    Domain,
    DomainList,
    DomainSpec,
    EntityType,
    EscalationPage,
    EscalationRate,
    Example,
    ExamplePage,
    ExamplesAdded,
    ExamplesUpload,
    Feedback,
    FeedbackAnswer,
    Job,
    MethodsResponse,
    NERRequest,
    NERResponse,
    Outcome,
    Rollback,
    Span,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

EntityTypes = Sequence[str | EntityType | Mapping[str, str]] | None


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    read: Callable[[httpx.Response], T]
    json: Any = None
    content: str | None = None
    params: Mapping[str, str | int] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # Statuses answered with ``read`` instead of an error (e.g. /readyz's 503).
    ok_statuses: frozenset[int] = frozenset()
    # Safe to send again after the request may have reached the server (a read timeout):
    # reads, deletes and extraction. Writes are retried only when the connection failed.
    idempotent: bool = False


def _model(cls: type[M]) -> Callable[[httpx.Response], M]:
    return lambda response: cls.model_validate_json(response.content)


def _segment(value: str) -> str:
    """One path segment, escaped (an example id may hold ':' or '.')."""
    return quote(value, safe="")


def _dump(model: BaseModel) -> Any:
    # None fields left out: the server applies its own defaults.
    return model.model_dump(mode="json", exclude_none=True)


def ner_request(
    text: str,
    domain: str,
    *,
    entity_types: EntityTypes = None,
    top_k: int | None = None,
    method: str | None = None,
    deadline_ms: int | None = None,
) -> NERRequest:
    types = None if entity_types is None else [_entity_type(t) for t in entity_types]
    return NERRequest(
        text=text,
        domain=domain,
        entity_types=types,
        top_k=top_k,
        method=method,
        deadline_ms=deadline_ms,
    )


def _entity_type(value: str | EntityType | Mapping[str, str]) -> str | EntityType:
    if isinstance(value, str | EntityType):
        return value
    return EntityType.model_validate(value)


def _request_id_header(request_id: str | None) -> dict[str, str]:
    return {"X-Request-ID": request_id} if request_id else {}


# --- /v1/ner -------------------------------------------------------------------------------


def ner(request: NERRequest, request_id: str | None = None) -> Call[NERResponse]:
    return Call(
        "POST",
        "/v1/ner",
        _model(NERResponse),
        json=_dump(request),
        headers=_request_id_header(request_id),
        idempotent=True,
    )


def ner_batch(
    items: Iterable[NERRequest | Mapping[str, Any]], request_id: str | None = None
) -> Call[BatchResponse]:
    body = [_dump(NERRequest.model_validate(item)) for item in items]
    return Call(
        "POST",
        "/v1/ner/batch",
        _model(BatchResponse),
        json=body,
        headers=_request_id_header(request_id),
        idempotent=True,
    )


def methods() -> Call[MethodsResponse]:
    return Call("GET", "/v1/methods", _model(MethodsResponse), idempotent=True)


def ready() -> Call[bool]:
    return Call(
        "GET",
        "/readyz",
        lambda response: response.status_code == 200,
        ok_statuses=frozenset({503}),
        idempotent=True,
    )


# --- /v1/ner/jobs --------------------------------------------------------------------------


def submit_job(request: NERRequest, request_id: str | None = None) -> Call[Job]:
    # Not idempotent: a re-sent submission would start a second job.
    return Call(
        "POST",
        "/v1/ner/jobs",
        _model(Job),
        json=_dump(request),
        headers=_request_id_header(request_id),
    )


def get_job(job_id: str) -> Call[Job]:
    return Call("GET", f"/v1/ner/jobs/{_segment(job_id)}", _model(Job), idempotent=True)


def cancel_job(job_id: str) -> Call[Job]:
    return Call("DELETE", f"/v1/ner/jobs/{_segment(job_id)}", _model(Job), idempotent=True)


# --- /v1/domains ---------------------------------------------------------------------------


def domain_spec(
    name: str,
    entity_types: Sequence[str | EntityType | Mapping[str, str]],
    *,
    description: str = "",
    required_types: Sequence[str] = (),
    score_threshold: float | None = None,
) -> DomainSpec:
    """A type given as a bare name gets an empty description (descriptions help the LLM)."""
    types = [
        EntityType(name=t) if isinstance(t, str) else EntityType.model_validate(t)
        for t in entity_types
    ]
    return DomainSpec(
        name=name,
        description=description,
        entity_types=types,
        required_types=list(required_types),
        score_threshold=score_threshold,
    )


def create_domain(spec: DomainSpec | Mapping[str, Any]) -> Call[Domain]:
    body = _dump(DomainSpec.model_validate(spec))
    return Call("POST", "/v1/domains", _model(Domain), json=body)


def list_domains() -> Call[list[Domain]]:
    return Call(
        "GET",
        "/v1/domains",
        lambda response: DomainList.model_validate_json(response.content).domains,
        idempotent=True,
    )


def get_domain(name: str) -> Call[Domain]:
    return Call("GET", f"/v1/domains/{_segment(name)}", _model(Domain), idempotent=True)


def delete_domain(name: str) -> Call[Deleted]:
    return Call("DELETE", f"/v1/domains/{_segment(name)}", _model(Deleted), idempotent=True)


def get_adaptation(domain: str) -> Call[Adaptation]:
    path = f"/v1/domains/{_segment(domain)}/adaptation"
    return Call("GET", path, _model(Adaptation), idempotent=True)


def start_adaptation(domain: str) -> Call[Adaptation]:
    return Call("POST", f"/v1/domains/{_segment(domain)}/adaptation", _model(Adaptation))


# ``rollback_adaptation``'s default ``to``: the version that served before the current one.
Previous = Literal["previous"]
PREVIOUS: Previous = "previous"


def rollback_adaptation(domain: str, to: int | Previous | None = PREVIOUS) -> Call[Adaptation]:
    """``to``: a version, None (the few-shot path) or ``"previous"``."""
    body = {} if to == PREVIOUS else Rollback(to=None if to is None else int(to)).model_dump()
    path = f"/v1/domains/{_segment(domain)}/adaptation/rollback"
    return Call("POST", path, _model(Adaptation), json=body)


def add_examples(
    domain: str, examples: Iterable[Example | Mapping[str, Any]]
) -> Call[ExamplesAdded]:
    upload = ExamplesUpload(examples=[Example.model_validate(e) for e in examples])
    return Call(
        "POST",
        f"/v1/domains/{_segment(domain)}/examples",
        _model(ExamplesAdded),
        json=_dump(upload),
    )


def add_conll(domain: str, conll: str) -> Call[ExamplesAdded]:
    """A CoNLL/BIO text (``token<TAB>tag`` lines, a blank line between sentences)."""
    return Call(
        "POST",
        f"/v1/domains/{_segment(domain)}/examples",
        _model(ExamplesAdded),
        content=conll,
        headers={"Content-Type": "text/plain; charset=utf-8"},
    )


def list_examples(domain: str, offset: int = 0, limit: int = 50) -> Call[ExamplePage]:
    return Call(
        "GET",
        f"/v1/domains/{_segment(domain)}/examples",
        _model(ExamplePage),
        params={"offset": offset, "limit": limit},
        idempotent=True,
    )


def delete_example(domain: str, example_id: str) -> Call[Deleted]:
    path = f"/v1/domains/{_segment(domain)}/examples/{_segment(example_id)}"
    return Call("DELETE", path, _model(Deleted), idempotent=True)


# --- /v1/feedback --------------------------------------------------------------------------


def feedback(
    request_id: str,
    outcome: Outcome,
    entities: Iterable[Span | Mapping[str, Any]] | None = None,
) -> Call[FeedbackAnswer]:
    spans = None if entities is None else [Span.model_validate(e) for e in entities]
    body = Feedback(request_id=request_id, outcome=outcome, entities=spans)
    return Call("POST", "/v1/feedback", _model(FeedbackAnswer), json=_dump(body))


def escalations(domain: str, offset: int = 0, limit: int = 20) -> Call[EscalationPage]:
    return Call(
        "GET",
        "/v1/feedback/escalations",
        _model(EscalationPage),
        params={"domain": domain, "offset": offset, "limit": limit},
        idempotent=True,
    )


def escalation_rate(domain: str, hours: int = 24) -> Call[EscalationRate]:
    return Call(
        "GET",
        "/v1/feedback/escalation-rate",
        _model(EscalationRate),
        params={"domain": domain, "hours": hours},
        idempotent=True,
    )
