"""The baselines: taskmill's SQL driven directly, with no taskmill code in the loop.

The schema and statements are taskmill's own, read from store/sql/*/ as text with the tables
renamed bench_*. The module never imports taskmill, so a slow path in taskmill's Python
cannot slow the baseline too.

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

# taskmill's own SQL, read as text from its files (never imported) with its tables renamed
# bench_*: the baselines run exactly the statements the store runs, and cannot drift.
SQL_DIR = ROOT / "src" / "taskmill" / "store" / "sql"
_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)
_JOBS_TABLE = re.compile(r"CREATE TABLE bench_jobs \(.*?\n\);", re.DOTALL)


def _sql_text(dialect: Dialect, filename: str) -> str:
    return (SQL_DIR / dialect / filename).read_text().replace("taskmill_", "bench_")


def _queries(dialect: Dialect) -> dict[str, str]:
    parts = _NAME.split(_sql_text(dialect, "queries.sql"))
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def _bare_table(dialect: Dialect) -> str:
    """The jobs table's columns with its primary key only: what a bare INSERT costs."""
    found = _JOBS_TABLE.search(_sql_text(dialect, "schema.sql"))
    if found is None:
        raise RuntimeError(f"no CREATE TABLE taskmill_jobs in {dialect}/schema.sql")
    return found.group(0).replace("bench_jobs", "bench_bare")


PG_Q = _queries("postgres")
SQLITE_Q = _queries("sqlite")
PG_NOW, PG_COPY = PG_Q["transaction_time"], PG_Q["copy_jobs"]
PG_CLAIM, PG_FINISH = PG_Q["claim_jobs_any"], PG_Q["finish_jobs"]
SQLITE_INSERT_MANY = SQLITE_Q["insert_jobs"]
SQLITE_CLAIM, SQLITE_FINISH = SQLITE_Q["claim_jobs_any"], SQLITE_Q["finish_jobs"]

# The bare single-row INSERT + commit: the baseline itself, so written out here.
PG_INSERT_ONE = """
INSERT INTO {table} (id, task, queue, priority, args, kwargs, max_retries, timeout_s, backoff,
                     idempotency_key, scheduled_at)
VALUES (%s, 'noop', 'default', 0, '[]', '{{}}', 3, NULL, 2.0, NULL, now())
"""
SQLITE_INSERT_ONE = """
INSERT INTO {table} (id, task, queue, priority, args, kwargs, max_retries, timeout_s, backoff,
                     idempotency_key, created_at, scheduled_at)
VALUES (?, 'noop', 'default', 0, '[]', '{{}}', 3, NULL, 2.0, NULL, ?, ?)
"""


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
            conn.execute(_sql_text("postgres", "schema.sql").encode())
            conn.execute(_bare_table("postgres").encode())
        return
    conn_s = sqlite_connect(Path(target))
    try:
        conn_s.executescript(_sql_text("sqlite", "schema.sql") + _bare_table("sqlite"))
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
