"""A real `taskmill api` process for the tests: started with the real CLI on a free port
(it binds port 0 and prints the URL), stopped by a real signal."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

import httpx

from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]
URL = re.compile(r"API\s+(http://\S+?)/api/tasks")


class ApiServer:
    """`taskmill api --port 0 -A tests.worker_app:app ...` in its own session."""

    def __init__(
        self, database_url: str, *args: str, log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        inherited = {k: v for k, v in os.environ.items() if k != "TASKMILL_API_KEYS"}
        full_env = {**inherited, "TASKMILL_DATABASE_URL": database_url, **(env or {})}
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "taskmill", "api", "--port", "0", "-A",
             "tests.worker_app:app", *args],
            cwd=ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self.url = ""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = 30.0) -> str:
        """Until it listens and answers /healthz; returns its base URL."""
        found = wait_until(
            lambda: URL.search(self.log()) or self.process.poll() is not None,
            timeout_s=timeout_s, what="the API printed its URL",
        )  # fmt: skip
        assert self.process.poll() is None and isinstance(found, re.Match), self.log()
        self.url = found.group(1)
        wait_until(self._healthy, timeout_s=timeout_s, what="/healthz answers")
        return self.url

    def _healthy(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200
        return False

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM (what an orchestrator sends), then wait for the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self._log.close()

    def __enter__(self) -> ApiServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.close()
