"""Route of /v1/feedback: thin; the logic is in :mod:`app.feedback.service`."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from app.deps import FeedbackDep, TenantDep
from app.feedback.protocol import EscalationPage, EscalationRate, FeedbackIn, FeedbackOut

router = APIRouter(prefix="/v1", tags=["feedback"])


@router.post("/feedback", response_model=FeedbackOut)
async def feedback(
    body: FeedbackIn, request: Request, service: FeedbackDep, tenant: TenantDep
) -> FeedbackOut:
    """Record the real outcome of a /v1/ner answer; corrected entities become an example."""
    out = await service.report(tenant, body)
    request.state.domain = out.domain
    return out


@router.get("/feedback/escalations", response_model=EscalationPage)
async def escalations(
    request: Request,
    service: FeedbackDep,
    tenant: TenantDep,
    domain: str = Query(description="The domain whose review queue to list."),
    offset: int = Query(0, ge=0, description="Escalations to skip."),
    limit: int = Query(20, ge=1, le=200, description="Escalations per page."),
) -> EscalationPage:
    """The review queue: the domain's escalated answers with no feedback yet, newest first."""
    page = await service.escalations(tenant, domain, offset, limit)
    request.state.domain = domain  # after the service found it: no label for unknown names
    return page


@router.get("/feedback/escalation-rate", response_model=EscalationRate)
async def escalation_rate(
    request: Request,
    service: FeedbackDep,
    tenant: TenantDep,
    domain: str = Query(description="The domain."),
    hours: int = Query(24, ge=1, le=168, description="Hours to cover, the current one last."),
) -> EscalationRate:
    """Answers and escalations of the domain per hour, from the service's request records."""
    rate = await service.escalation_rate(tenant, domain, hours)
    request.state.domain = domain
    return rate
