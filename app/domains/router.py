"""Routes of /v1/domains and their examples: thin; the logic is in the service."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from pydantic import ValidationError

from app.adaptation.service import AdaptationService
from app.deps import AdaptationDep, DomainsDep, TenantDep
from app.domains.protocol import (
    Deleted,
    DomainIn,
    DomainList,
    DomainOut,
    EntityTypeIn,
    ExampleOut,
    ExamplePage,
    ExamplesAdded,
    ExamplesIn,
    SpanOut,
)
from app.domains.service import DomainService
from app.interchange.formats import UPLOAD_CONTENT, UploadFormat, upload_format
from app.interchange.router import add_uploaded
from nerve.errors import InvalidRequest, MalformedBody, PayloadTooLarge, describe_validation
from nerve.vocab.types import Domain, Example

router = APIRouter(prefix="/v1/domains", tags=["domains"])

_MAX_BODY_BYTES = 20 * 1024 * 1024


async def _out(
    service: DomainService, adaptation: AdaptationService, tenant: str, domain: Domain
) -> DomainOut:
    examples = await service.count_examples(tenant, domain.name)
    return DomainOut(
        name=domain.name,
        description=domain.description,
        entity_types=[
            EntityTypeIn(name=t.name, description=t.description) for t in domain.entity_types
        ],
        required_types=domain.required_types,
        score_threshold=service.threshold(domain),
        version=domain.version,
        examples=examples,
        adaptation=await adaptation.describe(domain, examples),
    )


def _example_out(example: Example) -> ExampleOut:
    return ExampleOut(
        id=example.id or "",
        text=example.text,
        entities=[
            SpanOut(start=s.start, end=s.end, type=s.type, text=example.text[s.start : s.end])
            for s in example.entities
        ],
    )


@router.post("", response_model=DomainOut, status_code=status.HTTP_201_CREATED)
async def create_domain(
    body: DomainIn, service: DomainsDep, adaptation: AdaptationDep, tenant: TenantDep
) -> DomainOut:
    return await _out(service, adaptation, tenant, await service.create(tenant, body))


@router.get("", response_model=DomainList)
async def list_domains(
    service: DomainsDep, adaptation: AdaptationDep, tenant: TenantDep
) -> DomainList:
    domains = await service.list(tenant)
    return DomainList(domains=[await _out(service, adaptation, tenant, d) for d in domains])


@router.get("/{name}", response_model=DomainOut)
async def get_domain(
    name: str, service: DomainsDep, adaptation: AdaptationDep, tenant: TenantDep
) -> DomainOut:
    return await _out(service, adaptation, tenant, await service.get(tenant, name))


@router.delete("/{name}", response_model=Deleted)
async def delete_domain(name: str, service: DomainsDep, tenant: TenantDep) -> Deleted:
    removed = await service.delete(tenant, name)
    return Deleted(deleted=name, examples_deleted=removed)


@router.post(
    "/{name}/examples",
    response_model=ExamplesAdded,
    status_code=status.HTTP_201_CREATED,
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": ExamplesIn.model_json_schema()},
                "text/plain": {
                    "schema": {"type": "string", "description": "CoNLL: token<TAB>tag lines"}
                },
                **UPLOAD_CONTENT,
            },
            "required": True,
        }
    },
)
async def add_examples(
    name: str,
    request: Request,
    service: DomainsDep,
    tenant: TenantDep,
    format: Annotated[
        UploadFormat | None,
        Query(
            description="json, conll, labelstudio (a Label Studio JSON export), spacy (DocBin "
            "bytes) or spacy-jsonl; default: from the content type (a JSON list is a Label Studio "
            "export, application/octet-stream a DocBin, application/x-ndjson spaCy JSONL).",
        ),
    ] = None,
) -> ExamplesAdded:
    """Add labelled examples: JSON ``{examples: [{text, entities}]}``, a CoNLL/BIO text body, a
    Label Studio JSON export, a spaCy DocBin or spaCy JSONL; all or nothing."""
    raw = await request.body()
    if len(raw) > _MAX_BODY_BYTES:
        raise PayloadTooLarge(f"body has {len(raw)} bytes; the limit is {_MAX_BODY_BYTES}")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    other = upload_format(content_type, format, raw)
    if other is not None:
        return await add_uploaded(service, tenant, name, raw, other)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBody(f"body is not UTF-8: {exc.reason} at byte {exc.start}") from exc
    if format is not None:
        content_type = "text/plain" if format == "conll" else "application/json"
    if content_type in ("application/json", "") and text.lstrip().startswith(("{", "[")):
        examples = service.from_json(_parse_examples_json(text).examples)
    elif content_type in ("text/plain", "text/x-conll", "text/tab-separated-values", ""):
        examples = service.parse_conll(text)
    else:
        raise MalformedBody(
            f"unsupported content-type {content_type!r}; use application/json or text/plain "
            "(CoNLL), or name the format (?format=labelstudio, spacy or spacy-jsonl)"
        )
    domain, ids = await service.add_examples(tenant, name, examples)
    return ExamplesAdded(domain=name, added=len(ids), ids=ids, version=domain.version)


def _parse_examples_json(text: str) -> ExamplesIn:
    try:
        return ExamplesIn.model_validate_json(text)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise MalformedBody(f"body is not valid JSON: {exc.errors()[0]['msg']}") from exc
        raise InvalidRequest(describe_validation(exc.errors())) from exc
    except json.JSONDecodeError as exc:
        raise MalformedBody(f"body is not valid JSON: {exc.msg}") from exc


@router.get("/{name}/examples", response_model=ExamplePage)
async def list_examples(
    name: str,
    service: DomainsDep,
    tenant: TenantDep,
    offset: int = Query(0, ge=0, description="Examples to skip."),
    limit: int = Query(50, ge=1, le=500, description="Examples per page."),
) -> ExamplePage:
    examples, total = await service.list_examples(tenant, name, offset, limit)
    return ExamplePage(
        domain=name,
        total=total,
        offset=offset,
        limit=limit,
        examples=[_example_out(e) for e in examples],
    )


@router.delete("/{name}/examples/{example_id}", response_model=Deleted)
async def delete_example(
    name: str, example_id: str, service: DomainsDep, tenant: TenantDep
) -> Deleted:
    await service.delete_example(tenant, name, example_id)
    return Deleted(deleted=example_id, examples_deleted=1)
