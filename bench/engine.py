"""The engine benchmark: how fast taskmill enqueues, drains and starts no-op jobs, next to
baselines measured in the same run on the same database.

    python -m bench.engine [--backend postgres|sqlite|both] [--jobs N] [--batch B] [--quick]

Per backend, in a scratch database (PostgreSQL: CREATE DATABASE taskmill_bench on the server
of TASKMILL_BENCH_DATABASE_URL, dropped at the end; SQLite: a temporary file):

- enqueue one by one (`app.enqueue`, one committed transaction each) against a bare
  single-row INSERT + commit into a table with the same columns;
- `app.enqueue_many` of N jobs against taskmill's insert statement driven directly;
- drain of N queued jobs by `taskmill worker -c 2` against the raw-SQL ceiling: the same
  claim and finish statements driven by 2 connections, no taskmill code;
- start latency (started_at - created_at) of jobs enqueued one at a time to an idle worker;
- the disk's flush rate (pg_test_fsync), which bounds every committed transaction.

Prints a table per backend and writes bench/results/engine-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bench import raw
from bench.common import (
    Reporter,
    Row,
    WorkerProcess,
    admin_url,
    fmt_ms,
    fmt_rate,
    machine_info,
    median,
    paired_ratio,
    percentile,
    pg_scratch_database,
    pg_server_info,
    pg_test_fsync,
    rate_over,
    ratio,
    results_table,
    scratch_dir,
    write_json,
)
from bench.raw import Dialect
from bench.tasks import make_app
from taskmill import JobStatus, Taskmill

T = TypeVar("T")

# The targets of the issue.
SINGLE_ENQUEUE_MIN_RATIO = 0.80  # of a bare single-row INSERT + commit
ENQUEUE_MANY_MIN_PER_S = 100_000.0
DRAIN_MIN_PER_S = 10_000.0
DRAIN_MIN_RATIO = 0.50  # of the raw-SQL ceiling at the same batch size
LATENCY_P50_MAX_S = 0.002
LATENCY_P99_MAX_S = 0.010

APP_REF = "bench.tasks:app"
TASK = "noop"
POLL_S = 0.02  # how often the drain checks queue_counts(), as the issue asks
IDLE_PAUSE_S = 0.01  # between latency samples, so the worker is back to waiting
JOB_WAIT_TIMEOUT_S = 10.0
OPEN_STATES = (JobStatus.PENDING, JobStatus.RUNNING)


@dataclass(frozen=True, slots=True)
class Plan:
    jobs: int
    batch: int
    concurrency: int
    sweep: tuple[int, ...]
    window_s: float  # per side, for rates of single inserts
    slices: int  # ... measured in this many alternating slices
    many_reps: int
    ceiling_reps: int
    drain_reps: int
    latency_samples: int
    worker_ready_timeout_s: float
    fsync_test: bool
    quick: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Plan:
        quick = bool(args.quick)
        batch = int(args.batch)
        sweep = (batch,) if quick else tuple(sorted({16, 64, 128, 256, batch}))
        return cls(
            jobs=args.jobs or (2_000 if quick else 10_000),
            batch=batch,
            concurrency=args.concurrency,
            sweep=sweep,
            window_s=0.5 if quick else 2.5,
            slices=2 if quick else 5,
            many_reps=2 if quick else 5,
            ceiling_reps=1 if quick else 3,
            drain_reps=1 if quick else 3,
            latency_samples=30 if quick else 300,
            worker_ready_timeout_s=15.0 if quick else 60.0,
            fsync_test=not args.no_fsync_test,
            quick=quick,
        )


@dataclass(slots=True)
class Backend:
    """One backend's scratch database and what was measured on it."""

    dialect: Dialect
    url: str  # what taskmill (and its worker) connects to
    raw_target: str  # the baselines' database URL (PostgreSQL) or file path (SQLite)
    workdir: Path
    server: dict[str, Any] = field(default_factory=dict)
    measured: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    ceiling_runs: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def attempt(self, name: str, measure: Callable[[], T]) -> T | None:
        """Run one measurement; a failure is recorded under `name`, and the run goes on."""
        try:
            value = measure()
        except Exception as exc:
            self.errors[name] = f"{type(exc).__name__}: {exc}"
            return None
        self.measured[name] = value
        return value


