"""The Store interface every backend implements, and the records that cross it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

from taskmill.errors import InvalidTransition, JobNotFound
from taskmill.images.records import Image, ImageStatus, NewImage, StoredObject
from taskmill.jobs import Job, JobStatus, NewJob


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended, as the worker reports it to the store.

    `status` is COMPLETED, FAILED or PENDING (another attempt after `retry_delay_s`). The
    store applies it only while the job is still `running` the same attempt, so a late
    report from a worker whose lease already expired cannot overwrite a newer attempt; a
    cancel requested meanwhile turns the outcome into CANCELLED.
    """

    job_id: str
    attempt: int
    status: JobStatus
    started_at: datetime
    finished_at: datetime
    result_json: str | None = None
    error: str | None = None
    traceback: str | None = None
    retry_delay_s: float = 0.0


class ClaimedJob(NamedTuple):
    """What a worker needs of a job it just claimed — deliberately little: arguments stay
    JSON text (the child decodes them), so claiming costs the supervisor microseconds."""

    id: str
    attempt: int
    task: str
    args_json: str
    kwargs_json: str
    priority: int
    scheduled_at: float  # Unix seconds, for ordering
    max_retries: int
    backoff: float
    timeout_s: float | None


def outcomes_json(outcomes: Sequence[Outcome]) -> str:
    """One JSON array for a whole batch of outcomes, parsed by the database in one
    statement. Results are spliced in as the JSON they already are, not re-encoded."""
    return (
        "["
        + ",".join(
            f"[{json.dumps(o.job_id)},{o.attempt},{json.dumps(o.status.value)},"
            f"{o.result_json or 'null'},{json.dumps(clean_text(o.error))},"
            f"{json.dumps(clean_text(o.traceback))},{o.started_at.timestamp()!r},"
            f"{o.finished_at.timestamp()!r},{float(o.retry_delay_s)!r}]"
            for o in outcomes
        )
        + "]"
    )


