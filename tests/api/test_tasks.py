"""/api/tasks in process: every route, every status it answers, on both backends and both
ways of serving (fast path, FastAPI routes)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from taskmill import Job, JobStatus, Taskmill
from taskmill.api.schemas import JobOut
from tests.helpers import claim_one, finish, near
from tests.tasks_for_tests import URGENT_OPTIONS

JSON = {"content-type": "application/json"}


def submit(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/api/tasks", json=body)
    assert response.status_code == 202, response.text[:500]
    data: dict[str, Any] = response.json()
    return data


def error_of(response: Any, status: int) -> dict[str, Any]:
    """The error body of `response`, after checking its status and shape."""
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    assert body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


# -- submit -------------------------------------------------------------------------------


def test_submit_answers_202_with_the_stored_pending_job(client: TestClient, app: Taskmill) -> None:
    response = client.post("/api/tasks", json={"task": "add", "args": [2, 3]})
    assert response.status_code == 202
    job = response.json()
    assert response.headers["location"] == f"/api/tasks/{job['id']}"
    assert job["status"] == "pending" and job["task"] == "add" and job["args"] == [2, 3]
    assert job["queue"] == "default" and job["attempts"] == 0
    stored = app.get(job["id"])
    assert stored.args == [2, 3] and stored.status is JobStatus.PENDING
    assert datetime.fromisoformat(job["created_at"]) == stored.created_at


def test_submit_takes_the_tasks_defaults_and_the_options_given(client: TestClient) -> None:
    defaults = submit(client, task="urgent", args=[1])
    assert defaults["queue"] == URGENT_OPTIONS["queue"]
    assert defaults["priority"] == URGENT_OPTIONS["priority"]
    assert defaults["max_retries"] == URGENT_OPTIONS["max_retries"]
    assert defaults["timeout_s"] == URGENT_OPTIONS["timeout"]
    given = submit(
        client, task="echo", kwargs={"x": {"nested": [1, None, "é"]}}, queue="low",
        priority=-3, delay=60, max_retries=0, timeout=2.5, idempotency_key="k-1",
    )  # fmt: skip
    assert given["kwargs"] == {"x": {"nested": [1, None, "é"]}}
    assert (given["queue"], given["priority"], given["max_retries"]) == ("low", -3, 0)
    assert given["timeout_s"] == 2.5 and given["idempotency_key"] == "k-1"
    scheduled = datetime.fromisoformat(given["scheduled_at"])
    assert near(scheduled, datetime.now(UTC) + timedelta(seconds=60))


def test_an_idempotency_key_used_again_returns_the_first_job(client: TestClient) -> None:
    first = submit(client, task="add", args=[1, 1], idempotency_key="signup-42")
    again = submit(client, task="add", args=[9, 9], idempotency_key="signup-42")
    assert again["id"] == first["id"] and again["args"] == [1, 1]
    other_task = submit(client, task="echo", idempotency_key="signup-42")
    assert other_task["id"] != first["id"]  # keys are unique per task


@pytest.mark.parametrize(
    ("body", "code", "where"),
    [
        ({"task": "no_such_task"}, "unknown_task", "no_such_task"),
        ({"task": "add", "args": [1]}, "validation_error", "missing a required argument"),
        ({"task": "add", "args": [1, 2], "kwargs": {"c": 3}}, "validation_error", "c"),
        ({"task": "add", "args": [1, 2], "color": "red"}, "validation_error", "color"),
        ({"task": "add", "args": [1, 2], "priority": "high"}, "validation_error", "priority"),
        ({"task": "add", "args": [1, 2], "priority": True}, "validation_error", "priority"),
        ({"task": "add", "args": [1, 2], "priority": 5000}, "validation_error", "priority"),
        ({"task": "add", "args": [1, 2], "delay": -1}, "validation_error", "delay"),
        ({"task": "add", "args": [1, 2], "timeout": 0}, "validation_error", "timeout"),
        ({"task": "add", "args": [1, 2], "queue": "no spaces"}, "validation_error", "queue"),
        ({"task": "add", "args": [1, 2], "idempotency_key": ""}, "validation_error", "idempotency"),
        ({"task": "echo", "kwargs": {"text": "nul \u0000 inside"}}, "validation_error", "NUL"),
        ({"task": "add", "args": "1,2"}, "validation_error", "args"),
        ({"args": [1, 2]}, "validation_error", "task"),
        ([{"task": "add"}], "validation_error", "body"),
    ],
)  # fmt: skip
def test_bad_submits_are_422_with_the_reason(
    shared_client: TestClient, shared_app: Taskmill, body: Any, code: str, where: str
) -> None:
    error = error_of(shared_client.post("/api/tasks", json=body), 422)
    assert error["code"] == code
    assert where in error["message"]
    assert shared_app.list(limit=10) == []  # nothing stored


@pytest.mark.parametrize(
    "raw", [b"{bad json", b"", b'{"task": "add", "args": [NaN, 1]}', b'{"task": "\\ud800"}']
)
def test_malformed_json_is_422(shared_client: TestClient, raw: bytes) -> None:
    error = error_of(shared_client.post("/api/tasks", content=raw, headers=JSON), 422)
    assert error["code"] == "validation_error"


def test_a_body_without_a_json_content_type_is_not_parsed(shared_client: TestClient) -> None:
    # CSRF guard (FastAPI's strict content type): a form post from a browser cannot submit.
    response = shared_client.post("/api/tasks", content=b'{"task": "add", "args": [1, 2]}')
    assert error_of(response, 422)["code"] == "validation_error"


def test_a_request_over_a_mebibyte_is_413(shared_client: TestClient) -> None:
    body = {"task": "echo", "kwargs": {"blob": "x" * (1024 * 1024)}}
    error = error_of(shared_client.post("/api/tasks", json=body), 413)
    assert error["code"] == "payload_too_large"


# -- read, list ---------------------------------------------------------------------------


def test_get_returns_the_job_as_stored_now(client: TestClient, app: Taskmill) -> None:
    job = app.enqueue("add", [1, 2])
    claimed = claim_one(app.store)
    finish(app.store, claimed, JobStatus.COMPLETED, result_json="3")
    response = client.get(f"/api/tasks/{job.id}")
    assert response.status_code == 200
    data = response.json()
    assert data["status"] == "completed" and data["result"] == 3 and data["attempts"] == 1
    assert data["worker"] == "w1" and data["duration_s"] is not None and data["progress"] == 1.0


@pytest.mark.parametrize("job_id", ["01930000-0000-7000-8000-000000000000", "not-an-id", "%20"])
def test_get_of_an_unknown_job_is_404(shared_client: TestClient, job_id: str) -> None:
    assert error_of(shared_client.get(f"/api/tasks/{job_id}"), 404)["code"] == "not_found"


def test_the_wire_job_is_the_job_record_field_for_field(client: TestClient, app: Taskmill) -> None:
    job = app.enqueue("add", [1, 2])
    data = client.get(f"/api/tasks/{job.id}").json()
    assert list(data) == [f.name for f in dataclasses.fields(Job)]
    assert list(data) == list(JobOut.model_fields)
    JobOut.model_validate(data)


def test_list_is_newest_first_with_filters(client: TestClient, app: Taskmill) -> None:
    jobs = [app.enqueue("add", [i, i]) for i in range(3)] + [app.enqueue("urgent", [1])]
    app.cancel(jobs[0].id)
    page = client.get("/api/tasks").json()
    assert [j["id"] for j in page["jobs"]] == [j.id for j in reversed(jobs)]
    assert page["next_cursor"] is None

    def ids(query: str) -> list[str]:
        response = client.get(f"/api/tasks?{query}")
        assert response.status_code == 200, response.text
        return [j["id"] for j in response.json()["jobs"]]

    assert ids("status=cancelled") == [jobs[0].id]
    assert ids("queue=high") == [jobs[3].id]
    assert ids("task=add&status=pending") == [jobs[2].id, jobs[1].id]
    assert ids("task=nothing") == []


def test_cursor_pages_stay_consistent_while_jobs_are_inserted(
    client: TestClient, app: Taskmill
) -> None:
    before = [j.id for j in app.enqueue_many([{"task": "add", "args": [i, i]} for i in range(12)])]
    seen: list[str] = []
    cursor = ""
    for page_number in range(10):
        page = client.get(f"/api/tasks?task=add&limit=5&cursor={cursor}").json()
        seen += [j["id"] for j in page["jobs"]]
        # Jobs arrive between pages: they are newer than every cursor, so no page shifts.
        app.enqueue_many([{"task": "add", "args": [page_number, 0]}] * 3)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(before))


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=1001", "limit=ten", "status=done", "cursor=not-a-cursor"],
)
def test_bad_list_queries_are_422(shared_client: TestClient, query: str) -> None:
    assert error_of(shared_client.get(f"/api/tasks?{query}"), 422)["code"] == "validation_error"


# -- cancel, retry ------------------------------------------------------------------------


def test_cancel_then_retry_then_conflicts(client: TestClient, app: Taskmill) -> None:
    job = app.enqueue("add", [1, 2])
    cancelled = client.post(f"/api/tasks/{job.id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    error = error_of(client.post(f"/api/tasks/{job.id}/cancel"), 409)
    assert error["code"] == "invalid_transition" and "cancelled" in error["message"]
    retried = client.post(f"/api/tasks/{job.id}/retry")
    assert retried.status_code == 200 and retried.json()["status"] == "pending"
    assert error_of(client.post(f"/api/tasks/{job.id}/retry"), 409)["code"] == "invalid_transition"


def test_cancel_of_a_running_job_asks_its_worker(client: TestClient, app: Taskmill) -> None:
    app.enqueue("sleep_for", [10])
    job = claim_one(app.store)
    response = client.post(f"/api/tasks/{job.id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "running" and response.json()["cancel_requested"]


@pytest.mark.parametrize("action", ["cancel", "retry"])
def test_cancel_or_retry_of_an_unknown_job_is_404(shared_client: TestClient, action: str) -> None:
    response = shared_client.post(f"/api/tasks/01930000-0000-7000-8000-000000000000/{action}")
    assert error_of(response, 404)["code"] == "not_found"


# -- what is not an operation -------------------------------------------------------------


def test_unknown_paths_and_methods_get_the_error_body(shared_client: TestClient) -> None:
    assert error_of(shared_client.get("/api/nothing"), 404)["code"] == "not_found"
    error = error_of(shared_client.put("/api/tasks"), 405)
    assert error["code"] == "method_not_allowed"
