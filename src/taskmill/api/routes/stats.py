"""/api/stats and its WebSocket: one snapshot of queues, workers and throughput."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect

from taskmill.api.auth import KeyChecker
from taskmill.api.routes.responses import errors
from taskmill.api.schemas import (
    FinishedRatesOut,
    HistoryOut,
    QueueStatsOut,
    StateCountsOut,
    StatsOut,
    ThroughputBucketOut,
    WorkerOut,
)
from taskmill.api.service import ApiService
from taskmill.errors import StoreError
from taskmill.stats import History, Snapshot, StateCounts

POLICY_VIOLATION = 1008  # WebSocket close code: refused by policy (no or bad API key)
TRY_AGAIN_LATER = 1013  # WebSocket close code: the server cannot serve it now


def _counts(counts: StateCounts) -> dict[str, Any]:
    return {
        "pending": counts.pending,
        "running": counts.running,
        "completed": counts.completed,
        "failed": counts.failed,
        "cancelled": counts.cancelled,
        "jobs_per_s": round(counts.jobs_per_s, 3),
    }


def stats_out(snapshot: Snapshot) -> StatsOut:
    return StatsOut(
        taken_at=snapshot.taken_at,
        window_s=snapshot.window_s,
        queues=[QueueStatsOut(queue=q, **_counts(c)) for q, c in snapshot.queues.items()],
        totals=StateCountsOut(**_counts(snapshot.totals)),
        workers_online=snapshot.workers_online,
        worker_slots=snapshot.worker_slots,
        workers=[WorkerOut.model_validate(w, from_attributes=True) for w in snapshot.workers],
        jobs_per_s=round(snapshot.totals.jobs_per_s, 3),
    )


def router(
    service: ApiService,
    dependencies: list[Any],
    auth_errors: tuple[int, ...],
    keys: KeyChecker,
    push_interval_s: float,
) -> APIRouter:
    api = APIRouter(tags=["stats"])

    @api.get(
        "/api/stats", response_model=StatsOut, dependencies=dependencies,
        responses=errors(*auth_errors, 503), summary="Queues, workers and throughput",
    )  # fmt: skip
    async def stats() -> StatsOut:
        """Per queue the jobs in each state; workers online (heartbeat within a lease);
        jobs completed or failed per second over the last minute."""
        return stats_out(await service.snapshot())

    @api.websocket("/api/stats/ws")
    async def stats_ws(websocket: WebSocket) -> None:
        """The /api/stats snapshot, pushed on connect and then every interval. Takes the
        API key as `Authorization: Bearer` or, from browsers, `?token=`."""
        if not keys.allows_websocket(websocket):
            await websocket.close(code=POLICY_VIOLATION, reason="a valid API key is required")
            return
        await websocket.accept()
        await _push_until_closed(websocket, service, push_interval_s)

    @api.get(
        "/api/stats/history", response_model=HistoryOut, dependencies=dependencies,
        responses=errors(*auth_errors, 422, 503), summary="Throughput over time",
    )  # fmt: skip
    async def stats_history(
        minutes: Annotated[int, Query(ge=1, le=360, description="How far back")] = 15,
        bucket_s: Annotated[int, Query(ge=10, le=3600, description="Seconds per bucket")] = 30,
    ) -> HistoryOut:
        """Jobs completed, failed and retried per `bucket_s` seconds over the last
        `minutes`, oldest bucket first; buckets are aligned to multiples of `bucket_s` (so
        they stay put from one call to the next) and the newest one is still filling.

        Read from the jobs table, so it spans what retention keeps. *completed* and
        *failed* count jobs by when they finished. *retried* counts automatic retries as
        far as the table can tell them (it keeps a job's attempt count and its latest
        attempt, not every attempt): jobs that finished after more than one attempt, in the
        bucket where they finished, and jobs waiting for another attempt, in the bucket
        where their failed attempt ended. A job retried by hand starts afresh and does not
        count. `rates` splits the stats' jobs_per_s into completed and failed."""
        found = await service.history(minutes=minutes, bucket_s=bucket_s)
        return history_out(found, minutes)

    return api


def history_out(found: History, minutes: int) -> HistoryOut:
    return HistoryOut(
        taken_at=found.taken_at, minutes=minutes, bucket_s=found.bucket_s,
        buckets=[
            ThroughputBucketOut(start=b.start, completed=b.completed, failed=b.failed,
                                retried=b.retried)
            for b in found.buckets
        ],
        rates=FinishedRatesOut(
            window_s=found.window_s, completed_per_s=round(found.completed_per_s, 3),
            failed_per_s=round(found.failed_per_s, 3),
        ),
    )  # fmt: skip


async def _push_until_closed(websocket: WebSocket, service: ApiService, interval_s: float) -> None:
    closed = asyncio.Event()
    reader = asyncio.create_task(_wait_for_close(websocket, closed))
    try:
        while not closed.is_set():
            try:
                snapshot = stats_out(await service.snapshot())
            except StoreError as exc:
                await websocket.close(code=TRY_AGAIN_LATER, reason=str(exc)[:120])
                return
            await websocket.send_text(snapshot.model_dump_json())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closed.wait(), interval_s)
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client left between our check and the send
    finally:
        reader.cancel()


async def _wait_for_close(websocket: WebSocket, closed: asyncio.Event) -> None:
    # Clients only listen; reading is how we notice they left (messages they send are
    # ignored), so a closed socket does not keep a snapshot loop alive.
    try:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        closed.set()
