"""The worker side of the store (claim, finish, release, progress, heartbeat, lease recovery,
wake-ups), asserted once and run against each backend. Leases are moved into the past in
the database instead of waiting for them to run out."""

from __future__ import annotations

import json
import select
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from taskmill import JobStatus, Taskmill
from taskmill.store import Store
from taskmill.store.base import ClaimedJob, Outcome, Progress, QueueCounts, WorkerInfo
from tests.helpers import CLOCK_SLACK, RawDb, claim_one, finish, is_utc, near, wait_until


def claim_all(
    store: Store, worker_id: str = "w1", queues: list[str] | None = None
) -> list[ClaimedJob]:
    return store.claim_jobs(worker_id=worker_id, queues=queues, limit=100, lease_s=60)


# -- claim ------------------------------------------------------------------------------------


def test_claim_order_is_priority_then_scheduled_at_then_age(app: Taskmill, store: Store) -> None:
    now = datetime.now(UTC)
    t = now - timedelta(seconds=30)
    low_old = app.enqueue("add", [1, 0], run_at=t)
    high_new = app.enqueue("add", [2, 0], priority=5)
    high_older = app.enqueue("add", [3, 0], priority=5, run_at=now - timedelta(seconds=10))
    low_old_twin = app.enqueue("add", [4, 0], run_at=t)  # same time as low_old, created later
    lowest = app.enqueue("add", [5, 0], priority=-1, run_at=now - timedelta(hours=1))

    order = [claim_one(store).id for _ in range(5)]
    assert order == [high_older.id, high_new.id, low_old.id, low_old_twin.id, lowest.id]
    assert claim_all(store) == []


def test_claim_takes_only_the_served_queues(app: Taskmill, store: Store) -> None:
    high = app.enqueue("add", [1, 2], queue="high")
    low = app.enqueue("add", [1, 2], queue="low")
    default = app.enqueue("add", [1, 2])

    assert [j.id for j in claim_all(store, queues=["high"])] == [high.id]
    assert claim_all(store, queues=["high", "other"]) == []
    assert claim_all(store, queues=[]) == []
    assert {j.id for j in claim_all(store, queues=["low", "default"])} == {low.id, default.id}


def test_claim_with_no_queue_filter_serves_every_queue(app: Taskmill, store: Store) -> None:
    ids = {app.enqueue("add", [1, 2], queue=q).id for q in ("a", "b", "default")}
    assert {j.id for j in claim_all(store, queues=None)} == ids


def test_delayed_job_is_not_claimed_before_it_is_due(
    app: Taskmill, store: Store, raw_db: RawDb
) -> None:
    later = app.enqueue("add", [1, 2], delay=60)
    now = app.enqueue("add", [3, 4])
    assert [j.id for j in claim_all(store)] == [now.id]
    assert claim_all(store) == []

    raw_db.set_time("taskmill_jobs", later.id, "scheduled_at", datetime.now(UTC))
    assert [j.id for j in claim_all(store)] == [later.id]


def test_claim_marks_running_counts_the_attempt_and_sets_the_lease(
    app: Taskmill, store: Store
) -> None:
    job = app.enqueue("add", [1, 2])
    before = datetime.now(UTC)
    (row,) = store.claim_jobs(worker_id="worker-7", queues=None, limit=1, lease_s=45)
    assert (row.id, row.attempt, row.task) == (job.id, 1, job.task)
    assert (json.loads(row.args_json), json.loads(row.kwargs_json)) == ([1, 2], {})
    assert (row.max_retries, row.backoff, row.timeout_s) == (job.max_retries, job.backoff, None)
    claimed = store.get_job(row.id)
    assert claimed is not None

    assert claimed.id == job.id
    assert (claimed.status, claimed.attempts, claimed.worker) == (JobStatus.RUNNING, 1, "worker-7")
    assert claimed.started_at is not None and is_utc(claimed.started_at)
    assert near(claimed.started_at, before)
    assert claimed.lease_expires_at is not None
    assert near(claimed.lease_expires_at, claimed.started_at + timedelta(seconds=45))


