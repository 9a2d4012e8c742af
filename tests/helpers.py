"""Support code shared by the test suites: apps on a test database, waiting on a condition
with a deadline, raw database access for what the store API rightly cannot do (moving a
lease into the past), and running a function in several processes at once."""

from __future__ import annotations

import multiprocessing
import os
import queue
import sqlite3
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Barrier
from typing import Any, Literal, NoReturn, TypeVar

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from taskmill import Job, JobStatus, Taskmill
from taskmill.config import Settings
from taskmill.store import Store
from taskmill.store.base import Outcome
from taskmill.store.sqlite import path_from_url
from tests.tasks_for_tests import register_test_tasks

T = TypeVar("T")

TABLES = frozenset({"taskmill_jobs", "taskmill_workers", "taskmill_images"})


def unavailable(what: str, reason: str) -> NoReturn:
    """A real component the tests need is missing: under CI=true the run fails, elsewhere
    the tests that need it are skipped."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is required under CI=true: {reason}")
    pytest.skip(f"{what} is unavailable: {reason}")


def make_app(database_url: str) -> Taskmill:
    """An app on `database_url` with the test tasks, ignoring TASKMILL_* variables of the
    environment the tests happen to run in. The caller closes it."""
    return register_test_tasks(Taskmill(settings=Settings.from_env({}, database_url=database_url)))


def wait_until(
    predicate: Callable[[], T | Literal[False] | None],
    *,
    timeout_s: float = 5.0,
    interval_s: float = 0.005,
    what: str = "",
) -> T:
    """Call `predicate` until it returns something truthy and return that (so
    `wait_until(lambda: cond and job)` is typed as the job); fail the test after
    `timeout_s`. For events that cannot be awaited directly."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not true after {timeout_s}s: {what or predicate}")
        time.sleep(interval_s)


# -- store assertions ---------------------------------------------------------------------

# Two clocks meet here (the test's and the database's) on one machine; the slack is for a
# loaded machine, the values compared are tens of seconds apart when wrong.
CLOCK_SLACK = timedelta(seconds=5)


def is_utc(value: datetime | None) -> bool:
    return value is not None and value.utcoffset() == timedelta(0)


def near(value: datetime, expected: datetime, slack: timedelta = CLOCK_SLACK) -> bool:
    return abs(value - expected) <= slack


def claim_one(
    store: Store, worker_id: str = "w1", lease_s: float = 60, queues: Sequence[str] | None = None
) -> Job:
    """Claim the next job (of `queues`, or any) and return it as now stored (running,
    attempt counted)."""
    jobs = store.claim_jobs(worker_id=worker_id, queues=queues, limit=1, lease_s=lease_s)
    assert len(jobs) == 1
    stored = store.get_job(jobs[0].id)
    assert stored is not None
    return stored


def finish(store: Store, job: Job, status: JobStatus, **fields: object) -> int:
    assert job.started_at is not None
    outcome = Outcome(
        job_id=job.id,
        attempt=job.attempts,
        status=status,
        started_at=job.started_at,
        finished_at=datetime.now(UTC),
        **fields,  # type: ignore[arg-type]
    )
    return store.finish_jobs([outcome])


def dialect_of(database_url: str) -> str:
    return "sqlite" if database_url.startswith("sqlite:") else "postgres"


