"""What the scheduler maintains (both backends): job retention prunes exactly the finished
jobs past their age, in batches, and never a pending or running one; expired leases come
back through the same store call workers use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from taskmill import Job, JobStatus, Taskmill
from taskmill.scheduler import Maintenance
from tests.helpers import RawDb, claim_one, finish

RETENTION_S = 3600.0


@pytest.fixture
def retaining_app(app: Taskmill) -> Taskmill:
    app.settings = app.settings.with_(job_retention_s=RETENTION_S)
    return app


def finished_ago(raw_db: RawDb, job: Job, seconds: float) -> None:
    when = datetime.now(UTC) - timedelta(seconds=seconds)
    raw_db.set_time("taskmill_jobs", job.id, "finished_at", when)


def completed(app: Taskmill, status: JobStatus = JobStatus.COMPLETED) -> Job:
    app.enqueue("add", [1, 2])
    job = claim_one(app.store)
    assert finish(app.store, job, status, error="boom" if status is JobStatus.FAILED else None)
    return app.get(job.id)


def cancelled(app: Taskmill) -> Job:
    return app.cancel(app.enqueue("add", [1, 2]).id)


def test_retention_prunes_exactly_the_finished_jobs_past_their_age(
    retaining_app: Taskmill, raw_db: RawDb
) -> None:
    app = retaining_app
    old = [completed(app), completed(app, JobStatus.FAILED), cancelled(app)]
    young = [completed(app), completed(app, JobStatus.FAILED), cancelled(app)]
    for job in old:
        finished_ago(raw_db, job, RETENTION_S + 60)
    for job in young:
        finished_ago(raw_db, job, RETENTION_S - 60)
    # A running and a pending job, made to look ancient in every way a bug could test.
    app.enqueue("add", [5, 6])
    running = claim_one(app.store, worker_id="w-old", lease_s=3600)
    pending = app.enqueue("add", [3, 4])
    for job in (running, pending):
        for column in ("created_at", "scheduled_at", "finished_at"):
            raw_db.set_time("taskmill_jobs", job.id, column, datetime(2000, 1, 1, tzinfo=UTC))

    assert Maintenance(app).prune_jobs() == 3

    left = {job.id: job.status for job in app.list(limit=100)}
    assert left == {
        **{job.id: job.status for job in young},
        running.id: JobStatus.RUNNING, pending.id: JobStatus.PENDING,
    }  # fmt: skip


def test_retention_deletes_in_batches_until_none_is_left(
    retaining_app: Taskmill, raw_db: RawDb
) -> None:
    app = retaining_app
    for _ in range(7):
        finished_ago(raw_db, completed(app), RETENTION_S * 2)
    now = [0.0]
    maintenance = Maintenance(app, batch_size=3, clock=lambda: now[0])

    assert [maintenance.prune_batch() for _ in range(4)] == [3, 3, 1, 0]

    for _ in range(7):
        finished_ago(raw_db, completed(app), RETENTION_S * 2)
    # In the loop: a full batch makes the next one due at once, so a backlog drains without
    # holding ticks back; once a batch comes back short, the next prune is a minute away.
    assert maintenance.run_due() == 0.0
    assert maintenance.run_due() == 0.0
    assert maintenance.run_due() == pytest.approx(app.settings.lease_s / 2)
    assert app.list(limit=100) == []


def test_zero_retention_keeps_finished_jobs_forever(app: Taskmill, raw_db: RawDb) -> None:
    app.settings = app.settings.with_(job_retention_s=0.0)
    job = completed(app)
    finished_ago(raw_db, job, 10 * 365 * 86400)

    assert Maintenance(app).prune_jobs() == 0
    assert app.get(job.id).status is JobStatus.COMPLETED


def test_the_scheduler_recovers_the_jobs_of_a_vanished_worker(app: Taskmill, raw_db: RawDb) -> None:
    app.enqueue("add", [1, 2])
    job = claim_one(app.store, worker_id="gone", lease_s=60)
    raw_db.expire_lease(job.id)

    assert Maintenance(app).run_due() > 0
    recovered = app.get(job.id)
    assert (recovered.status, recovered.attempts) == (JobStatus.PENDING, 1)
    assert recovered.error == "worker lost: lease expired on gone"
