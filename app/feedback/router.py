"""Route of /v1/feedback: thin; the logic is in :mod:`app.feedback.service`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from app.deps import TenantDep
from app.feedback.protocol import FeedbackIn, FeedbackOut
from app.feedback.service import FeedbackService

router = APIRouter(prefix="/v1", tags=["feedback"])


def get_feedback(request: Request) -> FeedbackService:
    return request.app.state.feedback  # type: ignore[no-any-return]


FeedbackDep = Annotated[FeedbackService, Depends(get_feedback)]


@router.post("/feedback", response_model=FeedbackOut)
async def feedback(
    body: FeedbackIn, request: Request, service: FeedbackDep, tenant: TenantDep
) -> FeedbackOut:
    """Record the real outcome of a /v1/ner answer; corrected entities become an example."""
    out = await service.report(tenant, body)
    request.state.domain = out.domain
    return out
