"""The domain objects every part of nerve speaks: entity types, character spans, examples."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EntityType(BaseModel):
    """An entity type a domain (or a request) asks for."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str = ""


class Span(BaseModel):
    """A typed entity given by character offsets into a text: ``text[start:end]``."""

    model_config = ConfigDict(frozen=True)

    start: int = Field(ge=0)
    end: int = Field(gt=0)
    type: str

    def surface(self, text: str) -> str:
        return text[self.start : self.end]


class Example(BaseModel):
    """A labelled sentence: the unit of the retrieval pool and of training data."""

    text: str
    entities: list[Span] = Field(default_factory=list)
    id: str | None = None

    def mentions(self) -> list[tuple[str, str]]:
        """(surface, type) pairs in textual order."""
        return [(s.surface(self.text), s.type) for s in sorted(self.entities, key=_span_key)]

    def lowercased(self) -> Example | None:
        """The same sentence lowercased, its spans unchanged (text as people type it into a
        chat or a search box); None where lowercasing changes the text's length ("İ" becomes
        two characters), so the spans' offsets would no longer fit."""
        text = self.text.lower()
        return self.model_copy(update={"text": text}) if len(text) == len(self.text) else None


class Entity(BaseModel):
    """A predicted entity, grounded to the query text, with the model's confidence."""

    text: str
    type: str
    start: int
    end: int
    score: float = Field(ge=0.0, le=1.0)


def _span_key(span: Span) -> tuple[int, int]:
    return (span.start, span.end)


class Domain(BaseModel):
    """A registered domain: its entity types and escalation settings, scoped to a tenant."""

    tenant: str = "default"
    name: str
    entity_types: list[EntityType]
    required_types: list[str] = Field(default_factory=list)
    score_threshold: float | None = None
    description: str = ""
    # Bumped on every change of the pool, so cached answers keyed on it go stale.
    version: int = 1
    created_at: float = 0.0
    updated_at: float = 0.0