# -- scratch places -----------------------------------------------------------------------


@contextmanager
def postgres_backend() -> Iterator[Backend]:
    with scratch_dir("taskmill-bench-pg-") as workdir, pg_scratch_database(admin_url()) as url:
        backend = Backend("postgres", url, url, workdir)
        backend.server = pg_server_info(url)
        yield backend


@contextmanager
def sqlite_backend() -> Iterator[Backend]:
    with scratch_dir("taskmill-bench-sqlite-") as workdir:
        backend = Backend(
            "sqlite", f"sqlite:///{workdir / 'taskmill.db'}", str(workdir / "raw.db"), workdir
        )
        backend.server = {
            "sqlite_version": sqlite3.sqlite_version,
            "journal_mode": "wal",
            "synchronous": "FULL",
            "path": str(workdir),
        }
        yield backend


def reset_jobs(backend: Backend) -> None:
    """Empty taskmill's jobs table (the bench's own SQL, on its scratch database)."""
    if backend.dialect == "postgres":
        with psycopg.connect(backend.url, autocommit=True) as conn:
            conn.execute("TRUNCATE taskmill_jobs")
        return
    conn_s = sqlite3.connect(backend.url.removeprefix("sqlite:///"), timeout=30)
    try:
        conn_s.execute("DELETE FROM taskmill_jobs")
        conn_s.commit()
        conn_s.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn_s.close()


# -- measurements -------------------------------------------------------------------------


def best_and_median(rates: list[float]) -> dict[str, Any]:
    return {"runs": rates, "best": max(rates), "median": median(rates)}


def _ignore(_: float) -> None:
    pass


def enqueue_rate(app: Taskmill, window_s: float) -> float:
    return rate_over(window_s, lambda: app.enqueue(TASK), _ignore)


def measure_single_inserts(
    app: Taskmill, b: Backend, plan: Plan, reporter: Reporter
) -> dict[str, Any]:
    """A bare INSERT + commit, `app.enqueue`, and a bare INSERT into taskmill's indexes, in
    alternating slices of the window, so that drift (other load, a busy disk) hits all
    three alike."""
    slice_s = plan.window_s / plan.slices
    sides: dict[str, Callable[[], float]] = {
        "bare_insert": lambda: raw.bare_insert_rate(
            b.dialect, b.raw_target, slice_s, _ignore, table="bench_bare"
        ),
        "enqueue_one": lambda: enqueue_rate(app, slice_s),
        "bare_insert_full_schema": lambda: raw.bare_insert_rate(
            b.dialect, b.raw_target, slice_s, _ignore, table="bench_jobs"
        ),
    }
    rates: dict[str, list[float]] = {name: [] for name in sides}
    label = f"{b.dialect}: bare INSERT / app.enqueue / INSERT with indexes, alternating"
    with reporter.step(label, plan.slices * len(sides)) as step:
        enqueue_rate(app, 0.05)  # warm up: pool, prepared statements
        for _ in range(plan.slices):
            for name, measure in sides.items():
                rates[name].append(measure())
                step.advance()
    summary: dict[str, Any] = {name: {"per_s": median(r), "slices": r} for name, r in rates.items()}
    summary["enqueue_one_ratio"] = paired_ratio(rates["enqueue_one"], rates["bare_insert"])
    summary["full_schema_ratio"] = paired_ratio(
        rates["bare_insert_full_schema"], rates["bare_insert"]
    )
    return summary


