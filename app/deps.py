"""Typed dependencies for the routes: the service objects the lifespan built, the caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.components import Components
from app.domains.service import DomainService
from app.feedback.service import FeedbackService
from app.limits import InFlightLimiter
from app.logging import request_id_var
from app.ner.service import NERService


def get_components(request: Request) -> Components:
    return request.app.state.components  # type: ignore[no-any-return]


def get_tenant(request: Request) -> str:
    """The caller's tenant: from its API key when auth is on, else the single default tenant."""
    authenticate = getattr(request.app.state, "authenticate", None)
    if authenticate is None:
        return "default"
    return authenticate(request)  # type: ignore[no-any-return]


def get_request_id() -> str:
    return request_id_var.get()


ComponentsDep = Annotated[Components, Depends(get_components)]
TenantDep = Annotated[str, Depends(get_tenant)]
RequestIdDep = Annotated[str, Depends(get_request_id)]


def get_ner(components: ComponentsDep) -> NERService:
    return components.ner


def get_domains(components: ComponentsDep) -> DomainService:
    return components.domains


NERDep = Annotated[NERService, Depends(get_ner)]
DomainsDep = Annotated[DomainService, Depends(get_domains)]


def get_feedback(request: Request) -> FeedbackService:
    return request.app.state.feedback  # type: ignore[no-any-return]


def get_limiter(request: Request) -> InFlightLimiter:
    return request.app.state.limiter  # type: ignore[no-any-return]


FeedbackDep = Annotated[FeedbackService, Depends(get_feedback)]
LimiterDep = Annotated[InFlightLimiter, Depends(get_limiter)]
