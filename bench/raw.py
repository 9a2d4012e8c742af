"""The baselines: taskmill's SQL driven directly, with no taskmill code in the loop.

Everything here is a copy. The DDL copies store/sql/*/schema.sql, and the statements in
COPIES copy store/sql/*/queries.sql; `stale_copies` tells when they no longer match. The module
never imports taskmill, so a slow path in taskmill's Python cannot slow the baseline too.

- bare insert: one single-row INSERT per committed transaction, on one connection.
- insert many: N rows in one transaction, by the store's bulk path (PostgreSQL: COPY).
- drain ceiling: N pending rows, then C connections (separate processes, so the GIL cannot
  be the limit) each loop claim(B) -> finish(B), one transaction each, until none is left.
"""

from __future__ import annotations

import json
import multiprocessing
import queue
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import psycopg

from bench.common import ROOT, IdSource, rate_over, uuid7_ids

Dialect = Literal["postgres", "sqlite"]
SQLITE_BUSY_TIMEOUT_S = 30.0
CHILD_START_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 600.0

# -- PostgreSQL ---------------------------------------------------------------------------

PG_COLUMNS = """
    id               uuid PRIMARY KEY,
    task             text NOT NULL,
    queue            text NOT NULL,
    priority         integer NOT NULL DEFAULT 0,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    args             jsonb NOT NULL DEFAULT '[]',
    kwargs           jsonb NOT NULL DEFAULT '{}',
    attempts         integer NOT NULL DEFAULT 0,
    max_retries      integer NOT NULL,
    timeout_s        double precision,
    backoff          double precision NOT NULL,
    idempotency_key  text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    scheduled_at     timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    duration_s       double precision,
    worker           text,
    lease_expires_at timestamptz,
    result           jsonb,
    error            text,
    traceback        text,
    progress         double precision,
    progress_message text,
    cancel_requested boolean NOT NULL DEFAULT false
"""

PG_SETUP = [
    # The same columns, primary key only: what a bare INSERT + commit costs.
    f"CREATE TABLE bench_bare ({PG_COLUMNS})",
    # The same table as taskmill_jobs: indexes and the NOTIFY trigger too.
    f"CREATE TABLE bench_jobs ({PG_COLUMNS})",
    """CREATE INDEX bench_jobs_claim_any ON bench_jobs (priority DESC, scheduled_at, id)
       WHERE status = 'pending'""",
    """CREATE INDEX bench_jobs_claim_queue ON bench_jobs (queue, priority DESC, scheduled_at, id)
       WHERE status = 'pending'""",
    "CREATE INDEX bench_jobs_running ON bench_jobs (worker) WHERE status = 'running'",
    """CREATE UNIQUE INDEX bench_jobs_idempotency ON bench_jobs (task, idempotency_key)
       WHERE idempotency_key IS NOT NULL""",
    """CREATE FUNCTION bench_notify_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN PERFORM pg_notify('bench_jobs', ''); RETURN NULL; END; $$""",
    """CREATE TRIGGER bench_jobs_inserted AFTER INSERT ON bench_jobs
       FOR EACH STATEMENT EXECUTE FUNCTION bench_notify_jobs()""",
]

PG_INSERT_ONE = """
INSERT INTO {table} (id, task, queue, priority, args, kwargs, max_retries, timeout_s, backoff,
                     idempotency_key, scheduled_at)
VALUES (%s, 'noop', 'default', 0, '[]', '{{}}', 3, NULL, 2.0, NULL, now())
"""

PG_NOW = "SELECT now() AS now"

# taskmill's bulk path for batches without idempotency keys (copy_jobs).
PG_COPY = """
COPY bench_jobs (id, task, queue, priority, args, kwargs, max_retries, timeout_s, backoff,
                 scheduled_at) FROM STDIN
"""

PG_CLAIM = """
WITH no_flush AS (
    SELECT set_config('synchronous_commit', 'off', true)
), picked AS (
    SELECT id FROM bench_jobs
    WHERE status = 'pending' AND scheduled_at <= now()
    ORDER BY priority DESC, scheduled_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE bench_jobs AS j
SET status = 'running', attempts = j.attempts + 1, started_at = now(),
    worker = %(worker_id)s, lease_expires_at = now() + make_interval(secs => %(lease_s)s)
FROM picked, no_flush WHERE j.id = picked.id
RETURNING j.id::text, j.attempts, j.task, j.args::text, j.kwargs::text, j.priority,
          extract(epoch FROM j.scheduled_at)::float8, j.max_retries, j.backoff, j.timeout_s
"""

