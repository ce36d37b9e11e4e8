"""``GET /v1/domains/{name}/export`` and the other formats of ``POST .../examples``."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from app.deps import DomainsDep, TenantDep
from app.domains.protocol import ExamplesAdded
from app.domains.service import DomainService
from app.feedback.service import is_reviewed
from app.interchange.formats import ExportFormat, UploadFormat, export, name_source, parse_upload
from nerve.errors import InvalidRequest

router = APIRouter(prefix="/v1/domains", tags=["domains"])


async def add_uploaded(
    service: DomainService, tenant: str, name: str, raw: bytes, fmt: UploadFormat
) -> ExamplesAdded:
    """Add the examples of a Label Studio, spaCy or CoNLL file: all of them or none."""
    await service.get(tenant, name)  # 404 before reading a large file
    examples, sources = parse_upload(raw, fmt)
    try:
        domain, ids = await service.add_examples(tenant, name, examples, source=fmt)
    except InvalidRequest as exc:
        raise name_source(exc, sources) from exc
    return ExamplesAdded(domain=name, added=len(ids), ids=ids, version=domain.version)


@router.get(
    "/{name}/export",
    response_class=Response,
    responses={
        200: {
            "description": "The domain's examples as a file.",
            "content": {
                "application/json": {},
                "application/octet-stream": {},
                "application/x-ndjson": {},
                "text/plain": {},
            },
        }
    },
)
async def export_examples(
    name: str,
    service: DomainsDep,
    tenant: TenantDep,
    format: Annotated[
        ExportFormat,
        Query(
            description="labelstudio (tasks with one annotation each, for Label Studio's import), "
            "spacy (DocBin bytes, a .spacy file), spacy-jsonl ({text, spans} lines) or conll.",
        ),
    ] = "labelstudio",
    subset: Annotated[
        Literal["all", "reviewed"],
        Query(
            description="all: the whole pool, reviewed answers included; reviewed: only the "
            "answers reviewers corrected (POST /v1/feedback with entities, the console)."
        ),
    ] = "all",
) -> Response:
    """The domain's pool, or only its reviewed answers (feedback corrections), as a file."""
    examples = await service.all_examples(tenant, name)
    if subset == "reviewed":
        examples = [e for e in examples if is_reviewed(e)]
    file = export(examples, format)
    return Response(
        content=file.body,
        media_type=file.media_type,
        headers={"Content-Disposition": f'attachment; filename="{name}.{file.suffix}"'},
    )
