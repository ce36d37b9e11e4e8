"""The demo domain shipped with nerve: customer-care tickets, hand-labelled for this project.

``examples`` seed the retrieval pool; ``test_examples`` are held out for a demo evaluation.
"""

from __future__ import annotations

import json
from importlib import resources

from pydantic import BaseModel, Field, model_validator

from nerve.vocab.types import Domain, EntityType, Example

DEMO_RESOURCE = "customer_care.json"


class DemoDomain(BaseModel):
    name: str
    description: str = ""
    entity_types: list[EntityType] = Field(min_length=1)
    required_types: list[str] = Field(default_factory=list)
    examples: list[Example]
    test_examples: list[Example] = Field(default_factory=list)

    @model_validator(mode="after")
    def _spans_fit(self) -> DemoDomain:
        # The file is data, not code: check what the rest of nerve will assume about it.
        declared = {t.name for t in self.entity_types}
        unknown = set(self.required_types) - declared
        if unknown:
            raise ValueError(f"required_types {sorted(unknown)} are not declared entity types")
        for split, examples in (("examples", self.examples), ("test_examples", self.test_examples)):
            for index, example in enumerate(examples):
                for span in example.entities:
                    if span.end > len(example.text) or span.start >= span.end:
                        raise ValueError(f"{split}[{index}]: span {span} is outside its text")
                    if span.type not in declared:
                        raise ValueError(f"{split}[{index}]: type {span.type!r} is not declared")
        return self

    def to_domain(self, tenant: str = "default") -> Domain:
        return Domain(
            tenant=tenant,
            name=self.name,
            entity_types=list(self.entity_types),
            required_types=list(self.required_types),
            description=self.description,
        )


def load_demo_domain() -> DemoDomain:
    """Read the packaged demo domain; example ids are ``<name>-train-<i>`` / ``<name>-test-<i>``."""
    raw = resources.files(__name__).joinpath(DEMO_RESOURCE).read_text(encoding="utf-8")
    demo = DemoDomain.model_validate(json.loads(raw))
    for split, examples in (("train", demo.examples), ("test", demo.test_examples)):
        for index, example in enumerate(examples):
            example.id = f"{demo.name}-{split}-{index}"
    return demo
