"""The API routes the dashboard reads: workers in detail (stale ones included), throughput
history, the registered tasks; on both backends, behind the API keys like every /api route."""

from __future__ import annotations

import inspect
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from taskmill import JobStatus, Taskmill
from taskmill.api.routes.registry import parameter_out
from taskmill.stats import CURRENT_JOBS_SHOWN
from taskmill.store.base import WorkerInfo
from tests.api.conftest import MakeClient
from tests.helpers import RawDb, claim_one, finish

DASHBOARD_ROUTES = ["/api/workers", "/api/stats/history", "/api/task-types"]


@pytest.fixture
def api(make_client: MakeClient, app: Taskmill) -> TestClient:
    return make_client(app)


def ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


# -- /api/workers ---------------------------------------------------------------------------


def register(
    app: Taskmill, worker_id: str, queues: str | None = None, concurrency: int = 2
) -> None:
    app.store.register_worker(WorkerInfo(worker_id, "host-a", 4242, queues, concurrency))


def test_workers_show_online_then_stale_then_recently_stopped(
    app: Taskmill, api: TestClient, raw_db: RawDb
) -> None:
    lease_s = app.settings.lease_s
    for name in ("w-stopped", "w-stale", "w-online", "w-stopped-long-ago", "w-silent-for-days"):
        register(app, name, queues='["high", "low"]' if name == "w-online" else None)
    raw_db.set_time("taskmill_workers", "w-stale", "heartbeat_at", ago(lease_s + 5))
    raw_db.set_time("taskmill_workers", "w-silent-for-days", "heartbeat_at", ago(3 * 86400))
    app.store.unregister_worker("w-stopped")
    app.store.unregister_worker("w-stopped-long-ago")
    raw_db.set_time("taskmill_workers", "w-stopped-long-ago", "stopped_at", ago(3600))

    found = api.get("/api/workers").json()

    assert found["lease_s"] == lease_s
    workers = {w["id"]: w for w in found["workers"]}
    assert [w["id"] for w in found["workers"]] == ["w-online", "w-stale", "w-stopped"]
    assert [w["state"] for w in found["workers"]] == ["online", "stale", "stopped"]
    assert [w["stale"] for w in found["workers"]] == [False, True, False]
    online, stale = workers["w-online"], workers["w-stale"]
    assert online["queues"] == ["high", "low"] and workers["w-stopped"]["queues"] is None
    assert (online["host"], online["pid"], online["concurrency"]) == ("host-a", 4242, 2)
    assert 0 <= online["heartbeat_age_s"] < 10 and online["stopped_at"] is None
    assert lease_s + 5 <= stale["heartbeat_age_s"] < lease_s + 60
    assert workers["w-stopped"]["stopped_at"] is not None


def test_a_worker_shows_its_running_jobs_oldest_first_up_to_a_limit(
    app: Taskmill, api: TestClient
) -> None:
    register(app, "w-busy")
    register(app, "w-idle")
    total = CURRENT_JOBS_SHOWN + 3
    ids = [j.id for j in app.enqueue_many([{"task": "add", "args": [i, i]} for i in range(total)])]
    claimed = app.store.claim_jobs(worker_id="w-busy", queues=None, limit=total, lease_s=60)
    assert len(claimed) == total

    workers = {w["id"]: w for w in api.get("/api/workers").json()["workers"]}

    busy = workers["w-busy"]
    assert busy["running"] == total
    assert len(busy["current_jobs"]) == CURRENT_JOBS_SHOWN
    assert {j["id"] for j in busy["current_jobs"]} <= set(ids)
    assert all(j["task"] == "add" and j["started_at"] for j in busy["current_jobs"])
    started = [j["started_at"] for j in busy["current_jobs"]]
    assert started == sorted(started)
    assert workers["w-idle"]["running"] == 0 and workers["w-idle"]["current_jobs"] == []


def test_no_workers_is_an_empty_list(api: TestClient) -> None:
    assert api.get("/api/workers").json()["workers"] == []


# -- /api/stats/history ---------------------------------------------------------------------


def run(app: Taskmill, status: JobStatus, **fields: Any) -> str:
    job = claim_one(app.store)
    assert finish(app.store, job, status, **fields) == 1
    return job.id


def bucket_of(buckets: list[dict[str, Any]], when: datetime, bucket_s: int) -> dict[str, Any]:
    for bucket in buckets:
        start = datetime.fromisoformat(bucket["start"])
        if start <= when < start + timedelta(seconds=bucket_s):
            return bucket
    raise AssertionError(f"no bucket holds {when}")