PG_FINISH = """
UPDATE bench_jobs AS j
SET status = CASE WHEN j.cancel_requested THEN 'cancelled' ELSE u.status END,
    result = u.result, error = u.error, traceback = u.traceback,
    started_at = u.started_at,
    finished_at = CASE WHEN u.status = 'pending' AND NOT j.cancel_requested
                       THEN NULL ELSE u.finished_at END,
    duration_s = extract(epoch FROM u.finished_at - u.started_at),
    scheduled_at = CASE WHEN u.status = 'pending'
                        THEN now() + make_interval(secs => u.retry_delay_s)
                        ELSE j.scheduled_at END,
    progress = CASE WHEN u.status = 'completed' THEN 1.0 ELSE j.progress END,
    lease_expires_at = NULL
FROM (
    SELECT (e ->> 0)::uuid AS id, (e ->> 1)::integer AS attempt, e ->> 2 AS status,
           nullif((e -> 3)::jsonb, 'null') AS result, e ->> 4 AS error, e ->> 5 AS traceback,
           to_timestamp((e ->> 6)::float8) AS started_at,
           to_timestamp((e ->> 7)::float8) AS finished_at, (e ->> 8)::float8 AS retry_delay_s
    FROM json_array_elements(%(outcomes)s::json) AS e
) AS u
WHERE j.id = u.id AND j.status = 'running' AND j.attempts = u.attempt
"""

# -- SQLite -------------------------------------------------------------------------------

SQLITE_COLUMNS = """
    id               TEXT PRIMARY KEY,
    task             TEXT NOT NULL,
    queue            TEXT NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 0,
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    args             TEXT NOT NULL DEFAULT '[]',
    kwargs           TEXT NOT NULL DEFAULT '{}',
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_retries      INTEGER NOT NULL,
    timeout_s        REAL,
    backoff          REAL NOT NULL,
    idempotency_key  TEXT,
    created_at       REAL NOT NULL,
    scheduled_at     REAL NOT NULL,
    started_at       REAL,
    finished_at      REAL,
    duration_s       REAL,
    worker           TEXT,
    lease_expires_at REAL,
    result           TEXT,
    error            TEXT,
    traceback        TEXT,
    progress         REAL,
    progress_message TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0
"""

SQLITE_SETUP = [
    f"CREATE TABLE bench_bare ({SQLITE_COLUMNS})",
    f"CREATE TABLE bench_jobs ({SQLITE_COLUMNS})",
    """CREATE INDEX bench_jobs_claim_any ON bench_jobs (priority DESC, scheduled_at, id)
       WHERE status = 'pending'""",
    """CREATE INDEX bench_jobs_claim_queue ON bench_jobs (queue, priority DESC, scheduled_at, id)
       WHERE status = 'pending'""",
    "CREATE INDEX bench_jobs_running ON bench_jobs (worker) WHERE status = 'running'",
    """CREATE UNIQUE INDEX bench_jobs_idempotency ON bench_jobs (task, idempotency_key)
       WHERE idempotency_key IS NOT NULL""",
]

SQLITE_INSERT_ONE = """
INSERT INTO {table} (id, task, queue, priority, args, kwargs, max_retries, timeout_s, backoff,
                     idempotency_key, created_at, scheduled_at)
VALUES (?, 'noop', 'default', 0, '[]', '{{}}', 3, NULL, 2.0, NULL, ?, ?)
"""

SQLITE_INSERT_MANY = """
INSERT INTO bench_jobs (id, task, queue, priority, args, kwargs, max_retries, timeout_s,
                        backoff, idempotency_key, created_at, scheduled_at)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5,
       value ->> 6, value ->> 7, value ->> 8, value ->> 9, :now, coalesce(value ->> 10, :now)
FROM json_each(:jobs) WHERE true
ON CONFLICT (task, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id
"""

SQLITE_CLAIM = """
UPDATE bench_jobs
SET status = 'running', attempts = attempts + 1, started_at = :now, worker = :worker_id,
    lease_expires_at = :now + :lease_s
WHERE id IN (
    SELECT id FROM bench_jobs
    WHERE status = 'pending' AND scheduled_at <= :now
    ORDER BY priority DESC, scheduled_at, id
    LIMIT :limit
)
RETURNING id, attempts, task, args, kwargs, priority, scheduled_at, max_retries, backoff,
          timeout_s
"""

