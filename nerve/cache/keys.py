"""Cache keys. Everything an answer depends on is in its key, so nothing stale can hit.

An answer key carries the tenant, the domain and its version (bumped by every change of the
pool: a new example makes older answers unreachable), the method, the model, the prompt version
and a digest of the request. Embedding keys carry the tenant too: a shared entry would let one
tenant learn, by timing, what another had sent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from urllib.parse import quote

from pydantic import BaseModel

PREFIX = "nerve"
# Bump when the layout of a key or of a cached value changes, so old entries are ignored.
SCHEMA = "v1"


def _part(value: str) -> str:
    """A key component with ``:`` and other separators escaped, so components never collide."""
    return quote(value, safe="")


def _json_default(value: object) -> object:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"cannot put {type(value).__name__} in a cache key")


def digest(payload: Mapping[str, object] | str | bytes) -> str:
    """sha256 of the canonical JSON of ``payload`` (key order does not matter), or of raw text."""
    if isinstance(payload, bytes):
        data = payload
    elif isinstance(payload, str):
        data = payload.encode("utf-8")
    else:
        data = json.dumps(
            payload,
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            default=_json_default,
        ).encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def answer_key(
    *,
    tenant: str,
    domain: str,
    domain_version: int,
    method: str,
    model: str,
    prompt_version: str,
    request: Mapping[str, object],
) -> str:
    """Key of a cached /v1/ner answer; ``request`` holds every other input (text, types, top_k)."""
    parts = [tenant, domain, str(domain_version), method, model, prompt_version]
    return ":".join([PREFIX, "answer", SCHEMA, *map(_part, parts), digest(request)])


def embedding_key(*, tenant: str, model: str, mode: str, text: str) -> str:
    """Key of the cached embeddings of one query text under one embedder model and mode."""
    return ":".join([PREFIX, "embedding", SCHEMA, *map(_part, (tenant, model, mode)), digest(text)])


def request_record_key(*, tenant: str, request_id: str) -> str:
    """Key of what /v1/feedback needs of a past request; another tenant's id is simply absent."""
    return ":".join([PREFIX, "request", SCHEMA, _part(tenant), _part(request_id)])


def report_claim_key(*, tenant: str, request_id: str) -> str:
    """Held by the one /v1/feedback call that is recording the outcome of a request."""
    return ":".join([PREFIX, "report", SCHEMA, _part(tenant), _part(request_id)])


def escalation_queue_key(*, tenant: str, domain: str) -> str:
    """Sorted index (by time) of a domain's escalated answers no feedback was recorded on."""
    return ":".join([PREFIX, "queue", SCHEMA, _part(tenant), _part(domain)])


def answer_counts_key(*, tenant: str, domain: str, hour: int) -> str:
    """Counters of a domain's answers (``answers``, ``escalated``) in one hour (epoch hours)."""
    return ":".join([PREFIX, "counts", SCHEMA, _part(tenant), _part(domain), str(hour)])


def job_key(*, tenant: str, job_id: str) -> str:
    """Key of a /v1/ner/jobs record; another tenant's job is simply absent."""
    return ":".join([PREFIX, "job", SCHEMA, _part(tenant), _part(job_id)])


def unfinished_jobs_key() -> str:
    """Sorted set of every replica's unfinished jobs (their record keys) by lease end."""
    return ":".join([PREFIX, "jobs-unfinished", SCHEMA])


def adaptation_lock_key(*, tenant: str, domain: str) -> str:
    """Held (SET NX PX, with its holder's token) by the one replica running a domain's
    adaptation; the holder renews it while the run goes."""
    return ":".join([PREFIX, "adapt-run", SCHEMA, _part(tenant), _part(domain)])
