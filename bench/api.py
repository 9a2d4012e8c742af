"""The API benchmark: submits (POST /api/tasks) and reads (GET /api/tasks/{id}) per second,
and their p99 latency, through one `taskmill api` process under HTTP load, next to baselines
measured in the same run on the same database.

    python -m bench.api [--backend postgres|sqlite|both] [--seconds S] [--connections C]
                        [--quick]

Per backend, in a scratch database (PostgreSQL: CREATE DATABASE taskmill_bench_api on the
server of TASKMILL_BENCH_DATABASE_URL, dropped at the end; SQLite: a temporary file):

- the raw ceiling of the work a submit must do: single-row INSERT + commit of the same job
  into taskmill's own table, from C connections at once (SQLite: one; it has one writer);
- the framework ceiling: GET /healthz, a route that touches nothing, on the same server;
- POST /api/tasks of a send_email job, then GET /api/tasks/{id} of the jobs it stored,
  by wrk with C connections for S seconds; and the API process's CPU time per request,
  read from /proc (what the server costs, whatever the disk does);
- a check that every 202 answered is a job stored.

Load comes from wrk (Debian: `make bench-tools`), one thread, so the server keeps a core.
Prints a table per backend and writes bench/results/api-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from rich.console import Console

from bench.common import (
    ROOT,
    Reporter,
    Row,
    admin_url,
    fmt_rate,
    machine_info,
    pg_scratch_database,
    pg_server_info,
    ratio,
    results_table,
    scratch_dir,
    taskmill_script,
    write_json,
)

SCRATCH_DB = "taskmill_bench_api"
SUBMIT_TARGET_PER_S = 3000.0  # PostgreSQL, one API process
SUBMIT_TARGET_P99_S = 0.020
SUBMIT_BODY = json.dumps(
    {"task": "send_email", "priority": 5,
     "kwargs": {"to": "a@b.c", "subject": "Hi", "body": "..."}}
)  # fmt: skip

# -- load: wrk, and the server's CPU time ---------------------------------------------------

URL = re.compile(r"API\s+(http://\S+?)/api/tasks")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Reported by every script when wrk is done: exact percentiles from wrk's own histogram.
_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"socket_errors":%d,"http_errors":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def post_script(body: str) -> str:
    return (
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n' + _DONE
    )


def get_script(paths_file: Path) -> str:
    """GET every path listed in the file, in turn (each wrk thread from its own start)."""
    return (
        f"""
local paths = {{}}
for line in io.lines("{paths_file}") do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
"""
        + _DONE
    )


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    socket_errors: int
    http_errors: int
    p50_s: float
    p90_s: float
    p99_s: float
    max_s: float
    server_cpu_s: float

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_per_request_s(self) -> float:
        return self.server_cpu_s / max(self.requests, 1)


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk is not installed: run `make bench-tools` (apt-get install wrk hey)")
    return path


def run_wrk(
    url: str, script: str, workdir: Path, *, seconds: float, connections: int, server_pid: int
) -> LoadResult:
    """wrk with one thread (the server gets the other core) for `seconds`."""
    script_path = workdir / f"wrk-{time.monotonic_ns()}.lua"
    script_path.write_text(script)
    cpu_before = process_cpu_s(server_pid)
    done = subprocess.run(
        [require_wrk(), "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
         "-s", str(script_path), url],
        capture_output=True, text=True, check=False, timeout=seconds + 60,
    )  # fmt: skip
    cpu_s = process_cpu_s(server_pid) - cpu_before
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    data: dict[str, Any] = json.loads(line.removeprefix("WRKJSON "))
    return LoadResult(
        requests=data["requests"], seconds=data["duration_us"] / 1e6,
        socket_errors=data["socket_errors"], http_errors=data["http_errors"],
        p50_s=data["p50_us"] / 1e6, p90_s=data["p90_us"] / 1e6, p99_s=data["p99_us"] / 1e6,
        max_s=data["max_us"] / 1e6, server_cpu_s=cpu_s,
    )  # fmt: skip


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of `pid` and its threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class ApiProcess:
    """`taskmill api --port 0` on `database_url`, serving the built-in app (its demo tasks
    are what the benchmark submits)."""

    def __init__(self, database_url: str, log_path: Path) -> None:
        self.database_url = database_url
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __enter__(self) -> ApiProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKMILL_")}
        env["TASKMILL_DATABASE_URL"] = self.database_url
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(taskmill_script()), "api", "--port", "0"], cwd=ROOT, env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.url = self._wait_url()
        self._wait_healthy()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _wait_url(self, timeout_s: float = 60) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = URL.search(self._log())
            if found:
                return found.group(1)
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"taskmill api did not start: {self._log()[-2000:]}")

    def _wait_healthy(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"taskmill api not ready: {self._log()[-2000:]}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


# -- the raw ceiling: one insert + commit per request, no HTTP, no taskmill ------------------

PG_INSERT = (
    "INSERT INTO taskmill_jobs (id, task, queue, priority, args, kwargs, max_retries, "
    "timeout_s, backoff) VALUES (%s, 'send_email', 'high', 5, '[]', %s, 3, 30, 2)"
)
SQLITE_INSERT = (
    "INSERT INTO taskmill_jobs (id, task, queue, priority, args, kwargs, max_retries, "
    "timeout_s, backoff, created_at, scheduled_at) "
    "VALUES (?, 'send_email', 'high', 5, '[]', ?, 3, 30, 2, ?, ?)"
)
KWARGS = json.dumps({"to": "a@b.c", "subject": "Hi", "body": "..."})


def _pg_inserter(url: str, deadline: float, counts: list[int], index: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        while time.monotonic() < deadline:
            conn.execute(PG_INSERT, (uuid.uuid4(), KWARGS))
            counts[index] += 1


def pg_insert_rate(url: str, connections: int, seconds: float) -> float:
    """Rows/s of single-row INSERT + commit from `connections` threads, each on its own
    connection (psycopg waits on the server without the GIL)."""
    counts = [0] * connections
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(target=_pg_inserter, args=(url, deadline, counts, i))
        for i in range(connections)
    ]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - start)


def sqlite_insert_rate(path: str, seconds: float) -> float:
    """Rows/s of single-row INSERT + commit on one connection, with taskmill's settings
    (WAL, synchronous=FULL); SQLite has one writer, so more connections would only queue."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        count, start = 0, time.monotonic()
        while time.monotonic() - start < seconds:
            now = time.time()
            conn.execute(SQLITE_INSERT, (str(uuid.uuid4()), KWARGS, now, now))
            count += 1
        return count / (time.monotonic() - start)
    finally:
        conn.close()