SQLITE_FINISH = """
UPDATE bench_jobs AS j
SET status = CASE WHEN j.cancel_requested THEN 'cancelled' ELSE u.status END,
    result = u.result, error = u.error, traceback = u.traceback,
    started_at = u.started_at,
    finished_at = CASE WHEN u.status = 'pending' AND NOT j.cancel_requested
                       THEN NULL ELSE u.finished_at END,
    duration_s = u.finished_at - u.started_at,
    scheduled_at = CASE WHEN u.status = 'pending' THEN :now + u.retry_delay_s
                        ELSE j.scheduled_at END,
    progress = CASE WHEN u.status = 'completed' THEN 1.0 ELSE j.progress END,
    lease_expires_at = NULL
FROM (
    SELECT value ->> 0 AS id, value ->> 1 AS attempt, value ->> 2 AS status,
           nullif(value -> 3, 'null') AS result, value ->> 4 AS error,
           value ->> 5 AS traceback,
           value ->> 6 AS started_at, value ->> 7 AS finished_at, value ->> 8 AS retry_delay_s
    FROM json_each(:outcomes)
) AS u
WHERE j.id = u.id AND j.status = 'running' AND j.attempts = u.attempt
"""

COPIES: dict[str, dict[str, str]] = {
    "postgres": {"transaction_time": PG_NOW, "copy_jobs": PG_COPY, "claim_jobs_any": PG_CLAIM,
                 "finish_jobs": PG_FINISH},
    "sqlite": {"insert_jobs": SQLITE_INSERT_MANY, "claim_jobs_any": SQLITE_CLAIM,
               "finish_jobs": SQLITE_FINISH},
}  # fmt: skip
_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def _normalized(statement: str) -> str:
    lines = [line for line in statement.splitlines() if not line.strip().startswith("--")]
    return " ".join(" ".join(lines).replace("bench_jobs", "taskmill_jobs").split())


def stale_copies(dialect: Dialect) -> list[str]:
    """Names of the statements copied here that no longer match taskmill's queries.sql
    (read as text, not imported): a ceiling built on them compares different SQL."""
    path = ROOT / "src" / "taskmill" / "store" / "sql" / dialect / "queries.sql"
    parts = _NAME.split(path.read_text())
    blocks = dict(zip(parts[1::2], parts[2::2], strict=True))
    return [
        name
        for name, copy in COPIES[dialect].items()
        if _normalized(blocks.get(name, "")) != _normalized(copy)
    ]


COUNT_PENDING = "SELECT count(*) FROM bench_jobs WHERE status = 'pending'"
COUNT_COMPLETED = "SELECT count(*) FROM bench_jobs WHERE status = 'completed'"
LEASE_S = 30.0


