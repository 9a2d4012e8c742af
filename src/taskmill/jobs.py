"""The job record and its state machine — pure data, no I/O."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from datetime import datetime
from typing import Any, NamedTuple

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


class NewJob(NamedTuple):
    """A validated job about to be inserted: every option resolved, arguments JSON-encoded.

    A named tuple, not a frozen dataclass: it is made once per job of an enqueue_many,
    and a frozen dataclass's __init__ costs several times as much."""

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
        return _pending_job(
            self.id, self.task, self.queue, self.priority, JobStatus.PENDING, self.args,
            self.kwargs, 0, self.max_retries, self.timeout_s, self.backoff,
            self.idempotency_key, created_at, self.scheduled_at or created_at,
        )  # fmt: skip


def _slot_constructor(cls: Any) -> Callable[..., Any]:
    """A constructor for a frozen slots dataclass, taking its fields in order (with their
    defaults), that sets each slot through its descriptor.

    The dataclass's own __init__ goes through object.__setattr__ for every field, because
    the class is frozen; for Job that cost more than everything else an enqueue_many does
    per job. Generated as dataclasses generates __init__, so no field can be forgotten."""
    if any(f.default_factory is not MISSING for f in fields(cls)):
        raise TypeError(f"{cls.__name__}: default factories are not supported here")
    names = [f.name for f in fields(cls)]
    source = "\n".join(
        [
            f"def make_constructor(new, cls, {', '.join('set_' + n for n in names)}):",
            f"    def construct({', '.join(names)}):",
            "        obj = new(cls)",
            *(f"        set_{n}(obj, {n})" for n in names),
            "        return obj",
            "    return construct",
        ]
    )
    scope: dict[str, Any] = {}
    exec(source, scope)
    setters = [getattr(cls, n).__set__ for n in names]
    construct: Callable[..., Any] = scope["make_constructor"](object.__new__, cls, *setters)
    construct.__defaults__ = tuple(f.default for f in fields(cls) if f.default is not MISSING)
    return construct


_pending_job: Callable[..., Job] = _slot_constructor(Job)
