"""/metrics: Prometheus text format, derived from the store when scraped."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from taskmill.api.routes.responses import errors


def router(
    registry: CollectorRegistry, dependencies: list[Any], auth_errors: tuple[int, ...]
) -> APIRouter:
    api = APIRouter(tags=["metrics"])

    @api.get(
        "/metrics", dependencies=dependencies, summary="Prometheus metrics",
        response_class=Response, responses={
            200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                  "description": "Prometheus text exposition format"},
            **errors(*auth_errors, 503),
        },
    )  # fmt: skip
    async def metrics() -> Response:
        """Job counters and durations per task and queue, queue depths and workers: the
        numbers of /api/stats. Behind the API keys when they are set."""
        body = await asyncio.to_thread(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return api
