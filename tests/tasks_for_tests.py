"""Tasks the test suites enqueue and run, registered on any app by `register_test_tasks`.

No app is created here, so store tests, worker tests and subprocesses can each register the
same tasks on an app pointing at their own database.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from taskmill import PermanentError, Retry, Taskmill, current_job

URGENT_OPTIONS: dict[str, Any] = {
    "queue": "high",
    "priority": 7,
    "max_retries": 1,
    "timeout": 5.0,
    "backoff": 3.0,
}


def add(a: int, b: int) -> int:
    return a + b


def echo(**kwargs: Any) -> dict[str, Any]:
    return kwargs


def fail_always() -> None:
    raise RuntimeError("boom")


def fail_permanently(reason: str = "bad input") -> None:
    raise PermanentError(reason)


def retry_later(delay: float) -> None:
    raise Retry(delay=delay)


def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def report_progress(steps: int) -> int:
    for step in range(1, steps + 1):
        current_job().set_progress(step / steps, f"step {step} of {steps}")
    return steps


async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


def urgent(x: int) -> int:
    return x


def register_test_tasks(app: Taskmill) -> Taskmill:
    """Register every test task on `app` (default options, except `urgent`, which has
    URGENT_OPTIONS) and return the app."""
    app.task(add)
    app.task(echo)
    app.task(fail_always)
    app.task(fail_permanently)
    app.task(retry_later)
    app.task(sleep_for)
    app.task(report_progress)
    app.task(async_add)
    app.task(**URGENT_OPTIONS)(urgent)
    return app
