"""The demo tasks of the built-in app: they exist so a new user of `taskmill up` sees
retries, priorities and progress at work within a minute.

| task | queue | takes | fails (transiently) | retries, back-off |
|---|---|---|---|---|
| send_email | high | 1-3 s | 10 % | 3, 2 ** attempt s |
| process_payment | high (priority 10) | 2-4 s | 20 % | 5, 2 ** attempt s |
| generate_report | low | 8-16 s, reports progress | - | 2, 3 ** attempt s |
| data_pipeline | low | 10-20 s, reports progress | - | 2, 3 ** attempt s |

Invalid input (an address without "@", a non-positive amount) fails at once with
PermanentError. TASKMILL_DEMO_SPEED divides every duration (10 runs them ten times as fast;
tests use more); TASKMILL_DEMO_FAILURE_RATE, when set, replaces every failure rate (0 never
fails, 1 always does). Both are read when a job runs, so a worker picks up its environment.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from typing import Any

from taskmill.app import Taskmill
from taskmill.context import current_job
from taskmill.errors import ConfigError, PermanentError, TaskmillError

SPEED_ENV = "TASKMILL_DEMO_SPEED"
FAILURE_RATE_ENV = "TASKMILL_DEMO_FAILURE_RATE"
DEMO_TASKS = ("send_email", "process_payment", "generate_report", "data_pipeline")
PIPELINE_STAGES = ("extract", "validate", "transform", "load")


class TransientError(RuntimeError):
    """A failure worth retrying (a busy server, a timeout): the worker backs off and retries."""


def _env_float(name: str, default: float, low: float, high: float) -> float:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not a number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}: must be from {low:g} to {high:g}, got {value:g}")
    return value


def speed() -> float:
    return _env_float(SPEED_ENV, 1.0, 1e-3, 1e6)


def failure_rate(default: float) -> float:
    return _env_float(FAILURE_RATE_ENV, default, 0.0, 1.0)


def _report(fraction: float, message: str) -> None:
    try:
        job = current_job()
    except TaskmillError:
        return  # called directly, not as a job: nobody to report to
    job.set_progress(fraction, message)


def _work(low_s: float, high_s: float, steps: list[str] | None = None) -> float:
    """Take low_s..high_s seconds (divided by the demo speed); with `steps`, report progress
    after each. Returns the seconds taken."""
    total_s = random.uniform(low_s, high_s) / speed()
    names = steps or ["working"]
    for index, name in enumerate(names, start=1):
        time.sleep(total_s / len(names))
        if steps:
            _report(index / len(names), name)
    return round(total_s, 3)


def _maybe_fail(rate: float, message: str) -> None:
    if random.random() < failure_rate(rate):
        raise TransientError(message)


def send_email(to: str, subject: str, body: str = "") -> dict[str, Any]:
    """Pretend to send an e-mail. Fails transiently 10 % of the time (SMTP busy)."""
    if "@" not in to:
        raise PermanentError(f"invalid address {to!r}")
    took_s = _work(1.0, 3.0)
    _maybe_fail(0.10, "SMTP server busy (421 try again later)")
    return {"status": "sent", "to": to, "subject": subject, "bytes": len(body), "took_s": took_s}


def process_payment(
    amount: float, currency: str = "EUR", customer: str = "cus_demo"
) -> dict[str, Any]:
    """Pretend to charge a card. Fails transiently 20 % of the time (gateway timeout)."""
    if not isinstance(amount, int | float) or isinstance(amount, bool) or amount <= 0:
        raise PermanentError(f"amount must be a positive number, got {amount!r}")
    took_s = _work(2.0, 4.0)
    _maybe_fail(0.20, "payment gateway timed out")
    return {
        "status": "captured",
        "amount": amount,
        "currency": currency,
        "customer": customer,
        "transaction_id": f"txn_{uuid.uuid4().hex[:12]}",
        "took_s": took_s,
    }


def generate_report(name: str = "sales", pages: int = 8) -> dict[str, Any]:
    """Pretend to render a report page by page, reporting progress after each page."""
    if isinstance(pages, bool) or not isinstance(pages, int) or not 1 <= pages <= 100:
        raise PermanentError(f"pages must be from 1 to 100, got {pages!r}")
    steps = [f"rendered page {page} of {pages}" for page in range(1, pages + 1)]
    took_s = _work(8.0, 16.0, steps)
    return {"report": name, "pages": pages, "url": f"/reports/{name}.pdf", "took_s": took_s}


def data_pipeline(source: str = "events", rows: int = 100_000) -> dict[str, Any]:
    """Pretend to run extract, validate, transform and load, reporting each stage."""
    steps = [f"{stage}: {source}" for stage in PIPELINE_STAGES]
    took_s = _work(10.0, 20.0, steps)
    return {"source": source, "rows": rows, "stages": list(PIPELINE_STAGES), "took_s": took_s}


def register_demo_tasks(app: Taskmill) -> Taskmill:
    """Register the four demo tasks on `app` (with the queues and options above)."""
    app.task(queue="high", max_retries=3, timeout=30, backoff=2.0)(send_email)
    app.task(queue="high", priority=10, max_retries=5, timeout=30, backoff=2.0)(process_payment)
    app.task(queue="low", max_retries=2, timeout=120, backoff=3.0)(generate_report)
    app.task(queue="low", max_retries=2, timeout=180, backoff=3.0)(data_pipeline)
    return app
