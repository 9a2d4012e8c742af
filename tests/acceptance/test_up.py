"""`taskmill up` as a user runs it: in a fresh directory (the embedded default, SQLite under
./taskmill-data), jobs submitted over HTTP complete, and Ctrl-C (SIGINT to the process
group, as a terminal sends it) stops every process it started without losing a job."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from taskmill import Taskmill
from taskmill.config import Settings
from tests.acceptance.processes import alive, clean_env, descendants
from tests.helpers import wait_until
from tests.processes import TaskmillProcess


class Up(TaskmillProcess):
    """`taskmill up --port 0` in its own session, in `cwd`."""

    def __init__(self, cwd: Path, *args: str, **env: str) -> None:
        super().__init__(
            ["up", "--port", "0", "-c", "1", *args], cwd=cwd,
            env=clean_env(TASKMILL_DEMO_FAILURE_RATE="0", **env), log_path=cwd / "up.log",
        )  # fmt: skip
        self.database_url = f"sqlite:///{cwd}/taskmill-data/taskmill.db"
        self.url = ""

    def wait_serving(self) -> set[int]:
        """Until the API answers and the worker has started; returns the processes."""
        self.url = self.wait_for_url(timeout_s=60)
        wait_until(lambda: self._get("/readyz") == 200, timeout_s=60, what="API ready")
        self.wait_for_line("started:", timeout_s=60)
        tree = descendants(self.process.pid)
        assert len(tree) >= 3, self.log()  # API, worker, and the worker's child at least
        return tree

    def _get(self, path: str) -> int | None:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(self.url + path, timeout=5).status_code
        return None

    def submit(self, task: str, **kwargs: Any) -> str:
        response = httpx.post(f"{self.url}/api/tasks", json={"task": task, "kwargs": kwargs})
        assert response.status_code == 202, response.text
        job_id: str = response.json()["id"]
        return job_id

    def status(self, job_id: str) -> str:
        status: str = httpx.get(f"{self.url}/api/tasks/{job_id}").json()["status"]
        return status

    def ctrl_c(self) -> None:
        self.signal(signal.SIGINT, group=True)


@pytest.fixture
def start_up(tmp_path: Path) -> Iterator[Any]:
    started: list[tuple[Up, set[int]]] = []

    def start(*args: str, **env: str) -> tuple[Up, set[int]]:
        up = Up(tmp_path, *args, **env)
        started.append((up, set()))
        tree = up.wait_serving()
        started[-1] = (up, tree)
        return up, tree

    yield start
    for up, tree in started:
        up.close()
        for pid in tree:  # never leave a process behind, even when the test failed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        print(f"--- up.log ---\n{up.log()[-4000:]}")


def left_behind(tree: set[int]) -> list[str]:
    """The processes of `tree` still there (running, or dead but never reaped)."""
    found = []
    for pid in sorted(tree):
        if alive(pid):
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{pid}/stat").read_text().strip()
                cmd = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
                found.append(f"{stat[:60]} | {cmd}")
    return found


def stored_status(database_url: str, job_id: str) -> str:
    app = Taskmill(settings=Settings.from_env({}, database_url=database_url))
    try:
        return app.get(job_id).status.value
    finally:
        app.close()


def test_up_runs_submitted_jobs_and_ctrl_c_stops_everything(start_up: Any) -> None:
    up, tree = start_up(TASKMILL_DEMO_SPEED="20")
    assert up.url.startswith("http://127.0.0.1:")
    assert "No API keys (TASKMILL_API_KEYS): listening on 127.0.0.1 only" in up.log()
    assert "up: api, worker, scheduler" in up.log()
    wait_until(lambda: "scheduler started" in up.log(), timeout_s=30, what="scheduler started")
    email = up.submit("send_email", to="a@b.c", subject="Hi", body="...")
    wait_until(lambda: up.status(email) == "completed", timeout_s=30, what="email sent")
    # A job running at Ctrl-C finishes (graceful drain): nothing is lost.
    report = up.submit("generate_report", name="weekly", pages=4)
    wait_until(lambda: up.status(report) == "running", timeout_s=30, what="report running")
    up.ctrl_c()
    assert up.process.wait(60) == 0, up.log()
    assert not left_behind(tree), up.log()
    assert stored_status(up.database_url, report) == "completed"
    assert "stopped" in up.log() and "Traceback" not in up.log()


def test_a_second_ctrl_c_stops_at_once_and_the_job_stays_stored(start_up: Any) -> None:
    up, tree = start_up(TASKMILL_DEMO_SPEED="0.5")  # a report takes 16-32 s now
    report = up.submit("generate_report", name="slow")
    wait_until(lambda: up.status(report) == "running", timeout_s=30, what="report running")
    up.ctrl_c()
    wait_until(lambda: "stopping" in up.log(), timeout_s=10, what="first Ctrl-C seen")
    up.ctrl_c()
    assert up.process.wait(30) == 0, up.log()
    assert not left_behind(tree), up.log()
    # Killed mid-run, the job is not lost: the worker hands it back to pending (or, had it
    # been killed too hard for that, its lease would return it to pending later).
    assert stored_status(up.database_url, report) in {"pending", "running"}


def test_when_a_component_dies_up_stops_the_rest_and_fails(start_up: Any) -> None:
    up, tree = start_up()
    api_pid = next(pid for pid in tree if " api " in Path(f"/proc/{pid}/cmdline").read_text()
                   .replace("\0", " "))  # fmt: skip
    os.kill(api_pid, signal.SIGKILL)
    assert up.process.wait(60) == 1, up.log()
    assert "api exited with code -9" in up.log()
    assert not left_behind(tree), up.log()


def test_up_with_demo_seeds_jobs_that_start_running(start_up: Any) -> None:
    up, _tree = start_up("--demo", TASKMILL_DEMO_SPEED="20")
    assert "seeded 16 demo jobs" in up.log()
    stats = wait_until(
        lambda: (s := httpx.get(f"{up.url}/api/stats").json())["totals"]["completed"] and s,
        timeout_s=30, what="a demo job completed",
    )  # fmt: skip
    # The demo's queues; `images` too when the built-in minutely images.settle fired meanwhile.
    assert {"high", "low"} <= {q["queue"] for q in stats["queues"]} <= {"high", "low", "images"}
    assert stats["workers_online"] == 1