# -- one backend ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    seconds: float
    connections: int
    warmup_s: float

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Plan:
        seconds = args.seconds or (3.0 if args.quick else 10.0)
        return cls(seconds=seconds, connections=args.connections, warmup_s=min(2.0, seconds))


@dataclass
class Backend:
    name: str
    url: str  # taskmill's database URL
    server: dict[str, Any]
    workdir: Path

    def sql(self, statement: str) -> list[tuple[Any, ...]]:
        if self.name == "postgres":
            with psycopg.connect(self.url, autocommit=True) as conn:
                return list(conn.execute(statement).fetchall())
        lite = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            return list(lite.execute(statement).fetchall())
        finally:
            lite.close()

    def execute(self, statement: str) -> None:
        if self.name == "postgres":
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(statement)
            return
        lite = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            lite.execute(statement)
        finally:
            lite.close()

    def count_jobs(self) -> int:
        return int(self.sql("SELECT count(*) FROM taskmill_jobs")[0][0])


@contextlib.contextmanager
def scratch_backend(name: str) -> Iterator[Backend]:
    with scratch_dir("taskmill-bench-api-") as workdir:
        if name == "postgres":
            with pg_scratch_database(admin_url(), SCRATCH_DB) as url:
                yield Backend(name, url, pg_server_info(url), workdir)
        else:
            server = {"sqlite_version": sqlite3.sqlite_version, "journal": "WAL/FULL"}
            yield Backend(name, f"sqlite:///{workdir}/taskmill.db", server, workdir)


def migrate(backend: Backend) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKMILL_")}
    done = subprocess.run(
        [str(taskmill_script()), "migrate", "--database-url", backend.url], cwd=ROOT, env=env,
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"taskmill migrate failed: {done.stderr.strip()}")


def raw_ceiling(backend: Backend, plan: Plan) -> float:
    if backend.name == "postgres":
        rate = pg_insert_rate(backend.url, plan.connections, plan.seconds)
    else:
        rate = sqlite_insert_rate(backend.url.removeprefix("sqlite:///"), plan.seconds)
    backend.execute("DELETE FROM taskmill_jobs")  # the API run starts from an empty table
    return rate


def measure_api(backend: Backend, plan: Plan, reporter: Reporter) -> dict[str, Any]:
    load = {"seconds": plan.seconds, "connections": plan.connections}
    with ApiProcess(backend.url, backend.workdir / "api.log") as api:

        def wrk(path: str, script: str, seconds: float = plan.seconds) -> LoadResult:
            return run_wrk(api.url + path, script, backend.workdir, server_pid=api.pid,
                           seconds=seconds, connections=plan.connections)  # fmt: skip

        with reporter.step(f"{backend.name}: warm-up and GET /healthz"):
            wrk("/api/tasks", post_script(SUBMIT_BODY), plan.warmup_s)
            healthz = wrk("/healthz", _DONE)
        with reporter.step(f"{backend.name}: POST /api/tasks ({plan.connections} connections)"):
            before = backend.count_jobs()
            submit = wrk("/api/tasks", post_script(SUBMIT_BODY))
            stored = backend.count_jobs() - before
        ids = backend.sql("SELECT id FROM taskmill_jobs ORDER BY id DESC LIMIT 20000")
        paths = backend.workdir / "paths.txt"
        paths.write_text("".join(f"/api/tasks/{row[0]}\n" for row in ids))
        with reporter.step(f"{backend.name}: GET /api/tasks/{{id}}"):
            read = wrk("/api/tasks/x", get_script(paths))
    return {"load": load, "healthz": asdict(healthz), "submit": asdict(submit),
            "read": asdict(read), "stored": stored}  # fmt: skip


