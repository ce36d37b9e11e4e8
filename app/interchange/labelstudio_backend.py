"""Label Studio's ML backend protocol for one nerve domain: ``/labelstudio/{domain}/...``.

A Label Studio project connects to ``http://nerve:8000/labelstudio/<domain>`` (Settings > Model;
with nerve's auth on, "Basic Authentication" with the API key as the password). Label Studio
then calls:

- ``GET /health``: up, and the domain exists for the key's tenant;
- ``POST /setup`` ``{project, schema, ...}``: the labeling config must hold a ``<Labels>`` over a
  ``<Text>`` whose labels are all the domain's entity types; answers ``{model_version}``;
- ``POST /predict`` ``{tasks, label_config, ...}``: nerve's entities of each task's text as
  ``labels`` results (offsets in code points, as Label Studio counts them), each carrying the
  digest of the text it was computed on (``meta.nerve_text_sha``);
- ``POST /webhook`` (the webhook Label Studio creates for the backend, every action):
  ``ANNOTATION_CREATED``/``ANNOTATION_UPDATED`` add the annotated task to the domain's pool as
  the example ``ls-<project>-<task>`` (an update replaces it). A result predicted on another
  text than the task's (its text changed since) is refused with 409, and one whose
  ``value.text`` is not ``text[start:end]`` with 422: never stored at a wrong offset. Other
  actions are acknowledged and ignored.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Body

from app.deps import DomainsDep, LimiterDep, NERDep, RequestIdDep, TenantDep
from app.domains.service import DomainService
from app.logging import request_id_var
from app.ner.protocol import NERRequest
from nerve.data.formats import FormatError
from nerve.data.formats.labelstudio import (
    LabelConfig,
    parse_label_config,
    results_for,
    spans_from_results,
    task_text,
    text_sha,
)
from nerve.errors import Conflict, InvalidRequest, MalformedBody, NotFound
from nerve.vocab.types import Domain, Example, Span

log = logging.getLogger(__name__)

router = APIRouter(prefix="/labelstudio/{domain}", tags=["label studio"])

SOURCE = "labelstudio"
SHA_KEY = "nerve_text_sha"
ANNOTATION_ACTIONS = frozenset({"ANNOTATION_CREATED", "ANNOTATION_UPDATED"})

JSONBody = Body(default_factory=dict)


def model_version(domain: str) -> str:
    return f"nerve-{domain}"


def _config(xml: Any, domain: Domain) -> tuple[LabelConfig, dict[str, str]]:
    """The labeling config and its labels' domain types ({label: type}); 422 naming a label that
    is not a type of the domain (matched exactly, else case-insensitively)."""
    if not isinstance(xml, str) or not xml.strip():
        raise InvalidRequest("the request holds no labeling config")
    try:
        config = parse_label_config(xml)
    except FormatError as exc:
        raise InvalidRequest(str(exc)) from exc
    if not config.labels:
        raise InvalidRequest(f"labeling config: <Labels name={config.from_name!r}> has no <Label>")
    types = {t.name: t.name for t in domain.entity_types}
    folded = {name.lower(): name for name in types}
    mapping: dict[str, str] = {}
    unknown = []
    for label in config.labels:
        name = types.get(label) or folded.get(label.lower())
        if name is None:
            unknown.append(label)
        else:
            mapping[label] = name
    if unknown:
        raise InvalidRequest(
            f"labeling config: labels {unknown} of <Labels name={config.from_name!r}> are not "
            f"entity types of domain {domain.name!r} ({sorted(types)})"
        )
    return config, mapping


@router.get("/health")
async def health(domain: str, service: DomainsDep, tenant: TenantDep) -> dict[str, Any]:
    found = await service.get(tenant, domain)
    return {"status": "UP", "model_class": "nerve", "domain": found.name}


@router.post("/setup")
async def setup(
    domain: str, service: DomainsDep, tenant: TenantDep, body: dict[str, Any] = JSONBody
) -> dict[str, Any]:
    _config(body.get("schema"), await service.get(tenant, domain))
    return {"model_version": model_version(domain)}


@router.post("/predict")
async def predict(
    domain: str,
    service: DomainsDep,
    ner: NERDep,
    limiter: LimiterDep,
    tenant: TenantDep,
    request_id: RequestIdDep,
    body: dict[str, Any] = JSONBody,
) -> dict[str, Any]:
    found = await service.get(tenant, domain)
    config, mapping = _config(body.get("label_config"), found)
    tasks = body.get("tasks")
    if not isinstance(tasks, list):
        raise InvalidRequest("tasks: expected a list of tasks")
    label_of = {name: label for label, name in mapping.items()}
    texts = []
    for index, task in enumerate(tasks):
        try:
            texts.append(task_text(task, f"tasks[{index}]", config.text_key))
        except FormatError as exc:
            raise InvalidRequest(str(exc)) from exc
    predictions = []
    for index, text in enumerate(texts):
        entities = []
        if text.strip():
            item_id = f"{request_id}-{index}"
            token = request_id_var.set(item_id)
            try:
                request = NERRequest(text=text, domain=domain, entity_types=list(label_of))
                async with limiter.slot():
                    entities = (await ner.extract(tenant, request, item_id)).entities
            finally:
                request_id_var.reset(token)
        spans = [Span(start=e.start, end=e.end, type=label_of[e.type]) for e in entities]
        scores = [e.score for e in entities]
        predictions.append(
            {
                "result": results_for(
                    text, spans, config, scores=scores, meta={SHA_KEY: text_sha(text)}
                ),
                "score": round(min(scores), 4) if scores else 1.0,
                "model_version": model_version(domain),
            }
        )
    return {"results": predictions}


@router.post("/webhook")
async def webhook(
    domain: str, service: DomainsDep, tenant: TenantDep, body: dict[str, Any] = JSONBody
) -> dict[str, Any]:
    action = body.get("action")
    if action not in ANNOTATION_ACTIONS:
        return {"status": "ignored", "action": action}
    found = await service.get(tenant, domain)
    project, task, annotation = body.get("project"), body.get("task"), body.get("annotation")
    if (
        not isinstance(project, dict)
        or not isinstance(task, dict)
        or not isinstance(annotation, dict)
    ):
        raise MalformedBody(f"{action}: expected 'project', 'task' and 'annotation' objects")
    ids = (project.get("id"), task.get("id"))
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise MalformedBody(f"{action}: project.id and task.id must be integers; got {ids}")
    config, mapping = _config(project.get("label_config"), found)
    example_id = f"ls-{ids[0]}-{ids[1]}"
    where = f"task {task.get('id')} (project {project.get('id')})"
    if annotation.get("was_cancelled"):
        return {"status": "ignored", "action": action, "reason": "annotation cancelled"}
    try:
        text = task_text(task, where, config.text_key)
    except FormatError as exc:
        raise InvalidRequest(str(exc)) from exc
    results = annotation.get("result") or []
    _check_unchanged(text, results, where)
    try:
        spans = spans_from_results(text, results, f"{where}, annotation {annotation.get('id')}")
    except FormatError as exc:
        raise InvalidRequest(str(exc)) from exc
    example = Example(
        id=example_id,
        text=text,
        entities=[_typed(span, mapping, where) for span in spans],
    )
    # The domain's checks (overlaps, lengths) before the earlier example is deleted.
    service.validate_example(0, example, set(mapping.values()))
    replaced = await _replace(service, tenant, domain, example)
    return {
        "status": "added",
        "action": action,
        "example_id": example_id,
        "replaced": replaced,
        "entities": len(example.entities),
    }


def _check_unchanged(text: str, results: Any, where: str) -> None:
    """409 when a result was predicted by nerve on another text than the task's."""
    if not isinstance(results, list):
        return
    digest = text_sha(text)
    for result in results:
        meta = result.get("meta") if isinstance(result, dict) else None
        seen = meta.get(SHA_KEY) if isinstance(meta, dict) else None
        if seen is not None and seen != digest:
            raise Conflict(
                f"{where}: its text changed since nerve predicted it (the prediction's text "
                f"digest {seen}, the task's {digest}); its offsets would point elsewhere: "
                "re-run the predictions and annotate again"
            )


def _typed(span: Span, mapping: dict[str, str], where: str) -> Span:
    name = mapping.get(span.type)
    if name is None:
        raise InvalidRequest(
            f"{where}: label {span.type!r} is not among the labeling config's ({sorted(mapping)})"
        )
    return span.model_copy(update={"type": name})


async def _replace(service: DomainService, tenant: str, domain: str, example: Example) -> bool:
    """Add the task's example, replacing an earlier one of the same task."""
    assert example.id is not None
    replaced = True
    try:
        await service.delete_example(tenant, domain, example.id)
    except NotFound:
        replaced = False
    await service.add_examples(tenant, domain, [example], source=SOURCE)
    return replaced
