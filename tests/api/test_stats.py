"""/api/stats, its WebSocket and /metrics: the same numbers, read from the store, on both
backends; and the pieces that derive them (snapshot aggregation, caching, monotonic
counters)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from taskmill import JobStatus, Taskmill
from taskmill.api.prometheus import MonotonicGuard, StoreCollector
from taskmill.stats import StatsService, build_snapshot
from taskmill.store import Store
from taskmill.store.base import DURATION_BOUNDS_S, JobStats, WorkerInfo
from tests.api.conftest import MakeClient
from tests.helpers import RawDb, claim_one, finish


def run_one(store: Store, status: JobStatus, **fields: Any) -> str:
    job = claim_one(store)
    assert finish(store, job, status, **fields) == 1
    return job.id


@pytest.fixture
def busy(app: Taskmill) -> Taskmill:
    """Queue default: 1 pending (sent back once, for a retry), 1 running, 2 completed,
    1 failed, 1 cancelled; queue high: 2 pending (one of them sent back for a retry)."""
    app.enqueue_many([{"task": "add", "args": [i, i]} for i in range(6)])
    store = app.store
    run_one(store, JobStatus.COMPLETED, result_json="0")
    run_one(store, JobStatus.PENDING, error="flaky", retry_delay_s=0.0)
    run_one(store, JobStatus.COMPLETED, result_json="4")
    run_one(store, JobStatus.FAILED, error="boom")
    claim_one(store)  # running
    newest_pending = app.list(status="pending", limit=1)[0]
    app.cancel(newest_pending.id)
    app.enqueue("urgent", [1])
    app.enqueue("urgent", [2])
    run_one(store, JobStatus.PENDING, error="later", retry_delay_s=600.0)
    return app


@pytest.fixture
def api(make_client: MakeClient, app: Taskmill) -> TestClient:
    return make_client(app, stats_push_interval_s=0.02)


def test_stats_count_jobs_per_queue_and_state(busy: Taskmill, api: TestClient) -> None:
    stats = api.get("/api/stats").json()
    queues = {q.pop("queue"): q for q in stats["queues"]}
    assert queues["default"] == {
        "pending": 1, "running": 1, "completed": 2, "failed": 1, "cancelled": 1,
        "jobs_per_s": round(3 / 60, 3),
    }  # fmt: skip
    assert queues["high"] == {
        "pending": 2, "running": 0, "completed": 0, "failed": 0, "cancelled": 0,
        "jobs_per_s": 0.0,
    }  # fmt: skip
    assert stats["totals"]["pending"] == 3 and stats["totals"]["completed"] == 2
    assert stats["jobs_per_s"] == round(3 / 60, 3) and stats["window_s"] == 60
    assert stats["workers_online"] == 0 and stats["workers"] == []


def test_only_jobs_finished_in_the_last_minute_count_for_throughput(
    app: Taskmill, api: TestClient, raw_db: RawDb
) -> None:
    app.enqueue_many([{"task": "add", "args": [i, i]} for i in range(2)])
    old = run_one(app.store, JobStatus.COMPLETED, result_json="0")
    run_one(app.store, JobStatus.COMPLETED, result_json="2")
    raw_db.set_time("taskmill_jobs", old, "finished_at", datetime.now(UTC) - timedelta(minutes=2))
    assert api.get("/api/stats").json()["jobs_per_s"] == round(1 / 60, 3)


def test_workers_online_are_those_with_a_recent_heartbeat(
    app: Taskmill, api: TestClient, raw_db: RawDb
) -> None:
    store = app.store
    for name, concurrency in (("w-a", 4), ("w-b", 2), ("w-gone", 8), ("w-stopped", 1)):
        store.register_worker(WorkerInfo(name, "host", 100, '["high"]', concurrency))
        store.heartbeat(worker_id=name, lease_s=30)
    store.unregister_worker("w-stopped")
    silent_since = datetime.now(UTC) - timedelta(seconds=app.settings.lease_s + 5)
    raw_db.set_time("taskmill_workers", "w-gone", "heartbeat_at", silent_since)
    stats = api.get("/api/stats").json()
    assert stats["workers_online"] == 2 and stats["worker_slots"] == 6
    assert sorted(w["id"] for w in stats["workers"]) == ["w-a", "w-b"]
    assert stats["workers"][0]["queues"] == ["high"] and stats["workers"][0]["host"] == "host"


def test_the_websocket_pushes_a_snapshot_that_follows_the_queue(
    app: Taskmill, api: TestClient
) -> None:
    with api.websocket_connect("/api/stats/ws") as ws:
        assert ws.receive_json()["totals"]["pending"] == 0
        app.enqueue_many([{"task": "add", "args": [1, 1]}] * 3)
        for _ in range(500):  # pushed every 20 ms: a bound, not a wait
            snapshot = ws.receive_json()
            if snapshot["totals"]["pending"] == 3:
                break
        assert snapshot["totals"]["pending"] == 3
        assert [q["queue"] for q in snapshot["queues"]] == ["default"]


def metrics(api: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_metrics_count_per_task_and_queue_as_stats_does(busy: Taskmill, api: TestClient) -> None:
    found = metrics(api)
    add = (("queue", "default"), ("task", "add"))
    urgent = (("queue", "high"), ("task", "urgent"))
    expected = {
        ("taskmill_jobs_enqueued_total", add): 6, ("taskmill_jobs_enqueued_total", urgent): 2,
        ("taskmill_jobs_started_total", add): 5, ("taskmill_jobs_started_total", urgent): 1,
        ("taskmill_jobs_completed_total", add): 2, ("taskmill_jobs_failed_total", add): 1,
        ("taskmill_jobs_cancelled_total", add): 1,
        ("taskmill_jobs_retried_total", add): 1, ("taskmill_jobs_retried_total", urgent): 1,
        ("taskmill_job_duration_seconds_count", add): 3,
        ("taskmill_job_duration_seconds_bucket", (("le", "+Inf"), *add)): 3,
        ("taskmill_queue_depth", (("queue", "default"),)): 1,
        ("taskmill_queue_depth", (("queue", "high"),)): 2,
        ("taskmill_jobs", (("queue", "default"), ("status", "running"))): 1,
        ("taskmill_workers_online", ()): 0, ("taskmill_worker_slots", ()): 0,
        ("taskmill_jobs_per_second", (("queue", "default"),)): 3 / 60,
    }  # fmt: skip
    assert {key: found.get(key) for key in expected} == expected
    buckets = [found[("taskmill_job_duration_seconds_bucket", (("le", f"{b:g}"), *add))]
               for b in DURATION_BOUNDS_S]  # fmt: skip
    assert buckets == sorted(buckets) and buckets[-1] <= 3


# -- the parts ----------------------------------------------------------------------------


def stats_row(task: str, status: JobStatus, jobs: int, attempts: int, started: int) -> JobStats:
    zeros = (0,) * len(DURATION_BOUNDS_S)
    return JobStats(task, "q", status, jobs, attempts, started, 0, 0, 0.0, zeros)


def test_retries_are_attempts_after_the_first_begun_or_scheduled() -> None:
    rows = [
        stats_row("t", JobStatus.PENDING, jobs=3, attempts=2, started=1),  # 2 retries waiting
        stats_row("t", JobStatus.COMPLETED, jobs=4, attempts=6, started=4),  # 2 retried
        stats_row("t", JobStatus.CANCELLED, jobs=2, attempts=0, started=0),
    ]
    snapshot = build_snapshot(rows, [], window_s=60, taken_at=datetime.now(UTC))
    (totals,) = snapshot.tasks
    assert (totals.enqueued, totals.started, totals.retried) == (9, 8, 4)


class CountingStore:
    def __init__(self) -> None:
        self.scans = 0
        self.entered = threading.Event()
        self.release = threading.Event()

    def job_stats(self, *, window_s: float) -> list[JobStats]:
        self.scans += 1
        self.entered.set()
        self.release.wait(5)
        return [stats_row("t", JobStatus.PENDING, jobs=self.scans, attempts=0, started=0)]

    def workers_online(self, *, within_s: float) -> list[Any]:
        return []


def test_concurrent_readers_share_one_scan_and_a_fresh_snapshot_is_reused() -> None:
    store = CountingStore()
    service = StatsService(store, online_within_s=30, max_age_s=60)  # type: ignore[arg-type]
    results: list[Any] = []
    readers = [threading.Thread(target=lambda: results.append(service.snapshot()))
               for _ in range(5)]  # fmt: skip
    readers[0].start()
    assert store.entered.wait(5)  # the first reader is scanning...
    for reader in readers[1:]:
        reader.start()  # ...and the others queue behind it
    store.release.set()
    for reader in readers:
        reader.join(5)
    assert store.scans == 1 and len({id(r) for r in results}) == 1
    assert service.snapshot() is results[0]


def test_exposed_counters_never_decrease() -> None:
    guard = MonotonicGuard()
    raw = [5, 9, 4, 6, 6, 20]  # jobs pruned between the 2nd and 3rd scrape
    exposed = [guard.value(("c",), r) for r in raw]
    assert exposed == [5, 9, 9, 11, 11, 25]


class FixedStats:
    def __init__(self, rows: list[JobStats]) -> None:
        self.rows = rows

    def snapshot(self) -> Any:
        return build_snapshot(self.rows, [], window_s=60, taken_at=datetime.now(UTC))


def histogram_row(jobs: int, le: tuple[int, ...]) -> JobStats:
    return JobStats("t", "q", JobStatus.COMPLETED, jobs, jobs, jobs, 0, jobs, 1.0 * jobs, le)


def test_collected_histograms_stay_cumulative_after_pruning() -> None:
    n = len(DURATION_BOUNDS_S)
    stats = FixedStats([histogram_row(10, (2,) * 3 + (10,) * (n - 3))])
    collector = StoreCollector(stats)  # type: ignore[arg-type]
    list(collector.collect())
    stats.rows = [histogram_row(9, (0,) * 3 + (9,) * (n - 3))]  # the fast ones were pruned
    families = {f.name: f for f in collector.collect()}
    buckets = [s.value for s in families["taskmill_job_duration_seconds"].samples
               if s.name.endswith("_bucket")]  # fmt: skip
    assert buckets == sorted(buckets) and buckets[0] == 2
    completed = families["taskmill_jobs_completed"].samples[0].value
    assert completed == 10  # not 9: a counter never goes down
