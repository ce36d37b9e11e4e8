"""Routes of /v1/domains/{name}/adaptation: start a run, roll back; thin, the logic is in
:mod:`app.adaptation.service` (the state itself is in ``GET /v1/domains/{name}``)."""

from __future__ import annotations

from fastapi import APIRouter, status

from app.adaptation.protocol import AdaptationOut, RollbackIn
from app.deps import AdaptationDep, TenantDep

router = APIRouter(prefix="/v1/domains", tags=["domains"])


@router.get("/{name}/adaptation", response_model=AdaptationOut)
async def adaptation(name: str, service: AdaptationDep, tenant: TenantDep) -> AdaptationOut:
    """The domain's adaptation: versions, their held-out scores, what serves, the last run."""
    return await service.get(tenant, name)


@router.post(
    "/{name}/adaptation", response_model=AdaptationOut, status_code=status.HTTP_202_ACCEPTED
)
async def start(name: str, service: AdaptationDep, tenant: TenantDep) -> AdaptationOut:
    """Start a run now (poll ``GET /v1/domains/{name}``): 409 while one is queued or running,
    422 when the pool has fewer than ``NERVE_ADAPT_MIN_EXAMPLES`` examples."""
    return await service.start(tenant, name)


@router.post("/{name}/adaptation/rollback", response_model=AdaptationOut)
async def rollback(
    name: str, service: AdaptationDep, tenant: TenantDep, body: RollbackIn | None = None
) -> AdaptationOut:
    """Serve another version: ``{"to": 2}`` an earlier version, ``{"to": null}`` the few-shot
    path, no body (or ``{}``) the version that served before the current one."""
    previous = body is None or "to" not in body.model_fields_set
    return await service.rollback(
        tenant, name, None if body is None else body.to, previous=previous
    )
