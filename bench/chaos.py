"""The chaos benchmark: no job lost, and no job run twice except where a kill forced it.

    python -m bench.chaos [--jobs 20000] [--quick] [--seed S] [--db-down S] [--keep-logs]

On a throwaway PostgreSQL cluster of its own (tests.pg.PgCluster, fsync ON: durability is
the point), two workers `taskmill worker -A bench.chaos_tasks:app -c 2` with a 3 s lease
drain N jobs of mixed durations, 5 % of which fail their first attempt on purpose:

- baseline: the same N jobs (same seed), no chaos;
- chaos: worker B is `kill -9`ed (its whole process group) every 3-5 s (seeded) and
  restarted at once; half-way through, PostgreSQL is stopped and started again.

For every kill it records the jobs running on that worker (just before the kill, and
exactly: once the dead worker can no longer write), and the time until each of them has
moved on — finished, or recovered when its lease ran out and claimed again. At the end it
reconciles the jobs table with what was enqueued and the run log the tasks wrote (one line
per execution): jobs lost, jobs run more than once (apart from the planned retries of the
failing 5 %), and whether every extra run was of a job in flight at a kill.

Prints tables, writes bench/results/chaos-<timestamp>.json, and exits 1 when a job is lost,
the counts do not reconcile, the extra runs of an event exceed what was in flight at it,
an extra run was in flight at no event, or a worker exited without being killed. (The
restart causes extra runs of its own when the outage, as the workers see it, outlasts the
lease: they are counted apart, against the jobs running at the restart.)
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from rich.console import Console
from rich.table import Table
from tests.pg import PgCluster

from bench import chaos_tasks
from bench.chaos_tasks import Run
from bench.common import (
    ROOT,
    Reporter,
    Row,
    Step,
    fmt_rate,
    machine_info,
    pg_server_info,
    ratio,
    results_table,
    taskmill_script,
    with_database,
    write_json,
)

APP_REF = "bench.chaos_tasks:app"
# Durability is what this benchmark is about: PgCluster's test defaults turn both off.
PG_SETTINGS = {"fsync": "on", "full_page_writes": "on"}
FINAL = ("completed", "failed", "cancelled")
STATUSES = ("completed", "failed", "cancelled", "pending", "running")

LOOP_S = 0.02
COUNT_EVERY_S = 0.25
WATCH_EVERY_S = 0.1
WORKER_START_TIMEOUT_S = 60.0
WORKER_STOP_TIMEOUT_S = 60.0
RECONNECT_TIMEOUT_S = 60.0
WORK_WAIT_MAX_S = 15.0

Key = tuple[str, int]  # (job id, attempt): one claim of a job


@dataclass(frozen=True)
class Plan:
    jobs: int
    seed: int
    quick: bool
    workers: int = 2
    concurrency: int = 2
    lease_s: float = 3.0
    kill_gap_s: tuple[float, float] = (3.0, 5.0)
    # "restart": the gap runs from B's restart. "work": from the moment the new B has a
    # job running (it takes seconds to start on a busy machine), at most WORK_WAIT_MAX_S.
    kill_clock: str = "restart"
    db_down_s: float = 1.0  # PostgreSQL stays stopped this long before it is started again
    settle_s: float = 0.3  # after a kill, until its last statement has surely committed
    timeout_floor_s: float = 120.0

    def timeout_s(self, specs: Sequence[dict[str, Any]]) -> float:
        """Give up on a run after five times its ideal length (all children busy sleeping)."""
        slots = self.workers * self.concurrency
        sleep_s = sum(float(s["kwargs"]["seconds"]) for s in specs)
        return max(self.timeout_floor_s, 5 * sleep_s / slots)


# -- worker processes ---------------------------------------------------------------------


class Worker:
    """`taskmill worker -A bench.chaos_tasks:app -c N` in a session of its own, so that
    os.killpg(pid) reaches the supervisor and its children at once: the kill -9 of a
    whole worker, as an OOM killer or a lost machine would do it."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path, concurrency: int):
        self.name = name
        self.log_path = log_path
        argv = [str(taskmill_script()), "worker", "-A", APP_REF, "-c", str(concurrency)]
        self.spawned_wall = time.time()
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def started_wall(self) -> float | None:
        """When the worker logged that it started (its children then still import the app)."""
        for at, line in log_lines(self.log_path):
            if " started: " in line:
                return at
        return None

    def wait_started(self) -> None:
        deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        while " started: " not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {self.name} did not start:\n{self.log()[-2000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        """SIGTERM (graceful: no work is running by then), SIGKILL to the group if stuck."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.proc.wait(WORKER_STOP_TIMEOUT_S)
        code = self.proc.poll()
        self.kill()  # children that outlived their supervisor, or a stuck supervisor
        return -9 if code is None else code


# -- watching the jobs table --------------------------------------------------------------

Q_COUNTS = "SELECT status, count(*) FROM taskmill_jobs GROUP BY status"
Q_RUNNING_ON = (
    "SELECT id::text, attempts FROM taskmill_jobs WHERE status = 'running' AND worker LIKE %s"
)
Q_RUNNING = "SELECT id::text, attempts FROM taskmill_jobs WHERE status = 'running'"
# A dead worker claims nothing, so "still running under the attempt it had" is the same as
# "still running on that worker"; a job recovered and claimed again has a new attempt.
Q_STILL_RUNNING = """
SELECT count(*) FROM taskmill_jobs AS j
JOIN unnest(%s::uuid[], %s::integer[]) AS u(id, attempt)
  ON j.id = u.id AND j.attempts = u.attempt
WHERE j.status = 'running'
"""
Q_FINAL = """
SELECT id::text, status, attempts, extract(epoch FROM finished_at)::float8 FROM taskmill_jobs
"""


class Monitor:
    """One autocommit connection to the run's database, made again after an outage."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: psycopg.Connection[Any] | None = None

    def rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        deadline = time.monotonic() + RECONNECT_TIMEOUT_S
        while True:
            try:
                if self.conn is None:
                    self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=2)
                return self.conn.execute(query, params).fetchall()
            except psycopg.OperationalError:
                self.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def counts(self) -> dict[str, int]:
        return {str(status): int(n) for status, n in self.rows(Q_COUNTS)}

    def running(self, pid: int | None = None) -> list[Key]:
        """(id, attempt) of the running jobs: all of them, or those of the worker whose
        supervisor has this pid (worker ids are host:pid:token)."""
        if pid is None:
            return [(r[0], int(r[1])) for r in self.rows(Q_RUNNING)]
        return [(r[0], int(r[1])) for r in self.rows(Q_RUNNING_ON, (f"%:{pid}:%",))]

    def still_running(self, keys: Sequence[Key]) -> int:
        ids, attempts = [k[0] for k in keys], [k[1] for k in keys]
        return int(self.rows(Q_STILL_RUNNING, (ids, attempts))[0][0])

    def freeze(self) -> tuple[psycopg.Connection[Any], list[Key], int]:
        """Block every write to the jobs table (an EXCLUSIVE lock, in a transaction left
        open) and read the running jobs and the completed count. Stop PostgreSQL next: the
        stop ends the transaction, so these are exactly the jobs running at the stop — a
        worker cannot claim or finish one in between."""
        conn = psycopg.connect(self.url, connect_timeout=2)
        conn.execute("LOCK TABLE taskmill_jobs IN EXCLUSIVE MODE")
        keys = [(r[0], int(r[1])) for r in conn.execute(Q_RUNNING).fetchall()]
        counts = {str(status): int(n) for status, n in conn.execute(Q_COUNTS).fetchall()}
        return conn, keys, counts.get("completed", 0)

    def final(self) -> dict[str, tuple[str, int, float | None]]:
        return {r[0]: (r[1], int(r[2]), r[3]) for r in self.rows(Q_FINAL)}

    def close(self) -> None:
        if self.conn is not None:
            with suppress(psycopg.Error):
                self.conn.close()
            self.conn = None


@dataclass
class Watch:
    """Jobs (id, attempt) running at some moment, and how long until none of them still is
    under that attempt: each finished, or was recovered (lease expired) and claimed again."""

    keys: list[Key]
    since: float  # time.monotonic() of the moment
    done_s: float | None = None


@dataclass
class Kill:
    index: int
    at_s: float  # since the jobs were enqueued
    pid: int  # of the killed worker's supervisor
    in_flight_before: int  # running for that worker, queried just before the kill
    watch: Watch  # running for that worker once it is dead: exactly what was in flight
    at_wall: float = 0.0
    up_s: float | None = None  # since the worker logged "started"; None: killed before


@dataclass
class DbRestart:
    at_s: float
    stopped_wall: float  # time.time() of the stop, to compare with the workers' logs
    completed_before: int
    watch: Watch  # every running job, just before PostgreSQL was stopped
    stop_s: float = 0.0  # pg_ctl stop -m fast (a shutdown checkpoint: fsync is on)
    start_s: float = 0.0  # pg_ctl start, until it accepts connections
    down_s: float = 0.0  # from the stop until it accepted connections again
    resumed_s: float | None = None  # from then until the completed count grew again
    workers_back_s: float | None = None  # from the stop until the last worker logged
    # "store reachable again": the outage as the workers saw it


# -- one run ------------------------------------------------------------------------------


@dataclass
class RunResult:
    name: str
    chaos: bool
    jobs: int
    enqueue_s: float
    wall_s: float | None  # from the enqueue_many call until the last finished_at
    timed_out: bool
    kills: list[Kill] = field(default_factory=list)
    db_restart: DbRestart | None = None
    # Workers that died without being killed: the run is not valid (e.g. a broken checkout).
    unexpected_exits: list[dict[str, Any]] = field(default_factory=list)
    worker_logs: dict[str, Any] = field(default_factory=dict)
    analysis: dict[str, Any] = field(default_factory=dict)

    @property
    def throughput(self) -> float | None:
        return self.jobs / self.wall_s if self.wall_s else None


class ChaosRun:
    """Start two workers, enqueue the jobs, and (with chaos) kill worker B again and again
    and restart PostgreSQL once, until every job is final or the time is up."""

    def __init__(
        self, name: str, plan: Plan, cluster: PgCluster, workdir: Path, *, chaos: bool
    ) -> None:
        self.name = name
        self.plan = plan
        self.cluster = cluster
        self.chaos = chaos
        self.dir = workdir / name
        self.dir.mkdir(parents=True)
        self.run_log = self.dir / "runs.log"
        self.url = _create_database(cluster, f"chaos_{name}")
        self.monitor = Monitor(self.url)
        self.rng = random.Random(plan.seed + 1)  # the kill schedule
        self.workers: dict[str, Worker] = {}
        self.b_lives = 0
        self.kills: list[Kill] = []
        self.db_restart: DbRestart | None = None
        self.unexpected_exits: list[dict[str, Any]] = []
        self.killed: dict[int, Worker] = {}
        self.watches: list[Watch] = []
        self.counts: dict[str, int] = {}
        self.t0 = 0.0
        self.next_kill: float | None = None
        self.b_spawned = 0.0
        self.next_probe = 0.0
        self.next_watch = 0.0
        self.note: Callable[[str], None] = print

    def env(self) -> dict[str, str]:
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        return {
            **os.environ,
            "PYTHONPATH": path,
            "TASKMILL_DATABASE_URL": self.url,
            "TASKMILL_LEASE": f"{self.plan.lease_s:g}s",
            chaos_tasks.RUN_LOG_ENV: str(self.run_log),
        }

    def start_worker(self, name: str) -> Worker:
        life = self.b_lives if name == "B" else 0
        log_path = self.dir / f"worker-{name}-{life}.log"
        worker = Worker(name, self.env(), log_path, self.plan.concurrency)
        self.workers[name] = worker
        return worker

    def check_workers(self) -> None:
        """Record and replace a worker that exited although nobody killed it."""
        for name, worker in list(self.workers.items()):
            code = worker.proc.poll()
            if code is None:
                continue
            tail = worker.log().strip().splitlines()[-3:]
            exit_ = {"worker": name, "pid": worker.pid, "exit_code": code, "log_tail": tail}
            self.unexpected_exits.append(exit_)
            self.note(f"  [red]worker {name} (pid {worker.pid}) exited by itself[/red]: {tail}")
            if name == "B":
                self.b_lives += 1
                self.next_kill, self.b_spawned = None, time.monotonic()
            self.start_worker(name)

    def run(
        self, specs: list[dict[str, Any]], step: Step, note: Callable[[str], None]
    ) -> RunResult:
        app = chaos_tasks.make_app(self.url)
        try:
            app.migrate()
            for name in "AB"[: self.plan.workers]:
                self.start_worker(name)
            for worker in self.workers.values():
                worker.wait_started()
            t0_wall, self.t0 = time.time(), time.monotonic()
            ids = [job.id for job in app.enqueue_many(specs)]
            enqueue_s = time.monotonic() - self.t0
            self.b_spawned = self.t0
            self.note = note
            finished = self.loop(len(ids), step, self.t0 + self.plan.timeout_s(specs))
            self.poll_watches(time.monotonic(), force=True)
        finally:
            app.close()
            codes = {w.name: w.stop() for w in self.workers.values()}
        rows = self.monitor.final()
        self.monitor.close()
        last = max((r[2] for r in rows.values() if r[2] is not None), default=None)
        result = RunResult(
            self.name, self.chaos, len(ids), enqueue_s,
            None if last is None or not finished else last - t0_wall, not finished,
            self.kills, self.db_restart, self.unexpected_exits,
        )  # fmt: skip
        result.worker_logs = {**worker_log_counts(self.dir), "exit_codes": codes}
        for kill in self.kills:
            started = self.killed[kill.pid].started_wall()
            kill.up_s = (
                None if started is None or started > kill.at_wall else kill.at_wall - started
            )
        if self.db_restart is not None:
            self.db_restart.workers_back_s = workers_back_s(self.dir, self.db_restart)
        runs = chaos_tasks.read_run_log(self.run_log)
        result.analysis = analyse(ids, specs, rows, runs, self.kills, self.db_restart)
        return result

    def loop(self, total: int, step: Step, deadline: float) -> bool:
        next_count = 0.0
        while True:
            now = time.monotonic()
            if now >= next_count:
                self.counts = self.monitor.counts()
                done = sum(self.counts.get(s, 0) for s in FINAL)
                step.update(done)
                if done >= total:
                    return True
                self.note_resume(now)
                waiting = self.db_restart is not None and self.db_restart.resumed_s is None
                next_count = now + (LOOP_S if waiting else COUNT_EVERY_S)
            if now > deadline:
                return False
            self.poll_watches(now)
            self.check_workers()
            if self.chaos:
                self.chaos_step(total)
            time.sleep(LOOP_S)

    def poll_watches(self, now: float, *, force: bool = False) -> None:
        if now < self.next_watch and not force:
            return
        self.next_watch = now + WATCH_EVERY_S
        for watch in [w for w in self.watches if w.done_s is None]:
            if not watch.keys or self.monitor.still_running(watch.keys) == 0:
                watch.done_s = time.monotonic() - watch.since
        self.watches = [w for w in self.watches if w.done_s is None]

    def chaos_step(self, total: int) -> None:
        if self.db_restart is None and self.counts.get("completed", 0) >= total // 2:
            # No kill meanwhile: the restart happens once the last kill's jobs are back.
            if not self.watches:
                self.restart_db()
            return
        if self.next_kill is None:
            self.next_kill = self.kill_time()
        elif time.monotonic() >= self.next_kill:
            self.kill_b()

    def kill_time(self) -> float | None:
        """When to kill B next: a seeded 3-5 s after its restart, or after it began to work."""
        now = time.monotonic()
        if self.plan.kill_clock == "work" and now - self.b_spawned < WORK_WAIT_MAX_S:
            if now < self.next_probe:
                return None
            self.next_probe = now + WATCH_EVERY_S
            if not self.monitor.running(self.workers["B"].pid):
                return None
            return now + self.rng.uniform(*self.plan.kill_gap_s)
        return self.b_spawned + self.rng.uniform(*self.plan.kill_gap_s)

    def kill_b(self) -> None:
        victim = self.workers["B"]
        before = len(self.monitor.running(victim.pid))
        killed_at = time.monotonic()
        victim.kill()
        self.b_lives += 1
        self.start_worker("B")  # right away
        time.sleep(self.plan.settle_s)  # a claim sent before the kill may still commit
        watch = Watch(self.monitor.running(victim.pid), killed_at)
        kill = Kill(len(self.kills) + 1, killed_at - self.t0, victim.pid, before, watch)
        kill.at_wall = time.time() - (time.monotonic() - killed_at)
        self.killed[victim.pid] = victim
        self.kills.append(kill)
        if watch.keys:
            self.watches.append(watch)
        else:
            watch.done_s = 0.0  # nothing was in flight: nothing to recover
        self.next_kill, self.b_spawned = None, time.monotonic()
        self.note(
            f"  kill {kill.index} at {kill.at_s:5.1f}s: worker B pid {victim.pid}, "
            f"{len(watch.keys)} jobs in flight ({before} just before)"
        )

    def restart_db(self) -> None:
        self.monitor.close()
        frozen, keys, completed = self.monitor.freeze()
        stopped_at, stopped_wall = time.monotonic(), time.time()
        restart = DbRestart(stopped_at - self.t0, stopped_wall, completed, Watch(keys, stopped_at))
        try:
            self.cluster.stop()
        finally:
            with suppress(psycopg.Error):
                frozen.close()
        restart.stop_s = time.monotonic() - stopped_at
        time.sleep(self.plan.db_down_s)
        started_at = time.monotonic()
        self.cluster.start()
        up = time.monotonic()
        restart.start_s, restart.down_s = up - started_at, up - stopped_at
        self.db_restart = restart
        self.watches.append(restart.watch)
        self.next_kill, self.b_spawned = None, up  # B's clock starts again
        self.note(
            f"  PostgreSQL restarted at {restart.at_s:5.1f}s: down {restart.down_s:.2f}s, "
            f"{len(keys)} jobs were running"
        )

    def note_resume(self, now: float) -> None:
        restart = self.db_restart
        if restart is None or restart.resumed_s is not None:
            return
        if self.counts.get("completed", 0) > restart.completed_before:
            restart.resumed_s = now - (restart.watch.since + restart.down_s)


def _create_database(cluster: PgCluster, name: str) -> str:
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(cluster.url, name)


def worker_log_counts(directory: Path) -> dict[str, int]:
    """What the workers said about the chaos, summed over every worker log of a run."""
    counts = {"recovered_by_lease": 0, "store_errors": 0, "tracebacks": 0, "logs": 0}
    for path in sorted(directory.glob("worker-*.log")):
        counts["logs"] += 1
        for line in path.read_text(errors="replace").splitlines():
            if "jobs whose worker vanished" in line:
                counts["recovered_by_lease"] += int(line.split("recovered ")[1].split()[0])
            counts["store_errors"] += "store call failed" in line
            counts["tracebacks"] += line.startswith("Traceback")
    return counts


def workers_back_s(directory: Path, restart: DbRestart) -> float | None:
    """Seconds from the stop until the last worker that lived through the PostgreSQL
    restart logged "store reachable again" once the server was down (during a fast
    shutdown a call may still succeed on a connection not yet closed)."""
    down_wall = restart.stopped_wall + restart.stop_s
    back: list[float] = []
    for path in sorted(directory.glob("worker-*.log")):
        for at, line in log_lines(path):
            if "store reachable again" in line and at >= down_wall:
                back.append(at - restart.stopped_wall)
                break
    return max(back, default=None)


def log_lines(path: Path) -> list[tuple[float, str]]:
    """(Unix time, line) of the lines of a worker log that start with a timestamp."""
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        with suppress(ValueError):
            at = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            lines.append((at, line))
    return lines


# -- reconciliation -----------------------------------------------------------------------


def analyse(
    ids: list[str],
    specs: list[dict[str, Any]],
    rows: dict[str, tuple[str, int, float | None]],
    runs: list[Run],
    kills: list[Kill],
    restart: DbRestart | None,
) -> dict[str, Any]:
    """Reconcile what was enqueued, what the jobs table says and what the tasks logged.

    An extra run is a run of a job beyond its one successful run, apart from the planned
    failing first attempt of the 5 %. Each is blamed on the chaos event at which its claim
    (job, attempt) was in flight: a kill, or the PostgreSQL restart. One that was in flight
    at none of them is unexplained, and so is the same attempt run twice."""
    status = Counter(status_of(rows, i) for i in ids)
    starts = [r for r in runs if r.event == "start"]
    ends = {(r.job_id, r.attempt) for r in runs if r.event == "end"}
    wasted = wasted_runs(starts, rows)
    blamed = blame(wasted, kills, restart)
    events = event_rows(kills, restart, blamed, starts, ends)
    per_attempt = Counter((r.job_id, r.attempt) for r in starts)
    lost = [i for i in ids if status_of(rows, i) != "completed"]
    by_kills = sum(e["extra_runs"] for e in events if e["event"] != "db restart")
    by_restart = sum(e["extra_runs"] for e in events if e["event"] == "db restart")
    return {
        "enqueued": len(ids),
        "status": {s: status.get(s, 0) for s in (*STATUSES, "missing")},
        "unexpected_rows": len(set(rows) - set(ids)),
        "lost": len(lost),
        "lost_ids": lost[:20],
        "executions": len(starts),
        "fail_first_jobs": sum(bool(s["kwargs"]["fail_first"]) for s in specs),
        "planned_failed_runs": sum(r.outcome == "fail" for r in starts),
        "jobs_run_more_than_once": len({r.job_id for r in wasted}),
        "extra_runs": len(wasted),
        "extra_runs_cut_off": sum((r.job_id, r.attempt) not in ends for r in wasted),
        "extra_runs_by_kills": by_kills,
        "extra_runs_by_db_restart": by_restart,
        "extra_runs_unexplained": len(blamed.get(None, [])),
        "same_attempt_twice": sum(n - 1 for n in per_attempt.values() if n > 1),
        "in_flight_at_kills": sum(len(k.watch.keys) for k in kills),
        "in_flight_before_kills": sum(k.in_flight_before for k in kills),
        "running_at_db_restart": len(restart.watch.keys) if restart else 0,
        "completed_without_logged_run": sum(
            status_of(rows, i) == "completed" and (i, rows[i][1]) not in ends for i in ids
        ),
        "attempts_counted": sum(r[1] for r in rows.values()),
        "claims_never_run": sum(r[1] for r in rows.values()) - len(starts),
        "in_flight_not_started": sum(
            e["in_flight"] - e["started"] for e in events if e["event"] != "db restart"
        ),
        "events": events,
    }


def status_of(rows: dict[str, tuple[str, int, float | None]], job_id: str) -> str:
    row = rows.get(job_id)
    return "missing" if row is None else row[0]


def wasted_runs(starts: list[Run], rows: dict[str, tuple[str, int, float | None]]) -> list[Run]:
    """Every run that was neither a planned failure nor the one run that counted (the first
    run of the attempt the jobs table shows the job completed with)."""
    kept: set[str] = set()
    wasted: list[Run] = []
    for run in starts:
        if run.outcome == "fail":
            continue
        row = rows.get(run.job_id)
        counted = row is not None and row[0] == "completed" and row[1] == run.attempt
        if counted and run.job_id not in kept:
            kept.add(run.job_id)
            continue
        wasted.append(run)
    return wasted


def blame(
    wasted: list[Run], kills: list[Kill], restart: DbRestart | None
) -> dict[int | None, list[Run]]:
    """Extra runs by the event their claim was in flight at: kill index, 0 for the
    PostgreSQL restart, None for none (or for a run on another worker than the one
    killed, or the second run of one attempt)."""
    owner: dict[Key, tuple[int, int | None]] = {}
    for kill in kills:
        owner.update((key, (kill.index, kill.pid)) for key in kill.watch.keys)
    if restart is not None:
        for key in restart.watch.keys:
            owner.setdefault(key, (0, None))
    blamed: dict[int | None, list[Run]] = defaultdict(list)
    seen: set[Key] = set()
    for run in wasted:
        key = (run.job_id, run.attempt)
        index, pid = owner.get(key, (None, None))
        if key in seen or (pid is not None and run.ppid != pid):
            index = None
        seen.add(key)
        blamed[index].append(run)
    return blamed


def event_rows(
    kills: list[Kill],
    restart: DbRestart | None,
    blamed: dict[int | None, list[Run]],
    starts: list[Run],
    ends: set[Key],
) -> list[dict[str, Any]]:
    """Per chaos event: what was in flight, how much of it had started or even run to the
    end (its outcome not yet recorded), how long until all of it moved on, and the extra
    runs it caused."""
    started = {(r.job_id, r.attempt) for r in starts}

    def row(name: str, index: int, at_s: float, pid: int | None, before: int | None,
            watch: Watch, up_s: float | None = None) -> dict[str, Any]:  # fmt: skip
        keys = set(watch.keys)
        return {
            "event": name, "at_s": round(at_s, 3), "pid": pid, "up_s": up_s,
            "in_flight_before": before,
            "in_flight": len(keys), "started": len(keys & started),
            "finished_unrecorded": len(keys & ends), "recovered_s": watch.done_s,
            "extra_runs": len(blamed.get(index, [])),
        }  # fmt: skip

    table = [row(f"kill {k.index}", k.index, k.at_s, k.pid, k.in_flight_before, k.watch, k.up_s)
             for k in kills]  # fmt: skip
    if restart is not None:
        table.append(row("db restart", 0, restart.at_s, None, None, restart.watch))
    return sorted(table, key=lambda r: float(r["at_s"]))


# -- report -------------------------------------------------------------------------------


def fmt_s(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.2f} s"


def summary_rows(base: RunResult, chaos: RunResult, plan: Plan) -> list[Row]:
    a, b = chaos.analysis, base.analysis
    return [
        Row("wall time (enqueue → last finish)", fmt_s(chaos.wall_s), fmt_s(base.wall_s),
            ratio(chaos.wall_s, base.wall_s)),
        Row("throughput", fmt_rate(chaos.throughput), fmt_rate(base.throughput),
            ratio(chaos.throughput, base.throughput)),
        Row("jobs enqueued", f"{a['enqueued']:,}", f"{b['enqueued']:,}"),
        both("jobs lost", a, b, "lost"),
        Row("completed = enqueued", f"{a['status']['completed']:,}",
            f"{b['status']['completed']:,}", None, "all", reconciles(a) and reconciles(b)),
        Row("jobs run more than once", str(a["jobs_run_more_than_once"]),
            str(b["jobs_run_more_than_once"]), None, "planned retries excluded"),
        *extra_rows(a, b),
        Row("planned retries (first attempt fails)", planned(a), planned(b)),
        both("same attempt run twice", a, b, "same_attempt_twice"),
        both("completed without a logged run", a, b, "completed_without_logged_run"),
        Row("attempts counted / runs logged", f"{a['attempts_counted']:,} / "
            f"{a['executions']:,}", f"{b['attempts_counted']:,} / {b['executions']:,}"),
        Row("  … claims that never ran", str(a["claims_never_run"]),
            str(b["claims_never_run"]), None,
            f"{a['in_flight_not_started']} in flight at kills, not started"),
        Row("workers that exited unasked (run invalid)", str(len(chaos.unexpected_exits)),
            str(len(base.unexpected_exits)), None, "0",
            not chaos.unexpected_exits and not base.unexpected_exits),
        *kill_rows(chaos, plan),
        *restart_rows(chaos, plan),
    ]  # fmt: skip


def both(metric: str, a: dict[str, Any], b: dict[str, Any], key: str) -> Row:
    """A count that must be 0 in both runs."""
    return Row(metric, str(a[key]), str(b[key]), None, "0", a[key] == 0 and b[key] == 0)


def extra_rows(a: dict[str, Any], b: dict[str, Any]) -> list[Row]:
    kills, running = a["in_flight_at_kills"], a["running_at_db_restart"]
    by_kills, by_restart = a["extra_runs_by_kills"], a["extra_runs_by_db_restart"]
    return [
        Row("extra runs, all causes", str(a["extra_runs"]), str(b["extra_runs"]), None,
            f"≤ {kills + running} in flight at the events",
            a["extra_runs"] <= kills + running and b["extra_runs"] == 0),
        Row("  … caused by the kills", str(by_kills), "", None,
            f"≤ {kills} in flight at the kills", by_kills <= kills),
        Row("  … caused by the PostgreSQL restart", str(by_restart), "", None,
            f"≤ {running} running at it", by_restart <= running),
        Row("  … in flight at no event", str(a["extra_runs_unexplained"]), "", None, "0",
            a["extra_runs_unexplained"] == 0),
        Row("  … cut off mid-run / ran to the end", cut_off(a), cut_off(b)),
    ]  # fmt: skip


def kill_rows(chaos: RunResult, plan: Plan) -> list[Row]:
    a = chaos.analysis
    busy = [k for k in chaos.kills if k.watch.keys]
    recovered = [k.watch.done_s for k in busy if k.watch.done_s is not None]
    return [
        Row("kills of worker B (kill -9 of its group)",
            f"{len(chaos.kills)} ({len(busy)} with jobs in flight)"),
        Row("in flight at the kills (exact / just before)",
            f"{a['in_flight_at_kills']} / {a['in_flight_before_kills']}"),
        Row("recovery after a kill: median / max",
            f"{fmt_s(statistics.median(recovered) if recovered else None)} / "
            f"{fmt_s(max(recovered, default=None))}", "", None,
            f"≈ lease {plan.lease_s:g} s + sweep every {plan.lease_s / 2:g} s",
            len(recovered) == len(busy)),
        Row("jobs recovered by lease (worker logs)",
            str(chaos.worker_logs.get("recovered_by_lease", 0)), "", None,
            f"{a['in_flight_at_kills']} kills + lapsed in the outage"),
    ]  # fmt: skip


def restart_rows(chaos: RunResult, plan: Plan) -> list[Row]:
    restart = chaos.db_restart
    if restart is None:
        return [Row("PostgreSQL restart", "did not happen", "", None, "once", not chaos.chaos)]
    return [
        Row("PostgreSQL restart: stop + gap + start",
            f"{fmt_s(restart.stop_s)} + {plan.db_down_s:g} s + {fmt_s(restart.start_s)}"),
        Row("  … workers reachable again after the stop", fmt_s(restart.workers_back_s), "",
            None, f"lease {plan.lease_s:g} s"),
        Row("  … first completion after the start", fmt_s(restart.resumed_s)),
        Row(f"  … its {len(restart.watch.keys)} running jobs moved on after",
            fmt_s(restart.watch.done_s)),
    ]  # fmt: skip


def reconciles(a: dict[str, Any]) -> bool:
    counted = sum(a["status"][s] for s in STATUSES)
    return bool(
        counted == a["enqueued"]
        and a["status"]["completed"] == a["enqueued"]
        and a["unexpected_rows"] == 0
    )


def cut_off(a: dict[str, Any]) -> str:
    return f"{a['extra_runs_cut_off']} / {a['extra_runs'] - a['extra_runs_cut_off']}"


def planned(a: dict[str, Any]) -> str:
    return f"{a['planned_failed_runs']} runs of {a['fail_first_jobs']} jobs"


def up(event: dict[str, Any]) -> str:
    """How long the killed worker had been up: it takes a few seconds to start (Python and
    its imports, then two children importing the app), so a kill can come before it did."""
    return "not yet" if event["up_s"] is None else fmt_s(event["up_s"])


def events_table(chaos: RunResult) -> Table:
    table = Table(title="chaos events (in flight: running for the worker; at the restart: all)",
                  title_justify="left")  # fmt: skip
    columns = ("event", "at", "worker pid", "worker up", "in flight (before)", "started",
               "ran to end", "moved on after", "extra runs", "≤ in flight")  # fmt: skip
    for name in columns:
        table.add_column(name, justify="left" if name == "event" else "right")
    for e in chaos.analysis["events"]:
        before = "" if e["in_flight_before"] is None else f" ({e['in_flight_before']})"
        table.add_row(
            e["event"], f"{e['at_s']:.1f} s", str(e["pid"] or "—"),
            up(e) if e["pid"] else "—",
            f"{e['in_flight']}{before}", str(e["started"]), str(e["finished_unrecorded"]),
            fmt_s(e["recovered_s"]) if e["in_flight"] else "(none)", str(e["extra_runs"]),
            "[green]yes" if e["extra_runs"] <= e["in_flight"] else "[red]NO",
        )  # fmt: skip
    return table


def reconciliation_table(base: RunResult, chaos: RunResult) -> Table:
    table = Table(title="reconciliation: enqueued = sum of states", title_justify="left")
    for name, justify in (("state", "left"), ("baseline", "right"), ("chaos", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    a, b = chaos.analysis, base.analysis
    table.add_row("enqueued", f"{b['enqueued']:,}", f"{a['enqueued']:,}")
    for state in (*STATUSES, "missing"):
        table.add_row(f"  {state}", f"{b['status'][state]:,}", f"{a['status'][state]:,}")
    table.add_row("rows not enqueued", str(b["unexpected_rows"]), str(a["unexpected_rows"]))
    verdict = {True: "[green]reconciles", False: "[red]DOES NOT"}
    table.add_row("", verdict[reconciles(b)], verdict[reconciles(a)])
    return table


# -- main ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, default=None, help="default 20000 (quick: 2000)")
    parser.add_argument("--quick", action="store_true", help="2,000 jobs, under 2 minutes")
    parser.add_argument("--seed", type=int, default=1, help="jobs and kill schedule (1)")
    parser.add_argument("--db-down", type=float, default=1.0, help="seconds PostgreSQL is down")
    parser.add_argument(
        "--kill-clock", choices=("restart", "work"), default="restart",
        help="kill B 3-5 s after its restart (default) or after it began to run jobs",
    )  # fmt: skip
    parser.add_argument("--keep-logs", action="store_true", help="keep worker and run logs")
    return parser.parse_args(argv)


def run_one(
    name: str, plan: Plan, cluster: PgCluster, workdir: Path, reporter: Reporter, *, chaos: bool
) -> RunResult:
    specs = chaos_tasks.job_specs(plan.jobs, plan.seed)
    runner = ChaosRun(name, plan, cluster, workdir, chaos=chaos)
    with reporter.step(f"{name}: {plan.jobs:,} jobs", total=plan.jobs) as step:
        return runner.run(specs, step, reporter.note)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    jobs = args.jobs or (2000 if args.quick else 20000)
    plan = Plan(
        jobs=jobs, seed=args.seed, quick=args.quick, db_down_s=args.db_down,
        kill_clock=args.kill_clock,
    )  # fmt: skip
    console = Console() if Console().is_terminal else Console(width=140)
    workdir = Path(tempfile.mkdtemp(prefix="taskmill-chaos."))
    cluster = PgCluster(settings=PG_SETTINGS)
    try:
        cluster.start()
        server = pg_server_info(cluster.url)
        console.print(
            f"PostgreSQL {server.get('server_version')} (own cluster, port {cluster.port}), "
            f"fsync={server.get('fsync')}, synchronous_commit={server.get('synchronous_commit')}"
            f", full_page_writes={server.get('full_page_writes')}; lease {plan.lease_s:g} s;"
            f" kill B every {plan.kill_gap_s[0]:g}-{plan.kill_gap_s[1]:g} s after its "
            f"{plan.kill_clock}"
        )
        with Reporter(console) as reporter:
            base = run_one("baseline", plan, cluster, workdir, reporter, chaos=False)
            chaos = run_one("chaos", plan, cluster, workdir, reporter, chaos=True)
    finally:
        cluster.destroy()
    rows = summary_rows(base, chaos, plan)
    passed = all(r.passed is not False for r in rows) and not (base.timed_out or chaos.timed_out)
    console.print(results_table(f"chaos vs baseline ({jobs:,} jobs, seed {plan.seed})", rows))
    console.print(events_table(chaos))
    console.print(reconciliation_table(base, chaos))
    payload = {
        "benchmark": "chaos",
        "plan": asdict(plan),
        "passed": passed,
        "machine": machine_info(),
        "server": server,
        "runs": {r.name: {**asdict(r), "throughput": r.throughput} for r in (base, chaos)},
        "rows": rows,
        "logs": str(workdir) if args.keep_logs or not passed else None,
    }
    path = write_json(payload, "chaos")
    console.print(f"results: {path}")
    if args.keep_logs or not passed:
        console.print(f"worker and run logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    if not passed:
        console.print("[red]FAILED[/red]: see the rows marked FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
