"""Races between processes, on each backend: the database alone must keep jobs consistent
when several API servers, workers or `taskmill migrate` runs hit it at the same moment."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from taskmill import JobStatus, Taskmill
from taskmill.store.migrate import latest_version
from tests.helpers import (
    RawDb,
    claim_until_empty,
    enqueue_keys,
    make_app,
    migrate_database,
    run_in_processes,
)


def test_concurrent_enqueues_with_the_same_keys_make_one_job_per_key(
    app: Taskmill, database_url: str
) -> None:
    keys = [f"key-{i}" for i in range(40)]
    first, second = run_in_processes(enqueue_keys, [(database_url, keys), (database_url, keys)])

    assert first == second
    assert len(set(first.values())) == len(keys)
    stored = app.list(limit=1000)
    assert {j.id for j in stored} == set(first.values())
    assert {j.idempotency_key for j in stored} == set(keys)


def test_concurrent_claimers_never_take_the_same_job(app: Taskmill, database_url: str) -> None:
    ids = {j.id for j in app.enqueue_many([{"task": "add", "args": [i, i]} for i in range(60)])}
    workers = ["w0", "w1", "w2"]
    claimed = run_in_processes(claim_until_empty, [(database_url, w) for w in workers])

    every_claim = [job_id for got in claimed for job_id in got]
    assert Counter(every_claim).most_common(1)[0][1] == 1, "a job was claimed twice"
    assert set(every_claim) == ids
    for worker, got in zip(workers, claimed, strict=True):
        for job_id in got:
            job = app.get(job_id)
            assert (job.status, job.attempts, job.worker) == (JobStatus.RUNNING, 1, worker)


def _check_migrated(url: str, dialect: str) -> None:
    app = make_app(url)
    try:
        assert app.store.schema_version() == latest_version(dialect)
        assert app.enqueue("add", [1, 2]).status is JobStatus.PENDING
    finally:
        app.close()
    raw = RawDb(url)
    try:
        assert raw.count("taskmill_schema") == 1  # recorded once, not once per process
    finally:
        raw.close()


def test_concurrent_migrations_of_a_new_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/fresh/taskmill.db"
    versions = run_in_processes(migrate_database, [(url,)] * 4)
    assert versions == [latest_version("sqlite")] * 4
    _check_migrated(url, "sqlite")


def test_concurrent_migrations_of_an_empty_postgres_database(
    pg_database: Callable[..., str],
) -> None:
    url = pg_database(migrated=False)
    versions = run_in_processes(migrate_database, [(url,)] * 4)
    assert versions == [latest_version("postgres")] * 4
    _check_migrated(url, "postgres")


def test_opening_a_new_sqlite_file_waits_while_another_process_writes(tmp_path: Path) -> None:
    """Switching a new file to WAL needs an exclusive lock, and SQLite refuses it at once
    (ignoring the busy timeout) while another connection writes: processes that open a
    fresh database together must wait, not fail with "database is locked"."""
    path = tmp_path / "new.db"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE unrelated (a)")  # a real file, still in rollback-journal mode
    writer.execute("BEGIN IMMEDIATE")
    committed = threading.Event()

    def commit_soon() -> None:
        time.sleep(0.2)  # the store must be refused for a while before this commit
        writer.execute("COMMIT")
        committed.set()

    thread = threading.Thread(target=commit_soon)
    thread.start()
    app = make_app(f"sqlite:///{path}")
    try:
        assert app.migrate() == latest_version("sqlite")
        assert committed.is_set()
    finally:
        app.close()
        thread.join()
        writer.close()
