"""A few demo jobs for `taskmill up --demo`: enough to see priorities, retries, progress
and a delayed job within a minute."""

from __future__ import annotations

from typing import Any

from taskmill.app import Taskmill
from taskmill.errors import ConfigError
from taskmill.jobs import Job

DEMO_JOBS: list[dict[str, Any]] = [
    *(
        {"task": "send_email", "priority": priority,
         "kwargs": {"to": f"user{n}@example.com", "subject": f"Welcome #{n}", "body": "Hi!"}}
        for n, priority in enumerate([0, 0, 5, 0, 9, 0, 5, 0], start=1)
    ),
    *(
        {"task": "process_payment", "kwargs": {"amount": amount, "customer": f"cus_{n}"}}
        for n, amount in enumerate([19.99, 5.0, 120.0, 42.5], start=1)
    ),
    {"task": "generate_report", "kwargs": {"name": "weekly-sales", "pages": 8}},
    {"task": "data_pipeline", "kwargs": {"source": "clickstream"}},
    {"task": "send_email", "delay": 20,
     "kwargs": {"to": "later@example.com", "subject": "Sent 20 s later", "body": "..."}},
    {"task": "send_email", "kwargs": {"to": "not-an-address", "subject": "Fails at once"}},
]  # fmt: skip


def seed_demo_jobs(app: Taskmill) -> list[Job]:
    """Enqueue DEMO_JOBS (one round trip). Raises ConfigError when `app` lacks the demo
    tasks (a user app that does not include the built-in one)."""
    missing = sorted({spec["task"] for spec in DEMO_JOBS} - set(app.tasks))
    if missing:
        raise ConfigError(
            f"--demo needs the demo tasks, and this app lacks {', '.join(missing)}: use the "
            "built-in app, or include it (app.include(taskmill.builtin.app))"
        )
    return app.enqueue_many(DEMO_JOBS)
