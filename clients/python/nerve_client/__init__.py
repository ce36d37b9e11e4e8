"""Python client of the nerve NER service: ``NerveClient`` (sync) and ``AsyncNerveClient``.

The spaCy component lives in :mod:`nerve_client.spacy` (install the ``spacy`` extra).
"""

from nerve_client.async_client import AsyncNerveClient
from nerve_client.client import DEFAULT_URL, NerveClient
from nerve_client.errors import (
    BackendUnavailable,
    Conflict,
    InvalidRequest,
    JobFailed,
    NerveError,
    NotFound,
    RateLimited,
    ServerError,
    ServerUnreachable,
    Unauthorized,
)
from nerve_client.models import (
    Adaptation,
    BatchResponse,
    Domain,
    Entity,
    EntityType,
    Example,
    Job,
    NERRequest,
    NERResponse,
    Span,
)
from nerve_client.retry import RetryEvent, RetryPolicy

__all__ = [
    "DEFAULT_URL",
    "Adaptation",
    "AsyncNerveClient",
    "BackendUnavailable",
    "BatchResponse",
    "Conflict",
    "Domain",
    "Entity",
    "EntityType",
    "Example",
    "InvalidRequest",
    "Job",
    "JobFailed",
    "NERRequest",
    "NERResponse",
    "NerveClient",
    "NerveError",
    "NotFound",
    "RateLimited",
    "RetryEvent",
    "RetryPolicy",
    "ServerError",
    "ServerUnreachable",
    "Span",
    "Unauthorized",
]
