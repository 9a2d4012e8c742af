"""A worker child: runs the jobs its supervisor hands it, one at a time, and nothing else.

Children ignore SIGINT and SIGTERM: a Ctrl-C that reaches the whole process group, or
systemd's kill mode, must not kill a job mid-way — stopping is the supervisor's decision,
sent as a DRAIN message or, at a deadline, as SIGKILL."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
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


class Child:
    def __init__(self, conn: Connection, runner: Runner) -> None:
        self.conn = conn
        self.runner = runner
        self.queue: deque[JobSpec] = deque()
        self.cancelled: set[str] = set()
        self.draining = False
        self.current: JobSpec | None = None

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
        while self.conn.poll():
            self.handle(self.conn.recv())

    def step(self) -> None:
        self.receive()
        if self.draining and self.queue:
            self.conn.send((protocol.RETURNED, [(s.id, s.attempt) for s in self.queue]))
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
        self.conn.send((protocol.DONE, report))

    def report_progress(self, job_id: str, fraction: float, message: str | None) -> None:
        attempt = self.current.attempt if self.current and self.current.id == job_id else 0
        self.conn.send((protocol.PROGRESS, (job_id, attempt, fraction, message)))


def child_main(app_ref: str | None, conn: Connection) -> None:
    """Entry point of a child process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    app = load_app(app_ref)

    runner = Runner(app)
    child = Child(conn, runner)
    runner.progress = child.report_progress
    conn.send((protocol.READY, os.getpid()))
    try:
        while True:
            child.step()
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the supervisor is gone: so are we
    finally:
        child.runner.close()
        app.close()
