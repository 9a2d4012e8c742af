"""The demo tasks of the built-in app: options, results, progress, failures, and the jobs
`up --demo` seeds. Run in process, sped up by TASKMILL_DEMO_SPEED."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from taskmill import JobStatus, PermanentError, Taskmill
from taskmill.builtin import app as builtin_app
from taskmill.context import JobContext, bind_job, unbind_job
from taskmill.demo import DEMO_JOBS, DEMO_TASKS, register_demo_tasks, seed_demo_jobs
from taskmill.demo.tasks import (
    TransientError,
    data_pipeline,
    generate_report,
    process_payment,
    send_email,
)
from taskmill.errors import ConfigError

Progress = list[tuple[float, str | None]]


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKMILL_DEMO_SPEED", "10000")
    monkeypatch.setenv("TASKMILL_DEMO_FAILURE_RATE", "0")


@pytest.fixture
def as_job() -> Iterator[Callable[..., tuple[Any, Progress]]]:
    """Run a demo function as if a worker ran it, collecting the progress it reports."""
    tokens: list[object] = []

    def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, Progress]:
        progress: Progress = []
        ctx = JobContext("job-1", fn.__name__, 1, lambda _id, f, m: progress.append((f, m)))
        tokens.append(bind_job(ctx))
        try:
            return fn(*args, **kwargs), progress
        finally:
            unbind_job(tokens.pop())

    yield run


def test_the_builtin_app_registers_the_demo_tasks_with_their_options() -> None:
    options = {name: builtin_app.tasks[name].options for name in DEMO_TASKS}
    assert {n: o.queue for n, o in options.items()} == {
        "send_email": "high", "process_payment": "high",
        "generate_report": "low", "data_pipeline": "low",
    }  # fmt: skip
    assert options["process_payment"].priority > options["send_email"].priority
    assert all(o.max_retries >= 2 and o.backoff > 1 and o.timeout_s for o in options.values())


def test_each_task_returns_its_result(as_job: Any) -> None:
    sent, _ = as_job(send_email, "a@b.c", "Hi", body="hello")
    assert sent["status"] == "sent" and sent["to"] == "a@b.c" and sent["bytes"] == 5
    paid, _ = as_job(process_payment, 19.99, customer="cus_1")
    assert paid["status"] == "captured" and paid["transaction_id"].startswith("txn_")
    report, _ = as_job(generate_report, "sales", pages=3)
    assert report["url"] == "/reports/sales.pdf"
    pipeline, _ = as_job(data_pipeline, "events")
    assert pipeline["stages"] == ["extract", "validate", "transform", "load"]


def test_long_tasks_report_progress_step_by_step(as_job: Any) -> None:
    _, pages = as_job(generate_report, "sales", pages=4)
    assert [f for f, _ in pages] == [0.25, 0.5, 0.75, 1.0]
    assert pages[-1][1] == "rendered page 4 of 4"
    _, stages = as_job(data_pipeline, "clicks")
    assert [m for _, m in stages] == ["extract: clicks", "validate: clicks", "transform: clicks",
                                      "load: clicks"]  # fmt: skip


def test_durations_scale_with_the_demo_speed(monkeypatch: pytest.MonkeyPatch, as_job: Any) -> None:
    monkeypatch.setenv("TASKMILL_DEMO_SPEED", "100")
    sent, _ = as_job(send_email, "a@b.c", "Hi")
    assert 0.01 <= sent["took_s"] <= 0.03  # 1-3 s at speed 1


@pytest.mark.parametrize(
    ("fn", "args"),
    [(send_email, ("no-at-sign", "Hi")), (process_payment, (0,)), (process_payment, (True,)),
     (generate_report, ("x", 0))],
)  # fmt: skip
def test_invalid_input_fails_permanently(as_job: Any, fn: Any, args: tuple[Any, ...]) -> None:
    with pytest.raises(PermanentError):
        as_job(fn, *args)


def test_transient_failures_follow_the_failure_rate(
    monkeypatch: pytest.MonkeyPatch, as_job: Any
) -> None:
    monkeypatch.setenv("TASKMILL_DEMO_FAILURE_RATE", "1")
    with pytest.raises(TransientError, match="SMTP"):
        as_job(send_email, "a@b.c", "Hi")
    with pytest.raises(TransientError, match="gateway"):
        as_job(process_payment, 5)


@pytest.mark.parametrize(
    ("name", "value"),
    [("TASKMILL_DEMO_SPEED", "fast"), ("TASKMILL_DEMO_SPEED", "0"),
     ("TASKMILL_DEMO_FAILURE_RATE", "2")],
)  # fmt: skip
def test_bad_demo_settings_are_config_errors(
    monkeypatch: pytest.MonkeyPatch, as_job: Any, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        as_job(send_email, "a@b.c", "Hi")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_seeding_enqueues_the_demo_jobs(app: Taskmill) -> None:
    register_demo_tasks(app)
    jobs = seed_demo_jobs(app)
    assert len(jobs) == len(DEMO_JOBS) and all(j.status is JobStatus.PENDING for j in jobs)
    assert {j.task for j in jobs} == set(DEMO_TASKS)
    assert len({j.priority for j in jobs if j.task == "send_email"}) >= 3  # priorities show
    assert any(j.scheduled_at > j.created_at for j in jobs)  # and a delayed one


@pytest.mark.parametrize("backend", ["sqlite"])
def test_seeding_an_app_without_the_demo_tasks_says_what_to_do(app: Taskmill) -> None:
    with pytest.raises(ConfigError, match="include"):
        seed_demo_jobs(app)
    assert app.list(limit=5) == []
