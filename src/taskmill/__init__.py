"""taskmill: durable background jobs for Python, with SQL as the queue."""

from __future__ import annotations

from taskmill.app import Taskmill
from taskmill.context import JobContext, current_job
from taskmill.errors import (
    ConfigError,
    InvalidTransition,
    JobNotFound,
    PermanentError,
    Retry,
    StoreError,
    StoreUnavailable,
    TaskmillError,
    UnknownTaskError,
    ValidationError,
)
from taskmill.jobs import Job, JobStatus
from taskmill.tasks import Task

__all__ = [
    "ConfigError",
    "InvalidTransition",
    "Job",
    "JobContext",
    "JobNotFound",
    "JobStatus",
    "PermanentError",
    "Retry",
    "StoreError",
    "StoreUnavailable",
    "Task",
    "Taskmill",
    "TaskmillError",
    "UnknownTaskError",
    "ValidationError",
    "current_job",
]
