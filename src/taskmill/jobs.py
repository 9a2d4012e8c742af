"""The job record and its state machine — pure data, no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

JSONValue = Any  # a value json.dumps accepts without a custom encoder


class JobStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


@dataclass(frozen=True, slots=True)
class Job:
    """One request to run a task, as stored. Timestamps are timezone-aware UTC."""

    id: str
    task: str
    queue: str
    priority: int
    status: JobStatus
    args: list[JSONValue]
    kwargs: dict[str, JSONValue]
    attempts: int
    max_retries: int
    timeout_s: float | None
    backoff: float
    idempotency_key: str | None
    created_at: datetime
    scheduled_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    worker: str | None = None
    lease_expires_at: datetime | None = None
    result: JSONValue = None
    error: str | None = None
    traceback: str | None = None
    progress: float | None = None
    progress_message: str | None = None
    cancel_requested: bool = False

    @property
    def is_final(self) -> bool:
        return self.status.is_final


@dataclass(frozen=True, slots=True)
class NewJob:
    """A validated job about to be inserted: every option resolved, arguments JSON-encoded."""

    id: str
    task: str
    queue: str
    priority: int
    args: list[JSONValue]
    kwargs: dict[str, JSONValue]
    args_json: str
    kwargs_json: str
    max_retries: int
    timeout_s: float | None
    backoff: float
    idempotency_key: str | None
    scheduled_at: datetime | None  # None: now, by the database's clock

    def stored(self, created_at: datetime) -> Job:
        """The Job this insert produced, given the time the database stamped on it."""
        return Job(
            id=self.id, task=self.task, queue=self.queue, priority=self.priority,
            status=JobStatus.PENDING, args=self.args, kwargs=self.kwargs, attempts=0,
            max_retries=self.max_retries, timeout_s=self.timeout_s, backoff=self.backoff,
            idempotency_key=self.idempotency_key, created_at=created_at,
            scheduled_at=self.scheduled_at or created_at,
        )  # fmt: skip
