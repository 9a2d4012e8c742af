"""The chaos benchmark's app, importable by a worker as `bench.chaos_tasks:app`.

The module-level `app` reads TASKMILL_DATABASE_URL, so a worker started with that variable
uses the database of the run that started it. Its one task, `chaos_job`, records every
execution to the file named by TASKMILL_CHAOS_RUN_LOG: a `start` line before the work and an
`end` line after it, each one O_APPEND write (atomic, so concurrent children never
interleave lines). What a job does is decided entirely by its arguments, drawn at enqueue
time from a seed, so a run can be repeated exactly.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

from taskmill import Taskmill, current_job

RUN_LOG_ENV = "TASKMILL_CHAOS_RUN_LOG"
TASK_NAME = "chaos_job"
# Kills burn attempts: a job can be in flight (or merely prefetched) at several kills.
MAX_RETRIES = 25

# (share, low ms, high ms): the duration mix of the issue.
DURATION_MIX_MS = ((0.70, 1.0, 5.0), (0.25, 20.0, 50.0), (0.05, 200.0, 500.0))
FAIL_FIRST_SHARE = 0.05


class PlannedFailure(Exception):
    """Raised on purpose by a job's first attempt; its retry is planned, not a duplicate."""


@dataclass(frozen=True, slots=True)
class Run:
    """One line of the run log."""

    event: str  # "start" or "end"
    job_id: str
    attempt: int
    outcome: str  # "ok" (runs to completion) or "fail" (raises PlannedFailure)
    pid: int  # the worker child
    ppid: int  # its supervisor: the worker process, whose pid is in the worker id


def _log(event: str, outcome: str) -> None:
    path = os.environ.get(RUN_LOG_ENV)
    if not path:
        return
    job = current_job()
    line = f"{event} {job.id} {job.attempt} {outcome} {os.getpid()} {os.getppid()}\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def chaos_job(seconds: float, fail_first: bool) -> None:
    """Take `seconds`; when `fail_first`, raise PlannedFailure on attempt 1 instead."""
    outcome = "fail" if fail_first and current_job().attempt == 1 else "ok"
    _log("start", outcome)
    if outcome == "fail":
        raise PlannedFailure("planned failure of the first attempt")
    time.sleep(seconds)
    _log("end", outcome)


def make_app(database_url: str | None = None) -> Taskmill:
    app = Taskmill(database_url)
    app.task(name=TASK_NAME, max_retries=MAX_RETRIES, backoff=0)(chaos_job)
    return app


def draw_duration_s(rng: random.Random) -> float:
    """One duration from DURATION_MIX_MS, in seconds."""
    pick = rng.random()
    for share, low_ms, high_ms in DURATION_MIX_MS:
        if pick < share:
            return round(rng.uniform(low_ms, high_ms) / 1000, 6)
        pick -= share
    _, low_ms, high_ms = DURATION_MIX_MS[-1]
    return round(rng.uniform(low_ms, high_ms) / 1000, 6)


def job_specs(count: int, seed: int) -> list[dict[str, object]]:
    """The same `count` jobs for the same seed: durations from the mix, and which fail once."""
    rng = random.Random(seed)
    return [
        {
            "task": TASK_NAME,
            "kwargs": {
                "seconds": draw_duration_s(rng),
                "fail_first": rng.random() < FAIL_FIRST_SHARE,
            },
        }
        for _ in range(count)
    ]


def read_run_log(path: Path) -> list[Run]:
    """Every line of the run log, in the order written. A line cut short by a kill (an
    O_APPEND write is all or nothing, so there should be none) is skipped."""
    if not path.exists():
        return []
    runs = []
    for line in path.read_text().splitlines():
        fields = line.split(" ")
        if len(fields) == 6:
            event, job_id, attempt, outcome, pid, ppid = fields
            runs.append(Run(event, job_id, int(attempt), outcome, int(pid), int(ppid)))
    return runs


app = make_app()
