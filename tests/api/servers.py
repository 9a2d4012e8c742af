"""A real `taskmill api` process for the tests: started with the real CLI on a free port
(it binds port 0 and prints the URL), stopped by a real signal."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import httpx

from tests.helpers import wait_until
from tests.processes import ROOT, TaskmillProcess


class ApiServer(TaskmillProcess):
    """`taskmill api --port 0 -A tests.worker_app:app ...` in its own session."""

    def __init__(
        self, database_url: str, *args: str, log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        inherited = {k: v for k, v in os.environ.items() if k != "TASKMILL_API_KEYS"}
        full_env = {**inherited, "TASKMILL_DATABASE_URL": database_url, **(env or {})}
        super().__init__(
            ["api", "--port", "0", "-A", "tests.worker_app:app", *args],
            cwd=ROOT, env=full_env, log_path=log_path,
        )  # fmt: skip
        self.url = ""

    def wait_ready(self, timeout_s: float = 30.0) -> str:
        """Until it listens and answers /healthz; returns its base URL."""
        self.url = self.wait_for_url(timeout_s)
        wait_until(self._healthy, timeout_s=timeout_s, what="/healthz answers")
        return self.url

    def _healthy(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200
        return False
