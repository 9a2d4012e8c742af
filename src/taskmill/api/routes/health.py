"""Liveness and readiness, for load balancers and orchestrators. Never behind API keys."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import APIRouter

from taskmill.api.routes.responses import errors
from taskmill.api.schemas import HealthOut, ReadyOut
from taskmill.api.service import ApiService


def router(service: ApiService, storage_check: Callable[[], None] | None = None) -> APIRouter:
    """`storage_check`: raises StorageError unless the image storage can be used now."""
    api = APIRouter(tags=["health"])

    @api.get("/healthz", response_model=HealthOut, summary="Liveness")
    async def healthz() -> HealthOut:
        """The process serves requests. Does not touch the database."""
        return HealthOut(status="ok")

    @api.get("/readyz", response_model=ReadyOut, responses=errors(503), summary="Readiness")
    async def readyz() -> ReadyOut:
        """The database answers and its schema is migrated, and the image storage (when
        this app has the image tasks) can be written: send traffic here."""
        version = await service.schema_version()
        if storage_check is not None:
            await asyncio.to_thread(storage_check)
        return ReadyOut(status="ready", schema_version=version)

    return api
