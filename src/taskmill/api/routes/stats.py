"""/api/stats and its WebSocket: one snapshot of queues, workers and throughput."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from taskmill.api.auth import KeyChecker
from taskmill.api.routes.responses import errors
from taskmill.api.schemas import QueueStatsOut, StateCountsOut, StatsOut, WorkerOut
from taskmill.api.service import ApiService
from taskmill.errors import StoreError
from taskmill.stats import Snapshot, StateCounts

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

    return api


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
