"""Route of /v1/feedback: thin; the logic is in :mod:`app.feedback.service`."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.deps import FeedbackDep, TenantDep
from app.feedback.protocol import FeedbackIn, FeedbackOut

router = APIRouter(prefix="/v1", tags=["feedback"])


@router.post("/feedback", response_model=FeedbackOut)
async def feedback(
    body: FeedbackIn, request: Request, service: FeedbackDep, tenant: TenantDep
) -> FeedbackOut:
    """Record the real outcome of a /v1/ner answer; corrected entities become an example."""
    out = await service.report(tenant, body)
    request.state.domain = out.domain
    return out
