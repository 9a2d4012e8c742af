"""The PostgreSQL store: psycopg 3 with a connection pool, SKIP LOCKED claims, LISTEN/NOTIFY."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

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
from taskmill.store.migrate import apply_migrations
from taskmill.store.pg_connections import DedicatedConnection, ended_by_server
from taskmill.store.queries import queries
from taskmill.store.rows import job_from_row

log = logging.getLogger("taskmill.store")

Q = queries("postgres")
POOL_MAX_SIZE = 10
COPY_MIN_JOBS = 100  # below this, one INSERT statement is as fast as COPY
# Batch statements join a JSON or array parameter of unknown length to the jobs table.
# A prepared statement's generic plan guesses that length and picked a scan of every
# running job; planned afresh each time, they look up exactly the batch by primary key.
UNPREPARED = frozenset({"finish_jobs", "release_jobs", "set_progress", "find_by_idempotency_keys"})
CONNECT_TIMEOUT_S = 5


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SET TIME ZONE 'UTC'")


def _normalize_url(url: str) -> str:
    return (
        "postgresql://" + url.removeprefix("postgres://") if url.startswith("postgres://") else url
    )


@contextmanager
def translate_errors() -> Iterator[None]:
    """Driver errors become taskmill errors here, at the store boundary."""
    try:
        yield
    except PoolTimeout as exc:
        raise StoreUnavailable(f"PostgreSQL unreachable: {exc}") from exc
    except psycopg.errors.UndefinedTable as exc:
        raise StoreError(f"PostgreSQL: {exc} (run `taskmill migrate` first)") from exc
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"PostgreSQL unreachable: {str(exc).strip()}") from exc
    except psycopg.Error as exc:
        raise StoreError(f"PostgreSQL error: {str(exc).strip()}") from exc


def _single_params(job: NewJob) -> dict[str, Any]:
    return {
        "id": job.id, "task": job.task, "queue": job.queue, "priority": job.priority,
        "args": job.args_json, "kwargs": job.kwargs_json, "max_retries": job.max_retries,
        "timeout": job.timeout_s, "backoff": job.backoff, "key": job.idempotency_key,
        "scheduled": job.scheduled_at,
    }  # fmt: skip


def _batch_params(jobs: Sequence[NewJob]) -> dict[str, Any]:
    return {
        "ids": [j.id for j in jobs],
        "tasks": [j.task for j in jobs],
        "queues": [j.queue for j in jobs],
        "priorities": [j.priority for j in jobs],
        "args": [j.args_json for j in jobs],
        "kwargs": [j.kwargs_json for j in jobs],
        "max_retries": [j.max_retries for j in jobs],
        "timeouts": [j.timeout_s for j in jobs],
        "backoffs": [j.backoff for j in jobs],
        "keys": [j.idempotency_key for j in jobs],
        "scheduled": [j.scheduled_at for j in jobs],
    }


class PostgresListener:
    """A dedicated LISTEN connection whose socket the worker selects on."""

    poll_interval_s = 1.0

    def __init__(self, url: str) -> None:
        with translate_errors():
            self._conn = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
            self._conn.execute(Q["listen"])

    def fileno(self) -> int | None:
        return self._conn.fileno()

    def check(self) -> bool:
        with translate_errors():
            return any(True for _ in self._conn.notifies(timeout=0))

    def close(self) -> None:
        self._conn.close()


class PostgresStore(ImageRecords):
    dialect = "postgres"
    epoch_times = json_text = False

    def __init__(self, url: str, *, pool_max_size: int = POOL_MAX_SIZE) -> None:
        self.url = _normalize_url(url)
        self._pool = ConnectionPool(
            self.url,
            min_size=1,
            max_size=pool_max_size,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
            configure=_configure,
            open=False,
            timeout=CONNECT_TIMEOUT_S,
            name="taskmill",
        )
        self._opened = False
        self._single_insert = DedicatedConnection(
            self.url, connect_timeout_s=CONNECT_TIMEOUT_S, configure=_configure
        )

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        with translate_errors():
            if not self._opened:
                self._pool.open(wait=False)
                self._opened = True
            conn = self._live_connection()
            try:
                yield conn
            finally:
                self._pool.putconn(conn)

    def _live_connection(self) -> psycopg.Connection[Any]:
        """A pooled connection the server has not ended. After a restart or a failover the
        idle ones are all dead: each is closed (the pool opens a new one in its place) and
        the request goes on, rather than failing on a connection that was dead already.
        (psycopg_pool's own `check` would sleep a back-off second between tries.)"""
        for _ in range(self._pool.max_size):
            conn = self._pool.getconn()
            if not ended_by_server(conn):
                return conn
            conn.close()
            self._pool.putconn(conn)
        return self._pool.getconn()

    def _rows(self, name: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with self._conn() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(Q[name], params, prepare=False if name in UNPREPARED else None)
            return cur.fetchall()

    def _jobs(self, name: str, params: dict[str, Any]) -> list[Job]:
        return [
            job_from_row(r, epoch_times=False, json_text=False) for r in self._rows(name, params)
        ]

    def _execute(self, name: str, params: dict[str, Any]) -> int:
        with self._conn() as conn:
            return conn.execute(
                Q[name], params, prepare=False if name in UNPREPARED else None
            ).rowcount

    # -- schema ---------------------------------------------------------------------------

    def migrate(self) -> int:
        with self._conn() as conn, conn.transaction():
            conn.execute(Q["migration_lock"])
            conn.execute(Q["schema_version_table"])
            return apply_migrations(
                "postgres",
                current=self._version(conn),
                run_script=lambda sql: conn.execute(sql.encode()),
                record=lambda v: conn.execute(Q["record_schema_version"], {"version": v}),
            )

    def _version(self, conn: psycopg.Connection[Any]) -> int:
        row = conn.execute(Q["schema_version"]).fetchone()
        return int(row[0]) if row else 0

    def schema_version(self) -> int:
        with self._conn() as conn:
            exists = conn.execute("SELECT to_regclass('taskmill_schema')").fetchone()
            return self._version(conn) if exists and exists[0] else 0

    # -- jobs -----------------------------------------------------------------------------

    def insert_jobs(self, jobs: Sequence[NewJob]) -> list[Job]:
        if not jobs:
            return []
        if len(jobs) >= COPY_MIN_JOBS and not any(j.idempotency_key for j in jobs):
            return self._copy_jobs(jobs)
        if len(jobs) == 1:
            row = self._insert_one(jobs[0])
            if row is not None:
                return [jobs[0].stored(row[1])]
            rows = []
        else:
            with self._conn() as conn:
                rows = conn.execute(Q["insert_jobs"], _batch_params(jobs)).fetchall()
        inserted = {str(job_id): created_at for job_id, created_at in rows}
        if len(inserted) == len(jobs):  # nothing skipped for its idempotency key
            return [j.stored(inserted[j.id]) for j in jobs]
        dupes = [j for j in jobs if j.id not in inserted]
        existing = {
            (job.task, job.idempotency_key): job
            for job in self._jobs(
                "find_by_idempotency_keys",
                {"tasks": [j.task for j in dupes], "keys": [j.idempotency_key for j in dupes]},
            )
        }
        return [
            j.stored(inserted[j.id]) if j.id in inserted else existing[(j.task, j.idempotency_key)]
            for j in jobs
        ]

    def _insert_one(self, job: NewJob) -> Any:
        params = _single_params(job)
        with translate_errors():
            done, row = self._single_insert.try_fetchone(Q["insert_job"], params)
        if done:
            return row
        with self._conn() as conn:  # another thread is inserting on the dedicated connection
            return conn.execute(Q["insert_job"], params).fetchone()

    def insert_streamed_jobs(self, count: int, jobs: Iterator[NewJob]) -> list[Job]:
        if count < COPY_MIN_JOBS:
            return self.insert_jobs(list(jobs))
        return self._copy_jobs(jobs)

    def _copy_jobs(self, jobs: Iterable[NewJob]) -> list[Job]:
        """COPY, each row sent as soon as it is made: the server inserts while the caller
        builds the rest. An exception from `jobs` aborts the COPY and its transaction."""
        stored: list[Job] = []
        with self._conn() as conn, conn.transaction(), conn.cursor() as cur:
            now = cur.execute(Q["transaction_time"]).fetchone()[0]  # type: ignore[index]
            # The same time on every row: formatted once, as a datetime it would be per row.
            now_text = now.isoformat()
            with cur.copy(Q["copy_jobs"]) as copy:
                write_row, keep = copy.write_row, stored.append
                for j in jobs:
                    if j.idempotency_key is not None:  # COPY cannot skip a duplicate key
                        raise ValueError("COPY is for jobs without idempotency keys")
                    write_row(
                        (j.id, j.task, j.queue, j.priority, j.args_json, j.kwargs_json,
                         j.max_retries, j.timeout_s, j.backoff, j.scheduled_at or now_text)
                    )  # fmt: skip
                    keep(j.stored(now))
        return stored

    def get_job(self, job_id: str) -> Job | None:
        found = self._jobs("get_job", {"id": job_id})
        return found[0] if found else None

    def list_jobs(self, filt: JobFilter, *, limit: int, before_id: str | None) -> list[Job]:
        return self._jobs(
            "list_jobs",
            {
                "status": filt.status,
                "queue": filt.queue,
                "task": filt.task,
                "before_id": before_id,
                "limit": limit,
            },
        )

    def _guarded(self, name: str, job_id: str, action: str) -> Job:
        changed = self._jobs(name, {"id": job_id})
        return guarded_result(job_id, action, changed, self.get_job)

    def cancel_job(self, job_id: str) -> Job:
        return self._guarded("cancel_job", job_id, "cancel")

    def retry_job(self, job_id: str) -> Job:
        return self._guarded("retry_job", job_id, "retry")

    def claim_jobs(
        self, *, worker_id: str, queues: Sequence[str] | None, limit: int, lease_s: float
    ) -> list[ClaimedJob]:
        name = "claim_jobs_any" if queues is None else "claim_jobs_in_queues"
        params = {
            "worker_id": worker_id, "limit": limit, "lease_s": lease_s,
            "queues": None if queues is None else list(queues),
        }  # fmt: skip
        with self._conn() as conn:
            return [ClaimedJob(*row) for row in conn.execute(Q[name], params).fetchall()]

    def finish_jobs(self, outcomes: Sequence[Outcome]) -> int:
        if not outcomes:
            return 0
        return self._execute("finish_jobs", {"outcomes": outcomes_json(outcomes)})

    def release_jobs(self, jobs: Sequence[tuple[str, int]]) -> int:
        if not jobs:
            return 0
        rows = self._rows(
            "release_jobs", {"ids": [j for j, _ in jobs], "attempts": [a for _, a in jobs]}
        )
        return int(rows[0]["released"])

    def set_progress(self, updates: Sequence[Progress]) -> None:
        if updates:
            self._execute(
                "set_progress",
                {
                    "ids": [u.job_id for u in updates],
                    "attempts": [u.attempt for u in updates],
                    "progress": [u.fraction for u in updates],
                    "messages": [clean_text(u.message) for u in updates],
                },
            )

    def heartbeat(self, *, worker_id: str, lease_s: float) -> None:
        with self._conn() as conn, conn.transaction():
            conn.execute(Q["worker_heartbeat"], {"id": worker_id})
            conn.execute(Q["renew_leases"], {"worker_id": worker_id, "lease_s": lease_s})

    def cancel_requested(self, *, worker_id: str) -> list[tuple[str, int]]:
        rows = self._rows("cancel_requested", {"worker_id": worker_id})
        return [(str(r["id"]), int(r["attempts"])) for r in rows]

    def recover_expired_leases(self) -> int:
        return int(self._rows("recover_expired_leases")[0]["recovered"])

    def next_due_in_s(self, queues: Sequence[str] | None) -> float | None:
        name = "next_due_in_any" if queues is None else "next_due_in_queues"
        due = self._rows(name, {"queues": None if queues is None else list(queues)})[0]["due_in_s"]
        return None if due is None else float(due)

    def queue_counts(self) -> list[QueueCounts]:
        return [
            QueueCounts(r["queue"], JobStatus(r["status"]), int(r["count"]))
            for r in self._rows("queue_counts")
        ]

    # -- workers --------------------------------------------------------------------------

    def register_worker(self, info: WorkerInfo) -> None:
        self._execute("register_worker", info.params())

    def unregister_worker(self, worker_id: str) -> None:
        self._execute("unregister_worker", {"id": worker_id})

    def listener(self) -> PostgresListener:
        return PostgresListener(self.url)

    def close(self) -> None:
        self._single_insert.close()
        if self._opened:
            self._pool.close()
            self._opened = False

    # -- stats

    def job_stats(self, *, window_s: float) -> list[JobStats]:
        params = {"window_s": window_s, **duration_bound_params()}
        return [JobStats.from_row(r) for r in self._rows("job_stats", params)]

    def workers_online(self, *, within_s: float) -> list[OnlineWorker]:
        rows = self._rows("workers_online", {"within_s": within_s})
        return [OnlineWorker.from_row(r) for r in rows]

    # -- scheduler

    def schedule_states(self) -> list[ScheduleState]:
        return [ScheduleState.from_row(r) for r in self._rows("schedule_states", {"name": None})]

    def start_schedule(
        self, *, name: str, task: str, cron: str, tz: str, since: datetime
    ) -> ScheduleState:
        params = {"name": name, "task": task, "cron": cron, "tz": tz, "since": since}
        with self._conn() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            cur.execute(Q["start_schedule"], params)
            row = cur.execute(Q["schedule_states"], {"name": name}).fetchone()
        assert row is not None  # inserted or kept just above, in this transaction
        return ScheduleState.from_row(row)

    def advance_schedule(self, *, name: str, tick_at: datetime, job_id: str) -> bool:
        params = {"name": name, "tick_at": tick_at, "job_id": job_id}
        return bool(self._rows("advance_schedule", params))

    def prune_jobs(self, *, older_than_s: float, limit: int) -> int:
        return self._execute("prune_jobs", {"older_than_s": older_than_s, "limit": limit})

    # -- images (the rest in ImageRecords)

    def _image_read(self, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        return self._rows(name, params)

    def _image_write(self, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        return self._rows(name, params)

    def insert_image(self, image: NewImage, job: NewJob) -> tuple[Image, bool]:
        with self._conn() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            cur.execute(Q["insert_image"], image.params())
            row = cur.fetchone()
            if row is None:
                cur.execute(Q["get_image_by_key"], {"key": image.idempotency_key})
                return self._images(cur.fetchall())[0], False
            cur.execute(Q["insert_job"], _single_params(job))
            return self._images([row])[0], True  # pending with a pending job: as the view reads

    # -- dashboard

    def worker_records(self, *, silent_kept_s: float, stopped_kept_s: float) -> list[WorkerRecord]:
        params = {"silent_kept_s": float(silent_kept_s), "stopped_kept_s": float(stopped_kept_s)}
        return [WorkerRecord.from_row(r) for r in self._rows("dashboard_workers", params)]

    def running_jobs_of(self, worker_ids: Sequence[str], *, per_worker: int) -> list[RunningJob]:
        if not worker_ids:
            return []
        params = {"workers": list(worker_ids), "per_worker": per_worker}
        return [RunningJob.from_row(r) for r in self._rows("dashboard_running_jobs", params)]

    def throughput(self, *, buckets: int, bucket_s: int) -> list[ThroughputBucket]:
        params = {"buckets": buckets, "bucket_s": bucket_s}
        return [ThroughputBucket.from_row(r) for r in self._rows("dashboard_throughput", params)]
