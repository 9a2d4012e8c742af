"""Fixtures for the dashboard in a real browser: Debian's Chromium driven by Playwright,
against a real `taskmill up` (one per module) on SQLite in a directory of its own.

Playwright cannot download a browser here, so it is told where Chromium is
(TASKMILL_TEST_CHROMIUM, default /usr/bin/chromium). Without one the tests are skipped with
the reason, except under CI=true, where they fail: CI must not pass by skipping them.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.acceptance.processes import clean_env
from tests.helpers import unavailable, wait_until
from tests.processes import ROOT, TaskmillProcess

CHROMIUM = os.environ.get("TASKMILL_TEST_CHROMIUM", "/usr/bin/chromium")
# Root needs no sandbox; no GPU, QUIC or /dev/shm in containers and CI machines.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-dev-shm-usage"]
ARTIFACTS = ROOT / "build"
TIMEOUT_MS = 10_000
APP = "tests.dashboard.dashboard_app:app"

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page


def _unavailable() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        return f"the playwright package is missing ({exc})"
    if not os.access(CHROMIUM, os.X_OK):
        return (
            f"no Chromium at {CHROMIUM} (apt-get install chromium, or set TASKMILL_TEST_CHROMIUM)"
        )
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium for one module. Not for the session: while Playwright's sync API runs, its
    event loop counts as running in this thread, and later tests' asyncio.run() would fail."""
    reason = _unavailable()
    if reason:
        unavailable("a browser (Chromium)", reason)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


class Server(TaskmillProcess):
    """`taskmill up --port 0` (or `taskmill api`) on SQLite in `directory`."""

    def __init__(self, directory: Path, *args: str, **env: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.database_url = f"sqlite:///{directory}/taskmill-data/taskmill.db"
        super().__init__(
            [*args, "--port", "0", "-A", APP], cwd=directory,
            env=clean_env(TASKMILL_DATABASE_URL=self.database_url, **env),
            log_path=directory / "server.log",
        )  # fmt: skip
        self.url = ""
        self.headers: dict[str, str] = {}

    def wait_ready(self) -> Server:
        self.url = self.wait_for_url(timeout_s=60)
        wait_until(self._ready, timeout_s=60, what="the API is ready")
        return self

    def _ready(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200
        return False

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.post(self.url + path, json=body, headers=self.headers, timeout=10)
        assert response.status_code in (200, 202), response.text
        found: dict[str, Any] = response.json()
        return found

    def get(self, path: str) -> dict[str, Any]:
        response = httpx.get(self.url + path, headers=self.headers, timeout=10)
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    def submit(self, task: str, **body: Any) -> str:
        job_id: str = self.post("/api/tasks", {"task": task, **body})["id"]
        return job_id

    def wait_for_job(self, job_id: str, *states: str, timeout_s: float = 20) -> dict[str, Any]:
        return wait_until(
            lambda: (job := self.get(f"/api/tasks/{job_id}"))["status"] in states and job,
            timeout_s=timeout_s, interval_s=0.05, what=f"job {job_id} {'/'.join(states)}",
        )  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`taskmill up` with two worker processes, demo tasks that finish in milliseconds."""
    up = Server(
        tmp_path_factory.mktemp("up"), "up", "-c", "2",
        TASKMILL_DEMO_SPEED="50", TASKMILL_DEMO_FAILURE_RATE="0",
    )  # fmt: skip
    with up:
        up.wait_ready()
        up.wait_for_line("ready:", timeout_s=60)  # the worker serves
        yield up


@dataclass
class Watched:
    """A page and everything it complained about: console errors and uncaught exceptions.
    Tests end by asserting there were none, unless they expected some (`allow`)."""

    page: Page
    problems: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [p for p in self.problems if not any(a.search(p) for a in self.allowed)]


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    """A fresh page (own context: own sessionStorage) at 1280 x 900."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    watched = Watched(context.new_page())
    watched.page.on("console", lambda m: _console(watched, m))
    watched.page.on("pageerror", lambda e: watched.problems.append(f"pageerror: {e}"))
    watched.page.on("dialog", lambda d: watched.problems.append(f"dialog: {d.message}"))
    yield watched
    context.close()
    assert not watched.unexpected(), "\n".join(watched.problems)


def _console(watched: Watched, message: ConsoleMessage) -> None:
    if message.type in ("error", "warning"):
        watched.problems.append(f"console {message.type}: {message.text} {message.location}")


@pytest.fixture
def page(watched: Watched) -> Page:
    return watched.page
