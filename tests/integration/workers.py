"""Real worker processes for the tests: started with the real CLI, stopped by real signals."""

from __future__ import annotations

import os
from pathlib import Path

from tests.processes import ROOT, TaskmillProcess


class WorkerProcess(TaskmillProcess):
    """`taskmill worker -A tests.worker_app:app ...` in its own process group."""

    def __init__(
        self,
        database_url: str,
        *args: str,
        log_path: Path,
        run_log: Path | None = None,
        lease_s: float | None = None,
    ) -> None:
        env = {**os.environ, "TASKMILL_DATABASE_URL": database_url}
        if run_log is not None:
            env["TASKMILL_TEST_RUN_LOG"] = str(run_log)
        if lease_s is not None:
            env["TASKMILL_LEASE"] = f"{lease_s}s"
        super().__init__(
            ["worker", "-A", "tests.worker_app:app", *args], cwd=ROOT, env=env, log_path=log_path
        )

    def wait_started(self, timeout_s: float = 30.0) -> None:
        """Until every child of the worker is up and serving (or the worker died)."""
        self.wait_for_line(" ready: ", timeout_s)


def read_run_log(path: Path) -> list[tuple[str, int, str, int]]:
    """(job id, attempt, tag, pid) per run, in the order they ran."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        job_id, attempt, tag, pid = line.split(" ")
        rows.append((job_id, int(attempt), tag, int(pid)))
    return rows
