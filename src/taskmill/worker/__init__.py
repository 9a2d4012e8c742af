"""The worker: a supervisor process that claims jobs and N child processes that run them."""

from __future__ import annotations

from taskmill.worker.supervisor import Supervisor, WorkerOptions

__all__ = ["Supervisor", "WorkerOptions"]
