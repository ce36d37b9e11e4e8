"""The client's models against a running server's /openapi.json: the same field names, the
same required fields and the same types for every request and answer model, and every model
a /v1 route takes or answers mirrored by the client. A change on either side fails here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import httpx
import pytest
from nerve_client import models
from pydantic import BaseModel

from tests.client_server import NerveServer

Schema = dict[str, Any]
Shape = tuple[Any, ...]

# Values the deployment decides: the server publishes the methods it serves as an enum of
# NERRequest.method; the client accepts any name (GET /v1/methods lists them).
DEPLOYMENT_ENUMS = {("NERRequest", "method")}
REQUESTS = {models.NERRequest, models.EntityType, models.DomainSpec, models.Span, models.Example,
            models.ExamplesUpload, models.Feedback, models.Rollback}  # fmt: skip


# Each module starts one server (~20-30 s here); the rest is quick.
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def server(demo_server: NerveServer) -> NerveServer:
    return demo_server


@pytest.fixture(scope="module")
def openapi(server: NerveServer) -> Schema:
    response = httpx.get(f"{server.url}/openapi.json", timeout=30)
    response.raise_for_status()
    document: Schema = response.json()
    return document


def server_schemas(openapi: Schema) -> dict[str, Schema]:
    """components.schemas, plus the models a route declares inline (the examples upload's
    body is JSON or CoNLL text, so its JSON schema sits in the route with its own $defs)."""
    schemas = dict(openapi["components"]["schemas"])
    for path in openapi["paths"].values():
        for operation in path.values():
            content = operation.get("requestBody", {}).get("content", {})
            body = content.get("application/json", {}).get("schema", {})
            if "title" in body and "properties" in body:
                schemas.setdefault(body["title"], body)
            schemas.update({k: v for k, v in body.get("$defs", {}).items() if k not in schemas})
    return schemas


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def shape(schema: Schema, rename: dict[str, str], drop_enum: bool = False) -> Shape:
    """The type of a property, comparable across the two sides (titles, descriptions,
    defaults and bounds left out: only what a caller's code depends on)."""
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        return ("ref", rename.get(name, name))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return ("union", frozenset(shape(s, rename, drop_enum) for s in schema[key]))
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return shape(schema["allOf"][0], rename, drop_enum)
    if "const" in schema:
        return ("enum", frozenset([schema["const"]]))
    if "enum" in schema and not drop_enum:
        return ("enum", frozenset(schema["enum"]))
    kind = schema.get("type")
    if kind == "array":
        return ("array", shape(schema.get("items", {}), rename, drop_enum))
    if kind == "object" and "additionalProperties" in schema:
        extra = schema["additionalProperties"]
        return ("map", shape(extra, rename, drop_enum) if isinstance(extra, dict) else extra)
    return ("type", kind or "any")


def client_schema(model: type[BaseModel]) -> Schema:
    mode: Literal["validation", "serialization"] = (
        "validation" if model in REQUESTS else "serialization"
    )
    schema: Schema = model.model_json_schema(mode=mode)
    return schema


def differences(model: type[BaseModel], server: Schema) -> list[str]:
    """What differs between a client model and the server's schema, in words."""
    name = models.SERVER_SCHEMAS[model]
    rename = {m.__name__: n for m, n in models.SERVER_SCHEMAS.items()}
    mine = client_schema(model)
    problems = []
    theirs_props, mine_props = server.get("properties", {}), mine.get("properties", {})
    for missing in sorted(set(theirs_props) - set(mine_props)):
        problems.append(f"{name}.{missing}: on the server, not in the client's {model.__name__}")
    for extra in sorted(set(mine_props) - set(theirs_props)):
        problems.append(f"{name}.{extra}: in the client's {model.__name__}, not on the server")
    if set(server.get("required", [])) != set(mine.get("required", [])):
        problems.append(
            f"{name}: required {sorted(server.get('required', []))} on the server, "
            f"{sorted(mine.get('required', []))} in the client"
        )
    for field in sorted(set(theirs_props) & set(mine_props)):
        drop = (name, field) in DEPLOYMENT_ENUMS
        theirs_shape = shape(theirs_props[field], {}, drop)
        mine_shape = shape(mine_props[field], rename, drop)
        if theirs_shape != mine_shape:
            problems.append(
                f"{name}.{field}: {theirs_shape} on the server, {mine_shape} in the client"
            )
    return problems


def referenced(schema: Any) -> Iterator[str]:
    """Names of every schema ``schema`` refers to, at any depth."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            yield _ref_name(schema["$ref"])
        for value in schema.values():
            yield from referenced(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from referenced(value)


@pytest.mark.integration
def test_client_models_match_the_server(openapi: Schema) -> None:
    schemas = server_schemas(openapi)
    problems = []
    for model, name in models.SERVER_SCHEMAS.items():
        if name not in schemas:
            problems.append(f"{name} (the client's {model.__name__}) is not in the server's schema")
            continue
        problems.extend(differences(model, schemas[name]))
    assert not problems, "the client's models drifted from the server:\n" + "\n".join(problems)


@pytest.mark.integration
def test_every_model_of_the_api_is_mirrored(openapi: Schema) -> None:
    """A new request or answer model on the server (or a new field's model) needs a client
    model too."""
    schemas = server_schemas(openapi)
    used: set[str] = set()
    pending = [
        name
        for path, operations in openapi["paths"].items()
        if path.startswith("/v1/")
        for operation in operations.values()
        for name in referenced(
            [operation.get("requestBody", {}), *[
                answer for status, answer in operation.get("responses", {}).items()
                if status.startswith("2")
            ]]
        )
    ]  # fmt: skip
    while pending:
        name = pending.pop()
        if name not in used:
            used.add(name)
            pending.extend(referenced(schemas.get(name, {})))
    mirrored = set(models.SERVER_SCHEMAS.values())
    assert used, "no /v1 models found: is this the nerve server's schema?"
    assert used <= mirrored, f"server models without a client model: {sorted(used - mirrored)}"


# --- the comparison itself can fail ---------------------------------------------------------


class DriftedEntity(BaseModel):
    text: str
    type: str
    start: int
    end: str  # the server says integer
    label: str  # the server has no such field


def test_the_comparison_reports_drift() -> None:
    server = {
        "properties": {
            "text": {"type": "string"},
            "type": {"type": "string"},
            "start": {"type": "integer"},
            "end": {"type": "integer"},
            "score": {"type": "number"},
        },
        "required": ["text", "type", "start", "end", "score"],
    }
    models.SERVER_SCHEMAS[DriftedEntity] = "EntityOut"
    try:
        problems = differences(DriftedEntity, server)
    finally:
        del models.SERVER_SCHEMAS[DriftedEntity]
    joined = "\n".join(problems)
    assert "EntityOut.score: on the server" in joined
    assert "EntityOut.label: in the client" in joined
    assert "EntityOut.end:" in joined and "required" in joined
    assert len(problems) == 4


def test_shapes_of_unions_arrays_and_enums() -> None:
    optional_list = {
        "anyOf": [{"type": "array", "items": {"$ref": "#/x/Entity"}}, {"type": "null"}]
    }
    assert shape(optional_list, {"Entity": "EntityOut"}) == (
        "union",
        frozenset({("array", ("ref", "EntityOut")), ("type", "null")}),
    )
    assert shape({"type": "string", "enum": ["a", "b"]}, {}) == ("enum", frozenset({"a", "b"}))
    assert shape({"type": "string", "enum": ["a"]}, {}, drop_enum=True) == ("type", "string")
