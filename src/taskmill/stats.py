"""What the system is doing, in numbers: jobs per queue and state, workers online, throughput,
and per-task totals and durations. One scan of the store makes a snapshot; /api/stats, its
WebSocket, /metrics and `taskmill stats` all read the same snapshot, so they agree.

Totals (enqueued, started, retried, ...) are derived from the jobs the store still holds:
they are exact until finished jobs are pruned (TASKMILL_JOB_RETENTION), after which they
count the retained jobs only."""

from __future__ import annotations

import enum
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from taskmill.jobs import JobStatus
from taskmill.store.base import (
    DURATION_BOUNDS_S,
    JobStats,
    OnlineWorker,
    RunningJob,
    Store,
    ThroughputBucket,
    WorkerRecord,
)

THROUGHPUT_WINDOW_S = 60.0  # "jobs/s over the last minute"
FINISHED = (JobStatus.COMPLETED, JobStatus.FAILED)  # what throughput and durations count


@dataclass(frozen=True, slots=True)
class StateCounts:
    """Jobs in each state, and jobs completed or failed per second over the window."""

    pending: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    completed_per_s: float = 0.0
    failed_per_s: float = 0.0

    @property
    def jobs_per_s(self) -> float:
        return self.completed_per_s + self.failed_per_s

    @property
    def total(self) -> int:
        return self.pending + self.running + self.completed + self.failed + self.cancelled


@dataclass(frozen=True, slots=True)
class TaskTotals:
    """Everything /metrics says about one (task, queue)."""

    task: str
    queue: str
    counts: StateCounts
    enqueued: int  # jobs stored
    started: int  # attempts started
    retried: int  # attempts after the first, begun or scheduled
    timed: int  # completed or failed jobs with a duration
    duration_sum_s: float
    duration_le: tuple[int, ...]  # cumulative, per DURATION_BOUNDS_S


@dataclass(frozen=True, slots=True)
class Snapshot:
    taken_at: datetime
    window_s: float
    queues: dict[str, StateCounts]
    tasks: list[TaskTotals]
    workers: list[OnlineWorker]
    totals: StateCounts = field(default_factory=StateCounts)

    @property
    def workers_online(self) -> int:
        return len(self.workers)

    @property
    def worker_slots(self) -> int:
        """Jobs the online workers can run at once (their child processes)."""
        return sum(w.concurrency for w in self.workers)


def _retries(row: JobStats) -> int:
    # A pending job with attempts is waiting for its next one; elsewhere the first of the
    # attempts a job started was not a retry.
    if row.status is JobStatus.PENDING:
        return row.attempts
    return row.attempts - row.started_jobs


def _counts(rows: Iterable[JobStats], window_s: float) -> StateCounts:
    by_status = dict.fromkeys(JobStatus, 0)
    recent = dict.fromkeys(FINISHED, 0)
    for row in rows:
        by_status[row.status] += row.jobs
        if row.status in recent:
            recent[row.status] += row.finished_recently
    return StateCounts(
        pending=by_status[JobStatus.PENDING],
        running=by_status[JobStatus.RUNNING],
        completed=by_status[JobStatus.COMPLETED],
        failed=by_status[JobStatus.FAILED],
        cancelled=by_status[JobStatus.CANCELLED],
        completed_per_s=recent[JobStatus.COMPLETED] / window_s,
        failed_per_s=recent[JobStatus.FAILED] / window_s,
    )


def _task_totals(task: str, queue: str, rows: list[JobStats], window_s: float) -> TaskTotals:
    timed = [r for r in rows if r.status in FINISHED]
    return TaskTotals(
        task=task,
        queue=queue,
        counts=_counts(rows, window_s),
        enqueued=sum(r.jobs for r in rows),
        started=sum(r.attempts for r in rows),
        retried=sum(_retries(r) for r in rows),
        timed=sum(r.timed for r in timed),
        duration_sum_s=sum(r.duration_sum_s for r in timed),
        duration_le=tuple(
            sum(r.duration_le[i] for r in timed) for i in range(len(DURATION_BOUNDS_S))
        ),
    )


def _group(rows: list[JobStats], key: str) -> dict[tuple[str, ...], list[JobStats]]:
    groups: dict[tuple[str, ...], list[JobStats]] = {}
    for row in rows:
        k = (row.queue,) if key == "queue" else (row.task, row.queue)
        groups.setdefault(k, []).append(row)
    return groups


def build_snapshot(
    rows: list[JobStats], workers: list[OnlineWorker], *, window_s: float, taken_at: datetime
) -> Snapshot:
    """Aggregate the store's per-(task, queue, status) rows — pure, for tests and callers
    that already hold the rows."""
    queues = {k[0]: _counts(v, window_s) for k, v in sorted(_group(rows, "queue").items())}
    tasks = [_task_totals(k[0], k[1], v, window_s) for k, v in sorted(_group(rows, "task").items())]
    return Snapshot(
        taken_at=taken_at,
        window_s=window_s,
        queues=queues,
        tasks=tasks,
        workers=workers,
        totals=_counts(rows, window_s),
    )


