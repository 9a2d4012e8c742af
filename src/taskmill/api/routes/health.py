"""Liveness and readiness, for load balancers and orchestrators. Never behind API keys."""

from __future__ import annotations

from fastapi import APIRouter

from taskmill.api.routes.responses import errors
from taskmill.api.schemas import HealthOut, ReadyOut
from taskmill.api.service import ApiService


def router(service: ApiService) -> APIRouter:
    api = APIRouter(tags=["health"])

    @api.get("/healthz", response_model=HealthOut, summary="Liveness")
    async def healthz() -> HealthOut:
        """The process serves requests. Does not touch the database."""
        return HealthOut(status="ok")

    @api.get("/readyz", response_model=ReadyOut, responses=errors(503), summary="Readiness")
    async def readyz() -> ReadyOut:
        """The database answers and its schema is migrated: send traffic here."""
        return ReadyOut(status="ready", schema_version=await service.schema_version())

    return api
