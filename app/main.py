"""The app factory: ``build_app(settings)`` wires routes, error handlers and the lifespan."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from anyio import to_thread
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import __version__
from app.adaptation.router import router as adaptation_router
from app.components import Components, build_components
from app.console.router import front_door
from app.console.router import router as console_router
from app.domains.protocol import DomainIn
from app.domains.router import router as domains_router
from app.feedback.router import router as feedback_router
from app.health import router as health_router
from app.interchange.labelstudio_backend import router as labelstudio_router
from app.interchange.router import router as interchange_router
from app.jobs.router import router as jobs_router
from app.logging import request_id_var
from app.ner.router import router as ner_router
from nerve.errors import NerveError, describe_validation
from nerve.settings import Settings

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"


def build_app(
    settings: Settings,
    components_factory: Callable[[Settings], Components] | None = None,
) -> FastAPI:
    """A new app; its lifespan builds the components (``components_factory`` in tests)."""
    factory = components_factory or build_components

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        components = await to_thread.run_sync(factory, settings)
        app.state.components = components
        if components.authenticator is None:
            log.warning("authentication is OFF: every caller is tenant 'default'")
        if settings.load_demo_domain:
            await load_demo_domain(components)
        # In the background: /healthz answers at once, /readyz once the copies are loaded.
        await components.start_warmup()
        log.info(
            "nerve ready",
            extra={
                "generator": components.generator.name,
                "model": components.generator.model,
                "store": settings.milvus.uri or str(settings.milvus_lite_path),
                "retrieval": settings.retrieval.mode,
                "methods": components.methods.names,
            },
        )
        try:
            yield
        finally:
            await components.close()
            log.info("nerve stopped")

    app = FastAPI(
        title="nerve",
        version=__version__,
        description="Few-shot, cross-domain named entity recognition.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.include_router(ner_router)
    app.include_router(jobs_router)
    app.include_router(domains_router)
    app.include_router(adaptation_router)
    app.include_router(interchange_router)
    app.include_router(labelstudio_router)
    app.include_router(feedback_router)
    app.include_router(health_router)
    app.include_router(console_router)
    app.include_router(front_door)
    _install_error_handlers(app)
    _install_request_context(app)
    _publish_served_methods(app)
    return app


def _publish_served_methods(app: FastAPI) -> None:
    """The OpenAPI schema lists the methods the registry serves as ``method``'s allowed values
    (known once the lifespan has built the components)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        components = getattr(app.state, "components", None)
        if app.openapi_schema is None and components is not None:
            schema = generate()
            field = schema["components"]["schemas"]["NERRequest"]["properties"]["method"]
            field["anyOf"] = [
                {"type": "string", "enum": components.methods.names},
                {"type": "null"},
            ]
            field["default"] = components.methods.default
            return schema
        return generate()

    app.openapi = openapi  # type: ignore[method-assign]


async def load_demo_domain(components: Components) -> None:
    """Register the packaged customer-care demo domain unless it exists already."""
    from app.demo import load_demo_domain as read_demo

    demo = read_demo()
    tenant = "default"
    if await to_thread.run_sync(components.store.get_domain, tenant, demo.name) is not None:
        return
    spec = DomainIn.model_validate(
        {
            "name": demo.name,
            "description": demo.description,
            "entity_types": [t.model_dump() for t in demo.entity_types],
            "required_types": demo.required_types,
        }
    )
    await components.domains.create(tenant, spec)
    await components.domains.add_examples(tenant, demo.name, demo.examples, source="demo")
    log.info("demo domain loaded", extra={"domain": demo.name, "examples": len(demo.examples)})


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message, "request_id": request_id_var.get()}}


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(NerveError)
    async def nerve_error(_: Request, exc: NerveError) -> JSONResponse:
        if exc.status >= 500:
            log.warning("request failed: %s", exc.message, extra={"code": exc.code})
        return JSONResponse(
            error_body(exc.code, exc.message), status_code=exc.status, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            detail = next(e for e in errors if e.get("type") == "json_invalid")
            return JSONResponse(
                error_body("malformed_body", f"body is not valid JSON: {detail.get('msg')}"),
                status_code=400,
            )
        return JSONResponse(
            error_body("invalid_request", describe_validation(errors)), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return JSONResponse(
            error_body(codes.get(exc.status_code, "http_error"), str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Normally caught by the request-context middleware first (with the request id);
        # this covers anything outside it.
        return _internal_error()


def _internal_error() -> JSONResponse:
    """Never a traceback to the client; the log has it, under the request id."""
    log.exception("unhandled error")
    return JSONResponse(
        error_body("internal_error", "internal error; see the server log for this request id"),
        status_code=500,
    )


def _install_request_context(app: FastAPI) -> None:
    @app.middleware("http")
    async def request_context(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if 0 < len(incoming) <= 128 else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        try:
            try:
                response = await call_next(request)
            except Exception:  # a bug: answered here, while the request id is still set
                response = _internal_error()
            status = response.status_code
        finally:
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            metrics = getattr(getattr(request.app.state, "components", None), "metrics", None)
            if metrics is not None and path not in ("/metrics", "/healthz", "/readyz"):
                metrics.requests.labels(
                    route=path,
                    domain=getattr(request.state, "domain", ""),
                    method=getattr(request.state, "method", ""),
                    status=str(status),
                ).inc()
            log.info(
                "request",
                extra={
                    "http_method": request.method,
                    "path": request.url.path,
                    "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            request_id_var.reset(token)
        response.headers[REQUEST_ID_HEADER] = request_id
        return response
