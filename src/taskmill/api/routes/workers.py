"""/api/workers: every worker an operator should see, with what each is running."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter

from taskmill.api.routes.responses import errors
from taskmill.api.schemas import RunningJobOut, WorkerDetailOut, WorkersOut
from taskmill.api.service import ApiService
from taskmill.stats import WorkerDetail, WorkerState


def _out(detail: WorkerDetail) -> WorkerDetailOut:
    w = detail.worker
    return WorkerDetailOut(
        id=w.id, host=w.host, pid=w.pid, queues=w.queues, concurrency=w.concurrency,
        started_at=w.started_at, heartbeat_at=w.heartbeat_at,
        heartbeat_age_s=round(w.heartbeat_age_s, 3), stopped_at=w.stopped_at,
        state=detail.state.value, stale=detail.state is WorkerState.STALE,
        running=detail.running,
        current_jobs=[
            RunningJobOut(id=j.id, task=j.task, started_at=j.started_at, progress=j.progress)
            for j in detail.current_jobs
        ],
    )  # fmt: skip


def router(service: ApiService, dependencies: list[Any], auth_errors: tuple[int, ...]) -> APIRouter:
    api = APIRouter(prefix="/api/workers", tags=["workers"], dependencies=dependencies)
    lease_s = service.app.settings.lease_s

    @api.get(
        "", response_model=WorkersOut, responses=errors(*auth_errors, 503),
        summary="Workers in detail",
    )  # fmt: skip
    async def workers() -> WorkersOut:
        """Online workers; stale ones (not stopped, but silent for longer than the lease:
        killed or cut off from the database, so their jobs go back to pending) for a day;
        workers that stopped cleanly for five minutes. Each with the jobs it runs now."""
        details = await service.workers()
        return WorkersOut(
            taken_at=datetime.now(UTC), lease_s=lease_s, workers=[_out(d) for d in details]
        )

    return api