def collect(
    store: Store, *, online_within_s: float, window_s: float = THROUGHPUT_WINDOW_S
) -> Snapshot:
    """A fresh snapshot: two reads of the store. Workers count as online while their last
    heartbeat is at most `online_within_s` old (use the lease: a worker silent for longer
    has lost its jobs). Raises StoreError as the store does."""
    rows = store.job_stats(window_s=window_s)
    workers = store.workers_online(within_s=online_within_s)
    return build_snapshot(rows, workers, window_s=window_s, taken_at=datetime.now(UTC))


class StatsService:
    """Snapshots shared by every reader in a process: at most one scan per `max_age_s`, and
    callers arriving while a scan runs wait for it instead of starting their own (a
    dashboard with many open WebSockets costs one query per interval, not one each)."""

    def __init__(self, store: Store, *, online_within_s: float, max_age_s: float = 1.0) -> None:
        self.store = store
        self.online_within_s = online_within_s
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._cached: Snapshot | None = None
        self._cached_at = 0.0

    def snapshot(self) -> Snapshot:
        """The latest snapshot, at most `max_age_s` old. Raises StoreError."""
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached_at >= self.max_age_s:
                self._cached = collect(self.store, online_within_s=self.online_within_s)
                self._cached_at = time.monotonic()
            return self._cached


# -- dashboard: workers in detail, throughput over time

SILENT_WORKERS_KEPT_S = 24 * 3600.0  # a worker killed without goodbye stays listed (stale)
STOPPED_WORKERS_KEPT_S = 300.0  # a worker that stopped cleanly stays listed this long
CURRENT_JOBS_SHOWN = 20  # per worker; prefetching workers may run hundreds of tiny jobs


class WorkerState(enum.StrEnum):
    ONLINE = "online"  # heartbeat within the lease
    STALE = "stale"  # not stopped, but silent for longer than a lease: presumed dead
    STOPPED = "stopped"  # said goodbye (graceful shutdown)


@dataclass(frozen=True, slots=True)
class WorkerDetail:
    worker: WorkerRecord
    state: WorkerState
    running: int  # jobs it runs now, all of them
    current_jobs: list[RunningJob]  # the oldest CURRENT_JOBS_SHOWN of those


def worker_state(worker: WorkerRecord, *, lease_s: float) -> WorkerState:
    if worker.stopped_at is not None:
        return WorkerState.STOPPED
    return WorkerState.STALE if worker.heartbeat_age_s > lease_s else WorkerState.ONLINE


_STATE_ORDER = {WorkerState.ONLINE: 0, WorkerState.STALE: 1, WorkerState.STOPPED: 2}


def worker_details(store: Store, *, lease_s: float) -> list[WorkerDetail]:
    """Every worker an operator should see: online ones, stale ones (silent for longer
    than `lease_s`: killed, or cut off from the database) for a day, and stopped ones for a
    few minutes; online first, then stale, then stopped, each oldest first. Two reads."""
    workers = store.worker_records(
        silent_kept_s=SILENT_WORKERS_KEPT_S, stopped_kept_s=STOPPED_WORKERS_KEPT_S
    )
    jobs: dict[str, list[RunningJob]] = {}
    for job in store.running_jobs_of([w.id for w in workers], per_worker=CURRENT_JOBS_SHOWN):
        jobs.setdefault(job.worker, []).append(job)
    details = [
        WorkerDetail(
            worker=w,
            state=worker_state(w, lease_s=lease_s),
            running=jobs[w.id][0].running if w.id in jobs else 0,
            current_jobs=jobs.get(w.id, []),
        )
        for w in workers
    ]
    return sorted(details, key=lambda d: _STATE_ORDER[d.state])  # stable: oldest first


@dataclass(frozen=True, slots=True)
class History:
    """Throughput over time, and the last minute's split of jobs_per_s."""

    taken_at: datetime
    bucket_s: int
    buckets: list[ThroughputBucket]
    window_s: float
    completed_per_s: float
    failed_per_s: float


def history(store: Store, snapshot: Snapshot, *, minutes: int, bucket_s: int) -> History:
    """The last `minutes` in buckets of `bucket_s` seconds (the newest one still filling),
    with the stats `snapshot`'s jobs_per_s split into completed and failed per second.
    Raises StoreError as the store does."""
    buckets = store.throughput(buckets=math.ceil(minutes * 60 / bucket_s), bucket_s=bucket_s)
    return History(
        taken_at=datetime.now(UTC), bucket_s=bucket_s, buckets=buckets,
        window_s=snapshot.window_s,
        completed_per_s=snapshot.totals.completed_per_s,
        failed_per_s=snapshot.totals.failed_per_s,
    )  # fmt: skip
