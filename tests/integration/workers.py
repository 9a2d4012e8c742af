"""Real worker processes for the tests: started with the real CLI, stopped by real signals."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]
TASKMILL = [sys.executable, "-m", "taskmill"]


class WorkerProcess:
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
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [*TASKMILL, "worker", "-A", "tests.worker_app:app", *args],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_started(self, timeout_s: float = 30.0) -> None:
        """Until every child of the worker is up and serving (or the worker died)."""
        wait_until(
            lambda: " ready: " in self.log() or self.process.poll() is not None,
            timeout_s=timeout_s, what="worker registered",
        )  # fmt: skip
        assert self.process.poll() is None, self.log()

    def signal(self, signum: int, *, group: bool = False) -> None:
        if group:
            os.killpg(self.process.pid, signum)
        else:
            self.process.send_signal(signum)

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then wait for a clean exit; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)

    def kill_group(self) -> None:
        """kill -9 of the whole process group: supervisor and children, no goodbye."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill_group()
        self._log.close()

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.close()


def read_run_log(path: Path) -> list[tuple[str, int, str, int]]:
    """(job id, attempt, tag, pid) per run, in the order they ran."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        job_id, attempt, tag, pid = line.split(" ")
        rows.append((job_id, int(attempt), tag, int(pid)))
    return rows