def test_claim_respects_the_limit(app: Taskmill, store: Store) -> None:
    for i in range(5):
        app.enqueue("add", [i, i])
    assert len(store.claim_jobs(worker_id="w", queues=None, limit=3, lease_s=60)) == 3
    assert len(store.claim_jobs(worker_id="w", queues=None, limit=3, lease_s=60)) == 2


def test_cancelled_and_finished_jobs_are_never_claimed(app: Taskmill, store: Store) -> None:
    app.cancel(app.enqueue("add", [1, 2]).id)
    app.enqueue("add", [1, 2])
    finish(store, claim_one(store), JobStatus.COMPLETED, result_json="3")
    assert claim_all(store) == []


# -- finish -----------------------------------------------------------------------------------


def test_completed_outcome_records_result_and_timings(app: Taskmill, store: Store) -> None:
    app.enqueue("add", [1, 2])
    job = claim_one(store)
    assert finish(store, job, JobStatus.COMPLETED, result_json='{"sum": 3}') == 1

    done = store.get_job(job.id)
    assert done is not None
    assert (done.status, done.result, done.error, done.progress) == (
        JobStatus.COMPLETED, {"sum": 3}, None, 1.0,
    )  # fmt: skip
    assert done.finished_at is not None and is_utc(done.finished_at)
    assert done.started_at is not None and done.started_at == job.started_at
    elapsed_s = (done.finished_at - done.started_at).total_seconds()
    assert done.duration_s == pytest.approx(elapsed_s, abs=1e-5)
    assert done.lease_expires_at is None and done.attempts == 1


def test_failed_outcome_keeps_error_and_traceback(app: Taskmill, store: Store) -> None:
    app.enqueue("fail_always")
    job = claim_one(store)
    finish(store, job, JobStatus.FAILED, error="RuntimeError: boom", traceback="Traceback...")
    failed = store.get_job(job.id)
    assert failed is not None
    assert (failed.status, failed.error, failed.traceback) == (
        JobStatus.FAILED, "RuntimeError: boom", "Traceback...",
    )  # fmt: skip
    assert failed.finished_at is not None and failed.result is None


def test_retry_outcome_reschedules_after_the_delay(app: Taskmill, store: Store) -> None:
    app.enqueue("fail_always")
    job = claim_one(store)
    finish(store, job, JobStatus.PENDING, error="RuntimeError: boom", retry_delay_s=30.0)

    pending = store.get_job(job.id)
    assert pending is not None
    assert (pending.status, pending.attempts, pending.error) == (
        JobStatus.PENDING, 1, "RuntimeError: boom",
    )  # fmt: skip
    assert pending.finished_at is None
    assert near(pending.scheduled_at, datetime.now(UTC) + timedelta(seconds=30))
    assert claim_all(store) == []
    due_in = store.next_due_in_s(None)
    assert due_in is not None and 25 < due_in <= 30


def test_retry_outcome_without_delay_is_claimable_again_as_the_next_attempt(
    app: Taskmill, store: Store
) -> None:
    app.enqueue("fail_always")
    job = claim_one(store)
    finish(store, job, JobStatus.PENDING, error="boom", retry_delay_s=0.0)
    again = claim_one(store, "w2")
    assert (again.id, again.attempts, again.worker) == (job.id, 2, "w2")


def test_stale_attempt_report_is_ignored(app: Taskmill, store: Store, raw_db: RawDb) -> None:
    app.enqueue("add", [1, 2])
    first = claim_one(store, "lost-worker")
    raw_db.expire_lease(first.id)
    assert store.recover_expired_leases() == 1
    second = claim_one(store, "w2")
    assert second.attempts == 2

    assert finish(store, first, JobStatus.COMPLETED, result_json="3") == 0
    current = store.get_job(first.id)
    assert current is not None
    assert (current.status, current.attempts, current.worker) == (JobStatus.RUNNING, 2, "w2")
    assert finish(store, second, JobStatus.COMPLETED, result_json="3") == 1