def enqueue_many_rate(app: Taskmill, backend: Backend, jobs: int) -> float:
    reset_jobs(backend)
    specs = [{"task": TASK} for _ in range(jobs)]
    start = time.perf_counter()
    app.enqueue_many(specs)
    return jobs / (time.perf_counter() - start)


def measure_many(app: Taskmill, b: Backend, plan: Plan, reporter: Reporter) -> dict[str, Any]:
    """`app.enqueue_many` and the raw insert statement, alternating run by run."""
    raw_rates, rates = [], []
    label = f"{b.dialect}: raw insert / app.enqueue_many of {plan.jobs:,}, alternating"
    with reporter.step(label, 2 * plan.many_reps) as step:
        for _ in range(plan.many_reps):
            raw_rates.append(
                plan.jobs / raw.insert_many_seconds(b.dialect, b.raw_target, plan.jobs)
            )
            step.advance()
            rates.append(enqueue_many_rate(app, b, plan.jobs))
            step.advance()
    reset_jobs(b)
    return {
        "raw": best_and_median(raw_rates),
        "taskmill": best_and_median(rates),
        "ratio": paired_ratio(rates, raw_rates),
    }


def ceiling_run(b: Backend, plan: Plan, batch: int) -> dict[str, Any]:
    run = raw.drain_ceiling(b.dialect, b.raw_target, plan.jobs, batch, plan.concurrency)
    b.ceiling_runs.setdefault(batch, []).append(run)
    return run


def measure_sweep(b: Backend, plan: Plan, reporter: Reporter, batches: list[int]) -> None:
    """The raw claim/finish drain at other batch sizes, to show how much B matters."""
    if not batches:
        return
    label = f"{b.dialect}: raw drain ceiling, {plan.concurrency} connections"
    with reporter.step(
        f"{label}, B={','.join(map(str, batches))}", len(batches) * plan.ceiling_reps
    ) as step:
        for batch in batches:
            for _ in range(plan.ceiling_reps):
                ceiling_run(b, plan, batch)
                step.advance()


# -- with a worker ------------------------------------------------------------------------


def worker_unavailable() -> str | None:
    """Why `taskmill worker` cannot run yet, or None when it can. Checked without importing
    the worker, whose code may be half written."""
    for module in ("taskmill.worker", "taskmill.cli"):
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is None or spec.origin is None:  # a bare directory is a namespace package
            return f"worker not available ({module} is missing)"
    return None


def open_jobs(app: Taskmill) -> tuple[int, int, int]:
    """(pending + running, completed, failed or cancelled) over all queues."""
    open_ = completed = bad = 0
    for counts in app.store.queue_counts():
        if counts.status in OPEN_STATES:
            open_ += counts.count
        elif counts.status == JobStatus.COMPLETED:
            completed += counts.count
        else:
            bad += counts.count
    return open_, completed, bad


def wait_drained(
    app: Taskmill,
    worker: WorkerProcess,
    expected: int,
    timeout_s: float,
) -> None:
    """Poll queue_counts() every POLL_S until `expected` jobs are completed and none open."""
    deadline = time.monotonic() + timeout_s
    while True:
        open_, completed, bad = open_jobs(app)
        if bad:
            raise RuntimeError(
                f"{bad} jobs failed or were cancelled; worker log: {worker.log_tail()}"
            )
        if open_ == 0 and completed >= expected:
            return
        worker.check()
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{open_} jobs still open after {timeout_s:.0f}s; worker log: {worker.log_tail()}"
            )
        time.sleep(POLL_S)


def warm_up(app: Taskmill, worker: WorkerProcess, plan: Plan, reporter: Reporter) -> float:
    """Wait for the worker to finish one job, then a batch for every child; seconds taken.
    Worker start-up (imports, children) is thereby left out of the drain time."""
    start = time.monotonic()
    with reporter.step("worker start-up and warm-up", None):
        app.enqueue(TASK)
        wait_drained(app, worker, 1, plan.worker_ready_timeout_s)
        batch = plan.batch * plan.concurrency
        app.enqueue_many([{"task": TASK} for _ in range(batch)])
        wait_drained(app, worker, 1 + batch, plan.worker_ready_timeout_s)
    return time.monotonic() - start


