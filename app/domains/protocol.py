"""Wire models of the domain and example routes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.adaptation.protocol import AdaptationOut

DOMAIN_NAME_PATTERN = r"^[a-z0-9][a-z0-9_\-]{0,63}$"
# Example ids the store makes (uuid hex) or keeps (a reader's "domain-split-index").
EXAMPLE_ID_PATTERN = r"^[A-Za-z0-9_\-.:]{1,64}$"
TYPE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\- ]{0,63}$"


class EntityTypeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=TYPE_NAME_PATTERN, description="Entity type name.")
    description: str = Field("", max_length=500, description="What the type covers.")


class DomainIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=DOMAIN_NAME_PATTERN, description="Lower-case domain name.")
    description: str = Field("", max_length=1000)
    entity_types: list[EntityTypeIn] = Field(min_length=1)
    required_types: list[str] = Field(
        default_factory=list, description="Types whose absence from an answer escalates it."
    )
    score_threshold: float | None = Field(
        None, ge=0, le=1, description="Entities scoring under this escalate (default: service's)."
    )


class DomainOut(BaseModel):
    name: str
    description: str
    entity_types: list[EntityTypeIn]
    required_types: list[str]
    score_threshold: float
    version: int
    examples: int
    adaptation: AdaptationOut | None = Field(
        None, description="The domain's own model fitted on its pool: versions, what serves."
    )


class DomainList(BaseModel):
    domains: list[DomainOut]


class SpanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: int = Field(ge=0)
    end: int = Field(gt=0)
    type: str


class ExampleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    entities: list[SpanIn] = Field(default_factory=list)


class ExamplesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    examples: list[ExampleIn] = Field(min_length=1)


class SpanOut(BaseModel):
    start: int
    end: int
    type: str
    text: str


class ExampleOut(BaseModel):
    id: str
    text: str
    entities: list[SpanOut]


class ExamplesAdded(BaseModel):
    domain: str
    added: int
    ids: list[str]
    version: int


class ExamplePage(BaseModel):
    domain: str
    total: int
    offset: int
    limit: int
    examples: list[ExampleOut]


class Deleted(BaseModel):
    deleted: str
    examples_deleted: int = 0
