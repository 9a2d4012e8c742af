"""The worker as users run it: `taskmill worker` processes against a real database."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from taskmill import JobStatus, Taskmill
from tests.helpers import wait_until
from tests.integration.conftest import StartWorker
from tests.integration.workers import read_run_log
from tests.worker_app import app as worker_app

WAIT_S = 30.0


def test_runs_sync_and_async_tasks_and_records_results(
    app: Taskmill, start_worker: StartWorker
) -> None:
    worker = start_worker("-c", "2")
    sync_job = app.enqueue("add", [2, 3])
    async_job = app.enqueue("async_add", [4, 5])
    progress_job = app.enqueue("report_progress", [4])

    done = app.wait(sync_job.id, timeout=WAIT_S)
    assert (done.status, done.result, done.attempts) == (JobStatus.COMPLETED, 5, 1)
    assert done.started_at is not None and done.finished_at is not None
    assert done.duration_s is not None and done.duration_s >= 0
    assert done.worker is not None and str(worker.pid) in done.worker
    assert app.wait(async_job.id, timeout=WAIT_S).result == 9
    progressed = app.wait(progress_job.id, timeout=WAIT_S)
    assert (progressed.result, progressed.progress) == (4, 1.0)


def test_failures_retry_then_fail_with_error_and_traceback(
    app: Taskmill, start_worker: StartWorker
) -> None:
    start_worker("-c", "1")
    failing = app.enqueue("fail_always", max_retries=2, backoff=0)
    permanent = app.enqueue("fail_permanently", ["no such address"], max_retries=5)

    failed = app.wait(failing.id, timeout=WAIT_S)
    assert (failed.status, failed.attempts) == (JobStatus.FAILED, 3)
    assert failed.error == "RuntimeError: boom"
    assert failed.traceback is not None and "fail_always" in failed.traceback
    refused = app.wait(permanent.id, timeout=WAIT_S)
    assert (refused.status, refused.attempts) == (JobStatus.FAILED, 1)
    assert refused.error == "PermanentError: no such address"


def test_retry_waits_for_its_back_off(app: Taskmill, start_worker: StartWorker) -> None:
    start_worker("-c", "1")
    job = app.enqueue("retry_later", [30.0], max_retries=3)
    rescheduled = wait_until(
        lambda: (j := app.get(job.id)).attempts == 1 and j.status is JobStatus.PENDING and j,
        timeout_s=WAIT_S, what="first attempt asked for a retry",
    )  # fmt: skip
    assert rescheduled.started_at is not None
    assert (rescheduled.scheduled_at - rescheduled.started_at).total_seconds() >= 29


def test_priority_order_within_served_queues(
    app: Taskmill, start_worker: StartWorker, run_log: Path
) -> None:
    low = [app.enqueue("record", [f"low{i}"], priority=0) for i in range(3)]
    high = [app.enqueue("record", [f"high{i}"], priority=5) for i in range(3)]
    other_queue = app.enqueue("record", ["elsewhere"], queue="other", priority=9)
    start_worker("-c", "1", "-Q", "default")
    for job in low + high:
        app.wait(job.id, timeout=WAIT_S)
    order = [tag for _, _, tag, _ in read_run_log(run_log)]
    assert order == ["high0", "high1", "high2", "low0", "low1", "low2"]
    assert app.get(other_queue.id).status is JobStatus.PENDING  # -Q default never takes it


@pytest.mark.slow
def test_two_workers_drain_2000_jobs_exactly_once(
    app: Taskmill, start_worker: StartWorker, run_log: Path
) -> None:
    workers = [start_worker("-c", "2") for _ in range(2)]
    for worker in workers:
        worker.wait_started()
    # 2 ms each: long enough that no one worker can drain the lot before the other starts.
    jobs = app.enqueue_many(
        [{"task": "record", "kwargs": {"tag": str(i), "seconds": 0.002}} for i in range(2000)]
    )
    wait_until(
        lambda: _count(app, JobStatus.COMPLETED) == 2000, timeout_s=120, interval_s=0.1,
        what="2000 jobs completed",
    )  # fmt: skip
    runs = Counter(job_id for job_id, _, _, _ in read_run_log(run_log))
    assert set(runs) == {j.id for j in jobs}
    assert max(runs.values()) == 1, "a job ran twice"
    assert {c.status for c in app.store.queue_counts()} == {JobStatus.COMPLETED}
    finished = app.list(limit=1000) + app.list(limit=1000, cursor=app.list(limit=1000)[-1].id)
    served_by = Counter(str(j.worker).split(":")[1] for j in finished)
    assert set(served_by) == {str(w.pid) for w in workers}, served_by
    for worker in workers:
        assert worker.stop() == 0


def _count(app: Taskmill, status: JobStatus) -> int:
    return sum(c.count for c in app.store.queue_counts() if c.status is status)


def test_worker_app_is_the_test_tasks() -> None:
    # The subprocess loads tests.worker_app; the in-process app must know the same tasks,
    # or a test could enqueue something the worker has never heard of.
    assert {"add", "record", "hang", "crash"} <= set(worker_app.tasks)
