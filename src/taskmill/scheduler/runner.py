"""The `taskmill scheduler` loop: fire periodic ticks on time, run maintenance, survive
database outages, stop cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from taskmill.errors import StoreError
from taskmill.scheduler.maintenance import Maintenance
from taskmill.scheduler.periodic import Scheduler, add_env_schedules, utc_now

if TYPE_CHECKING:
    from taskmill.app import Taskmill

log = logging.getLogger("taskmill.scheduler")

MAX_SLEEP_S = 1.0  # look at the store at least this often (schedules changed elsewhere)
OUTAGE_BACKOFF_MIN_S = 0.25
OUTAGE_BACKOFF_MAX_S = 10.0


class SchedulerRunner:
    """One scheduler: call `run` (blocks until `stop` is set), or `step` from a test."""

    def __init__(
        self,
        app: Taskmill,
        *,
        stop: threading.Event | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.app = app
        self.clock = clock
        self.scheduler = Scheduler(app, clock=clock)
        self.maintenance = Maintenance(app)
        self.stop = stop or threading.Event()
        self.backoff_s = 0.0

    def run(self) -> int:
        """Tick and maintain until `stop` is set; returns the exit code (0)."""
        log.info(
            "scheduler started: %d schedules (%s)", len(self.app.schedules),
            ", ".join(sorted(self.app.schedules)) or "none",
            extra={"action": "scheduler_started", "pid": os.getpid()},
        )  # fmt: skip
        while not self.stop.is_set():
            self.stop.wait(self.step())
        log.info("scheduler stopped", extra={"action": "scheduler_stopped"})
        return 0

    def step(self) -> float:
        """One turn: fire due ticks, run due maintenance. Returns how long to sleep: until
        the next tick or chore (at most MAX_SLEEP_S), or the back-off after a failure."""
        try:
            self.scheduler.tick()
            maintenance_in_s = self.maintenance.run_due()
        except StoreError as exc:
            self.backoff_s = min(
                OUTAGE_BACKOFF_MAX_S, max(OUTAGE_BACKOFF_MIN_S, self.backoff_s * 2)
            )
            log.error(
                "store call failed, retrying in %.1fs: %s", self.backoff_s, exc,
                extra={"action": "store_unavailable"},
            )  # fmt: skip
            return self.backoff_s
        if self.backoff_s:
            log.info("store reachable again", extra={"action": "store_recovered"})
            self.backoff_s = 0.0
        return min(MAX_SLEEP_S, maintenance_in_s, self._tick_in_s())

    def _tick_in_s(self) -> float:
        now = self.clock()
        next_tick = self.scheduler.next_tick_at(now)
        if next_tick is None:
            return MAX_SLEEP_S
        return max(0.0, (next_tick - now).total_seconds())


def run_scheduler(app: Taskmill, *, stop: threading.Event | None = None) -> int:
    """Run periodic tasks and maintenance for `app` until stopped; returns the exit code.

    Also registers the schedules of TASKMILL_SCHEDULES. Without `stop` (a process of its
    own: `taskmill scheduler`), SIGTERM and SIGINT stop it; with one (a thread inside
    another process, e.g. `taskmill up`), setting the event does, within a second at most.
    Safe to run in any number of processes and machines at once."""
    add_env_schedules(app, os.environ)
    if stop is None:
        stop = _stop_on_signals()
    return SchedulerRunner(app, stop=stop).run()


def _stop_on_signals() -> threading.Event:
    """First SIGTERM/SIGINT: finish the current turn and exit 0. A second one: exit now
    (a store call stuck on an unreachable database is abandoned; its transaction rolls
    back, and what it did not record the next scheduler redoes)."""
    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        if stop.is_set():
            raise SystemExit(1)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    return stop
