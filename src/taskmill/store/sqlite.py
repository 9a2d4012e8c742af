"""The SQLite store: one file in WAL mode, shared safely by an API process and several
worker processes on one machine."""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from taskmill.errors import StoreError, StoreUnavailable
from taskmill.images.records import Image, NewImage
from taskmill.jobs import Job, JobStatus, NewJob
from taskmill.store.base import (
    ClaimedJob,
    JobFilter,
    JobStats,
    OnlineWorker,
    Outcome,
    Progress,
    QueueCounts,
    RunningJob,
    ScheduleState,
    ThroughputBucket,
    WorkerInfo,
    WorkerRecord,
    clean_text,
    duration_bound_params,
    guarded_result,
    outcomes_json,
)
from taskmill.store.images import ImageRecords
from taskmill.store.inotify import DirectoryWatch
from taskmill.store.migrate import apply_migrations
from taskmill.store.queries import queries
from taskmill.store.rows import job_from_row

log = logging.getLogger("taskmill.store")
Q = queries("sqlite")
BUSY_TIMEOUT_S = 30.0  # writers queue on the file lock; this bounds the wait


def path_from_url(url: str) -> str:
    """sqlite:///relative/path, sqlite:////absolute/path, sqlite:///:memory: is refused
    (workers in other processes could not see it)."""
    path = url.removeprefix("sqlite://").removeprefix("/")
    if not path or path == ":memory:":
        raise StoreError(f"{url!r}: give a file path, e.g. sqlite:///taskmill-data/taskmill.db")
    return path


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _jobs_json(jobs: Sequence[NewJob]) -> str:
    """The :jobs parameter of insert_jobs: one JSON array per job."""
    return json.dumps(
        [
            (j.id, j.task, j.queue, j.priority, j.args_json, j.kwargs_json, j.max_retries,
             j.timeout_s, j.backoff, j.idempotency_key, _epoch(j.scheduled_at))
            for j in jobs
        ]
    )  # fmt: skip


def _job_params(job: NewJob, now: float) -> dict[str, Any]:
    """The parameters of insert_job (a job without an idempotency key)."""
    return {
        "id": job.id, "task": job.task, "queue": job.queue, "priority": job.priority,
        "args": job.args_json, "kwargs": job.kwargs_json, "max_retries": job.max_retries,
        "timeout": job.timeout_s, "backoff": job.backoff, "now": now,
        "scheduled": _epoch(job.scheduled_at),
    }  # fmt: skip


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip([c[0] for c in cursor.description], row, strict=True))


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL. Switching needs an exclusive lock and SQLite answers "locked"
    at once, without the busy timeout, while another connection holds a write lock: so
    several processes opening a new database together (`taskmill up`, workers starting)
    would fail. Retry until the busy timeout instead."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    pause_s = 0.002
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause_s > deadline:
                conn.close()
                raise
        time.sleep(pause_s)
        pause_s = min(pause_s * 2, 0.05)


def _statements(script: str) -> Iterator[str]:
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer
            buffer = ""


@contextmanager
def translate_errors() -> Iterator[None]:
    try:
        yield
    except sqlite3.OperationalError as exc:
        if "unable to open" in str(exc):
            raise StoreUnavailable(f"SQLite: {exc}") from exc
        if "no such table" in str(exc):
            raise StoreError(f"SQLite: {exc} (run `taskmill migrate` first)") from exc
        raise StoreError(f"SQLite: {exc}") from exc
    except sqlite3.Error as exc:
        raise StoreError(f"SQLite: {exc}") from exc