def drain_once(
    app: Taskmill, backend: Backend, worker: WorkerProcess, plan: Plan
) -> dict[str, Any]:
    reset_jobs(backend)
    specs = [{"task": TASK} for _ in range(plan.jobs)]
    start = time.monotonic()
    app.enqueue_many(specs)
    committed = time.monotonic()
    wait_drained(app, worker, plan.jobs, max(60.0, plan.jobs / 100))
    done = time.monotonic()
    return {
        "enqueue_many_s": committed - start,
        "drain_s": done - committed,
        "jobs_per_s": plan.jobs / (done - committed),
        "jobs_per_s_incl_enqueue": plan.jobs / (done - start),
    }


def measure_drains(
    app: Taskmill, b: Backend, worker: WorkerProcess, plan: Plan, reporter: Reporter
) -> dict[str, Any]:
    """Worker drains alternating with raw-SQL ceiling runs at the same batch size (the idle
    worker waits meanwhile), so both see the same machine."""
    runs, ceilings = [], []
    label = f"{b.dialect}: worker drains {plan.jobs:,} / raw ceiling B={plan.batch}, alternating"
    with reporter.step(label, 2 * plan.drain_reps) as step:
        for _ in range(plan.drain_reps):
            ceilings.append(ceiling_run(b, plan, plan.batch)["jobs_per_s"])
            step.advance()
            runs.append(drain_once(app, b, worker, plan))
            step.advance()
    rates = [r["jobs_per_s"] for r in runs]
    incl = [r["jobs_per_s_incl_enqueue"] for r in runs]
    return {
        **best_and_median(rates),
        "ratio": paired_ratio(rates, ceilings),
        "best_incl_enqueue": max(incl),
        "ratio_incl_enqueue": paired_ratio(incl, ceilings),
        "details": runs,
    }


def measure_latency(app: Taskmill, plan: Plan, reporter: Reporter, dialect: str) -> dict[str, Any]:
    """Jobs enqueued one at a time to an idle worker. Measured from the moment enqueue
    returned (the job committed and visible — before that no worker can see it) to the
    stored started_at (the child's clock as the function began; one machine, one clock).
    started_at - created_at is kept too: it adds the enqueue's own commit."""
    starts: list[float] = []
    from_created: list[float] = []
    ends: list[float] = []
    with reporter.step(f"{dialect}: start latency", plan.latency_samples) as s:
        for _ in range(plan.latency_samples):
            time.sleep(IDLE_PAUSE_S)
            queued = app.enqueue(TASK)
            returned = time.time()
            job = app.wait(queued.id, timeout=JOB_WAIT_TIMEOUT_S)
            if job.started_at is None or job.finished_at is None:
                raise RuntimeError(f"job {job.id} ended {job.status} without timestamps")
            starts.append(job.started_at.timestamp() - returned)
            from_created.append((job.started_at - job.created_at).total_seconds())
            ends.append((job.finished_at - job.created_at).total_seconds())
            s.advance()
    return {
        "samples_s": starts,
        "p50_s": percentile(starts, 50),
        "p99_s": percentile(starts, 99),
        "max_s": max(starts),
        "from_created_p50_s": percentile(from_created, 50),
        "from_created_p99_s": percentile(from_created, 99),
        "finished_p50_s": percentile(ends, 50),
    }


def measure_with_worker(app: Taskmill, b: Backend, plan: Plan, reporter: Reporter) -> None:
    reason = worker_unavailable()
    if reason:
        b.measured["worker"] = {"skipped": reason}
    else:
        run_worker(app, b, plan, reporter)
    if plan.batch not in b.ceiling_runs:  # no drains ran to alternate with
        b.attempt("ceiling_at_batch", lambda: measure_sweep(b, plan, reporter, [plan.batch]))


