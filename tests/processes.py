"""`python -m taskmill ...` as a real subprocess, the way every process test runs one: in its
own session (so a signal can reach its whole process group, as a terminal's Ctrl-C does),
its output in a log file, and killed with its whole group however the test ended."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[1]
TASKMILL = [sys.executable, "-m", "taskmill"]
API_URL = re.compile(r"API\s+(http://\S+?)/api/tasks")  # as `api` and `up` print it


class TaskmillProcess:
    def __init__(
        self, args: list[str], *, cwd: Path, env: Mapping[str, str], log_path: Path
    ) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [*TASKMILL, *args], cwd=cwd, env=dict(env), stdout=self._log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_line(self, text: str, timeout_s: float = 30.0) -> None:
        """Until the log shows `text`; fails at once if the process died instead."""
        wait_until(
            lambda: text in self.log() or self.process.poll() is not None,
            timeout_s=timeout_s, what=f"{text!r} in the log",
        )  # fmt: skip
        assert self.process.poll() is None, self.log()

    def wait_for_url(self, timeout_s: float) -> str:
        """The API base URL the process printed once it listens."""
        found = wait_until(
            lambda: API_URL.search(self.log()) or self.process.poll() is not None,
            timeout_s=timeout_s, what="the API printed its URL",
        )  # fmt: skip
        assert self.process.poll() is None and isinstance(found, re.Match), self.log()
        return str(found.group(1))

    def signal(self, signum: int, *, group: bool = False) -> None:
        if group:
            os.killpg(self.process.pid, signum)
        else:
            self.process.send_signal(signum)

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM (what an orchestrator sends), then wait; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)

    def kill_group(self) -> None:
        """kill -9 of the whole process group: no goodbye."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill_group()
        self._log.close()

    def __enter__(self) -> TaskmillProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.close()