class SQLiteListener:
    """SQLite has no notifications; `PRAGMA data_version` on a private connection changes
    whenever another connection commits, and costs microseconds to read.

    On Linux an inotify watch on the database's directory makes `fileno` readable when the
    database or its -wal or -journal file is written, so an idle worker sleeps in the
    kernel. The event comes before the commit shows (the writer still fsyncs, then
    publishes the commit in shared memory, which makes no event; measured here: 9 events in
    10 came early, by 1.9 ms at the median, 9.5 ms at p99). So after an event with no
    visible change `fileno` is None and `check` is polled: every 0.1 ms for FINE_S (the
    worker's wait has millisecond resolution, which cost 0.8 ms of median start latency),
    then every millisecond until SETTLE_S passes without events.

    Without inotify (other systems, the per-user limits) `check` is polled: every
    millisecond while the database is busy, every 5 ms once nothing has been committed for
    two seconds; an idle worker then costs ~6 % of a core."""

    BUSY_POLL_S = 0.001
    IDLE_POLL_S = 0.005
    QUIET_AFTER_S = 2.0
    FINE_S = 0.01
    FINE_TICK_S = 0.0001
    FINE_CALL_S = 0.0005  # at most this long in one `check`: the worker has more to do
    # A commit slower than this (a slow disk's fsync) is found by the worker's own look at
    # the queue, once a second.
    # A missed event (NFS, where events from other machines never arrive; SQLite must not
    # be used there anyway) is bounded the same way: a second's delay.
    SETTLE_S = 0.25

    def __init__(self, path: str) -> None:
        with translate_errors():
            self._conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            # A first read creates a missing -wal file: before watching, or it wakes us.
            self._conn.execute("PRAGMA data_version").fetchone()
        self._last = -1
        self._changed_at = time.monotonic()
        self._event_at = -math.inf  # of the last event whose commit has not shown yet
        self._watch: DirectoryWatch | None = None
        real = os.path.realpath(path)  # SQLite puts -wal next to the file a symlink names
        directory, name = os.path.split(real)
        try:
            self._watch = DirectoryWatch(directory, [name, f"{name}-wal", f"{name}-journal"])
        except OSError as exc:
            self._poll_instead(exc)

    def _poll_instead(self, exc: OSError) -> None:
        log.debug("SQLite listener polls: no inotify watch (%s)", exc)
        self._event_at = -math.inf
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    @property
    def poll_interval_s(self) -> float:
        """Asked only while `fileno` is None."""
        if self._watch is not None:
            fine = time.monotonic() - self._event_at < self.FINE_S
            return 0.0 if fine else self.BUSY_POLL_S  # 0: `check` paces itself
        quiet = time.monotonic() - self._changed_at > self.QUIET_AFTER_S
        return self.IDLE_POLL_S if quiet else self.BUSY_POLL_S

    def fileno(self) -> int | None:
        if self._watch is None or time.monotonic() - self._event_at < self.SETTLE_S:
            return None
        return self._watch.fileno()

    def check(self) -> bool:
        now = time.monotonic()
        if self._watch is not None:
            try:
                if self._watch.drain():
                    self._event_at = now
            except OSError as exc:
                self._poll_instead(exc)
        changed = self._changed()
        stop = min(now + self.FINE_CALL_S, self._event_at + self.FINE_S)
        while not changed and time.monotonic() + self.FINE_TICK_S < stop:
            time.sleep(self.FINE_TICK_S)
            changed = self._changed()
        if changed:
            # Commits still in flight need no wait: a claim after this news takes the
            # write lock, so it sees them.
            self._event_at = -math.inf
        return changed

    def _changed(self) -> bool:
        with translate_errors():
            version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        changed, self._last = version != self._last, version
        if changed:
            self._changed_at = time.monotonic()
        return bool(changed)

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
        self._conn.close()


