"""The asynchronous client: the same methods as :class:`NerveClient`, awaited."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx

from nerve_client import calls
from nerve_client.calls import EntityTypes
from nerve_client.jobs import JobWatch, ProgressCallback, job_result
from nerve_client.models import (
    Adaptation,
    BatchResponse,
    Deleted,
    Domain,
    EntityType,
    EscalationPage,
    EscalationRate,
    Example,
    ExamplePage,
    ExamplesAdded,
    FeedbackAnswer,
    Job,
    MethodsResponse,
    NERRequest,
    NERResponse,
    Outcome,
    Span,
)
from nerve_client.retry import RetryPolicy
from nerve_client.transport import auth_headers, send_async

T = TypeVar("T")

DEFAULT_URL = "http://localhost:8000"


class AsyncNerveClient:
    """``AsyncNerveClient("http://localhost:8000", api_key=...)``; ``async with`` it or
    ``await close()``. Errors are :class:`nerve_client.errors.NerveError` subclasses; 429, 503
    and connection failures are retried as ``retry`` says."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        tenant: str | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=auth_headers(api_key, tenant),
            timeout=timeout,
            transport=transport,
        )

    async def _send(self, call: calls.Call[T]) -> T:
        return await send_async(self._http, call, self.retry)

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncNerveClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # --- extraction -----------------------------------------------------------------------

    async def ner(
        self,
        text: str,
        domain: str,
        *,
        entity_types: EntityTypes = None,
        top_k: int | None = None,
        method: str | None = None,
        deadline_ms: int | None = None,
        request_id: str | None = None,
    ) -> NERResponse:
        """Entities of ``text`` with character offsets (``text[start:end]``)."""
        request = calls.ner_request(
            text,
            domain,
            entity_types=entity_types,
            top_k=top_k,
            method=method,
            deadline_ms=deadline_ms,
        )
        return await self._send(calls.ner(request, request_id))

    async def ner_batch(
        self, items: Iterable[NERRequest | Mapping[str, Any]], *, request_id: str | None = None
    ) -> BatchResponse:
        """Several requests in one call, answered in order (the server caps the count:
        ``NERVE_MAX_BATCH_ITEMS``, 32 by default)."""
        return await self._send(calls.ner_batch(items, request_id))

    async def methods(self) -> MethodsResponse:
        return await self._send(calls.methods())

    async def ready(self) -> bool:
        """True when the server and all its backends are ready (``/readyz``)."""
        return await self._send(calls.ready())

    # --- jobs -----------------------------------------------------------------------------

    async def submit_job(
        self,
        text: str,
        domain: str,
        *,
        entity_types: EntityTypes = None,
        top_k: int | None = None,
        method: str | None = None,
        deadline_ms: int | None = None,
        request_id: str | None = None,
    ) -> Job:
        request = calls.ner_request(
            text,
            domain,
            entity_types=entity_types,
            top_k=top_k,
            method=method,
            deadline_ms=deadline_ms,
        )
        return await self._send(calls.submit_job(request, request_id))

    async def get_job(self, job_id: str) -> Job:
        return await self._send(calls.get_job(job_id))

    async def cancel_job(self, job_id: str) -> Job:
        return await self._send(calls.cancel_job(job_id))

    async def wait_job(
        self,
        job_id: str,
        *,
        poll_interval: float = 1.0,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Job:
        """Poll until the job is done or cancelled (returned) or failed (``JobFailed``);
        ``on_progress(job)`` sees each change of status or progress."""
        watch = JobWatch(poll_interval, timeout, on_progress)
        while True:
            finished = watch.observe(await self.get_job(job_id))
            if finished is not None:
                return finished
            await asyncio.sleep(watch.poll_interval)

    async def ner_job(
        self,
        text: str,
        domain: str,
        *,
        entity_types: EntityTypes = None,
        top_k: int | None = None,
        method: str | None = None,
        deadline_ms: int | None = None,
        poll_interval: float = 1.0,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> NERResponse:
        """A long text as a job: submit, wait, return its answer."""
        job = await self.submit_job(
            text,
            domain,
            entity_types=entity_types,
            top_k=top_k,
            method=method,
            deadline_ms=deadline_ms,
        )
        done = await self.wait_job(
            job.job_id, poll_interval=poll_interval, timeout=timeout, on_progress=on_progress
        )
        return job_result(done)

    # --- domains and examples -------------------------------------------------------------

    async def create_domain(
        self,
        name: str,
        entity_types: Sequence[str | EntityType | Mapping[str, str]],
        *,
        description: str = "",
        required_types: Sequence[str] = (),
        score_threshold: float | None = None,
    ) -> Domain:
        spec = calls.domain_spec(
            name,
            entity_types,
            description=description,
            required_types=required_types,
            score_threshold=score_threshold,
        )
        return await self._send(calls.create_domain(spec))

    async def list_domains(self) -> list[Domain]:
        return await self._send(calls.list_domains())

    async def get_domain(self, name: str) -> Domain:
        return await self._send(calls.get_domain(name))

    async def delete_domain(self, name: str) -> Deleted:
        """Delete the domain and all its examples."""
        return await self._send(calls.delete_domain(name))

    async def adaptation(self, domain: str) -> Adaptation:
        """The domain's own model: versions, their held-out scores, what serves, the last run."""
        return await self._send(calls.get_adaptation(domain))

    async def start_adaptation(self, domain: str) -> Adaptation:
        """Start fitting the domain's model on its pool now (poll :meth:`adaptation`)."""
        return await self._send(calls.start_adaptation(domain))

    async def rollback_adaptation(
        self, domain: str, to: int | calls.Previous | None = calls.PREVIOUS
    ) -> Adaptation:
        """Serve version ``to``, the few-shot path (None), or the one before the current."""
        return await self._send(calls.rollback_adaptation(domain, to))

    async def add_examples(
        self, domain: str, examples: Iterable[Example | Mapping[str, Any]]
    ) -> ExamplesAdded:
        """Labelled examples ``{text, entities: [{start, end, type}]}``; all or nothing."""
        return await self._send(calls.add_examples(domain, examples))

    async def add_conll(self, domain: str, conll: str) -> ExamplesAdded:
        """A CoNLL/BIO text (``token<TAB>tag`` lines); all or nothing."""
        return await self._send(calls.add_conll(domain, conll))

    async def list_examples(self, domain: str, *, offset: int = 0, limit: int = 50) -> ExamplePage:
        return await self._send(calls.list_examples(domain, offset, limit))

    async def delete_example(self, domain: str, example_id: str) -> Deleted:
        return await self._send(calls.delete_example(domain, example_id))

    # --- feedback -------------------------------------------------------------------------

    async def feedback(
        self,
        request_id: str,
        outcome: Outcome,
        entities: Iterable[Span | Mapping[str, Any]] | None = None,
    ) -> FeedbackAnswer:
        """What really happened to an answer; ``entities`` (a correction) become an example."""
        return await self._send(calls.feedback(request_id, outcome, entities))

    async def escalations(self, domain: str, *, offset: int = 0, limit: int = 20) -> EscalationPage:
        return await self._send(calls.escalations(domain, offset, limit))

    async def escalation_rate(self, domain: str, *, hours: int = 24) -> EscalationRate:
        return await self._send(calls.escalation_rate(domain, hours))
