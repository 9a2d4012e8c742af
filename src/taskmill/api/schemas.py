"""The wire format of the HTTP API: every model a request or response carries, with the
examples /docs shows. Nothing else in taskmill defines JSON shapes for HTTP.

Field names of a job are those of `taskmill.jobs.Job` (and of `taskmill status --json`);
times are ISO 8601 UTC, durations are seconds (`_s`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from taskmill.jobs import Job, JobStatus
from taskmill.tasks import MAX_DELAY_S, MAX_KEY_LENGTH, MAX_RETRIES_LIMIT, PRIORITY_RANGE

QUEUE_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
MAX_SUBMIT_BYTES = 1024 * 1024  # a job's arguments are ids and options, not payloads
TASK_NAME_MAX = 200

_JOB_EXAMPLE: dict[str, Any] = {
    "id": "0193a5e2-7b1c-7c3e-9d2a-4f6b8c1d2e3f",
    "task": "send_email",
    "queue": "high",
    "priority": 5,
    "status": "completed",
    "args": [],
    "kwargs": {"to": "a@b.c", "subject": "Hi", "body": "..."},
    "attempts": 1,
    "max_retries": 3,
    "timeout_s": 30.0,
    "backoff": 2.0,
    "idempotency_key": None,
    "created_at": "2026-01-05T10:00:00.000000Z",
    "scheduled_at": "2026-01-05T10:00:00.000000Z",
    "started_at": "2026-01-05T10:00:00.004000Z",
    "finished_at": "2026-01-05T10:00:01.912000Z",
    "duration_s": 1.908,
    "worker": "web-1:4242:9f8e7d6c",
    "lease_expires_at": None,
    "result": {"status": "sent", "to": "a@b.c"},
    "error": None,
    "traceback": None,
    "progress": 1.0,
    "progress_message": "sent",
    "cancel_requested": False,
}


class ErrorDetail(BaseModel):
    loc: list[str | int] = Field(description="Where in the request: body, query, path, ...")
    message: str


class ErrorInfo(BaseModel):
    code: str = Field(
        description="Stable machine-readable reason: validation_error, unknown_task, "
        "not_found, invalid_transition, unauthorized, method_not_allowed, "
        "payload_too_large, store_unavailable, not_ready, internal_error"
    )
    message: str = Field(description="One line for people")
    details: list[ErrorDetail] | None = Field(
        default=None, description="Each problem found, for request validation errors"
    )


class ErrorResponse(BaseModel):
    """Every error the API answers with, whatever its status."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"error": {"code": "not_found", "message": "no job with id 0193a5e2-..."}}]
        }
    )

    error: ErrorInfo


Priority = Annotated[int, Field(ge=PRIORITY_RANGE[0], le=PRIORITY_RANGE[1], strict=True)]


class SubmitRequest(BaseModel):
    """A job to enqueue. Options left out take the task's defaults."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "task": "send_email",
                    "priority": 5,
                    "kwargs": {"to": "a@b.c", "subject": "Hi", "body": "..."},
                },
                {"task": "generate_report", "args": ["sales"], "delay": 10, "queue": "low"},
            ]
        },
    )

    task: str = Field(min_length=1, max_length=TASK_NAME_MAX, description="A registered task")
    args: list[Any] = Field(default_factory=list, description="Positional arguments (JSON)")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments (JSON)")
    queue: str | None = Field(default=None, pattern=QUEUE_PATTERN)
    priority: Priority | None = Field(default=None, description="Higher runs first")
    delay: float | None = Field(
        default=None, ge=0, le=MAX_DELAY_S, allow_inf_nan=False, strict=True,
        description="Seconds before the job may start",
    )  # fmt: skip
    max_retries: int | None = Field(default=None, ge=0, le=MAX_RETRIES_LIMIT, strict=True)
    timeout: float | None = Field(
        default=None, gt=0, allow_inf_nan=False, strict=True,
        description="Seconds before a run is killed",
    )  # fmt: skip
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        description="Unique per task: submitting it again returns the first job",
    )


class JobOut(BaseModel):
    """A job as stored now."""

    model_config = ConfigDict(json_schema_extra={"examples": [_JOB_EXAMPLE]})

    id: str = Field(description="UUIDv7: ids sort by creation time")
    task: str
    queue: str
    priority: int
    status: JobStatus
    args: list[Any]
    kwargs: dict[str, Any]
    attempts: int = Field(description="Attempts started so far")
    max_retries: int
    timeout_s: float | None
    backoff: float
    idempotency_key: str | None
    created_at: datetime
    scheduled_at: datetime = Field(description="When it may start (later for delays, retries)")
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None = Field(description="Of the last attempt")
    worker: str | None
    lease_expires_at: datetime | None
    result: Any = Field(description="What the task returned (JSON), once completed")
    error: str | None
    traceback: str | None
    progress: float | None = Field(description="0.0 to 1.0, as the task reports it")
    progress_message: str | None
    cancel_requested: bool


class JobPage(BaseModel):
    """One page of jobs, newest first."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"jobs": [_JOB_EXAMPLE], "next_cursor": None}]}
    )

    jobs: list[JobOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page"
    )


