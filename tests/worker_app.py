"""The app worker subprocesses of the tests load with `-A tests.worker_app:app`.

It reads TASKMILL_DATABASE_URL like any user app, registers the shared test tasks, and
adds tasks that misbehave on purpose. Tasks that must prove "ran exactly once" append a
line to the file named by TASKMILL_TEST_RUN_LOG (one short O_APPEND write per run is
atomic, so concurrent children never interleave lines).
"""

from __future__ import annotations

import os
import time

from taskmill import Taskmill, current_job
from tests.tasks_for_tests import register_test_tasks

app = register_test_tasks(Taskmill())


def _log_run(tag: str) -> None:
    path = os.environ.get("TASKMILL_TEST_RUN_LOG")
    if path:
        job = current_job()
        line = f"{job.id} {job.attempt} {tag} {os.getpid()}\n".encode()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


@app.task(max_retries=5, backoff=0)
def record(tag: str = "", seconds: float = 0.0) -> str:
    """Log this run, optionally take `seconds`, return the tag."""
    _log_run(tag)
    if seconds:
        time.sleep(seconds)
    return tag


@app.task(timeout=1, max_retries=1, backoff=0)
def hang() -> None:
    """Blocks far past its timeout; only a kill stops it."""
    _log_run("hang")
    time.sleep(3600)


@app.task(max_retries=2, backoff=0)
def crash() -> None:
    """Kills its own process on every attempt, as a segfault or OOM kill would."""
    _log_run("crash")
    os._exit(1)


_hoard: list[bytes] = []


@app.task
def hog(mib: int) -> int:
    """Keeps `mib` MiB alive in its process, as a leaking task would."""
    _log_run("hog")
    _hoard.append(b"x" * (mib * 2**20))
    return os.getpid()