class SQLiteStore(ImageRecords):
    dialect = "sqlite"
    epoch_times = json_text = True

    def __init__(self, url: str) -> None:
        self.path = path_from_url(url)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreUnavailable(f"SQLite: cannot create {self.path}: {exc}") from exc
            with translate_errors():
                conn = sqlite3.connect(
                    self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                    check_same_thread=False,
                )  # fmt: skip
                conn.row_factory = _dict_row
                _enable_wal(conn)
                # FULL: a job whose id a client received survives power loss, not only a crash.
                conn.execute("PRAGMA synchronous = FULL")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction. IMMEDIATE takes the write lock up front, so two workers never
        both read the same pending row and then both update it."""
        conn = self._connection()
        with translate_errors():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _read(self, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        with translate_errors():
            return self._connection().execute(Q[name], params).fetchall()

    def _write(self, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        with self._tx() as conn:
            return conn.execute(Q[name], {"now": time.time(), **params}).fetchall()

    @staticmethod
    def _to_jobs(rows: Sequence[dict[str, Any]]) -> list[Job]:
        return [job_from_row(r, epoch_times=True, json_text=True) for r in rows]

    # -- schema ---------------------------------------------------------------------------

    def migrate(self) -> int:
        with self._tx() as conn:
            conn.execute(Q["schema_version_table"])
            current = conn.execute(Q["schema_version"]).fetchone()["version"]

            def run_script(sql: str) -> None:
                # executescript() would COMMIT our transaction; run statement by statement.
                for statement in _statements(sql):
                    conn.execute(statement)

            return apply_migrations(
                "sqlite",
                current=int(current),
                run_script=run_script,
                record=lambda v: conn.execute(
                    Q["record_schema_version"], {"version": v, "now": time.time()}
                ),
            )

    def schema_version(self) -> int:
        with translate_errors():
            conn = self._connection()
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'taskmill_schema'"
            ).fetchone()
            return int(conn.execute(Q["schema_version"]).fetchone()["version"]) if exists else 0

    # -- jobs -----------------------------------------------------------------------------

    def insert_streamed_jobs(self, count: int, jobs: Iterator[NewJob]) -> list[Job]:
        return self.insert_jobs(list(jobs))  # one statement takes them all: nothing to overlap

    def insert_jobs(self, jobs: Sequence[NewJob]) -> list[Job]:
        if not jobs:
            return []
        if len(jobs) == 1 and jobs[0].idempotency_key is None:
            # Nothing to look up afterwards, so no transaction around it: one statement is
            # atomic by itself.
            now = time.time()
            with translate_errors():
                self._connection().execute(Q["insert_job"], _job_params(jobs[0], now))
            return [jobs[0].stored(datetime.fromtimestamp(now, UTC))]
        payload = _jobs_json(jobs)
        now = time.time()
        created = datetime.fromtimestamp(now, UTC)
        with self._tx() as conn:
            inserted = conn.execute(Q["insert_jobs"], {"jobs": payload, "now": now}).rowcount
            if inserted == len(jobs):
                return [j.stored(created) for j in jobs]
            # Some were skipped for their idempotency key: the stored job with each key is
            # ours or the earlier one. Inside the same write transaction, so a concurrent
            # enqueue cannot slip between.
            keys = json.dumps([(j.task, j.idempotency_key) for j in jobs if j.idempotency_key])
            stored = {
                (job.task, job.idempotency_key): job
                for job in self._to_jobs(
                    conn.execute(Q["find_by_idempotency_keys"], {"keys": keys}).fetchall()
                )
            }
            return [j.stored(created) if j.idempotency_key is None
                    else stored[(j.task, j.idempotency_key)] for j in jobs]  # fmt: skip

    def get_job(self, job_id: str) -> Job | None:
        found = self._to_jobs(self._read("get_job", {"id": job_id}))
        return found[0] if found else None

    def list_jobs(self, filt: JobFilter, *, limit: int, before_id: str | None) -> list[Job]:
        params = {
            "status": filt.status,
            "queue": filt.queue,
            "task": filt.task,
            "before_id": before_id,
            "limit": limit,
        }
        return self._to_jobs(self._read("list_jobs", params))

    def _guarded(self, name: str, job_id: str, action: str) -> Job:
        changed = self._to_jobs(self._write(name, {"id": job_id}))
        return guarded_result(job_id, action, changed, self.get_job)

    def cancel_job(self, job_id: str) -> Job:
        return self._guarded("cancel_job", job_id, "cancel")

    def retry_job(self, job_id: str) -> Job:
        return self._guarded("retry_job", job_id, "retry")

    def claim_jobs(
        self, *, worker_id: str, queues: Sequence[str] | None, limit: int, lease_s: float
    ) -> list[ClaimedJob]:
        params: dict[str, Any] = {"worker_id": worker_id, "limit": limit, "lease_s": lease_s}
        name = "claim_jobs_any"
        if queues is not None:
            name, params["queues"] = "claim_jobs_in_queues", json.dumps(list(queues))
        with self._unflushed():
            rows = self._write(name, params)
        return [ClaimedJob(*row.values()) for row in rows]

    @contextmanager
    def _unflushed(self) -> Iterator[None]:
        """Commit without waiting for the disk. For claims: one lost in a power cut leaves
        its jobs pending, as they were, and the next durable commit flushes it anyway."""
        conn = self._connection()
        with translate_errors():
            conn.execute("PRAGMA synchronous = NORMAL")
        try:
            yield
        finally:
            with translate_errors():
                conn.execute("PRAGMA synchronous = FULL")

    def finish_jobs(self, outcomes: Sequence[Outcome]) -> int:
        if not outcomes:
            return 0
        with self._tx() as conn:
            return conn.execute(
                Q["finish_jobs"], {"outcomes": outcomes_json(outcomes), "now": time.time()}
            ).rowcount

    def release_jobs(self, jobs: Sequence[tuple[str, int]]) -> int:
        if not jobs:
            return 0
        with self._tx() as conn:
            return conn.execute(
                Q["release_jobs"], {"jobs": json.dumps(list(jobs)), "now": time.time()}
            ).rowcount

    def set_progress(self, updates: Sequence[Progress]) -> None:
        if updates:
            payload = json.dumps(
                [[u.job_id, u.attempt, u.fraction, clean_text(u.message)] for u in updates]
            )
            self._write("set_progress", {"updates": payload})

    def heartbeat(self, *, worker_id: str, lease_s: float) -> None:
        with self._tx() as conn:
            now = time.time()
            conn.execute(Q["worker_heartbeat"], {"id": worker_id, "now": now})
            conn.execute(
                Q["renew_leases"], {"worker_id": worker_id, "lease_s": lease_s, "now": now}
            )

    def cancel_requested(self, *, worker_id: str) -> list[tuple[str, int]]:
        rows = self._read("cancel_requested", {"worker_id": worker_id})
        return [(r["id"], int(r["attempts"])) for r in rows]

    def recover_expired_leases(self) -> int:
        with self._tx() as conn:
            return conn.execute(Q["recover_expired_leases"], {"now": time.time()}).rowcount

    def next_due_in_s(self, queues: Sequence[str] | None) -> float | None:
        if queues is None:
            rows = self._read("next_due_in_any", {"now": time.time()})
        else:
            rows = self._read(
                "next_due_in_queues", {"now": time.time(), "queues": json.dumps(list(queues))}
            )
        due = rows[0]["due_in_s"]
        return None if due is None else float(due)

    def queue_counts(self) -> list[QueueCounts]:
        return [
            QueueCounts(r["queue"], JobStatus(r["status"]), int(r["count"]))
            for r in self._read("queue_counts", {})
        ]

    # -- workers --------------------------------------------------------------------------

    def register_worker(self, info: WorkerInfo) -> None:
        self._write("register_worker", info.params())

    def unregister_worker(self, worker_id: str) -> None:
        self._write("unregister_worker", {"id": worker_id})

    def listener(self) -> SQLiteListener:
        return SQLiteListener(self.path)

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    # -- stats

    def job_stats(self, *, window_s: float) -> list[JobStats]:
        params = {"now": time.time(), "window_s": window_s, **duration_bound_params()}
        return [JobStats.from_row(r) for r in self._read("job_stats", params)]

    def workers_online(self, *, within_s: float) -> list[OnlineWorker]:
        rows = self._read("workers_online", {"now": time.time(), "within_s": within_s})
        return [OnlineWorker.from_row(r) for r in rows]

    # -- scheduler

    def schedule_states(self) -> list[ScheduleState]:
        return [ScheduleState.from_row(r) for r in self._read("schedule_states", {"name": None})]

    def start_schedule(
        self, *, name: str, task: str, cron: str, tz: str, since: datetime
    ) -> ScheduleState:
        params = {"name": name, "task": task, "cron": cron, "tz": tz, "since": since.timestamp()}
        with self._tx() as conn:
            conn.execute(Q["start_schedule"], params)
            row = conn.execute(Q["schedule_states"], {"name": name}).fetchone()
        return ScheduleState.from_row(row)

    def advance_schedule(self, *, name: str, tick_at: datetime, job_id: str) -> bool:
        params = {"name": name, "tick_at": tick_at.timestamp(), "job_id": job_id}
        return bool(self._write("advance_schedule", params))

    def prune_jobs(self, *, older_than_s: float, limit: int) -> int:
        with self._tx() as conn:
            params = {"now": time.time(), "older_than_s": older_than_s, "limit": limit}
            return conn.execute(Q["prune_jobs"], params).rowcount

    # -- images (the rest in ImageRecords)

    def _image_read(self, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        return self._read(name, params)

    def _image_write(self, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        return self._write(name, params)

    def insert_image(self, image: NewImage, job: NewJob) -> tuple[Image, bool]:
        now = time.time()
        with self._tx() as conn:
            params = {**image.params(), "now": now}
            row = conn.execute(Q["insert_image"], params).fetchone()
            if row is None:
                key = {"key": image.idempotency_key}
                return self._images(conn.execute(Q["get_image_by_key"], key).fetchall())[0], False
            conn.execute(Q["insert_jobs"], {"jobs": _jobs_json([job]), "now": now})
            return self._images([row])[0], True  # pending with a pending job: as the view reads

    # -- dashboard

    def worker_records(self, *, silent_kept_s: float, stopped_kept_s: float) -> list[WorkerRecord]:
        params = {"now": time.time(), "silent_kept_s": silent_kept_s,
                  "stopped_kept_s": stopped_kept_s}  # fmt: skip
        return [WorkerRecord.from_row(r) for r in self._read("dashboard_workers", params)]

    def running_jobs_of(self, worker_ids: Sequence[str], *, per_worker: int) -> list[RunningJob]:
        if not worker_ids:
            return []
        params = {"workers": json.dumps(list(worker_ids)), "per_worker": per_worker}
        return [RunningJob.from_row(r) for r in self._read("dashboard_running_jobs", params)]

    def throughput(self, *, buckets: int, bucket_s: int) -> list[ThroughputBucket]:
        params = {"now": time.time(), "buckets": buckets, "bucket_s": bucket_s}
        return [ThroughputBucket.from_row(r) for r in self._read("dashboard_throughput", params)]
