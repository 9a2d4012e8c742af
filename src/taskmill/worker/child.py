"""A worker child: runs the jobs its supervisor hands it, one at a time, and nothing else.

Children ignore SIGINT and SIGTERM: a Ctrl-C that reaches the whole process group, or
systemd's kill mode, must not kill a job mid-way — stopping is the supervisor's decision,
sent as a DRAIN message or, at a deadline, as SIGKILL."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import sys
import threading
import time
from collections import deque
from multiprocessing.connection import Connection
from typing import Any

from taskmill.loader import load_app
from taskmill.worker import protocol
from taskmill.worker.protocol import JobSpec, Report, ReportKind
from taskmill.worker.runner import Runner

log = logging.getLogger("taskmill.worker")
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: be killed when the process that forked us dies, even by SIGKILL, so a stuck
    job can never outlive its worker."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


# Reports of short jobs travel in batches (one pipe message instead of hundreds); none
# waits longer than this, even while the next job runs for hours.
REPORT_DELAY_S = 0.005
REPORT_BATCH_MAX = 256


class Reporter:
    """Sends reports to the supervisor: batched, but never held more than REPORT_DELAY_S —
    a thread sends what a long job would otherwise keep back. Every send goes through it,
    so messages never interleave on the pipe."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._lock = threading.Condition()
        self._reports: list[Report] = []
        self._since = 0.0
        threading.Thread(target=self._flush_late, name="taskmill-reporter", daemon=True).start()

    def send(self, message: tuple[str, Any]) -> None:
        with self._lock:
            self.conn.send(message)

    def report(self, report: Report, *, more_queued: bool) -> None:
        with self._lock:
            if not self._reports:
                self._since = time.monotonic()
                self._lock.notify()
            self._reports.append(report)
            if not more_queued or len(self._reports) >= REPORT_BATCH_MAX:
                self._flush()

    def _flush(self) -> None:
        if self._reports:
            self.conn.send((protocol.DONE, self._reports))
            self._reports = []

    def _flush_late(self) -> None:
        with self._lock:
            while True:
                self._lock.wait_for(lambda: bool(self._reports))
                due = self._since + REPORT_DELAY_S
                while self._reports and time.monotonic() < due:
                    self._lock.wait(due - time.monotonic())
                with contextlib.suppress(OSError):
                    self._flush()


class Child:
    def __init__(self, conn: Connection, runner: Runner) -> None:
        self.conn = conn
        self.runner = runner
        self.reporter = Reporter(conn)
        self.queue: deque[JobSpec] = deque()
        self.cancelled: set[str] = set()
        self.draining = False
        self.current: JobSpec | None = None
        # Connection.poll() builds a selector per call; one poll object is far cheaper.
        self._poller = select.poll()
        self._poller.register(conn.fileno(), select.POLLIN)

    def handle(self, message: tuple[str, Any]) -> None:
        kind, payload = message
        if kind == protocol.RUN:
            self.queue.extend(payload)
        elif kind == protocol.CANCEL:
            self.cancelled.add(payload)
        elif kind == protocol.DRAIN:
            self.draining = True

    def receive(self) -> None:
        """Block for a message when idle; otherwise take only what has already arrived, so a
        cancel or drain sent meanwhile is seen before the next job starts."""
        if not self.queue:
            self.handle(self.conn.recv())
        while self._poller.poll(0):
            self.handle(self.conn.recv())

    def step(self) -> None:
        self.receive()
        if self.draining and self.queue:
            self.reporter.send((protocol.RETURNED, [(s.id, s.attempt) for s in self.queue]))
            self.queue.clear()
        if not self.queue:
            return
        spec = self.queue.popleft()
        if spec.id in self.cancelled:
            self.cancelled.discard(spec.id)
            report = Report(spec.id, spec.attempt, ReportKind.SKIPPED, 0.0, 0.0)
        else:
            self.current = spec
            try:
                report = self.runner.run(spec)
            finally:
                self.current = None
        self.reporter.report(report, more_queued=bool(self.queue))

    def report_progress(self, job_id: str, fraction: float, message: str | None) -> None:
        attempt = self.current.attempt if self.current and self.current.id == job_id else 0
        self.reporter.send((protocol.PROGRESS, (job_id, attempt, fraction, message)))


def child_main(app_ref: str | None, conn: Connection) -> None:
    """Entry point of a child process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    # One libvips thread per child: a worker runs as many children as cores, and libvips'
    # own thread pool would only make them fight (set before the app imports pyvips).
    os.environ.setdefault("VIPS_CONCURRENCY", "1")
    app = load_app(app_ref)

    runner = Runner(app)
    child = Child(conn, runner)
    runner.progress = child.report_progress
    child.reporter.send((protocol.READY, os.getpid()))
    try:
        while True:
            child.step()
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the supervisor is gone: so are we
    finally:
        child.runner.close()
        app.close()