def test_outcome_for_a_job_that_is_not_running_is_ignored(app: Taskmill, store: Store) -> None:
    app.enqueue("add", [1, 2])
    job = claim_one(store)
    assert finish(store, job, JobStatus.COMPLETED, result_json="3") == 1
    assert finish(store, job, JobStatus.FAILED, error="late duplicate") == 0
    assert store.get_job(job.id).status is JobStatus.COMPLETED  # type: ignore[union-attr]


@pytest.mark.parametrize("reported", [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.PENDING])
def test_cancel_requested_turns_any_outcome_into_cancelled(
    app: Taskmill, store: Store, reported: JobStatus
) -> None:
    app.enqueue("sleep_for", [10])
    job = claim_one(store)
    app.cancel(job.id)
    assert finish(store, job, reported, error="killed", retry_delay_s=5.0) == 1
    cancelled = store.get_job(job.id)
    assert cancelled is not None
    assert cancelled.status is JobStatus.CANCELLED
    assert cancelled.finished_at is not None
    assert claim_all(store) == []


def test_finish_many_outcomes_in_one_call(app: Taskmill, store: Store) -> None:
    for i in range(3):
        app.enqueue("add", [i, i])
    jobs = claim_all(store)
    now = datetime.now(UTC)
    outcomes = [
        Outcome(j.id, j.attempt, JobStatus.COMPLETED, now, now, result_json=str(n))
        for n, j in enumerate(jobs)
    ]
    assert store.finish_jobs(outcomes) == 3
    assert store.finish_jobs([]) == 0
    assert {j.status for j in app.list()} == {JobStatus.COMPLETED}
    assert {store.get_job(j.id).result for j in jobs} == {0, 1, 2}  # type: ignore[union-attr]


# -- release ----------------------------------------------------------------------------------


def test_release_returns_jobs_to_pending_without_counting_the_attempt(
    app: Taskmill, store: Store
) -> None:
    ids = {app.enqueue("add", [i, i]).id for i in range(2)}
    claimed = claim_all(store)
    assert store.release_jobs([(j.id, j.attempt) for j in claimed]) == 2

    for job_id in ids:
        job = store.get_job(job_id)
        assert job is not None
        assert (job.status, job.attempts, job.worker) == (JobStatus.PENDING, 0, None)
        assert job.started_at is job.lease_expires_at is job.finished_at is None
    assert {(j.id, j.attempt) for j in claim_all(store)} == {(i, 1) for i in ids}
    assert store.release_jobs([]) == 0


def test_release_of_a_stale_attempt_is_ignored(app: Taskmill, store: Store) -> None:
    app.enqueue("add", [1, 2])
    job = claim_one(store)
    assert store.release_jobs([(job.id, job.attempts + 1)]) == 0
    assert store.get_job(job.id) == job


def test_release_of_a_cancel_requested_job_cancels_it(app: Taskmill, store: Store) -> None:
    app.enqueue("add", [1, 2])
    job = claim_one(store)
    app.cancel(job.id)
    assert store.release_jobs([(job.id, job.attempts)]) == 1
    released = store.get_job(job.id)
    assert released is not None
    assert released.status is JobStatus.CANCELLED and released.finished_at is not None


# -- progress ---------------------------------------------------------------------------------


def test_set_progress_updates_the_running_attempt_only(app: Taskmill, store: Store) -> None:
    app.enqueue("report_progress", [4])
    pending = app.enqueue("add", [1, 2], delay=60)
    job = claim_one(store)

    store.set_progress([Progress(job.id, job.attempts, 0.25, "step 1 of 4")])
    store.set_progress([Progress(job.id, job.attempts + 1, 0.9, "from the future")])
    store.set_progress([Progress(pending.id, 0, 0.5, "not running")])
    store.set_progress([])

    assert (app.get(job.id).progress, app.get(job.id).progress_message) == (0.25, "step 1 of 4")
    assert app.get(pending.id).progress is None


# -- workers, heartbeat and leases ------------------------------------------------------------


