"""The job records: a NewJob's stored Job is the one the dataclass itself would build."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta

import pytest

from taskmill.jobs import Job, JobStatus, NewJob, _slot_constructor

CREATED = datetime(2030, 1, 2, 3, 4, 5, 600_000, tzinfo=UTC)


def new_job(**changes: object) -> NewJob:
    values: dict[str, object] = {
        "id": "0190a000-0000-7000-8000-000000000001", "task": "add", "queue": "q",
        "priority": -5, "args": [1, {"a": None}], "kwargs": {"b": [2]},
        "args_json": '[1,{"a":null}]', "kwargs_json": '{"b":[2]}', "max_retries": 7,
        "timeout_s": 1.5, "backoff": 0.0, "idempotency_key": "k", "scheduled_at": None,
    }  # fmt: skip
    return NewJob(**{**values, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize("scheduled_at", [None, CREATED + timedelta(minutes=5)])
def test_stored_is_the_pending_job_the_dataclass_would_build(scheduled_at: datetime | None) -> None:
    new = new_job(scheduled_at=scheduled_at)
    expected = Job(
        id=new.id, task=new.task, queue=new.queue, priority=new.priority,
        status=JobStatus.PENDING, args=new.args, kwargs=new.kwargs, attempts=0,
        max_retries=new.max_retries, timeout_s=new.timeout_s, backoff=new.backoff,
        idempotency_key=new.idempotency_key, created_at=CREATED,
        scheduled_at=scheduled_at or CREATED,
    )  # fmt: skip
    stored = new.stored(CREATED)
    assert type(stored) is Job
    assert [getattr(stored, f.name) for f in fields(Job)] == [
        getattr(expected, f.name) for f in fields(Job)
    ]
    assert stored == expected
    with pytest.raises(AttributeError):
        stored.status = JobStatus.RUNNING  # type: ignore[misc]  # still frozen


def test_slot_constructor_takes_every_field_in_order_with_defaults() -> None:
    build = _slot_constructor(Job)
    required = [f.name for f in fields(Job)][:14]  # the fields without a default
    values = {name: object() for name in required}
    job = build(*values.values(), worker="w1")
    assert [getattr(job, name) for name in required] == list(values.values())
    assert (job.worker, job.started_at, job.cancel_requested) == ("w1", None, False)