def run_worker(app: Taskmill, b: Backend, plan: Plan, reporter: Reporter) -> None:
    reset_jobs(b)
    worker = WorkerProcess(b.url, APP_REF, plan.concurrency, b.workdir / "worker.log")
    with worker:
        ready_s = b.attempt("worker_warm_up_s", lambda: warm_up(app, worker, plan, reporter))
        drains = None
        if ready_s is not None:
            drains = b.attempt("drain", lambda: measure_drains(app, b, worker, plan, reporter))
        if drains is not None:
            b.attempt("latency", lambda: measure_latency(app, plan, reporter, b.dialect))
    b.measured["worker_exit_code"] = worker.exit_code


def run_backend(b: Backend, plan: Plan, reporter: Reporter) -> None:
    """Every measurement on one backend, each alternating with its baseline."""
    app = make_app(b.url)
    try:
        app.migrate()
        raw.setup(b.dialect, b.raw_target)
        b.attempt("single", lambda: measure_single_inserts(app, b, plan, reporter))
        b.attempt("many", lambda: measure_many(app, b, plan, reporter))
        others = [batch for batch in plan.sweep if batch != plan.batch]
        b.attempt("ceiling_sweep", lambda: measure_sweep(b, plan, reporter, others))
        measure_with_worker(app, b, plan, reporter)
    finally:
        app.close()
        b.measured["ceiling"] = {
            str(batch): {**best_and_median([r["jobs_per_s"] for r in runs]), "details": runs}
            for batch, runs in sorted(b.ceiling_runs.items())
        }


# -- the table ----------------------------------------------------------------------------


