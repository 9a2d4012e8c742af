"""A worker that survives everything: hard timeouts, crashes, signals, kill -9, cancels.

Real processes, really killed. Where a deadline matters, tests wait on the stored state
(never a fixed sleep) and bound how long it may take."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from taskmill import JobStatus, Taskmill
from tests.helpers import wait_until
from tests.integration.conftest import StartWorker
from tests.integration.workers import read_run_log

WAIT_S = 30.0


def _started(app: Taskmill, job_id: str) -> None:
    wait_until(
        lambda: app.get(job_id).status is JobStatus.RUNNING, timeout_s=WAIT_S,
        what=f"job {job_id} running",
    )  # fmt: skip


def _runs(run_log: Path, tag: str) -> list[tuple[str, int, str, int]]:
    return [run for run in read_run_log(run_log) if run[2] == tag]


def test_hard_timeout_kills_a_blocked_job_while_others_keep_flowing(
    app: Taskmill, start_worker: StartWorker, run_log: Path
) -> None:
    start_worker("-c", "2")
    stuck = app.enqueue("hang")  # timeout=1, max_retries=1
    others = [app.enqueue("add", [i, i]) for i in range(20)]
    for job in others:
        assert app.wait(job.id, timeout=WAIT_S).status is JobStatus.COMPLETED
    failed = app.wait(stuck.id, timeout=WAIT_S)
    assert (failed.status, failed.attempts) == (JobStatus.FAILED, 2)
    assert failed.error == "timeout after 1s"
    assert failed.duration_s is not None and 1.0 <= failed.duration_s < 2.0  # killed within 1 s
    pids = {pid for _, _, _, pid in _runs(run_log, "hang")}
    assert len(pids) == 2, "each attempt ran in a fresh child"
    assert app.wait(app.enqueue("add", [1, 1]).id, timeout=WAIT_S).result == 2


def test_child_that_exits_on_every_attempt_fails_the_job_not_the_worker(
    app: Taskmill, start_worker: StartWorker, run_log: Path
) -> None:
    worker = start_worker("-c", "1")
    poison = app.wait(app.enqueue("crash").id, timeout=WAIT_S)  # max_retries=2
    assert (poison.status, poison.attempts) == (JobStatus.FAILED, 3)
    assert poison.error == "worker child died (exit code 1)"
    assert len(_runs(run_log, "crash")) == 3
    assert app.wait(app.enqueue("add", [2, 2]).id, timeout=WAIT_S).result == 4
    assert worker.process.poll() is None


@pytest.mark.parametrize("group", [False, True], ids=["supervisor-only", "process-group"])
def test_sigterm_lets_running_jobs_finish_and_hands_back_the_rest(
    app: Taskmill, start_worker: StartWorker, group: bool
) -> None:
    worker = start_worker("-c", "2", "--grace", "20")
    running = [app.enqueue("sleep_for", [1.5]) for _ in range(2)]
    for job in running:
        _started(app, job.id)
    waiting = [app.enqueue("add", [i, 1], delay=0) for i in range(5)]
    worker.signal(signal.SIGTERM, group=group)
    assert worker.process.wait(WAIT_S) == 0
    for job in running:
        finished = app.get(job.id)
        assert (finished.status, finished.attempts, finished.result) == (
            JobStatus.COMPLETED, 1, 1.5,
        )  # fmt: skip
    for job in waiting:
        left = app.get(job.id)
        assert left.status in {JobStatus.PENDING, JobStatus.COMPLETED}
        assert left.attempts == (1 if left.status is JobStatus.COMPLETED else 0)


def test_grace_period_over_hands_running_jobs_back_without_counting(
    app: Taskmill, start_worker: StartWorker
) -> None:
    worker = start_worker("-c", "1", "--grace", "0.5")
    job = app.enqueue("sleep_for", [30])
    _started(app, job.id)
    worker.signal(signal.SIGINT, group=True)  # Ctrl-C in a terminal
    assert worker.process.wait(WAIT_S) == 0
    back = app.get(job.id)
    assert (back.status, back.attempts, back.worker) == (JobStatus.PENDING, 0, None)


def test_second_signal_stops_at_once(app: Taskmill, start_worker: StartWorker) -> None:
    worker = start_worker("-c", "1", "--grace", "60")
    job = app.enqueue("sleep_for", [60])
    _started(app, job.id)
    worker.signal(signal.SIGTERM)
    # Signals of one kind that arrive together merge into one; a person's second Ctrl-C
    # comes after the first was seen.
    wait_until(lambda: "stopping" in worker.log(), timeout_s=WAIT_S, what="drain started")
    worker.signal(signal.SIGTERM)
    assert worker.process.wait(10) == 0
    assert app.get(job.id).status is JobStatus.PENDING


def test_cancel_kills_a_running_job_within_a_second(
    app: Taskmill, start_worker: StartWorker
) -> None:
    start_worker("-c", "1")
    job = app.enqueue("sleep_for", [60])
    _started(app, job.id)
    asked = time.monotonic()
    assert app.cancel(job.id).cancel_requested
    cancelled = app.wait(job.id, timeout=WAIT_S)
    assert cancelled.status is JobStatus.CANCELLED
    assert time.monotonic() - asked < 1.5  # within 1 s, plus the test's own polling
    assert app.wait(app.enqueue("add", [3, 3]).id, timeout=WAIT_S).result == 6


def test_cancel_is_durable_across_worker_restarts(
    app: Taskmill, start_worker: StartWorker, run_log: Path
) -> None:
    first = start_worker("-c", "1")
    blocker = app.enqueue("sleep_for", [60])
    _started(app, blocker.id)
    queued = app.enqueue("record", ["must-not-run"])
    assert app.cancel(queued.id).status is JobStatus.CANCELLED
    first.kill_group()
    second = start_worker("-c", "1", lease_s=1)
    second.wait_started()
    assert app.wait(app.enqueue("add", [1, 2]).id, timeout=WAIT_S).result == 3
    assert app.get(queued.id).status is JobStatus.CANCELLED
    assert _runs(run_log, "must-not-run") == []


@pytest.mark.slow
def test_kill_9_of_a_whole_worker_loses_nothing(
    app: Taskmill, start_worker: StartWorker, run_log: Path
) -> None:
    victim = start_worker("-c", "2", lease_s=2)
    jobs = app.enqueue_many(
        [{"task": "record", "kwargs": {"tag": str(i), "seconds": 0.05}} for i in range(1000)]
    )
    wait_until(lambda: len(read_run_log(run_log)) >= 100, timeout_s=WAIT_S, what="100 runs")
    in_flight = sum(c.count for c in app.store.queue_counts() if c.status is JobStatus.RUNNING)
    victim.kill_group()
    rescuer = start_worker("-c", "2", lease_s=2)
    wait_until(
        lambda: sum(c.count for c in app.store.queue_counts() if c.status is JobStatus.COMPLETED)
        == 1000,
        timeout_s=120, interval_s=0.1, what="all 1000 completed",
    )  # fmt: skip
    runs = Counter(job_id for job_id, _, _, _ in read_run_log(run_log))
    assert set(runs) == {j.id for j in jobs}, "a job was lost"
    duplicates = sum(n - 1 for n in runs.values())
    assert duplicates <= in_flight, f"{duplicates} re-runs but only {in_flight} were in flight"
    assert rescuer.stop() == 0


def test_children_are_recycled_after_max_tasks(
    app: Taskmill, start_worker: StartWorker, run_log: Path
) -> None:
    start_worker("-c", "1", "--max-tasks-per-child", "2")
    for i in range(5):
        app.wait(app.enqueue("record", [f"r{i}"]).id, timeout=WAIT_S)
    per_pid = Counter(pid for _, _, _, pid in read_run_log(run_log))
    assert sorted(per_pid.values()) == [1, 2, 2], "each child serves two jobs, then a new one"


def test_children_are_recycled_past_max_memory(app: Taskmill, start_worker: StartWorker) -> None:
    start_worker("-c", "1", "--max-memory-per-child", "100")
    first = app.wait(app.enqueue("hog", [150]).id, timeout=WAIT_S)
    second = app.wait(app.enqueue("hog", [1]).id, timeout=WAIT_S)
    assert first.status is second.status is JobStatus.COMPLETED
    assert first.result != second.result, "the bloated child should have been replaced"