def run_backend(name: str, plan: Plan, reporter: Reporter) -> dict[str, Any]:
    with scratch_backend(name) as backend:
        migrate(backend)
        with reporter.step(f"{name}: raw INSERT + commit ceiling"):
            raw = raw_ceiling(backend, plan)
        measured = measure_api(backend, plan, reporter)
        return {"server": backend.server, "raw_insert_per_s": raw, **measured}


# -- results --------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} us"


def _load(data: dict[str, Any]) -> LoadResult:
    return LoadResult(**data)


def rows_for(name: str, entry: dict[str, Any]) -> list[Row]:
    submit, read, healthz = _load(entry["submit"]), _load(entry["read"]), _load(entry["healthz"])
    raw = entry["raw_insert_per_s"]
    connections = entry["load"]["connections"]
    on_pg = name == "postgres"
    meets = submit.per_s >= SUBMIT_TARGET_PER_S and submit.p99_s <= SUBMIT_TARGET_P99_S
    cpu_budget_s = 1 / SUBMIT_TARGET_PER_S
    accepted = submit.requests - submit.http_errors
    return [
        Row(f"POST /api/tasks ({connections} conn.)",
            f"{fmt_rate(submit.per_s)}, p99 {_ms(submit.p99_s)}",
            f"{fmt_rate(raw)} INSERT+commit", ratio(submit.per_s, raw),
            "≥ 3,000/s, p99 ≤ 20 ms" if on_pg else "", meets if on_pg else None),
        Row("GET /api/tasks/{id}", f"{fmt_rate(read.per_s)}, p99 {_ms(read.p99_s)}",
            f"{fmt_rate(healthz.per_s)} /healthz", ratio(read.per_s, healthz.per_s)),
        Row("GET /healthz (framework ceiling)",
            f"{fmt_rate(healthz.per_s)}, p99 {_ms(healthz.p99_s)}"),
        Row("API CPU per submit", _us(submit.cpu_per_request_s),
            f"{_us(healthz.cpu_per_request_s)} /healthz", None,
            f"≤ {_us(cpu_budget_s)} (3,000/s on one core)",
            submit.cpu_per_request_s <= cpu_budget_s),
        Row("API CPU per read", _us(read.cpu_per_request_s),
            f"{_us(healthz.cpu_per_request_s)} /healthz"),
        # wrk stops with up to C requests in flight: stored but never counted as answered.
        Row("jobs stored - 202s answered", f"{entry['stored'] - accepted:,}", "", None,
            f"0..{connections} (in flight at the end), no errors",
            0 <= entry["stored"] - accepted <= connections
            and not (submit.http_errors or submit.socket_errors)),
    ]  # fmt: skip


def title(name: str, entry: dict[str, Any]) -> str:
    server = entry["server"]
    if name == "postgres":
        detail = (f"PostgreSQL {server.get('server_version')}, "
                  f"synchronous_commit={server.get('synchronous_commit')}")  # fmt: skip
    else:
        detail = f"SQLite {server.get('sqlite_version')}, WAL, synchronous=FULL"
    load = entry["load"]
    return (f"taskmill API — {detail} — one API process, wrk {load['connections']} "
            f"connections x {load['seconds']:g} s — {os.cpu_count()} CPUs")  # fmt: skip


# -- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.api", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--backend", choices=("postgres", "sqlite", "both"), default="both")
    parser.add_argument("--seconds", type=float, default=None,
                        help="length of each load run (default 10; 3 with --quick)")  # fmt: skip
    parser.add_argument("--connections", type=int, default=16,
                        help="HTTP connections, and the raw ceiling's (default 16)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="short runs, for smoke checks")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = Plan.from_args(args)
    require_wrk()
    console = Console(width=None if sys.stdout.isatty() else 140)
    backends = ["postgres", "sqlite"] if args.backend == "both" else [args.backend]
    results: dict[str, Any] = {
        "benchmark": "api", "started_at": datetime.now(UTC).isoformat(), "argv": sys.argv,
        "plan": asdict(plan), "machine": machine_info(), "backends": {},
        "targets": {"submit_min_per_s": SUBMIT_TARGET_PER_S,
                    "submit_p99_max_s": SUBMIT_TARGET_P99_S},
    }  # fmt: skip
    failed = False
    with Reporter(console) as reporter:
        for name in backends:
            try:
                results["backends"][name] = run_backend(name, plan, reporter)
            except Exception as exc:  # the other backend still runs
                results["backends"][name] = {"error": f"{type(exc).__name__}: {exc}"}
                reporter.note(f"[red]{name}: {type(exc).__name__}: {exc}")
                failed = True
    for name, entry in results["backends"].items():
        if "error" not in entry:
            entry["rows"] = rows_for(name, entry)
            console.print(results_table(title(name, entry), entry["rows"]))
    results["finished_at"] = datetime.now(UTC).isoformat()
    results["machine"]["loadavg_at_end"] = list(os.getloadavg())
    path = write_json(results, "api")
    console.print(f"results: {path.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