def _get(measured: dict[str, Any], *path: str) -> Any:
    value: Any = measured
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _short(text: str, limit: int = 40) -> str:
    """An error fit for a table cell; the JSON file keeps the whole text."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def enqueue_rows(b: Backend, plan: Plan) -> list[Row]:
    m = b.measured
    one, bare = _get(m, "single", "enqueue_one", "per_s"), _get(m, "single", "bare_insert", "per_s")
    many, raw_many = _get(m, "many", "taskmill", "best"), _get(m, "many", "raw", "best")
    one_ratio, many_median = (
        _get(m, "single", "enqueue_one_ratio"),
        _get(m, "many", "taskmill", "median"),
    )
    return [
        Row(
            "enqueue, one by one",
            fmt_rate(one),
            f"{fmt_rate(bare)} bare INSERT",
            one_ratio,
            f"≥ {SINGLE_ENQUEUE_MIN_RATIO:.0%} of baseline",
            None if one_ratio is None else one_ratio >= SINGLE_ENQUEUE_MIN_RATIO,
        ),
        Row(
            f"enqueue_many {plan.jobs:,}, best (median)",
            f"{fmt_rate(many)} ({fmt_rate(many_median, '')})",
            f"{fmt_rate(raw_many)} raw {'COPY' if b.dialect == 'postgres' else 'INSERT'}",
            _get(m, "many", "ratio"),
            f"≥ {ENQUEUE_MANY_MIN_PER_S:,.0f}/s",
            None if many is None else many >= ENQUEUE_MANY_MIN_PER_S,
        ),
    ]


def drain_rows(b: Backend, plan: Plan) -> list[Row]:
    m = b.measured
    ceiling = _get(m, "ceiling", str(plan.batch), "best")
    skipped = _get(m, "worker", "skipped")
    if skipped or "drain" not in m:
        why = skipped or b.errors.get("drain") or b.errors.get("worker_warm_up_s") or "not run"
        why = _short(why)
        return [
            Row(
                f"drain {plan.jobs:,} (-c {plan.concurrency})",
                why,
                f"{fmt_rate(ceiling)} raw B={plan.batch}",
            )
        ]
    best, med, drain_ratio = m["drain"]["best"], m["drain"]["median"], m["drain"]["ratio"]
    ok = best >= DRAIN_MIN_PER_S and drain_ratio >= DRAIN_MIN_RATIO
    return [
        Row(
            f"drain {plan.jobs:,} (-c {plan.concurrency}), best (median)",
            f"{fmt_rate(best)} ({fmt_rate(med, '')})",
            f"{fmt_rate(ceiling)} raw B={plan.batch}",
            drain_ratio,
            f"≥ {DRAIN_MIN_PER_S:,.0f}/s and ≥ {DRAIN_MIN_RATIO:.0%}",
            ok,
        ),
        Row(
            "  same, timed from enqueue_many call",
            fmt_rate(m["drain"]["best_incl_enqueue"]),
            f"{fmt_rate(ceiling)} raw B={plan.batch}",
            m["drain"]["ratio_incl_enqueue"],
        ),
    ]


def latency_rows(b: Backend) -> list[Row]:
    lat = b.measured.get("latency")
    if lat is None:
        why = _short(_get(b.measured, "worker", "skipped") or b.errors.get("latency") or "not run")
        return [Row("start latency p50 / p99", why, target="≤ 2 ms / ≤ 10 ms")]
    return [
        Row(
            "start latency p50",
            fmt_ms(lat["p50_s"]),
            target=f"≤ {fmt_ms(LATENCY_P50_MAX_S)}",
            passed=lat["p50_s"] <= LATENCY_P50_MAX_S,
        ),
        Row(
            "start latency p99",
            fmt_ms(lat["p99_s"]),
            target=f"≤ {fmt_ms(LATENCY_P99_MAX_S)}",
            passed=lat["p99_s"] <= LATENCY_P99_MAX_S,
        ),
        Row(
            "  same, from created_at p50 / p99",
            f"{fmt_ms(lat['from_created_p50_s'])} / {fmt_ms(lat['from_created_p99_s'])}",
        ),
    ]


def context_rows(b: Backend, plan: Plan, flush: dict[str, Any]) -> list[Row]:
    m = b.measured
    bare = _get(m, "single", "bare_insert", "per_s")
    full = _get(m, "single", "bare_insert_full_schema", "per_s")
    rows = [
        Row(
            "  INSERT+commit, taskmill's indexes",
            fmt_rate(full),
            f"{fmt_rate(bare)} bare INSERT",
            _get(m, "single", "full_schema_ratio"),
        )
    ]
    flush_ops = flush.get("ops_per_s")
    if flush_ops:
        rows.append(
            Row(
                "  INSERT+commit vs disk flushes",
                fmt_rate(bare),
                f"{fmt_rate(flush_ops)} {flush['method']}",
                ratio(bare, flush_ops),
            )
        )
    for batch in plan.sweep:
        run = _get(m, "ceiling", str(batch))
        if run:
            rows.append(
                Row(
                    f"  raw ceiling B={batch}, best (median)",
                    f"{fmt_rate(run['best'])} ({fmt_rate(run['median'], '')})",
                )
            )
    return rows


def backend_rows(b: Backend, plan: Plan, flush: dict[str, Any]) -> list[Row]:
    return [
        *enqueue_rows(b, plan),
        *drain_rows(b, plan),
        *latency_rows(b),
        *context_rows(b, plan, flush),
    ]


# -- main ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.engine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backend", choices=("postgres", "sqlite", "both"), default="both")
    parser.add_argument(
        "--jobs",
        type=_positive,
        default=None,
        help="jobs per drain and enqueue_many (default 10,000; 2,000 with --quick)",
    )
    parser.add_argument(
        "--batch",
        type=_positive,
        default=64,
        help="claim batch size of the raw-SQL ceiling compared with (default 64)",
    )
    parser.add_argument(
        "--concurrency",
        type=_positive,
        default=2,
        help="worker -c, and the ceiling's connections (default 2)",
    )
    parser.add_argument("--quick", action="store_true", help="small and fast, for smoke checks")
    parser.add_argument("--no-fsync-test", action="store_true", help="skip pg_test_fsync")
    return parser.parse_args(argv)


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def flush_rate(plan: Plan, reporter: Reporter, backends: list[str]) -> dict[str, Any]:
    """pg_test_fsync's ops/sec for the WAL sync method PostgreSQL uses (SQLite: fdatasync)."""
    if not plan.fsync_test:
        return {"skipped": "--no-fsync-test"}
    method = "fdatasync"
    if "postgres" in backends:
        with suppress(psycopg.Error):
            method = pg_server_info(admin_url()).get("wal_sync_method") or method
    with (
        reporter.step(f"disk flush rate (pg_test_fsync, {method})", None),
        scratch_dir("taskmill-bench-fsync-") as directory,
    ):
        return pg_test_fsync(method, directory)