def pg_connect(url: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("SET TIME ZONE 'UTC'")  # as taskmill's pool configures its connections
    return conn


def sqlite_connect(path: Path) -> sqlite3.Connection:
    """Configured as taskmill's SQLite store configures its connections."""
    conn = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def setup(dialect: Dialect, target: str) -> None:
    """Create the baseline tables in the scratch database (URL) or file (path)."""
    if dialect == "postgres":
        with pg_connect(target) as conn:
            for statement in PG_SETUP:
                conn.execute(statement.encode())
        return
    conn_s = sqlite_connect(Path(target))
    try:
        for statement in SQLITE_SETUP:
            conn_s.execute(statement)
    finally:
        conn_s.close()


# -- bare insert + commit -----------------------------------------------------------------


def bare_insert_rate(
    dialect: Dialect,
    target: str,
    window_s: float,
    tick: Callable[[float], None],
    *,
    table: str = "bench_bare",
) -> float:
    """Single-row INSERT + commit on one connection, back to back; rows per second."""
    next_id = IdSource()
    if dialect == "postgres":
        with pg_connect(target) as conn:
            statement = PG_INSERT_ONE.format(table=table).encode()
            for _ in range(20):  # warm up: connection, prepared statement, caches
                conn.execute(statement, (next_id(),))
            return rate_over(window_s, lambda: conn.execute(statement, (next_id(),)), tick)
    conn_s = sqlite_connect(Path(target))
    try:
        text = SQLITE_INSERT_ONE.format(table=table)

        def insert() -> None:
            now = time.time()
            conn_s.execute(text, (str(next_id()), now, now))

        for _ in range(20):
            insert()
        return rate_over(window_s, insert, tick)
    finally:
        conn_s.close()


# -- insert many --------------------------------------------------------------------------


def insert_many_seconds(dialect: Dialect, target: str, count: int) -> float:
    """Seconds to store `count` pending jobs the way taskmill's store does for a batch
    without idempotency keys (PostgreSQL: COPY; SQLite: its one json_each INSERT), with
    the parameters built inside the timing, as taskmill must build them."""
    if dialect == "postgres":
        with pg_connect(target) as conn:
            conn.execute("TRUNCATE bench_jobs")
            start = time.perf_counter()
            with conn.transaction(), conn.cursor() as cur:
                row = cur.execute(PG_NOW).fetchone()
                now = row[0] if row else None
                with cur.copy(PG_COPY.encode()) as copy:
                    for job_id in uuid7_ids(count):
                        copy.write_row(
                            (job_id, "noop", "default", 0, "[]", "{}", 3, None, 2.0, now)
                        )
            return time.perf_counter() - start
    conn_s = sqlite_connect(Path(target))
    try:
        conn_s.execute("DELETE FROM bench_jobs")
        start = time.perf_counter()
        payload = json.dumps(
            [[str(i), "noop", "default", 0, "[]", "{}", 3, None, 2.0, None, None]
             for i in uuid7_ids(count)]
        )  # fmt: skip
        conn_s.execute("BEGIN IMMEDIATE")
        conn_s.execute(SQLITE_INSERT_MANY, {"jobs": payload, "now": time.time()}).fetchall()
        conn_s.execute("COMMIT")
        return time.perf_counter() - start
    finally:
        conn_s.close()


def load_pending(dialect: Dialect, target: str, count: int) -> None:
    """Empty bench_jobs and fill it with `count` pending jobs, as taskmill's drain starts:
    no ANALYZE (taskmill's table gets none either), so both get the same query plans."""
    insert_many_seconds(dialect, target, count)
    if dialect == "sqlite":  # the bench empties taskmill's file the same way
        conn_s = sqlite_connect(Path(target))
        try:
            conn_s.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn_s.close()


# -- drain ceiling ------------------------------------------------------------------------


def outcomes_json(rows: Sequence[Any], id_at: int, attempts_at: int) -> str:
    """Claimed rows as completed no-op outcomes, in the store's JSON form: [id, attempt,
    status, result, error, traceback, started, finished, retry_delay_s] (Unix seconds)."""
    now = time.time()
    return json.dumps(
        [[str(r[id_at]), r[attempts_at], "completed", None, None, None, now, now, 0.0]
         for r in rows]
    )  # fmt: skip


class Drainer(Protocol):
    def claim(self, limit: int) -> list[Any]: ...
    def finish(self, rows: Sequence[Any]) -> None: ...
    def pending(self) -> int: ...
    def close(self) -> None: ...


class PgDrainer:
    def __init__(self, url: str, worker_id: str) -> None:
        self.conn = pg_connect(url)
        self.worker_id = worker_id
        self._columns: dict[str, int] = {}

    def claim(self, limit: int) -> list[Any]:
        params = {"limit": limit, "worker_id": self.worker_id, "lease_s": LEASE_S}
        cur = self.conn.execute(PG_CLAIM.encode(), params)
        if not self._columns and cur.description:
            self._columns = {c.name: i for i, c in enumerate(cur.description)}
        return cur.fetchall()

    def finish(self, rows: Sequence[Any]) -> None:
        payload = outcomes_json(rows, self._columns["id"], self._columns["attempts"])
        # Unprepared, as the store runs it: a generic plan would scan every running job.
        self.conn.execute(PG_FINISH.encode(), {"outcomes": payload}, prepare=False)

    def pending(self) -> int:
        row = self.conn.execute(COUNT_PENDING).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self.conn.close()


class SQLiteDrainer:
    def __init__(self, path: str, worker_id: str) -> None:
        self.conn = sqlite_connect(Path(path))
        self.worker_id = worker_id
        self._columns: dict[str, int] = {}

    def _write(self, statement: str, params: dict[str, Any]) -> list[Any]:
        # BEGIN IMMEDIATE, as taskmill's store: the write lock is taken up front.
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            cur = self.conn.execute(statement, {"now": time.time(), **params})
            rows = cur.fetchall()
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        if not self._columns and cur.description:
            self._columns = {c[0]: i for i, c in enumerate(cur.description)}
        return rows

    def claim(self, limit: int) -> list[Any]:
        # As the store does: a claim commits without a disk flush.
        self.conn.execute("PRAGMA synchronous = NORMAL")
        try:
            return self._write(
                SQLITE_CLAIM, {"limit": limit, "worker_id": self.worker_id, "lease_s": LEASE_S}
            )
        finally:
            self.conn.execute("PRAGMA synchronous = FULL")

    def finish(self, rows: Sequence[Any]) -> None:
        payload = outcomes_json(rows, self._columns["id"], self._columns["attempts"])
        self._write(SQLITE_FINISH, {"outcomes": payload})

    def pending(self) -> int:
        return int(self.conn.execute(COUNT_PENDING).fetchone()[0])

    def close(self) -> None:
        self.conn.close()


def make_drainer(dialect: Dialect, target: str, worker_id: str) -> Drainer:
    if dialect == "postgres":
        return PgDrainer(target, worker_id)
    return SQLiteDrainer(target, worker_id)


def drain_loop(drainer: Drainer, batch: int) -> tuple[int, int]:
    """claim(B) -> finish(B) until nothing is pending; (jobs finished, claims made).

    A claim can come back empty while the other connection holds the last rows (SKIP
    LOCKED), so an empty claim ends the loop only once nothing is left pending."""
    done = claims = 0
    while True:
        rows = drainer.claim(batch)
        claims += 1
        if rows:
            drainer.finish(rows)
            done += len(rows)
        elif drainer.pending() == 0:
            return done, claims


def _drain_child(
    dialect: Dialect,
    target: str,
    batch: int,
    index: int,
    ready: multiprocessing.Queue[Any],
    go: Any,
    results: multiprocessing.Queue[Any],
) -> None:
    try:
        drainer = make_drainer(dialect, target, f"bench-raw-{index}")
        ready.put(index)
        go.wait()
        done, claims = drain_loop(drainer, batch)
        results.put((index, done, claims, time.monotonic(), None))
        drainer.close()
    except Exception as exc:
        ready.put(index)
        results.put((index, 0, 0, time.monotonic(), f"{type(exc).__name__}: {exc}"))


def drain_ceiling(
    dialect: Dialect, target: str, count: int, batch: int, connections: int = 2
) -> dict[str, Any]:
    """Load `count` pending jobs, then drain them with `connections` processes, each its
    own connection. Timed from the start signal (all connected) to the last finish."""
    load_pending(dialect, target, count)
    ctx = multiprocessing.get_context("spawn")  # no inherited sockets or rich threads
    ready: multiprocessing.Queue[Any] = ctx.Queue()
    results: multiprocessing.Queue[Any] = ctx.Queue()
    go = ctx.Event()
    procs = [
        ctx.Process(target=_drain_child, args=(dialect, target, batch, i, ready, go, results))
        for i in range(connections)
    ]
    for proc in procs:
        proc.start()
    try:
        for _ in procs:
            ready.get(timeout=CHILD_START_TIMEOUT_S)
        start = time.monotonic()
        go.set()
        reports = [results.get(timeout=DRAIN_TIMEOUT_S) for _ in procs]
    except queue.Empty:
        raise RuntimeError("a drain process did not report in time") from None
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    errors = [r[4] for r in reports if r[4]]
    if errors:
        raise RuntimeError(f"drain process failed: {errors[0]}")
    seconds = max(r[3] for r in reports) - start
    done = sum(r[1] for r in reports)
    _check_completed(dialect, target, count)
    return {
        "batch": batch,
        "connections": connections,
        "jobs": done,
        "seconds": seconds,
        "jobs_per_s": done / seconds,
        "claims": sum(r[2] for r in reports),
    }


def _check_completed(dialect: Dialect, target: str, count: int) -> None:
    if dialect == "postgres":
        with pg_connect(target) as conn:
            row = conn.execute(COUNT_COMPLETED).fetchone()
            completed = int(row[0]) if row else 0
    else:
        conn_s = sqlite_connect(Path(target))
        try:
            completed = int(conn_s.execute(COUNT_COMPLETED).fetchone()[0])
        finally:
            conn_s.close()
    if completed != count:
        raise RuntimeError(f"drain ceiling: {completed} of {count} jobs completed")