@dataclass(frozen=True, slots=True)
class Progress:
    job_id: str
    attempt: int
    fraction: float
    message: str | None


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    id: str
    host: str
    pid: int
    queues_json: str | None  # JSON list of queue names; None serves every queue
    concurrency: int

    def params(self) -> dict[str, object]:
        """The register_worker query's parameters (both dialects name them alike)."""
        return {
            "id": self.id, "host": self.host, "pid": self.pid, "queues": self.queues_json,
            "concurrency": self.concurrency,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class JobFilter:
    status: JobStatus | None = None
    queue: str | None = None
    task: str | None = None


@dataclass(frozen=True, slots=True)
class QueueCounts:
    queue: str
    status: JobStatus
    count: int


class Listener(Protocol):
    """Tells an idle worker that the queue may have new work, without polling the table."""

    def fileno(self) -> int | None:
        """A descriptor that becomes readable on news, or None when `check` must be polled."""

    @property
    def poll_interval_s(self) -> float:
        """How often to call `check` when there is no descriptor to wait on."""

    def check(self) -> bool:
        """Consume pending news; True when jobs may have been added since the last call."""

    def close(self) -> None: ...


class Store(Protocol):
    """Every operation is one transaction; state changes are guarded in SQL."""

    dialect: str

    def migrate(self) -> int:
        """Create or upgrade the schema; returns the version now in place. Idempotent."""

    def schema_version(self) -> int:
        """The version in place, 0 for an empty database."""

    def insert_jobs(self, jobs: Sequence[NewJob]) -> list[Job]:
        """Insert in one round trip; for a (task, idempotency_key) already stored, the
        stored job is returned instead. Results are in the order of `jobs`."""

    def insert_streamed_jobs(self, count: int, jobs: Iterator[NewJob]) -> list[Job]:
        """Insert `count` jobs without idempotency keys, drawn from `jobs` as they are
        sent; an exception from `jobs` propagates and none of them is stored."""

    def get_job(self, job_id: str) -> Job | None: ...

    def list_jobs(self, filt: JobFilter, *, limit: int, before_id: str | None) -> list[Job]:
        """Newest first; `before_id` is the cursor (the last id of the previous page)."""

    def cancel_job(self, job_id: str) -> Job:
        """pending -> cancelled at once; running -> cancel requested (the worker kills it).
        Raises JobNotFound, or InvalidTransition when the job is already finished."""

    def retry_job(self, job_id: str) -> Job:
        """failed or cancelled -> pending, with a fresh attempt budget. Raises JobNotFound,
        or InvalidTransition from any other state."""

    def claim_jobs(
        self, *, worker_id: str, queues: Sequence[str] | None, limit: int, lease_s: float
    ) -> list[ClaimedJob]:
        """Take up to `limit` due pending jobs (priority, then scheduled_at, then age) and
        mark them running under `worker_id` with a lease; counts an attempt."""

    def finish_jobs(self, outcomes: Sequence[Outcome]) -> int:
        """Record many outcomes in one round trip; returns how many applied."""

    def release_jobs(self, jobs: Sequence[tuple[str, int]]) -> int:
        """Hand (id, attempt) jobs back to pending without counting the attempt."""

    def set_progress(self, updates: Sequence[Progress]) -> None: ...

    def register_worker(self, info: WorkerInfo) -> None: ...

    def unregister_worker(self, worker_id: str) -> None: ...

    def heartbeat(self, *, worker_id: str, lease_s: float) -> None:
        """Mark the worker alive and renew the leases of all its running jobs."""

    def cancel_requested(self, *, worker_id: str) -> list[tuple[str, int]]:
        """(id, attempt) of the worker's running jobs whose cancel was requested."""

    def recover_expired_leases(self) -> int:
        """Jobs whose lease ran out go back to pending (or fail when their attempts are
        spent); returns how many."""

    def next_due_in_s(self, queues: Sequence[str] | None) -> float | None:
        """Seconds until the earliest pending job in these queues is due (<= 0: due now)."""

    def queue_counts(self) -> list[QueueCounts]: ...

    def listener(self) -> Listener: ...

    def close(self) -> None: ...

    # -- stats

    def job_stats(self, *, window_s: float) -> list[JobStats]:
        """Per task, queue and status: job counts, attempts, jobs finished in the last
        `window_s` seconds, and a duration histogram. One scan of the jobs table."""

    def workers_online(self, *, within_s: float) -> list[OnlineWorker]:
        """Workers not stopped whose last heartbeat is at most `within_s` seconds old."""

    # -- scheduler

    def schedule_states(self) -> list[ScheduleState]:
        """Every stored schedule's progress, by name, with its last job's status."""

    def start_schedule(
        self, *, name: str, task: str, cron: str, tz: str, since: datetime
    ) -> ScheduleState:
        """Store a schedule seen for the first time, progress at `since`; one stored with
        another (task, cron, tz) takes this definition and restarts from `since` (never
        backwards). An unchanged one is left alone. Returns the state as now stored."""

    def advance_schedule(self, *, name: str, tick_at: datetime, job_id: str) -> bool:
        """Record that the job of tick `tick_at` exists; only moves forward, so racing
        schedulers agree. True when this call moved it."""

    def prune_jobs(self, *, older_than_s: float, limit: int) -> int:
        """Delete up to `limit` completed, failed or cancelled jobs that finished more than
        `older_than_s` seconds ago, oldest first; returns how many. Never touches pending
        or running jobs."""

    # -- images

    def insert_image(self, image: NewImage, job: NewJob) -> tuple[Image, bool]:
        """Record an upload and its processing job in one transaction. With an
        idempotency key already used, nothing is stored and the existing image comes back:
        (image, False)."""

    def get_image(self, image_id: str) -> Image | None: ...

    def get_image_by_key(self, idempotency_key: str) -> Image | None: ...

    def list_images(self, *, limit: int, before_id: str | None) -> list[Image]:
        """Newest first; `before_id` is the last id of the previous page."""

    def finish_image(
        self, image_id: str, *, status: ImageStatus, renditions: Mapping[str, StoredObject],
        error: str | None,
    ) -> Image | None:  # fmt: skip
        """Record the outcome of processing; None when the image was deleted meanwhile."""

    def delete_image(self, image_id: str) -> Image | None:
        """Delete the record and return it (its object keys), or None if there was none."""

    def expired_images(self, *, older_than_s: float, limit: int) -> list[Image]:
        """Up to `limit` images created more than `older_than_s` seconds ago, oldest first."""

    def delete_images(self, image_ids: Sequence[str]) -> int: ...

    def unsettled_images(self, *, limit: int) -> list[Image]:
        """Up to `limit` images, oldest first, that read as failed (their job ended without
        finishing them, or is gone) while their own record is still pending."""

    def settle_image(self, image: Image) -> bool:
        """Record an unsettled image as failed with the error and time it reads with; False
        when it moved on meanwhile (finished by a re-run, or its job retried)."""

    # -- dashboard

    def worker_records(self, *, silent_kept_s: float, stopped_kept_s: float) -> list[WorkerRecord]:
        """Workers not stopped whose last heartbeat is at most `silent_kept_s` old (online
        or silent alike), and workers stopped at most `stopped_kept_s` ago; oldest first."""

    def running_jobs_of(self, worker_ids: Sequence[str], *, per_worker: int) -> list[RunningJob]:
        """The oldest `per_worker` running jobs of each of these workers, each carrying how
        many that worker runs in all."""

    def throughput(self, *, buckets: int, bucket_s: int) -> list[ThroughputBucket]:
        """Jobs completed, failed and retried per `bucket_s` seconds, in `buckets` buckets
        aligned to multiples of `bucket_s` and ending with the current one (partial); every
        bucket, oldest first. See queries_dashboard.sql for what counts as retried."""


def clean_text(text: str | None) -> str | None:
    """Free text (errors, tracebacks, progress messages) as both databases can keep it. A
    task's exception message may hold NUL or lone surrogates: PostgreSQL refuses those and
    SQLite cuts the text at NUL, so the outcome would be lost or mangled. NUL becomes U+FFFD,
    a lone surrogate "?"."""
    if text is None:
        return None
    text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def guarded_result(
    job_id: str, action: str, changed: Sequence[Job], current: Callable[[str], Job | None]
) -> Job:
    """The answer to a guarded update: the changed job, or why the guard refused."""
    if changed:
        return changed[0]
    job = current(job_id)
    if job is None:
        raise JobNotFound(f"no job with id {job_id}")
    raise InvalidTransition(job.id, job.status.value, action)


def open_store(database_url: str) -> Store:
    """A store for `sqlite:///path` or `postgresql://...`; nothing connects until first use."""
    if database_url.startswith("sqlite://"):
        from taskmill.store.sqlite import SQLiteStore

        return SQLiteStore(database_url)
    from taskmill.store.postgres import PostgresStore

    return PostgresStore(database_url)


# -- stats

# Upper bounds, in seconds, of the job-duration histogram `job_stats` returns (cumulative
# counts, Prometheus style; a last +Inf bucket is the `timed` count). The queries.sql blocks
# take them as parameters b0..b11, so their number is fixed there.
DURATION_BOUNDS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def duration_bound_params() -> dict[str, float]:
    return {f"b{i}": bound for i, bound in enumerate(DURATION_BOUNDS_S)}


@dataclass(frozen=True, slots=True)
class JobStats:
    """The jobs of one (task, queue, status), as one scan of the jobs table sees them."""

    task: str
    queue: str
    status: JobStatus
    jobs: int
    attempts: int  # attempts started, summed over these jobs
    started_jobs: int  # jobs with at least one attempt
    finished_recently: int  # finished_at within the window asked for
    timed: int  # jobs with a duration (their last attempt ended)
    duration_sum_s: float
    duration_le: tuple[int, ...]  # cumulative counts per DURATION_BOUNDS_S

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> JobStats:
        return cls(
            task=row["task"], queue=row["queue"], status=JobStatus(row["status"]),
            jobs=int(row["jobs"]), attempts=int(row["attempts"]),
            started_jobs=int(row["started_jobs"]),
            finished_recently=int(row["finished_recently"]), timed=int(row["timed"]),
            duration_sum_s=float(row["duration_sum_s"]),
            duration_le=tuple(int(row[f"le_{i}"]) for i in range(len(DURATION_BOUNDS_S))),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class OnlineWorker:
    """A worker that has not stopped and whose heartbeat is recent."""

    id: str
    host: str
    pid: int
    queues: list[str] | None  # None serves every queue
    concurrency: int
    started_at: datetime
    heartbeat_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> OnlineWorker:
        return cls(**_worker_fields(row))


def _worker_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """A workers row's own columns, from either backend (SQLite: Unix seconds, JSON text)."""
    queues = row["queues"]
    return {
        "id": row["id"], "host": row["host"], "pid": int(row["pid"]),
        "queues": json.loads(queues) if isinstance(queues, str) else queues,
        "concurrency": int(row["concurrency"]), "started_at": _utc(row["started_at"]),
        "heartbeat_at": _utc(row["heartbeat_at"]),
    }  # fmt: skip


def _utc(value: datetime | float) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC)


# -- scheduler


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """What the store keeps of a periodic schedule: the definition it runs under, and how
    far it got — the latest tick whose job exists (or, before the first, when it was first
    seen) and that job."""

    name: str
    task: str
    cron: str
    tz: str
    last_tick_at: datetime
    last_job_id: str | None
    last_job_status: JobStatus | None  # None: no job yet, or pruned

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ScheduleState:
        job_id, status = row["last_job_id"], row["last_job_status"]
        return cls(
            name=row["name"], task=row["task"], cron=row["cron"], tz=row["tz"],
            last_tick_at=_utc(row["last_tick_at"]),
            last_job_id=None if job_id is None else str(job_id),
            last_job_status=None if status is None else JobStatus(status),
        )  # fmt: skip


# -- dashboard


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """A registered worker as the dashboard shows it, silent or stopped ones included.
    `heartbeat_age_s` is measured by the clock that wrote the heartbeat (the database's)."""

    id: str
    host: str
    pid: int
    queues: list[str] | None  # None serves every queue
    concurrency: int
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    heartbeat_age_s: float

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> WorkerRecord:
        stopped = row["stopped_at"]
        return cls(
            **_worker_fields(row), stopped_at=None if stopped is None else _utc(stopped),
            heartbeat_age_s=max(0.0, float(row["heartbeat_age_s"])),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class RunningJob:
    """One job a worker is running, and how many that worker runs in all."""

    id: str
    task: str
    worker: str
    started_at: datetime | None
    progress: float | None
    running: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunningJob:
        started, progress = row["started_at"], row["progress"]
        return cls(
            id=str(row["id"]), task=row["task"], worker=row["worker"],
            started_at=None if started is None else _utc(started),
            progress=None if progress is None else float(progress), running=int(row["running"]),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class ThroughputBucket:
    start: datetime
    completed: int
    failed: int
    retried: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ThroughputBucket:
        return cls(
            start=datetime.fromtimestamp(float(row["start_s"]), UTC),
            completed=int(row["completed"]), failed=int(row["failed"]),
            retried=int(row["retried"]),
        )  # fmt: skip
