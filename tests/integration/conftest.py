"""Fixtures for tests that run real worker processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from taskmill import Taskmill
from tests.integration.workers import WorkerProcess
from tests.worker_app import app as worker_app

StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def app(app_factory: Callable[[], Taskmill]) -> Taskmill:
    """The test's app, knowing every task the worker subprocesses know."""
    made = app_factory()
    made.include(worker_app)
    return made


@pytest.fixture
def run_log(tmp_path: Path) -> Path:
    return tmp_path / "runs.log"


@pytest.fixture
def start_worker(database_url: str, tmp_path: Path, run_log: Path) -> Iterator[StartWorker]:
    """Start `taskmill worker` subprocesses on the test's database; all are killed at the
    end of the test whatever happened. On failure their logs are printed."""
    workers: list[WorkerProcess] = []

    def start(*args: str, lease_s: float | None = None, url: str | None = None) -> WorkerProcess:
        log = tmp_path / f"worker-{len(workers)}.log"
        worker = WorkerProcess(
            url or database_url, *args, log_path=log, run_log=run_log, lease_s=lease_s
        )
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.close()
        print(f"--- {worker.log_path.name} ---\n{worker.log()[-4000:]}")
