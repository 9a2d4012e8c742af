"""Bad input to the Python API is refused at enqueue time with a precise error, and nothing is
stored: a web request handler gets the error, never a worker later."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taskmill import Taskmill, UnknownTaskError, ValidationError

NOW = datetime.now(UTC)


class Opaque:
    pass


CIRCULAR: list[object] = []
CIRCULAR.append(CIRCULAR)
DEEP: list[object] = []
for _ in range(100_000):
    DEEP = [DEEP]


# (enqueue arguments, regex the message must match)
BAD_ENQUEUES: dict[str, tuple[dict[str, Any], str]] = {
    "datetime arg": ({"args": [NOW, 1]}, r"args must be JSON: datetime is not JSON"),
    "bytes arg": ({"args": [b"\x00", 1]}, r"args must be JSON: bytes is not JSON"),
    "object arg": ({"args": [Opaque(), 1]}, r"args must be JSON: Opaque is not JSON"),
    "set arg": ({"args": [{1}, 1]}, r"args must be JSON: set is not JSON"),
    "nan arg": ({"args": [float("nan"), 1]}, r"args must be JSON"),
    "infinite arg": ({"args": [float("inf"), 1]}, r"args must be JSON"),
    "int dict key": ({"args": [{1: "a"}, 1]}, r"args must be JSON: object key 1 is not a string"),
    "NUL in a string": ({"args": ["a\x00b", 1]}, r"args must be JSON: .*contains NUL"),
    "NUL in a key": (
        {"task": "echo", "args": [], "kwargs": {"k": {"a\x00": 1}}},
        r"kwargs must be JSON: .*contains NUL",
    ),
    "lone surrogate": ({"args": ["\ud800", 1]}, r"args must be JSON: .*lone surrogate"),
    "circular list": ({"args": [CIRCULAR, 1]}, r"args must be JSON: nested too deeply or circular"),
    "absurd nesting": ({"args": [DEEP, 1]}, r"args must be JSON: nested too deeply or circular"),
    "nested bad kwarg": (
        {"task": "echo", "args": [], "kwargs": {"x": {"y": [NOW]}}},
        r"kwargs must be JSON: datetime",
    ),
    "too few args": ({"args": [1]}, r"bad arguments for task 'add': missing a required"),
    "too many args": ({"args": [1, 2, 3]}, r"bad arguments for task 'add': too many"),
    "unexpected kwarg": ({"args": [1, 2], "kwargs": {"c": 3}}, r"bad arguments .* 'c'"),
    "positional to **kw": ({"task": "echo", "args": [1]}, r"bad arguments for task 'echo'"),
    "args not a list": ({"args": "12"}, r"args must be a list"),
    "kwargs not a dict": ({"kwargs": [1, 2]}, r"kwargs must be an object"),
    "empty queue": ({"queue": ""}, r"queue must be 1-64 characters"),
    "queue with space": ({"queue": "a b"}, r"queue must be"),
    "queue too long": ({"queue": "q" * 65}, r"queue must be"),
    "queue not str": ({"queue": 5}, r"queue must be"),
    "priority too high": ({"priority": 1001}, r"priority must be from -1000 to 1000, got 1001"),
    "priority too low": ({"priority": -1001}, r"priority must be from -1000 to 1000"),
    "priority bool": ({"priority": True}, r"priority must be a whole number, got True"),
    "priority float": ({"priority": 1.5}, r"priority must be a whole number, got 1.5"),
    "negative max_retries": ({"max_retries": -1}, r"max_retries must be from 0 to"),
    "max_retries float": ({"max_retries": 2.0}, r"max_retries must be a whole number"),
    "timeout zero": ({"timeout": 0}, r"timeout must be > 0, got 0"),
    "negative timeout": ({"timeout": -5}, r"timeout must be > 0"),
    "nan timeout": ({"timeout": float("nan")}, r"timeout must be a number of seconds"),
    "negative backoff": ({"backoff": -1.0}, r"backoff must be >= 0"),
    "negative delay": ({"delay": -1}, r"delay must be >= 0"),
    "delay bool": ({"delay": True}, r"delay must be a number of seconds"),
    "delay too long": ({"delay": 400 * 86400}, r"delay must be at most"),
    "delay and run_at": (
        {"delay": 5, "run_at": NOW + timedelta(seconds=5)},
        r"either delay or run_at, not both",
    ),
    "naive run_at": ({"run_at": datetime(2030, 1, 1)}, r"run_at must be a timezone-aware"),
    "run_at not datetime": ({"run_at": "2030-01-01T00:00:00Z"}, r"run_at must be"),
    "key too long": ({"idempotency_key": "k" * 256}, r"idempotency_key must be a string of 1-255"),
    "empty key": ({"idempotency_key": ""}, r"idempotency_key must be"),
    "key not str": ({"idempotency_key": 42}, r"idempotency_key must be"),
}


@pytest.mark.parametrize("case", list(BAD_ENQUEUES))
def test_bad_enqueue_is_refused_precisely_and_stores_nothing(app: Taskmill, case: str) -> None:
    options, message = BAD_ENQUEUES[case]
    options = {"task": "add", "args": [1, 2], **options}
    with pytest.raises(ValidationError, match=message):
        app.enqueue(**options)
    assert app.list() == []


@pytest.mark.parametrize("name", ["nope", "", "ADD", None, 3])
def test_unknown_task_is_refused_naming_it_and_stores_nothing(app: Taskmill, name: object) -> None:
    with pytest.raises(UnknownTaskError, match=r"unknown task .*registered: .*add"):
        app.enqueue(name, [1, 2])  # type: ignore[arg-type]
    assert app.list() == []


def test_edge_values_that_are_valid_are_accepted(app: Taskmill) -> None:
    job = app.enqueue(
        "add",
        [1, 2],
        queue="a" * 64,
        priority=-1000,
        max_retries=0,
        timeout=0.001,
        backoff=0,
        delay=0,
        idempotency_key="k" * 255,
    )
    assert (job.queue, job.priority, job.max_retries, job.timeout_s, job.backoff) == (
        "a" * 64, -1000, 0, 0.001, 0.0,
    )  # fmt: skip
    assert job.scheduled_at == job.created_at
    assert app.enqueue("add", [1, 2], priority=1000, queue="q.1:x-y_z").priority == 1000


def test_task_handle_enqueue_checks_arguments_against_the_signature(app: Taskmill) -> None:
    with pytest.raises(ValidationError, match="bad arguments for task 'add'"):
        app.get_task("add").enqueue(1)
    assert app.list() == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"status": "done"}, r"status must be one of"),
        ({"limit": 0}, r"limit must be from 1 to 1000"),
        ({"limit": 1001}, r"limit must be from 1 to 1000"),
        ({"limit": True}, r"limit must be"),
    ],
)
def test_bad_list_options_are_refused(app: Taskmill, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        app.list(**options)


def test_task_with_bad_default_options_cannot_be_registered(app: Taskmill) -> None:
    def fn() -> None: ...

    with pytest.raises(ValidationError, match="priority"):
        app.task(priority=5000)(fn)
    with pytest.raises(ValidationError, match="already registered"):
        app.task(name="add")(fn)
    assert "fn" not in app.tasks