class RawDb:
    """Direct SQL on a test database, bypassing the store (one connection, autocommit)."""

    def __init__(self, database_url: str) -> None:
        self.dialect = dialect_of(database_url)
        self._sqlite: sqlite3.Connection | None = None
        self._pg: psycopg.Connection[dict[str, Any]] | None = None
        if self.dialect == "sqlite":
            self._sqlite = sqlite3.connect(path_from_url(database_url), isolation_level=None)
            self._sqlite.row_factory = sqlite3.Row
        else:
            self._pg = psycopg.connect(database_url, autocommit=True, row_factory=dict_row)

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        if self._pg is not None:
            self._pg.close()

    def set_time(self, table: str, row_id: str, column: str, when: datetime) -> None:
        """Set one timestamp column of one row (SQLite keeps Unix seconds, PostgreSQL
        timestamptz), e.g. to move a lease into the past without waiting for it."""
        if table not in TABLES or not column.endswith("_at"):
            raise ValueError(f"not a taskmill time column: {table}.{column}")
        if self._sqlite is not None:
            self._sqlite.execute(
                f"UPDATE {table} SET {column} = ? WHERE id = ?",
                (when.timestamp(), row_id),
            )
        elif self._pg is not None:
            self._pg.execute(
                sql.SQL("UPDATE {} SET {} = %s WHERE id = %s").format(
                    sql.Identifier(table), sql.Identifier(column)
                ),
                (when, row_id),
            )

    def expire_lease(self, job_id: str, *, ago_s: float = 60.0) -> None:
        """Make the job's lease look as if it ran out `ago_s` seconds ago."""
        when = datetime.now(UTC) - timedelta(seconds=ago_s)
        self.set_time("taskmill_jobs", job_id, "lease_expires_at", when)

    def fetch_one(self, table: str, key: str, value: object) -> dict[str, Any] | None:
        """One row by `key = value`, timestamps as aware UTC datetimes."""
        if self._sqlite is not None:
            row = self._sqlite.execute(
                f"SELECT * FROM {table} WHERE {key} = ?",
                (value,),
            ).fetchone()
            if row is None:
                return None
            return {
                k: datetime.fromtimestamp(row[k], UTC)
                if k.endswith("_at") and row[k] is not None
                else row[k]
                for k in row.keys()  # noqa: SIM118 - sqlite3.Row is not iterable by key
            }
        assert self._pg is not None
        return self._pg.execute(
            sql.SQL("SELECT * FROM {} WHERE {} = %s").format(
                sql.Identifier(table), sql.Identifier(key)
            ),
            (value,),
        ).fetchone()

    def count(self, table: str) -> int:
        if self._sqlite is not None:
            return int(self._sqlite.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        assert self._pg is not None
        row = self._pg.execute(
            sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(table))
        ).fetchone()
        assert row is not None
        return int(row["n"])


# -- several processes at once ------------------------------------------------------------

PROCESS_TIMEOUT_S = 30.0


def _child_main(
    target: Callable[..., Any],
    index: int,
    barrier: Barrier,
    results: multiprocessing.Queue[tuple[int, bool, Any]],
    args: tuple[Any, ...],
) -> None:
    try:
        results.put((index, True, target(barrier, *args)))
    except BaseException:
        results.put((index, False, traceback.format_exc()))


def run_in_processes(
    target: Callable[..., T], args_per_process: Sequence[tuple[Any, ...]]
) -> list[T]:
    """Run `target(barrier, *args)` in one new process per args tuple and return
    the results in order. `target` must be importable (module level) and should call
    `barrier.wait()` right before the part that has to race. A child's exception fails the
    caller with the child's traceback."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["tests.helpers"])
    barrier = ctx.Barrier(len(args_per_process), timeout=PROCESS_TIMEOUT_S)
    results: multiprocessing.Queue[tuple[int, bool, Any]] = ctx.Queue()
    procs = [
        ctx.Process(target=_child_main, args=(target, i, barrier, results, args), daemon=True)
        for i, args in enumerate(args_per_process)
    ]
    for proc in procs:
        proc.start()
    collected: dict[int, T] = {}
    failures: list[str] = []
    deadline = time.monotonic() + PROCESS_TIMEOUT_S
    try:
        while len(collected) + len(failures) < len(procs):
            try:
                index, ok, value = results.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"processes did not finish in {PROCESS_TIMEOUT_S}s") from None
            if ok:
                collected[index] = value
            else:
                failures.append(f"process {index}:\n{value}")
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        results.close()
        results.join_thread()
    if failures:
        raise AssertionError("\n".join(failures))
    return [collected[i] for i in range(len(procs))]


# Targets for run_in_processes (module level, so a spawned child can import them).


def enqueue_keys(barrier: Barrier, database_url: str, keys: list[str]) -> dict[str, str]:
    """Enqueue `add` once per key, one call each; returns key -> job id."""
    app = make_app(database_url)
    try:
        app.get_task("add")  # import and registration done before the race starts
        barrier.wait()
        return {key: app.enqueue("add", [1, 2], idempotency_key=key).id for key in keys}
    finally:
        app.close()


def claim_until_empty(barrier: Barrier, database_url: str, worker_id: str) -> list[str]:
    """Claim (two at a time) until nothing is left; returns the ids this process got."""
    app = make_app(database_url)
    try:
        app.store.get_job("00000000-0000-7000-8000-000000000000")  # connect before the race
        barrier.wait()
        got: list[str] = []
        while batch := app.store.claim_jobs(worker_id=worker_id, queues=None, limit=2, lease_s=60):
            got.extend(job.id for job in batch)
        return got
    finally:
        app.close()


def migrate_database(barrier: Barrier, database_url: str) -> int:
    app = make_app(database_url)
    try:
        barrier.wait()
        return app.migrate()
    finally:
        app.close()
