"""Routes of /v1/ner/jobs: a long text answered in the background; thin, the logic is in
:mod:`app.jobs.runner`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from app.deps import JobsDep, RequestIdDep, TenantDep
from app.jobs.store import JobError, JobRecord, JobStatus
from app.ner.protocol import NERRequest, NERResponse

router = APIRouter(prefix="/v1/ner/jobs", tags=["ner"])


class JobProgress(BaseModel):
    done: int = Field(description="Segments of the text answered.")
    total: int = Field(description="Segments of the text.")


class JobOut(BaseModel):
    job_id: str
    status: JobStatus
    status_url: str
    domain: str
    method: str | None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    progress: JobProgress
    result: NERResponse | None = Field(None, description="The /v1/ner answer, once done.")
    error: JobError | None = Field(None, description="Why it failed (or stopped).")


def job_out(record: JobRecord) -> JobOut:
    return JobOut(
        job_id=record.job_id,
        status=record.status,
        status_url=f"{router.prefix}/{record.job_id}",
        domain=record.request.domain,
        method=record.request.method,
        created_at=record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        progress=JobProgress(done=record.done, total=record.total),
        result=record.result,
        error=record.error,
    )


@router.post("", status_code=202, response_model=JobOut)
async def submit(
    body: NERRequest, request: Request, jobs: JobsDep, tenant: TenantDep, request_id: RequestIdDep
) -> JobOut:
    """Validate as /v1/ner does (422/404 at once), then answer 202 with the job to poll."""
    request.state.method = jobs.pipeline.methods.resolve(body.method).name
    record = await jobs.submit(tenant, body, request_id)
    request.state.domain = body.domain
    return job_out(record)


@router.get("/{job_id}", response_model=JobOut)
async def status(job_id: str, jobs: JobsDep, tenant: TenantDep) -> JobOut:
    """Status, progress and, when done, the answer; 404 for an unknown or another tenant's."""
    return job_out(await jobs.get(tenant, job_id))


@router.delete("/{job_id}", response_model=JobOut)
async def cancel(job_id: str, jobs: JobsDep, tenant: TenantDep) -> JobOut:
    """Cancel: a running job stops at its next batch of segments."""
    return job_out(await jobs.cancel(tenant, job_id))