class StateCountsOut(BaseModel):
    pending: int
    running: int
    completed: int
    failed: int
    cancelled: int
    jobs_per_s: float = Field(description="Completed or failed per second, last minute")


class QueueStatsOut(StateCountsOut):
    queue: str


class WorkerOut(BaseModel):
    id: str
    host: str
    pid: int
    queues: list[str] | None = Field(description="null: every queue")
    concurrency: int
    started_at: datetime
    heartbeat_at: datetime


class StatsOut(BaseModel):
    """What the system is doing now; the WebSocket pushes the same object."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "taken_at": "2026-01-05T10:00:00Z",
                    "window_s": 60.0,
                    "queues": [
                        {
                            "queue": "high",
                            "pending": 3,
                            "running": 2,
                            "completed": 120,
                            "failed": 4,
                            "cancelled": 0,
                            "jobs_per_s": 0.9,
                        },
                    ],
                    "totals": {
                        "pending": 3,
                        "running": 2,
                        "completed": 120,
                        "failed": 4,
                        "cancelled": 0,
                        "jobs_per_s": 0.9,
                    },
                    "workers_online": 1,
                    "worker_slots": 2,
                    "workers": [],
                    "jobs_per_s": 0.9,
                }
            ]
        }
    )

    taken_at: datetime
    window_s: float = Field(description="The throughput window, seconds")
    queues: list[QueueStatsOut]
    totals: StateCountsOut
    workers_online: int
    worker_slots: int = Field(description="Jobs the online workers can run at once")
    workers: list[WorkerOut]
    jobs_per_s: float


class HealthOut(BaseModel):
    status: str = Field(examples=["ok"])


class ReadyOut(BaseModel):
    status: str = Field(examples=["ready"])
    schema_version: int


# -- serialization --------------------------------------------------------------------------

_JOB_ADAPTER: TypeAdapter[Job] = TypeAdapter(Job)


def job_json(job: Job) -> bytes:
    """A job as JobOut JSON, straight from the dataclass (the fast path's serializer; a test
    proves it matches JobOut field for field)."""
    return _JOB_ADAPTER.dump_json(job)


# -- images


class ImageObjectOut(BaseModel):
    """A stored file: the original or a rendition, with a signed URL that expires."""

    url: str
    width: int
    height: int
    bytes: int
    format: str = Field(description="jpeg, png, webp, gif, tiff, heif or avif")


class ImageOut(BaseModel):
    """An uploaded image. `status` follows its processing job: pending, running, then
    completed (renditions filled in) or failed (error says why)."""

    id: str
    status: Literal["pending", "running", "completed", "failed"]
    original: ImageObjectOut
    renditions: dict[str, ImageObjectOut] = Field(
        description="resized, compressed and thumbnail once completed"
    )
    error: str | None
    created_at: str
    completed_at: str | None
    job_id: str = Field(description="The processing job (GET /api/tasks/{job_id})")


class ImagePage(BaseModel):
    images: list[ImageOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page")


# -- dashboard: workers in detail, throughput history, registered tasks


class RunningJobOut(BaseModel):
    id: str
    task: str
    started_at: datetime | None = Field(description="When its current attempt started")
    progress: float | None = Field(description="0.0 to 1.0, as the task reports it")


class WorkerDetailOut(BaseModel):
    id: str
    host: str
    pid: int
    queues: list[str] | None = Field(description="null: every queue")
    concurrency: int = Field(description="Child processes: jobs it can run at once")
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age_s: float = Field(description="Seconds since its last heartbeat")
    stopped_at: datetime | None = Field(description="When it shut down cleanly")
    state: Literal["online", "stale", "stopped"] = Field(
        description="online: heartbeat within the lease; stale: not stopped but silent for "
        "longer than the lease (killed or cut off; its jobs return to pending); stopped: "
        "shut down cleanly (listed for a few minutes)"
    )
    stale: bool = Field(description="state == stale")
    running: int = Field(description="Jobs it is running now (prefetched short jobs too)")
    current_jobs: list[RunningJobOut] = Field(description="The oldest of those, up to 20")


class WorkersOut(BaseModel):
    """Every worker an operator should see, online first, then stale, then stopped."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "taken_at": "2026-01-05T10:00:00Z",
                    "lease_s": 30.0,
                    "workers": [
                        {
                            "id": "web-1:4242:9f8e7d6c",
                            "host": "web-1",
                            "pid": 4242,
                            "queues": None,
                            "concurrency": 2,
                            "started_at": "2026-01-05T09:00:00Z",
                            "heartbeat_at": "2026-01-05T09:59:58Z",
                            "heartbeat_age_s": 2.0,
                            "stopped_at": None,
                            "state": "online",
                            "stale": False,
                            "running": 1,
                            "current_jobs": [
                                {
                                    "id": "0193a5e2-7b1c-7c3e-9d2a-4f6b8c1d2e3f",
                                    "task": "generate_report",
                                    "started_at": "2026-01-05T09:59:50Z",
                                    "progress": 0.25,
                                }
                            ],
                        }
                    ],
                }
            ]
        }
    )

    taken_at: datetime
    lease_s: float = Field(description="Silent for longer than this, a worker is stale")
    workers: list[WorkerDetailOut]