def test_register_heartbeat_and_unregister_record_the_worker(store: Store, raw_db: RawDb) -> None:
    store.register_worker(WorkerInfo("w1", "host-a", 1234, '["high"]', 4))
    row = raw_db.fetch_one("taskmill_workers", "id", "w1")
    assert row is not None
    assert (row["host"], row["pid"], row["concurrency"], row["stopped_at"]) == (
        "host-a", 1234, 4, None,
    )  # fmt: skip

    long_ago = datetime.now(UTC) - timedelta(hours=1)
    raw_db.set_time("taskmill_workers", "w1", "heartbeat_at", long_ago)
    store.heartbeat(worker_id="w1", lease_s=30)
    row = raw_db.fetch_one("taskmill_workers", "id", "w1")
    assert row is not None and near(row["heartbeat_at"], datetime.now(UTC))

    store.unregister_worker("w1")
    row = raw_db.fetch_one("taskmill_workers", "id", "w1")
    assert row is not None and row["stopped_at"] is not None
    store.register_worker(WorkerInfo("w1", "host-a", 1234, None, 4))
    row = raw_db.fetch_one("taskmill_workers", "id", "w1")
    assert row is not None and row["stopped_at"] is None


def test_heartbeat_renews_the_leases_of_that_worker_only(app: Taskmill, store: Store) -> None:
    store.register_worker(WorkerInfo("w1", "h", 1, None, 1))
    app.enqueue("add", [1, 2])
    app.enqueue("add", [3, 4])
    mine = claim_one(store, "w1", lease_s=5)
    theirs = claim_one(store, "w2", lease_s=5)

    store.heartbeat(worker_id="w1", lease_s=300)

    renewed = store.get_job(mine.id)
    assert renewed is not None and renewed.lease_expires_at is not None
    assert near(renewed.lease_expires_at, datetime.now(UTC) + timedelta(seconds=300))
    assert store.get_job(theirs.id) == theirs


def test_expired_lease_returns_the_job_to_pending_with_the_attempt_counted(
    app: Taskmill, store: Store, raw_db: RawDb
) -> None:
    app.enqueue("add", [1, 2], max_retries=3)
    job = claim_one(store, "dead-worker")
    raw_db.expire_lease(job.id)

    assert store.recover_expired_leases() == 1
    recovered = store.get_job(job.id)
    assert recovered is not None
    assert (recovered.status, recovered.attempts) == (JobStatus.PENDING, 1)
    assert recovered.error is not None and "lease expired" in recovered.error
    assert recovered.lease_expires_at is None and recovered.finished_at is None
    assert claim_one(store, "w2").attempts == 2


def test_expired_lease_fails_the_job_when_its_attempts_are_spent(
    app: Taskmill, store: Store, raw_db: RawDb
) -> None:
    app.enqueue("add", [1, 2], max_retries=1)
    job = claim_one(store)
    finish(store, job, JobStatus.PENDING, error="boom", retry_delay_s=0)
    job = claim_one(store, "dead-worker")
    assert job.attempts == 2
    raw_db.expire_lease(job.id)

    assert store.recover_expired_leases() == 1
    failed = store.get_job(job.id)
    assert failed is not None
    assert (failed.status, failed.attempts) == (JobStatus.FAILED, 2)
    assert failed.error is not None and "dead-worker" in failed.error
    assert failed.finished_at is not None
    assert claim_all(store) == []


def test_expired_lease_of_a_cancel_requested_job_cancels_it(
    app: Taskmill, store: Store, raw_db: RawDb
) -> None:
    app.enqueue("sleep_for", [10])
    job = claim_one(store)
    app.cancel(job.id)
    raw_db.expire_lease(job.id)
    assert store.recover_expired_leases() == 1
    assert app.get(job.id).status is JobStatus.CANCELLED


def test_live_leases_are_not_recovered(app: Taskmill, store: Store, raw_db: RawDb) -> None:
    app.enqueue("add", [1, 2])
    app.enqueue("add", [3, 4])
    live = claim_one(store, lease_s=60)
    expired = claim_one(store, lease_s=60)
    raw_db.expire_lease(expired.id, ago_s=1)
    assert store.recover_expired_leases() == 1
    assert store.get_job(live.id) == live
    assert store.recover_expired_leases() == 0


# -- scheduling hints and counts --------------------------------------------------------------


