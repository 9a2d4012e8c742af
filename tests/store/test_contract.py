"""The job-control API every user sees (enqueue, get, list, cancel, retry), asserted once and
run against each backend: SQLite and PostgreSQL must be indistinguishable through it."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from taskmill import (
    InvalidTransition,
    JobNotFound,
    JobStatus,
    Taskmill,
    UnknownTaskError,
    ValidationError,
)
from taskmill.store import Store
from taskmill.store.migrate import latest_version
from tests.helpers import claim_one, finish, is_utc, near, wait_until
from tests.tasks_for_tests import URGENT_OPTIONS

# -- enqueue ------------------------------------------------------------------------------


def test_enqueue_returns_the_stored_pending_job_with_every_field(app: Taskmill) -> None:
    before = datetime.now(UTC)
    job = app.enqueue("add", [1, 2])

    assert uuid.UUID(job.id).version == 7
    assert (job.task, job.status, job.args, job.kwargs) == ("add", JobStatus.PENDING, [1, 2], {})
    assert (job.queue, job.priority, job.max_retries, job.timeout_s, job.backoff) == (
        "default", 0, 3, None, 2.0,
    )  # fmt: skip
    assert job.attempts == 0
    assert is_utc(job.created_at) and is_utc(job.scheduled_at)
    assert near(job.created_at, before)
    assert job.scheduled_at == job.created_at
    unset = (job.started_at, job.finished_at, job.duration_s, job.worker, job.lease_expires_at)
    assert unset == (None,) * 5
    assert (job.result, job.error, job.traceback, job.progress) == (None,) * 4
    assert (job.progress_message, job.idempotency_key) == (None, None)
    assert job.cancel_requested is False
    assert app.get(job.id) == job


def test_task_options_are_applied_and_per_enqueue_overrides_win(app: Taskmill) -> None:
    defaults = app.enqueue("urgent", [1])
    assert (defaults.queue, defaults.priority, defaults.max_retries) == ("high", 7, 1)
    assert (defaults.timeout_s, defaults.backoff) == (5.0, 3.0)
    assert URGENT_OPTIONS["queue"] == "high"

    custom = app.enqueue(
        "urgent", [1], queue="low", priority=-3, max_retries=9, timeout=1.5, backoff=1.25
    )
    assert (custom.queue, custom.priority, custom.max_retries) == ("low", -3, 9)
    assert (custom.timeout_s, custom.backoff) == (1.5, 1.25)
    assert app.get(custom.id) == custom


def test_task_handle_enqueue_passes_args_and_kwargs(app: Taskmill) -> None:
    job = app.get_task("echo").enqueue(name="x", nested={"a": [1, 2.5, None, True]})
    assert job.args == []
    assert job.kwargs == {"name": "x", "nested": {"a": [1, 2.5, None, True]}}
    assert app.get(job.id).kwargs == job.kwargs


def test_json_arguments_round_trip_exactly(app: Taskmill) -> None:
    kwargs = {"s": 'héllo \u2603 "quoted"', "n": -1, "f": 0.1, "big": 2**53, "e": [], "o": {}}
    job = app.enqueue("echo", kwargs=kwargs)
    assert app.get(job.id).kwargs == kwargs


def test_delay_schedules_the_job_later(app: Taskmill) -> None:
    job = app.enqueue("add", [1, 2], delay=30)
    assert near(job.scheduled_at, job.created_at + timedelta(seconds=30))


def test_run_at_in_any_timezone_is_stored_as_the_same_instant_in_utc(app: Taskmill) -> None:
    run_at = datetime.now(timezone(timedelta(hours=-5))) + timedelta(minutes=10)
    job = app.enqueue("add", [1, 2], run_at=run_at)
    assert is_utc(job.scheduled_at)
    assert abs(job.scheduled_at - run_at) < timedelta(milliseconds=1)


# -- get ----------------------------------------------------------------------------------


def test_get_unknown_id_raises_job_not_found(app: Taskmill) -> None:
    with pytest.raises(JobNotFound):
        app.get(str(uuid.uuid4()))


@pytest.mark.parametrize("bad_id", ["", "nope", "1234", "01a20034-22a6-7000-a42f-6dca3bbb68"])
def test_get_malformed_id_raises_job_not_found(app: Taskmill, bad_id: str) -> None:
    with pytest.raises(JobNotFound):
        app.get(bad_id)


def test_get_accepts_any_spelling_of_the_id(app: Taskmill) -> None:
    job = app.enqueue("add", [1, 2])
    assert app.get(job.id.upper()) == job
    assert app.get(f"urn:uuid:{job.id}") == job


@pytest.mark.parametrize("action", ["cancel", "retry"])
def test_cancel_and_retry_of_unknown_or_malformed_ids_raise_job_not_found(
    app: Taskmill, action: str
) -> None:
    for bad_id in (str(uuid.uuid4()), "nope"):
        with pytest.raises(JobNotFound):
            getattr(app, action)(bad_id)


# -- list ---------------------------------------------------------------------------------


def test_list_is_newest_first(app: Taskmill) -> None:
    ids = [app.enqueue("add", [i, i]).id for i in range(5)]
    assert [j.id for j in app.list()] == ids[::-1]


def test_list_filters_by_status_queue_and_task(app: Taskmill, store: Store) -> None:
    a = app.enqueue("add", [1, 2])
    b = app.enqueue("add", [1, 2], queue="high")
    c = app.enqueue("urgent", [1])
    d = app.enqueue("echo")
    app.cancel(d.id)

    def ids(**filters: object) -> set[str]:
        return {j.id for j in app.list(**filters)}  # type: ignore[arg-type]

    assert ids(queue="high") == {b.id, c.id}
    assert ids(task="add") == {a.id, b.id}
    assert ids(status="cancelled") == {d.id}
    assert ids(status=JobStatus.PENDING) == {a.id, b.id, c.id}
    assert ids(status="pending", queue="high", task="add") == {b.id}
    assert ids(queue="nowhere") == set()


def test_list_pages_with_a_cursor_unaffected_by_jobs_inserted_between_pages(
    app: Taskmill,
) -> None:
    originals = [app.enqueue("add", [i, 0]).id for i in range(10)]
    page1 = app.list(limit=4)
    newer = [app.enqueue("add", [i, 1]).id for i in range(3)]
    page2 = app.list(limit=4, cursor=page1[-1].id)
    app.enqueue("add", [0, 2])
    page3 = app.list(limit=4, cursor=page2[-1].id)
    page4 = app.list(limit=4, cursor=page3[-1].id)

    seen = [j.id for j in page1 + page2 + page3]
    assert seen == originals[::-1]
    assert page4 == []
    assert [j.id for j in app.list(limit=4)][1:] == newer[::-1]


@pytest.mark.parametrize("cursor", ["nope", "123", "01a20034-22a6-7000-a42f-6dca3bbb68"])
def test_list_with_a_malformed_cursor_is_refused(app: Taskmill, cursor: str) -> None:
    app.enqueue("add", [1, 2])
    with pytest.raises(ValidationError, match="cursor"):
        app.list(cursor=cursor)


def test_list_with_an_empty_cursor_is_the_first_page(app: Taskmill) -> None:
    job = app.enqueue("add", [1, 2])
    assert app.list(cursor="") == [job]


def test_list_cursor_with_filters(app: Taskmill) -> None:
    high = [app.enqueue("add", [i, 0], queue="high").id for i in range(5)]
    for i in range(5):
        app.enqueue("add", [i, 0])
    page1 = app.list(queue="high", limit=3)
    page2 = app.list(queue="high", limit=3, cursor=page1[-1].id)
    assert [j.id for j in page1 + page2] == high[::-1]


# -- enqueue_many ---------------------------------------------------------------------------


def test_enqueue_many_stores_all_in_order(app: Taskmill) -> None:
    jobs = app.enqueue_many(
        [
            {"task": "add", "args": [1, 2], "priority": 5},
            {"task": "echo", "kwargs": {"x": 1}, "queue": "high"},
            {"task": "urgent", "args": [3], "delay": 60},
        ]
    )
    assert [j.task for j in jobs] == ["add", "echo", "urgent"]
    assert (jobs[0].priority, jobs[1].queue, jobs[2].queue) == (5, "high", "high")
    assert jobs[2].scheduled_at > jobs[2].created_at + timedelta(seconds=50)
    assert all(j.status is JobStatus.PENDING for j in jobs)
    assert [app.get(j.id) for j in jobs] == jobs
    assert app.enqueue_many([]) == []


def test_enqueue_many_large_batch_returns_exactly_what_was_stored(
    app: Taskmill, store: Store
) -> None:
    """Big batches without idempotency keys take a bulk path on PostgreSQL; the jobs it
    returns must still be the stored ones, in order, and idle workers must hear of them."""
    listener = store.listener()
    try:
        listener.check()
        specs: list[dict[str, object]] = [
            {"task": "add", "args": [i, i], "priority": i % 3} for i in range(250)
        ]
        specs[7] = {"task": "echo", "kwargs": {"n": 7}, "delay": 60, "queue": "later"}
        jobs = app.enqueue_many(specs)
        wait_until(listener.check, timeout_s=5, what="the listener to hear of the batch")
    finally:
        listener.close()

    assert len(jobs) == 250 and len({j.id for j in jobs}) == 250
    assert [j.args for j in jobs[:3]] == [[0, 0], [1, 1], [2, 2]]
    assert {j.id: j for j in app.list(limit=1000)} == {j.id: j for j in jobs}
    assert jobs[7].scheduled_at > jobs[7].created_at + timedelta(seconds=50)
    assert (jobs[7].queue, jobs[7].kwargs) == ("later", {"n": 7})


@pytest.mark.parametrize(
    ("bad_spec", "error"),
    [
        ({"task": "nope"}, UnknownTaskError),
        ({"task": "add", "args": [1]}, ValueError),
        ({"task": "add", "args": [1, 2], "priority": 5000}, ValueError),
        ({"task": "add", "args": [1, 2], "colour": "red"}, ValueError),
        ("add", ValueError),
    ],
)
def test_enqueue_many_with_one_bad_spec_stores_nothing_and_names_its_index(
    app: Taskmill, bad_spec: object, error: type[Exception]
) -> None:
    specs = [{"task": "add", "args": [1, 2]}, bad_spec, {"task": "add", "args": [3, 4]}]
    with pytest.raises(error, match=r"^job 1: "):
        app.enqueue_many(specs)  # type: ignore[arg-type]
    assert app.list() == []


def test_enqueue_many_bad_spec_deep_in_a_bulk_batch_stores_nothing(app: Taskmill) -> None:
    """On PostgreSQL a big batch is validated while it is sent: rows before the bad spec
    have reached the database by then, and must not stay."""
    specs: list[object] = [{"task": "add", "args": [i, i]} for i in range(300)]
    specs[260] = {"task": "add", "args": ["one"]}
    with pytest.raises(ValueError, match=r"^job 260: "):
        app.enqueue_many(specs)  # type: ignore[arg-type]
    assert app.list() == []
    jobs = app.enqueue_many(specs[:260])  # type: ignore[arg-type]
    assert len(jobs) == len(app.list(limit=1000)) == 260


def test_enqueue_from_many_threads_at_once_stores_every_job(app: Taskmill) -> None:
    """An API server enqueues from many threads; each call stores exactly its own job."""
    per_thread, threads = 40, 4
    made: list[list[str]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads)

    def enqueue(index: int) -> None:
        start.wait()
        made[index].extend(app.enqueue("add", [index, n]).id for n in range(per_thread))

    runners = [threading.Thread(target=enqueue, args=(i,)) for i in range(threads)]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()
    ids = [job_id for got in made for job_id in got]
    assert len(set(ids)) == per_thread * threads
    stored = {j.id: j.args for j in app.list(limit=1000)}
    assert stored == {
        job_id: [index, n] for index, got in enumerate(made) for n, job_id in enumerate(got)
    }


def test_enqueue_many_duplicate_keys_map_to_the_first_job(app: Taskmill) -> None:
    stored = app.enqueue("add", [1, 1], idempotency_key="old")
    jobs = app.enqueue_many(
        [
            {"task": "add", "args": [1, 2], "idempotency_key": "k"},
            {"task": "add", "args": [3, 4]},
            {"task": "add", "args": [5, 6], "idempotency_key": "k"},
            {"task": "add", "args": [7, 8], "idempotency_key": "old"},
        ]
    )
    assert jobs[2] == jobs[0] and jobs[0].args == [1, 2]
    assert jobs[3] == stored
    assert len({jobs[0].id, jobs[1].id, stored.id}) == 3
    assert len(app.list()) == 3


# -- idempotency ----------------------------------------------------------------------------


def test_same_idempotency_key_returns_the_first_job(app: Taskmill) -> None:
    first = app.enqueue("add", [1, 2], idempotency_key="signup-42")
    again = app.enqueue("add", [9, 9], idempotency_key="signup-42", priority=9)
    assert again == first
    assert again.args == [1, 2] and again.priority == 0
    assert len(app.list()) == 1


def test_idempotency_key_is_unique_per_task(app: Taskmill) -> None:
    add = app.enqueue("add", [1, 2], idempotency_key="k")
    echo = app.enqueue("echo", idempotency_key="k")
    assert add.id != echo.id
    assert app.enqueue("echo", idempotency_key="k") == echo
    assert len(app.list()) == 2


def test_idempotency_key_still_answers_after_the_job_finished(app: Taskmill, store: Store) -> None:
    job = app.enqueue("add", [1, 2], idempotency_key="done-once")
    finish(store, claim_one(store), JobStatus.COMPLETED, result_json="3")
    again = app.enqueue("add", [1, 2], idempotency_key="done-once")
    assert again.id == job.id and again.status is JobStatus.COMPLETED and again.result == 3


# -- cancel and retry -----------------------------------------------------------------------


def test_cancel_pending_job_is_cancelled_at_once(app: Taskmill, store: Store) -> None:
    job = app.enqueue("add", [1, 2])
    cancelled = app.cancel(job.id)
    assert cancelled.status is JobStatus.CANCELLED
    assert cancelled.finished_at is not None and is_utc(cancelled.finished_at)
    assert app.get(job.id) == cancelled
    assert store.claim_jobs(worker_id="w", queues=None, limit=5, lease_s=60) == []


def test_cancel_running_job_requests_cancellation(app: Taskmill, store: Store) -> None:
    app.enqueue("add", [1, 2])
    running = claim_one(store, "w1")
    requested = app.cancel(running.id)
    assert requested.status is JobStatus.RUNNING
    assert requested.cancel_requested is True
    assert store.cancel_requested(worker_id="w1") == [(running.id, 1)]
    assert store.cancel_requested(worker_id="w2") == []


@pytest.mark.parametrize("final", [JobStatus.COMPLETED, JobStatus.FAILED])
def test_cancel_finished_job_is_an_invalid_transition(
    app: Taskmill, store: Store, final: JobStatus
) -> None:
    app.enqueue("add", [1, 2])
    job = claim_one(store)
    finish(store, job, final, error="x" if final is JobStatus.FAILED else None)
    with pytest.raises(InvalidTransition) as caught:
        app.cancel(job.id)
    assert (caught.value.job_id, caught.value.status) == (job.id, final.value)
    assert app.get(job.id).status is final


def test_cancel_cancelled_job_is_an_invalid_transition(app: Taskmill) -> None:
    job = app.cancel(app.enqueue("add", [1, 2]).id)
    with pytest.raises(InvalidTransition):
        app.cancel(job.id)


def test_retry_failed_job_returns_it_to_pending_with_a_fresh_budget(
    app: Taskmill, store: Store
) -> None:
    app.enqueue("add", [1, 2], max_retries=0)
    job = claim_one(store)
    finish(store, job, JobStatus.FAILED, error="boom", traceback="Traceback ...")
    retried = app.retry(job.id)
    assert retried.status is JobStatus.PENDING
    assert retried.attempts == 0
    assert (retried.error, retried.traceback, retried.finished_at, retried.worker) == (None,) * 4
    assert claim_one(store).id == job.id


def test_retry_cancelled_job_returns_it_to_pending(app: Taskmill) -> None:
    job = app.cancel(app.enqueue("add", [1, 2]).id)
    retried = app.retry(job.id)
    assert (retried.status, retried.attempts, retried.cancel_requested) == (
        JobStatus.PENDING, 0, False,
    )  # fmt: skip


@pytest.mark.parametrize("state", ["pending", "running", "completed"])
def test_retry_from_other_states_is_an_invalid_transition(
    app: Taskmill, store: Store, state: str
) -> None:
    job = app.enqueue("add", [1, 2])
    if state != "pending":
        job = claim_one(store)
    if state == "completed":
        finish(store, job, JobStatus.COMPLETED, result_json="3")
    with pytest.raises(InvalidTransition, match=state):
        app.retry(job.id)
    assert app.get(job.id).status == state


# -- wait -------------------------------------------------------------------------------------


def test_wait_returns_the_job_once_another_process_finishes_it(
    app: Taskmill, app_factory: Callable[[], Taskmill]
) -> None:
    job = app.enqueue("add", [1, 2])
    worker_store = app_factory().store
    claimed = claim_one(worker_store)
    waiting_started = threading.Event()

    def worker() -> None:
        waiting_started.wait(5)
        finish(worker_store, claimed, JobStatus.COMPLETED, result_json="3")

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        waiting_started.set()
        done = app.wait(job.id, timeout=10)
    finally:
        thread.join()
    assert (done.status, done.result) == (JobStatus.COMPLETED, 3)


def test_wait_times_out_on_an_unfinished_job(app: Taskmill) -> None:
    job = app.enqueue("add", [1, 2])
    with pytest.raises(TimeoutError, match="still pending"):
        app.wait(job.id, timeout=0.05)
    with pytest.raises(JobNotFound):
        app.wait(str(uuid.uuid4()), timeout=0.05)


def test_wait_on_a_final_job_returns_at_once(app: Taskmill) -> None:
    job = app.cancel(app.enqueue("add", [1, 2]).id)
    assert app.wait(job.id, timeout=0) == job


# -- migrate --------------------------------------------------------------------------------


def test_migrate_is_idempotent_and_keeps_jobs(app: Taskmill, backend: str) -> None:
    job = app.enqueue("add", [1, 2])
    assert app.migrate() == latest_version(backend)
    assert app.migrate() == latest_version(backend)
    assert app.store.schema_version() == latest_version(backend)
    assert app.get(job.id) == job


# -- async twins ------------------------------------------------------------------------------


def test_async_twins_behave_like_the_blocking_calls(app: Taskmill) -> None:
    async def scenario() -> None:
        job = await app.enqueue_async("add", [1, 2])
        assert await app.get_async(job.id) == job
        assert [j.id for j in await app.list_async()] == [job.id]
        assert (await app.cancel_async(job.id)).status is JobStatus.CANCELLED
        assert (await app.retry_async(job.id)).status is JobStatus.PENDING
        with pytest.raises(JobNotFound):
            await app.get_async(str(uuid.uuid4()))

    asyncio.run(scenario())
