"""Liveness, readiness and the Prometheus endpoint."""

from __future__ import annotations

import asyncio
import logging

from anyio import to_thread
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.auth import AdminDep
from app.components import Components
from app.deps import ComponentsDep

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

_CHECK_TIMEOUT_S = 5.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up (says nothing of its dependencies: see /readyz)."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(components: ComponentsDep) -> JSONResponse:
    """200 when the vector store (with its search copies loaded), the embedder, the LLM and
    every served method are usable; else 503 naming which."""

    async def check(coro: object) -> bool:
        try:
            return bool(await asyncio.wait_for(coro, _CHECK_TIMEOUT_S))  # type: ignore[arg-type]
        except Exception as exc:
            log.warning("readiness check failed: %r", exc)
            return False

    checks = {
        "vector_store": await check(to_thread.run_sync(components.store.ready)),
        # The search copies loaded at start-up (a request before then loads its domain's).
        "search_warm": components.warm,
        "embedder": await check(to_thread.run_sync(_embedder_works, components)),
        "llm": await check(components.generator.ready()),
        "cache": await check(components.cache.ready()),
    }
    methods = {h.name: await check(h.ready()) for h in components.methods}
    # The cache is an optimisation: its failure degrades speed, not readiness.
    ready = all(v for k, v in checks.items() if k != "cache") and all(methods.values())
    body = {"status": "ready" if ready else "not_ready", "checks": checks, "methods": methods}
    return JSONResponse(body, status_code=200 if ready else 503)


def _embedder_works(components: Components) -> bool:
    return components.embedder.embed_sentences(["ok"]).shape == (1, components.embedder.dimension)


@router.get("/metrics")
async def metrics(components: ComponentsDep, _: AdminDep) -> Response:
    """Prometheus text. With auth on it needs an admin key: its labels name every tenant's
    domains (Prometheus sends the key with `authorization.credentials_file`)."""
    return Response(generate_latest(components.metrics.registry), media_type=CONTENT_TYPE_LATEST)
