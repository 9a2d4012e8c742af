"""What each API operation does, written once: the FastAPI routes and the fast path both
call these. Blocking store calls run in worker threads, never on the event loop."""

from __future__ import annotations

import asyncio

from taskmill.api.batching import InsertBatcher
from taskmill.api.errors import ApiError
from taskmill.api.schemas import SubmitRequest
from taskmill.app import Taskmill
from taskmill.jobs import Job, JobStatus
from taskmill.stats import History, Snapshot, StatsService, WorkerDetail, history, worker_details
from taskmill.store.migrate import latest_version


class ApiService:
    def __init__(self, app: Taskmill, *, stats_max_age_s: float = 1.0) -> None:
        self.app = app
        self.batcher = InsertBatcher(app.store)
        self.stats = StatsService(
            app.store, online_within_s=app.settings.lease_s, max_age_s=stats_max_age_s
        )

    async def submit(self, request: SubmitRequest) -> Job:
        """Validate against the task (UnknownTaskError, ValidationError) and store the job;
        with a known idempotency key, the job stored first."""
        new = self.app.get_task(request.task).new_job(
            request.args, request.kwargs, queue=request.queue, priority=request.priority,
            delay=request.delay, max_retries=request.max_retries, timeout=request.timeout,
            idempotency_key=request.idempotency_key,
        )  # fmt: skip
        return await self.batcher.insert(new)

    async def get(self, job_id: str) -> Job:
        return await self.app.get_async(job_id)

    async def list_jobs(
        self,
        *,
        status: JobStatus | None,
        queue: str | None,
        task: str | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[Job], str | None]:
        """A page newest first, and the cursor of the next page (None after the last).

        Keyset pagination on the job id (UUIDv7, time-ordered): jobs inserted while a client
        pages never shift or repeat the pages it has yet to read."""
        jobs = await self.app.list_async(
            status=status, queue=queue, task=task, limit=limit, cursor=cursor
        )
        return jobs, jobs[-1].id if len(jobs) == limit else None

    async def cancel(self, job_id: str) -> Job:
        return await self.app.cancel_async(job_id)

    async def retry(self, job_id: str) -> Job:
        return await self.app.retry_async(job_id)

    async def snapshot(self) -> Snapshot:
        return await asyncio.to_thread(self.stats.snapshot)

    async def workers(self) -> list[WorkerDetail]:
        return await asyncio.to_thread(
            worker_details, self.app.store, lease_s=self.app.settings.lease_s
        )

    async def history(self, *, minutes: int, bucket_s: int) -> History:
        snapshot = await self.snapshot()  # shared and cached: its rates cost no query
        return await asyncio.to_thread(
            history, self.app.store, snapshot, minutes=minutes, bucket_s=bucket_s
        )

    async def schema_version(self) -> int:
        """The database's schema version. Raises ApiError (503 not_ready) while the schema
        is missing or older than this code, StoreError while the database is unreachable."""
        store = self.app.store
        version = await asyncio.to_thread(store.schema_version)
        expected = latest_version(store.dialect)
        if version < expected:
            raise ApiError(
                503, "not_ready",
                f"database schema is at version {version}, this taskmill needs {expected}: "
                "run `taskmill migrate`",
            )  # fmt: skip
        return version

    async def close(self) -> None:
        await self.batcher.close()
