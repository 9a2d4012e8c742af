"""Group commit of submits: concurrent callers share inserts, and each still gets its own
job, or its own error."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from taskmill import Job, Taskmill
from taskmill.api.batching import InsertBatcher
from taskmill.errors import StoreError, StoreUnavailable
from taskmill.jobs import NewJob
from taskmill.store import Store


class RecordingStore:
    """Passes inserts to a real store, recording each batch; `refuse` names jobs (by their
    first argument) the database will not take."""

    def __init__(self, store: Store, refuse: set[Any] | None = None) -> None:
        self.store = store
        self.refuse = refuse or set()
        self.batches: list[int] = []

    def insert_jobs(self, jobs: Sequence[NewJob]) -> list[Job]:
        self.batches.append(len(jobs))
        if any(j.args and j.args[0] in self.refuse for j in jobs):
            raise StoreError("value out of range")
        return self.store.insert_jobs(jobs)


def new_jobs(app: Taskmill, count: int, **options: Any) -> list[NewJob]:
    return [app.get_task("add").new_job([i, i], **options) for i in range(count)]


def insert_all(batcher: InsertBatcher, jobs: list[NewJob]) -> list[Job | BaseException]:
    async def run() -> list[Job | BaseException]:
        return await asyncio.gather(*(batcher.insert(j) for j in jobs), return_exceptions=True)

    return asyncio.run(run())


def test_concurrent_submits_share_inserts_and_each_gets_its_job(app: Taskmill) -> None:
    recording = RecordingStore(app.store)
    jobs = new_jobs(app, 50)
    stored = insert_all(InsertBatcher(recording), jobs)  # type: ignore[arg-type]
    assert [s.id for s in stored if isinstance(s, Job)] == [j.id for j in jobs]
    assert sum(recording.batches) == 50 and max(recording.batches) > 1
    assert len(app.list(limit=100)) == 50


def test_a_batch_is_never_larger_than_the_limit(app: Taskmill) -> None:
    recording = RecordingStore(app.store)
    insert_all(InsertBatcher(recording, max_batch=8), new_jobs(app, 20))  # type: ignore[arg-type]
    assert max(recording.batches) <= 8 and sum(recording.batches) == 20


def test_the_same_idempotency_key_in_one_batch_is_one_job(app: Taskmill) -> None:
    jobs = new_jobs(app, 5, idempotency_key="same")
    stored = insert_all(InsertBatcher(app.store), jobs)
    assert len({s.id for s in stored if isinstance(s, Job)}) == 1
    assert len(app.list(limit=10)) == 1


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_job_the_database_refuses_fails_alone(app: Taskmill) -> None:
    recording = RecordingStore(app.store, refuse={3})
    stored = insert_all(InsertBatcher(recording), new_jobs(app, 6))  # type: ignore[arg-type]
    assert isinstance(stored[3], StoreError)
    assert all(isinstance(s, Job) for i, s in enumerate(stored) if i != 3)
    assert len(app.list(limit=10)) == 5


class DownStore:
    def insert_jobs(self, jobs: Sequence[NewJob]) -> list[Job]:
        raise StoreUnavailable("PostgreSQL unreachable: connection refused")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_unreachable_store_fails_every_waiting_submit(app: Taskmill) -> None:
    stored = insert_all(InsertBatcher(DownStore()), new_jobs(app, 4))  # type: ignore[arg-type]
    assert all(isinstance(s, StoreUnavailable) for s in stored)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_caller_that_goes_away_does_not_stop_the_others(app: Taskmill) -> None:
    batcher = InsertBatcher(app.store)
    jobs = new_jobs(app, 3)

    async def run() -> list[Job]:
        tasks = [asyncio.create_task(batcher.insert(j)) for j in jobs]
        await asyncio.sleep(0)  # all three are waiting for the same insert
        tasks[0].cancel()
        done = await asyncio.gather(tasks[1], tasks[2])
        await batcher.close()
        return list(done)

    assert [j.id for j in asyncio.run(run())] == [jobs[1].id, jobs[2].id]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_submit_right_after_a_batch_finishes_is_not_stranded(app: Taskmill) -> None:
    # The caller of the last batch resumes before the finished drainer is forgotten: the
    # next submit must still start an insert of its own, not wait for one that has ended.
    batcher = InsertBatcher(app.store)
    first, second = new_jobs(app, 2)

    async def run() -> Job:
        await batcher.insert(first)
        async with asyncio.timeout(5):  # in this task: no new task to delay the next insert
            return await batcher.insert(second)

    assert asyncio.run(run()).id == second.id
