"""Typed dependencies for the routes: the service objects the lifespan built, the caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.adaptation.service import AdaptationService
from app.components import Components
from app.domains.service import DomainService
from app.feedback.service import FeedbackService
from app.jobs.runner import JobRunner
from app.limits import InFlightLimiter
from app.logging import request_id_var
from app.ner.pipeline import NERPipeline


def get_components(request: Request) -> Components:
    components: Components = request.app.state.components
    return components


def get_tenant(components: Annotated[Components, Depends(get_components)], request: Request) -> str:
    """The caller's tenant: from its API key when auth is on, else the single default tenant."""
    if components.authenticator is None:
        return "default"
    return components.authenticator(request)


def get_request_id() -> str:
    return request_id_var.get()


ComponentsDep = Annotated[Components, Depends(get_components)]
TenantDep = Annotated[str, Depends(get_tenant)]
RequestIdDep = Annotated[str, Depends(get_request_id)]


def get_ner(components: ComponentsDep) -> NERPipeline:
    return components.ner


def get_domains(components: ComponentsDep) -> DomainService:
    return components.domains


NERDep = Annotated[NERPipeline, Depends(get_ner)]
DomainsDep = Annotated[DomainService, Depends(get_domains)]


def get_feedback(components: ComponentsDep) -> FeedbackService:
    return components.feedback


def get_limiter(components: ComponentsDep) -> InFlightLimiter:
    return components.limiter


FeedbackDep = Annotated[FeedbackService, Depends(get_feedback)]
LimiterDep = Annotated[InFlightLimiter, Depends(get_limiter)]


def get_jobs(components: ComponentsDep) -> JobRunner:
    return components.jobs


JobsDep = Annotated[JobRunner, Depends(get_jobs)]


def get_adaptation(components: ComponentsDep) -> AdaptationService:
    return components.adaptation


AdaptationDep = Annotated[AdaptationService, Depends(get_adaptation)]
