"""Group commit for submits: concurrent POST /api/tasks share one insert.

A submit is one durable insert, and a commit costs a disk flush. One transaction per
request would cap an API process at the disk's flush rate and queue requests behind each
other's commits. Instead, submits that arrive while an insert is in flight wait for the
next one and go in together (`Store.insert_jobs` takes any number in one statement). An
idle server adds no delay: a lone submit is inserted at once. Every caller still gets its
answer only after its job is committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from taskmill.errors import StoreError, StoreUnavailable
from taskmill.jobs import Job, NewJob
from taskmill.store.base import Store

log = logging.getLogger("taskmill.api")

MAX_BATCH = 500


class InsertBatcher:
    """Inserts NewJobs for many concurrent callers, one insert in flight at a time (so
    batches are as large as the load makes them)."""

    def __init__(self, store: Store, *, max_batch: int = MAX_BATCH) -> None:
        self.store = store
        self.max_batch = max_batch
        self._waiting: list[tuple[NewJob, asyncio.Future[Job]]] = []
        # Set and cleared by the drainer itself, in step with its loop, never by a done
        # callback: a callback runs a loop turn late, and a submit arriving in between
        # would wait for a drainer that has already finished.
        self._draining = False
        self._drainer: asyncio.Task[None] | None = None  # referenced while it runs

    async def insert(self, job: NewJob) -> Job:
        """The stored job (or the one its idempotency key already names). Raises what the
        store raises."""
        future: asyncio.Future[Job] = asyncio.get_running_loop().create_future()
        self._waiting.append((job, future))
        if not self._draining:
            self._draining = True
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def close(self) -> None:
        """Wait for the inserts already accepted."""
        if self._drainer is not None:
            await asyncio.shield(self._drainer)

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self.max_batch]
                del self._waiting[: self.max_batch]
                await self._insert_batch(batch)
        finally:
            self._draining = False  # no await since the loop saw nothing waiting: no gap

    async def _insert_batch(self, batch: list[tuple[NewJob, asyncio.Future[Job]]]) -> None:
        try:
            outcomes = await asyncio.to_thread(self._insert, [job for job, _ in batch])
        except Exception as exc:  # handed to every caller; the drainer itself carries on
            outcomes = [exc] * len(batch)
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # the caller went away (client disconnected)
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def _insert(self, jobs: Sequence[NewJob]) -> list[Job | Exception]:
        try:
            return list(self.store.insert_jobs(jobs))
        except StoreUnavailable:
            raise
        except StoreError:
            if len(jobs) == 1:
                raise
        # One job the database refused must not fail the others sharing its batch.
        log.warning("batch insert failed; inserting its %d jobs one by one", len(jobs))
        return [self._insert_one(job) for job in jobs]

    def _insert_one(self, job: NewJob) -> Job | Exception:
        try:
            return self.store.insert_jobs([job])[0]
        except StoreError as exc:
            return exc
