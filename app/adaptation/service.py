"""A domain's adaptation as the API shows and steers it, and what follows from changes of its
pool: examples added may start a run (:func:`app.adaptation.runner.due`); a deleted domain
takes its run and its versions with it."""

from __future__ import annotations

import logging
import time

from anyio import to_thread

from app.adaptation.locks import RunLocks
from app.adaptation.protocol import AdaptationOut, AdaptationRunOut, AdaptedVersionOut
from app.adaptation.runner import AdaptationRunner, due, next_run_at
from app.domains.service import DomainService
from nerve.adaptation.store import (
    PREVIOUS,
    AdaptationState,
    AdaptationStore,
    VersionRecord,
)
from nerve.errors import Conflict, InvalidRequest
from nerve.settings import Settings
from nerve.vocab.types import Domain

log = logging.getLogger(__name__)

LOST = "lost: the gateway running it stopped before it ended"


class AdaptationService:
    def __init__(
        self,
        settings: Settings,
        store: AdaptationStore,
        runner: AdaptationRunner,
        locks: RunLocks,
        domains: DomainService,
    ) -> None:
        self.settings = settings
        self.store = store
        self.runner = runner
        self.locks = locks
        self.domains = domains

    # --- the API's calls -----------------------------------------------------------------------
    async def get(self, tenant: str, name: str) -> AdaptationOut:
        domain = await self.domains.get(tenant, name)
        return await self.describe(domain, await self.domains.count_examples(tenant, name))

    async def start(self, tenant: str, name: str) -> AdaptationOut:
        """Queue a run now (202); 409 while one is queued or running, 422 under min_examples."""
        await self.runner.request(tenant, name, "manual")
        return await self.get(tenant, name)

    async def rollback(
        self, tenant: str, name: str, to: int | None, *, previous: bool
    ) -> AdaptationOut:
        """Serve version ``to``, the few-shot path (None) or, with ``previous``, the version that
        served before the current one."""
        domain = await self.domains.get(tenant, name)
        target = PREVIOUS if previous else to
        await to_thread.run_sync(self.store.rollback, tenant, name, target)
        log.info("adaptation rolled back", extra={"domain": name, "to": str(target)})
        return await self.describe(domain, await self.domains.count_examples(tenant, name))

    async def describe(self, domain: Domain, examples: int) -> AdaptationOut:
        """The domain's adaptation, from its state (read from the shared store)."""
        state = await to_thread.run_sync(self.store.state, domain.tenant, domain.name)
        if state.updated_at and state.domain_created_at != domain.created_at:
            state = AdaptationState(tenant=domain.tenant, domain=domain.name)  # a leftover
        last = state.last_run
        run_out = None if last is None else AdaptationRunOut.model_validate(last.model_dump())
        if run_out is not None and run_out.status == "running" and not await self._running(domain):
            run_out = run_out.model_copy(update={"status": "failed", "error": LOST})
        mark = state.queued  # a mark left by a gateway that died before its run started: stale
        queued = (mark is not None and time.time() - mark.queued_at < self.runner.stale_s) or (
            self.runner.active(domain.tenant, domain.name) is not None
        )
        if run_out is not None and run_out.status == "running":
            status = "running"
        elif queued:
            status = "queued"
        elif run_out is not None and run_out.status == "failed":
            status = "failed"
        elif state.served is not None:
            status = "served"
        else:
            status = "few_shot" if state.versions else "none"
        adapt = self.settings.adapt
        return AdaptationOut(
            status=status,
            enabled=adapt.enabled,
            examples=examples,
            min_examples=adapt.min_examples,
            next_run_at=next_run_at(state, adapt),
            served_version=state.served,
            served=_version_out(state.version(state.served), state),
            latest=_version_out(state.latest, state),
            versions=[v for v in (_version_out(r, state) for r in state.versions) if v is not None],
            last_run=run_out,
            error=None if run_out is None or run_out.status != "failed" else run_out.error,
        )

    async def _running(self, domain: Domain) -> bool:
        if self.runner.active(domain.tenant, domain.name) is not None:
            return True
        return await self.locks.held(domain.tenant, domain.name)

    # --- the pool's changes (app.domains.service.PoolWatcher) ----------------------------------
    async def examples_added(self, tenant: str, domain: Domain) -> None:
        """Queue a run when one is due (and runs start by themselves)."""
        if not self.settings.adapt.enabled or self.runner.active(tenant, domain.name):
            return
        examples = await self.domains.count_examples(tenant, domain.name)
        state = await to_thread.run_sync(self.store.state, tenant, domain.name)
        if state.updated_at and state.domain_created_at != domain.created_at:
            # Left by a deleted domain of the same name (its deletion's cleanup failed).
            await to_thread.run_sync(self.store.delete, tenant, domain.name)
            state = AdaptationState(tenant=tenant, domain=domain.name)
        if not due(state, examples, self.settings.adapt):
            return
        try:
            await self.runner.request(tenant, domain.name, "auto")
        except (Conflict, InvalidRequest) as exc:  # a run of it elsewhere, or the pool shrank
            log.info("adaptation not queued: %s", exc.message, extra={"domain": domain.name})

    async def domain_deleted(self, tenant: str, name: str) -> None:
        """End the domain's run here and remove its versions and state (every replica's, on
        the shared store)."""
        await self.runner.forget(tenant, name)
        await to_thread.run_sync(self.store.delete, tenant, name)

    async def close(self) -> None:
        await self.runner.close()


def _version_out(record: VersionRecord | None, state: AdaptationState) -> AdaptedVersionOut | None:
    if record is None:
        return None
    return AdaptedVersionOut(
        version=record.version,
        created_at=record.created_at,
        examples=record.examples,
        heldout_f1_domain=record.heldout_f1_domain,
        heldout_f1_fewshot=record.heldout_f1_fewshot,
        wins=record.wins,
        promoted=record.promoted,
        reason=record.reason,
        serving=record.version == state.served,
    )