def test_history_counts_completed_failed_and_retried_jobs_per_bucket(
    app: Taskmill, api: TestClient, raw_db: RawDb
) -> None:
    app.enqueue_many([{"task": "add", "args": [i, i]} for i in range(7)])
    run(app, JobStatus.COMPLETED, result_json="0")
    run(app, JobStatus.FAILED, error="boom")
    run(app, JobStatus.PENDING, error="flaky", retry_delay_s=600.0)  # waits for a retry
    retried = run(app, JobStatus.PENDING, error="flaky", retry_delay_s=0.0)
    raw_db.set_time("taskmill_jobs", retried, "scheduled_at", ago(1))
    job = claim_one(app.store)
    assert job.id == retried and job.attempts == 2
    assert finish(app.store, job, JobStatus.COMPLETED, result_json="6") == 1  # after a retry
    earlier = run(app, JobStatus.COMPLETED, result_json="8")
    too_old = run(app, JobStatus.COMPLETED, result_json="10")
    moved_to = ago(300)
    raw_db.set_time("taskmill_jobs", earlier, "finished_at", moved_to)
    raw_db.set_time("taskmill_jobs", too_old, "finished_at", ago(20 * 60))

    found = api.get("/api/stats/history", params={"minutes": 15, "bucket_s": 30}).json()

    buckets = found["buckets"]
    assert (found["minutes"], found["bucket_s"], len(buckets)) == (15, 30, 30)
    starts = [datetime.fromisoformat(b["start"]) for b in buckets]
    assert all(s.timestamp() % 30 == 0 for s in starts)
    assert all(b - a == timedelta(seconds=30) for a, b in itertools.pairwise(starts))
    taken_at = datetime.fromisoformat(found["taken_at"])
    assert starts[-1] <= taken_at < starts[-1] + timedelta(seconds=31)
    sums = {k: sum(b[k] for b in buckets) for k in ("completed", "failed", "retried")}
    assert sums == {"completed": 3, "failed": 1, "retried": 2}
    assert bucket_of(buckets, moved_to, 30)["completed"] >= 1
    assert found["rates"] == {
        "window_s": 60.0, "completed_per_s": round(2 / 60, 3), "failed_per_s": round(1 / 60, 3)
    }  # fmt: skip


def test_history_of_an_empty_store_is_all_zero_buckets(api: TestClient) -> None:
    found = api.get("/api/stats/history", params={"minutes": 2, "bucket_s": 60}).json()
    assert len(found["buckets"]) == 2
    assert all(b["completed"] == b["failed"] == b["retried"] == 0 for b in found["buckets"])


@pytest.mark.parametrize(
    "params", [{"minutes": 0}, {"minutes": 361}, {"bucket_s": 9}, {"bucket_s": 3601}]
)
def test_history_refuses_out_of_range_windows(
    shared_client: TestClient, params: dict[str, int]
) -> None:
    response = shared_client.get("/api/stats/history", params=params)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


# -- /api/task-types ------------------------------------------------------------------------


def test_task_types_describe_every_registered_task(shared_client: TestClient) -> None:
    types = {t["name"]: t for t in shared_client.get("/api/task-types").json()["task_types"]}
    assert list(types) == sorted(types)
    assert {"add", "echo", "urgent", "sleep_for"} <= set(types)
    add = types["add"]
    assert (add["queue"], add["priority"], add["max_retries"], add["timeout_s"]) == (
        "default", 0, 3, None
    )  # fmt: skip
    assert add["parameters"] == [
        {"name": "a", "kind": "positional_or_keyword", "required": True, "default": None,
         "annotation": "int"},
        {"name": "b", "kind": "positional_or_keyword", "required": True, "default": None,
         "annotation": "int"},
    ]  # fmt: skip
    urgent = types["urgent"]
    assert (urgent["queue"], urgent["priority"], urgent["max_retries"]) == ("high", 7, 1)
    assert (urgent["timeout_s"], urgent["backoff"]) == (5.0, 3.0)
    (kwargs,) = types["echo"]["parameters"]
    assert (kwargs["kind"], kwargs["required"]) == ("var_keyword", False)
    report = types["report_progress"]
    assert report["parameters"][0]["annotation"] == "int"


def test_a_parameter_default_is_given_only_when_json_can_carry_it() -> None:
    keyword = inspect.Parameter.KEYWORD_ONLY
    plain = parameter_out(inspect.Parameter("n", keyword, default=3, annotation="int"))
    assert (plain.required, plain.default, plain.kind) == (False, 3, "keyword_only")
    odd = parameter_out(inspect.Parameter("when", keyword, default=object()))
    assert (odd.required, odd.default, odd.annotation) == (False, None, None)
    typed = parameter_out(inspect.Parameter("x", keyword, annotation=list[int]))
    assert (typed.required, typed.annotation) == (True, "list[int]")


# -- auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", DASHBOARD_ROUTES)
def test_dashboard_routes_need_a_key_when_keys_are_set(keyed: TestClient, path: str) -> None:
    refused = keyed.get(path, headers={"authorization": "Bearer wrong"})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    assert keyed.get(path).status_code == 401
    assert keyed.get(path, headers={"authorization": "Bearer k-1"}).status_code == 200


def test_dashboard_routes_are_documented(shared_client: TestClient) -> None:
    paths = shared_client.get("/openapi.json").json()["paths"]
    for path in DASHBOARD_ROUTES:
        operation = paths[path]["get"]
        assert operation["summary"] and operation["description"]
        assert "$ref" in operation["responses"]["200"]["content"]["application/json"]["schema"]