def test_next_due_in_s(app: Taskmill, store: Store) -> None:
    assert store.next_due_in_s(None) is None
    app.enqueue("add", [1, 2], delay=30, queue="later")
    due = store.next_due_in_s(None)
    assert due is not None and 30 - CLOCK_SLACK.total_seconds() < due <= 30
    assert store.next_due_in_s(["elsewhere"]) is None

    app.enqueue("add", [1, 2], queue="now")
    due_now = store.next_due_in_s(["later", "now"])
    assert due_now is not None and due_now <= 0
    later = store.next_due_in_s(["later"])
    assert later is not None and later > 25

    claim_all(store, queues=["now"])  # running jobs are not waiting
    later_any = store.next_due_in_s(None)
    assert later_any is not None and later_any > 25


def test_queue_counts(app: Taskmill, store: Store) -> None:
    assert store.queue_counts() == []
    app.enqueue("add", [1, 2])
    app.enqueue("add", [1, 2])
    app.enqueue("urgent", [1])
    app.cancel(app.enqueue("add", [1, 2], queue="low").id)
    claim_one(store)  # the urgent job: priority 7

    counts = {(c.queue, c.status, c.count) for c in store.queue_counts()}
    assert counts == {
        ("default", JobStatus.PENDING, 2),
        ("high", JobStatus.RUNNING, 1),
        ("low", JobStatus.CANCELLED, 1),
    }
    assert all(type(c) is QueueCounts for c in store.queue_counts())
    assert all(type(c.status) is JobStatus for c in store.queue_counts())


# -- wake-ups ---------------------------------------------------------------------------------


def test_listener_reports_an_enqueue_from_another_connection(
    store: Store, app_factory: Callable[[], Taskmill]
) -> None:
    listener = store.listener()
    try:
        listener.check()  # the first call may report "maybe": nothing to compare with yet
        assert listener.check() is False

        app_factory().enqueue("add", [1, 2])

        wait_until(listener.check, timeout_s=5, what="the listener to see the enqueue")
        assert listener.check() is False
    finally:
        listener.close()


def test_listener_reports_jobs_released_back_to_the_queue(
    app: Taskmill, app_factory: Callable[[], Taskmill]
) -> None:
    app.enqueue("add", [1, 2])
    other = app_factory().store
    job = claim_one(other)
    listener = app.store.listener()
    try:
        listener.check()
        assert other.release_jobs([(job.id, job.attempts)]) == 1
        wait_until(listener.check, timeout_s=5, what="the listener to see the release")
    finally:
        listener.close()


@pytest.mark.postgres_only
def test_postgres_listener_descriptor_becomes_readable_on_enqueue(
    store: Store, app_factory: Callable[[], Taskmill]
) -> None:
    listener = store.listener()
    try:
        fd = listener.fileno()
        assert fd is not None
        listener.check()
        assert select.select([fd], [], [], 0) == ([], [], [])
        app_factory().enqueue("add", [1, 2])
        readable, _, _ = select.select([fd], [], [], 5)
        assert readable == [fd]
        assert listener.check() is True
    finally:
        listener.close()


# -- text PostgreSQL cannot hold --------------------------------------------------------------


def test_error_traceback_and_progress_text_with_nul_are_stored(app: Taskmill, store: Store) -> None:
    """Exception messages are arbitrary text; a NUL in one must not make the outcome
    unstorable (PostgreSQL text refuses NUL), or the job would hang until its lease ran out."""
    app.enqueue("fail_always", max_retries=0)
    job = claim_one(store)
    store.set_progress([Progress(job.id, job.attempts, 0.5, "half\x00way")])
    progressed = app.get(job.id)
    assert progressed.progress == 0.5
    assert progressed.progress_message is not None
    assert progressed.progress_message.startswith("half")
    assert progressed.progress_message.endswith("way")

    error, traceback = "bad\x00byte \ud800", "Traceback\x00..."
    finish(store, job, JobStatus.FAILED, error=error, traceback=traceback)
    failed = app.get(job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None and failed.error.startswith("bad")
    assert "byte" in failed.error
    assert failed.traceback is not None and failed.traceback.startswith("Traceback")