class ThroughputBucketOut(BaseModel):
    start: datetime = Field(description="The bucket covers [start, start + bucket_s)")
    completed: int
    failed: int
    retried: int


class FinishedRatesOut(BaseModel):
    window_s: float
    completed_per_s: float
    failed_per_s: float = Field(description="With completed_per_s, the stats' jobs_per_s")


class HistoryOut(BaseModel):
    """Jobs completed, failed and retried per interval, oldest first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "taken_at": "2026-01-05T10:00:10Z",
                    "minutes": 15,
                    "bucket_s": 30,
                    "buckets": [
                        {
                            "start": "2026-01-05T10:00:00Z",
                            "completed": 12,
                            "failed": 1,
                            "retried": 2,
                        }
                    ],
                    "rates": {"window_s": 60.0, "completed_per_s": 0.4, "failed_per_s": 0.02},
                }
            ]
        }
    )

    taken_at: datetime
    minutes: int
    bucket_s: int
    buckets: list[ThroughputBucketOut] = Field(description="The newest is still filling")
    rates: FinishedRatesOut = Field(description="Completed and failed per second, last minute")


class TaskParameterOut(BaseModel):
    name: str
    kind: Literal["positional_only", "positional_or_keyword", "var_positional", "keyword_only",
                  "var_keyword"]  # fmt: skip
    required: bool
    default: Any = Field(default=None, description="The default as JSON, when it has one")
    annotation: str | None = Field(description="The type annotation as written, if any")


class TaskTypeOut(BaseModel):
    name: str
    description: str | None = Field(description="The first paragraph of its docstring")
    queue: str
    priority: int
    max_retries: int
    timeout_s: float | None
    backoff: float
    parameters: list[TaskParameterOut]


class TaskTypesOut(BaseModel):
    """The tasks this API can enqueue, with their defaults, by name."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "task_types": [
                        {
                            "name": "send_email",
                            "description": "Pretend to send an e-mail.",
                            "queue": "high",
                            "priority": 0,
                            "max_retries": 3,
                            "timeout_s": 30.0,
                            "backoff": 2.0,
                            "parameters": [
                                {
                                    "name": "to",
                                    "kind": "positional_or_keyword",
                                    "required": True,
                                    "default": None,
                                    "annotation": "str",
                                }
                            ],
                        }
                    ]
                }
            ]
        }
    )

    task_types: list[TaskTypeOut]
