"""The synchronous client: one method per API operation (see :mod:`nerve_client.calls`)."""

from __future__ import annotations

import time
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
from nerve_client.transport import auth_headers, send

T = TypeVar("T")

DEFAULT_URL = "http://localhost:8000"


class NerveClient:
    """``NerveClient("http://localhost:8000", api_key=...)``; use it as a context manager or
    call ``close()``. Errors are :class:`nerve_client.errors.NerveError` subclasses; 429, 503
    and connection failures are retried as ``retry`` says."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        tenant: str | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=auth_headers(api_key, tenant),
            timeout=timeout,
            transport=transport,
        )

    def _send(self, call: calls.Call[T]) -> T:
        return send(self._http, call, self.retry)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> NerveClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- extraction -----------------------------------------------------------------------

    def ner(
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
        return self._send(calls.ner(request, request_id))

    def ner_batch(
        self, items: Iterable[NERRequest | Mapping[str, Any]], *, request_id: str | None = None
    ) -> BatchResponse:
        """Several requests in one call, answered in order (the server caps the count:
        ``NERVE_MAX_BATCH_ITEMS``, 32 by default)."""
        return self._send(calls.ner_batch(items, request_id))

    def methods(self) -> MethodsResponse:
        return self._send(calls.methods())

    def ready(self) -> bool:
        """True when the server and all its backends are ready (``/readyz``)."""
        return self._send(calls.ready())

    # --- jobs -----------------------------------------------------------------------------

    def submit_job(
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
        return self._send(calls.submit_job(request, request_id))

    def get_job(self, job_id: str) -> Job:
        return self._send(calls.get_job(job_id))

    def cancel_job(self, job_id: str) -> Job:
        return self._send(calls.cancel_job(job_id))

    def wait_job(
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
            finished = watch.observe(self.get_job(job_id))
            if finished is not None:
                return finished
            time.sleep(watch.poll_interval)

    def ner_job(
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
        job = self.submit_job(
            text,
            domain,
            entity_types=entity_types,
            top_k=top_k,
            method=method,
            deadline_ms=deadline_ms,
        )
        done = self.wait_job(
            job.job_id, poll_interval=poll_interval, timeout=timeout, on_progress=on_progress
        )
        return job_result(done)

    # --- domains and examples -------------------------------------------------------------

    def create_domain(
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
        return self._send(calls.create_domain(spec))

    def list_domains(self) -> list[Domain]:
        return self._send(calls.list_domains())

    def get_domain(self, name: str) -> Domain:
        return self._send(calls.get_domain(name))

    def delete_domain(self, name: str) -> Deleted:
        """Delete the domain and all its examples."""
        return self._send(calls.delete_domain(name))

    def adaptation(self, domain: str) -> Adaptation:
        """The domain's own model: versions, their held-out scores, what serves, the last run."""
        return self._send(calls.get_adaptation(domain))

    def start_adaptation(self, domain: str) -> Adaptation:
        """Start fitting the domain's model on its pool now (poll :meth:`adaptation`)."""
        return self._send(calls.start_adaptation(domain))

    def rollback_adaptation(
        self, domain: str, to: int | calls.Previous | None = calls.PREVIOUS
    ) -> Adaptation:
        """Serve version ``to``, the few-shot path (None), or the one before the current."""
        return self._send(calls.rollback_adaptation(domain, to))

    def add_examples(
        self, domain: str, examples: Iterable[Example | Mapping[str, Any]]
    ) -> ExamplesAdded:
        """Labelled examples ``{text, entities: [{start, end, type}]}``; all or nothing."""
        return self._send(calls.add_examples(domain, examples))

    def add_conll(self, domain: str, conll: str) -> ExamplesAdded:
        """A CoNLL/BIO text (``token<TAB>tag`` lines); all or nothing."""
        return self._send(calls.add_conll(domain, conll))

    def list_examples(self, domain: str, *, offset: int = 0, limit: int = 50) -> ExamplePage:
        return self._send(calls.list_examples(domain, offset, limit))

    def delete_example(self, domain: str, example_id: str) -> Deleted:
        return self._send(calls.delete_example(domain, example_id))

    # --- feedback -------------------------------------------------------------------------

    def feedback(
        self,
        request_id: str,
        outcome: Outcome,
        entities: Iterable[Span | Mapping[str, Any]] | None = None,
    ) -> FeedbackAnswer:
        """What really happened to an answer; ``entities`` (a correction) become an example."""
        return self._send(calls.feedback(request_id, outcome, entities))

    def escalations(self, domain: str, *, offset: int = 0, limit: int = 20) -> EscalationPage:
        return self._send(calls.escalations(domain, offset, limit))

    def escalation_rate(self, domain: str, *, hours: int = 24) -> EscalationRate:
        return self._send(calls.escalation_rate(domain, hours))