def run(plan: Plan, backends: list[str], console: Console) -> dict[str, Any]:
    results: dict[str, Any] = {
        "benchmark": "engine",
        "started_at": datetime.now(UTC).isoformat(),
        "argv": sys.argv,
        "plan": asdict(plan),
        "targets": {
            "single_enqueue_min_ratio": SINGLE_ENQUEUE_MIN_RATIO,
            "enqueue_many_min_per_s": ENQUEUE_MANY_MIN_PER_S,
            "drain_min_per_s": DRAIN_MIN_PER_S,
            "drain_min_ratio": DRAIN_MIN_RATIO,
            "latency_p50_max_s": LATENCY_P50_MAX_S,
            "latency_p99_max_s": LATENCY_P99_MAX_S,
        },
        "machine": machine_info(),
        "backends": {},
    }
    tables: list[tuple[Table, dict[str, str]]] = []
    with Reporter(console) as reporter:
        flush = flush_rate(plan, reporter, backends)
        results["machine"]["disk_flush"] = flush
        for name in backends:
            entry, rows = run_one(name, plan, reporter, flush)
            results["backends"][name] = entry
            if rows:
                tables.append((results_table(_title(name, entry, plan), rows), entry["errors"]))
    for table, errors in tables:
        console.print(table)
        for step, error in errors.items():
            console.print(f"[red]{step}:[/red] {escape(error)}", highlight=False)
    results["finished_at"] = datetime.now(UTC).isoformat()
    return results


def run_one(
    name: str, plan: Plan, reporter: Reporter, flush: dict[str, Any]
) -> tuple[dict[str, Any], list[Row]]:
    scratch = postgres_backend if name == "postgres" else sqlite_backend
    try:
        with scratch() as backend:
            run_backend(backend, plan, reporter)
    except Exception as exc:  # the other backend still runs
        reporter.note(f"[red]{name}: {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"}, []
    rows = backend_rows(backend, plan, flush)
    entry = {
        "server": backend.server,
        "measured": backend.measured,
        "errors": backend.errors,
        "rows": rows,
    }
    return entry, rows


def _title(name: str, entry: dict[str, Any], plan: Plan) -> str:
    server = entry["server"]
    if name == "postgres":
        detail = (
            f"PostgreSQL {server.get('server_version')}, fsync={server.get('fsync')}, "
            f"synchronous_commit={server.get('synchronous_commit')}"
        )
    else:
        detail = f"SQLite {server.get('sqlite_version')}, WAL, synchronous=FULL"
    mode = "quick" if plan.quick else "full"
    return f"taskmill engine — {detail} — {os.cpu_count()} CPUs, {mode} run"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = Plan.from_args(args)
    backends = ["postgres", "sqlite"] if args.backend == "both" else [args.backend]
    console = Console()
    if not console.is_terminal:
        console = Console(width=132)  # a file or a pipe: the table unwrapped
    results = run(plan, backends, console)
    path = write_json(results, "engine")
    console.print(f"results: {path}")
    failed = any("error" in results["backends"][name] for name in backends)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
