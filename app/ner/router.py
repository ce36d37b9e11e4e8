"""Routes of /v1/ner and /v1/methods: thin; the logic is in :mod:`app.ner.pipeline`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Request

from app.deps import FeedbackDep, LimiterDep, NERDep, RequestIdDep, TenantDep
from app.logging import request_id_var
from app.ner.protocol import BatchResponse, MethodOut, MethodsResponse, NERRequest, NERResponse
from nerve.errors import InvalidRequest

router = APIRouter(prefix="/v1", tags=["ner"])


@router.post("/ner", response_model=NERResponse)
async def extract(
    body: NERRequest,
    request: Request,
    ner: NERDep,
    feedback: FeedbackDep,
    limiter: LimiterDep,
    tenant: TenantDep,
    request_id: RequestIdDep,
) -> NERResponse:
    # Labelled only with a method the registry serves: clients must not mint series.
    request.state.method = ner.methods.resolve(body.method).name
    async with limiter.slot():
        response = await ner.extract(tenant, body, request_id)
    # Labelled only once the domain is known to exist: any client could mint series otherwise.
    request.state.domain = body.domain
    await feedback.remember(tenant, body.text, response)
    return response


@router.post("/ner/batch", response_model=BatchResponse)
async def extract_batch(
    request: Request,
    ner: NERDep,
    feedback: FeedbackDep,
    limiter: LimiterDep,
    tenant: TenantDep,
    request_id: RequestIdDep,
    items: Annotated[list[NERRequest], Body(description="Requests, answered in order.")],
) -> BatchResponse:
    limit = ner.settings.max_batch_items
    if not items:
        raise InvalidRequest("the batch is empty")
    if len(items) > limit:
        raise InvalidRequest(f"a batch holds at most {limit} items; got {len(items)}")
    # Check every item (fields, domain, types) before running any: a bad item costs no generation.
    for index, item in enumerate(items):
        await ner.prepare(tenant, item, where=f"[{index}].")
    # The items run one after another: one generation in flight, one slot.
    results = []
    async with limiter.slot(weight=1):
        for index, item in enumerate(items):
            item_id = f"{request_id}-{index}"
            token = request_id_var.set(item_id)  # the item's log lines carry its own id
            try:
                results.append(await ner.extract(tenant, item, item_id))
            finally:
                request_id_var.reset(token)
    for item, result in zip(items, results, strict=True):
        await feedback.remember(tenant, item.text, result)
    return BatchResponse(request_id=request_id, results=results)


@router.get("/methods", response_model=MethodsResponse)
async def methods(ner: NERDep, _: TenantDep) -> MethodsResponse:
    """The methods this deployment serves (the values ``method`` accepts), and its default."""
    return MethodsResponse(
        default=ner.methods.default,
        methods=[MethodOut(name=h.name, model=h.model, summary=h.summary) for h in ner.methods],
    )
