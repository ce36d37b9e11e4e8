"""/v1/feedback: record the real outcome of an answer; a correction becomes a new example."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable

from app.domains.service import DomainService
from app.feedback.protocol import (
    EscalationOut,
    EscalationPage,
    EscalationRate,
    FeedbackIn,
    FeedbackOut,
    HourOut,
    Outcome,
    QueuedSpan,
)
from app.feedback.request_records import RecordedSpan, RecordStore, RequestRecord
from app.ner.protocol import NERResponse
from nerve.errors import BackendUnavailable, Conflict, InvalidRequest, NotFound
from nerve.metrics import Metrics
from nerve.vocab.types import Example, Span

log = logging.getLogger(__name__)

FEEDBACK_SOURCE = "feedback"
# A reviewed answer's example id: the prefix marks it in the pool (the export of reviewed answers
# reads it), the digest keeps any request id within the store's 64-character ids.
REVIEWED_PREFIX = "fb-"


def reviewed_example_id(request_id: str) -> str:
    return REVIEWED_PREFIX + hashlib.sha256(request_id.encode("utf-8")).hexdigest()[:32]


def is_reviewed(example: Example) -> bool:
    """Whether ``example`` is a reviewer's correction of an answer (``POST /v1/feedback``)."""
    return (example.id or "").startswith(REVIEWED_PREFIX)


def _outcome(escalate: bool) -> Outcome:
    return "escalated" if escalate else "resolved"


class FeedbackService:
    def __init__(
        self,
        records: RecordStore,
        domains: DomainService,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.records = records
        self.domains = domains
        self.metrics = metrics
        self._clock = clock

    async def remember(self, tenant: str, text: str, response: NERResponse) -> None:
        """Keep what feedback on this answer will need. Never raises: a request must not fail
        because its record could not be written (the store counts and logs that)."""
        record = RequestRecord(
            request_id=response.request_id,
            tenant=tenant,
            domain=response.domain,
            method=response.method,
            text=text,
            escalate=response.escalate,
            reasons=list(response.escalation_reasons),
            entities=[
                RecordedSpan(start=e.start, end=e.end, type=e.type, score=e.score)
                for e in response.entities
            ],
            created_at=self._clock(),
        )
        try:
            earlier = await self.records.get(tenant, response.request_id)
        except BackendUnavailable:  # counted by the store; a write would fail (and wait) too
            log.warning("request record not stored: records unavailable")
            return
        if earlier is not None:
            if earlier.ambiguous or (earlier.text, earlier.domain) != (text, response.domain):
                log.warning(
                    "request id reused for another text: feedback on it will be refused",
                    extra={"id": response.request_id},
                )
                record = record.model_copy(update={"ambiguous": True})
            elif earlier.outcome is not None:
                return  # a retry of an answer already reported on: keep the report
        if await self.records.put(record) and earlier is None:
            await self.records.count_answer(record)

    async def escalations(
        self, tenant: str, domain: str, offset: int, limit: int
    ) -> EscalationPage:
        """The review queue: the domain's escalated answers no feedback was recorded on."""
        await self.domains.get(tenant, domain)  # 404 for an unknown domain
        records, total = await self.records.escalations(tenant, domain, offset, limit)
        return EscalationPage(
            domain=domain,
            total=total,
            offset=offset,
            limit=limit,
            escalations=[
                EscalationOut(
                    request_id=r.request_id,
                    domain=r.domain,
                    method=r.method,
                    text=r.text,
                    reasons=r.reasons,
                    entities=[
                        QueuedSpan(
                            start=e.start,
                            end=e.end,
                            type=e.type,
                            score=e.score,
                            text=r.text[e.start : e.end],
                        )
                        for e in r.entities
                    ],
                    created_at=r.created_at,
                )
                for r in records
            ],
        )

    async def escalation_rate(self, tenant: str, domain: str, hours: int) -> EscalationRate:
        """Answers and escalations of the domain per hour, from the request records."""
        await self.domains.get(tenant, domain)
        counts = await self.records.hourly_counts(tenant, domain, hours)
        return EscalationRate(
            domain=domain,
            hours=[
                HourOut(
                    start=c.start,
                    answers=c.answers,
                    escalated=c.escalated,
                    rate=round(c.escalated / c.answers, 4) if c.answers else None,
                )
                for c in counts
            ],
        )

    async def report(self, tenant: str, body: FeedbackIn) -> FeedbackOut:
        record = await self.records.get(tenant, body.request_id)
        if record is None:
            hours = self.records.retention_s / 3600
            raise NotFound(
                f"no record of request {body.request_id!r}: unknown to this tenant, or older "
                f"than the {hours:g} h that records are kept"
            )
        if record.ambiguous:
            raise Conflict(
                f"request id {body.request_id!r} was sent with more than one text; feedback "
                "cannot tell which answer it is about (send a unique X-Request-ID per request)"
            )
        if record.outcome is not None:
            raise Conflict(
                f"feedback on request {body.request_id!r} was already recorded "
                f"(outcome {record.outcome!r})"
            )
        if not await self.records.claim_report(tenant, body.request_id):
            raise Conflict(
                f"feedback on request {body.request_id!r} was already recorded or is being "
                "recorded by another call"
            )
        try:
            return await self._record(tenant, body, record)
        except BaseException:
            await self.records.release_report(tenant, body.request_id)
            raise

    async def _record(self, tenant: str, body: FeedbackIn, record: RequestRecord) -> FeedbackOut:
        """Add the correction, count the outcome and mark the record (the caller holds the
        report's claim)."""
        domain = await self.domains.get(tenant, record.domain)
        example_id: str | None = None
        if body.entities is not None:
            example = Example(
                id=reviewed_example_id(body.request_id),
                text=record.text,
                entities=[Span(start=s.start, end=s.end, type=s.type) for s in body.entities],
            )
            try:
                domain, ids = await self.domains.add_examples(
                    tenant, record.domain, [example], source=FEEDBACK_SOURCE
                )
            except InvalidRequest as exc:
                raise InvalidRequest(
                    f"entities do not fit the text of request {body.request_id!r}: {exc.message}"
                ) from exc
            example_id = ids[0] if ids else None

        predicted = _outcome(record.escalate)
        self.metrics.reported_outcomes.labels(
            domain=record.domain, outcome=body.outcome, predicted=predicted
        ).inc()
        reported = record.model_copy(
            update={"outcome": body.outcome, "reported_at": self._clock(), "example_id": example_id}
        )
        if not await self.records.put(reported):
            log.warning(
                "feedback recorded but its record not marked (the claim still refuses a repeat)",
                extra={"id": body.request_id},
            )
        log.info(
            "feedback",
            extra={
                "domain": record.domain,
                "outcome": body.outcome,
                "predicted": predicted,
                "example_id": example_id,
            },
        )
        return FeedbackOut(
            request_id=body.request_id,
            domain=record.domain,
            outcome=body.outcome,
            predicted=predicted,
            example_id=example_id,
            domain_version=domain.version,
        )
