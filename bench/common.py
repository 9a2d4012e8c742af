"""What every benchmark needs and none of them measures: scratch databases, machine facts,
the disk's flush rate, statistics, the results table and the JSON file.

Nothing here imports taskmill, so the raw-SQL baselines that use it stay free of taskmill
code."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
SCRATCH_DB = "taskmill_bench"
PG_TEST_FSYNC = "/usr/lib/postgresql/15/bin/pg_test_fsync"
PG_TEST_FSYNC_TIMEOUT_S = 60.0


# -- statistics ---------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: list[float]) -> float:
    return percentile(values, 50)


def paired_ratio(values: list[float], baselines: list[float]) -> float:
    """The median of value/baseline over runs made side by side: a disk stall or a burst
    of other load spoils one pair, not the figure."""
    return median([v / b for v, b in zip(values, baselines, strict=True)])


def rate_over(window_s: float, step: Callable[[], object], tick: Callable[[float], None]) -> float:
    """Call `step` back to back for about `window_s` seconds; calls per second."""
    count = 0
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < window_s:
        step()
        count += 1
        elapsed = time.perf_counter() - start
        if count % 64 == 0:
            tick(elapsed)
    tick(window_s)
    return count / elapsed


def uuid7_ids(count: int) -> list[uuid.UUID]:
    """Time-ordered UUIDv7 ids like taskmill's (ms, then a 12-bit counter that borrows the
    next millisecond when spent), so baseline tables see the same index locality."""
    base_ms = time.time_ns() // 1_000_000
    ids = []
    for i in range(count):
        ms, seq = base_ms + i // 4096, i % 4096
        rand = int.from_bytes(os.urandom(8), "big") & 0x3FFF_FFFF_FFFF_FFFF
        ids.append(uuid.UUID(int=(ms << 80) | (0x7 << 76) | (seq << 64) | (0b10 << 62) | rand))
    return ids


class IdSource:
    """One fresh UUIDv7 per call, increasing within this process."""

    def __init__(self) -> None:
        self._last_ms = 0
        self._seq = 0

    def __call__(self) -> uuid.UUID:
        ms = time.time_ns() // 1_000_000
        if ms <= self._last_ms:
            self._seq += 1
            if self._seq > 0xFFF:
                self._last_ms, self._seq = self._last_ms + 1, 0
            ms = self._last_ms
        else:
            self._last_ms, self._seq = ms, 0
        rand = int.from_bytes(os.urandom(8), "big") & 0x3FFF_FFFF_FFFF_FFFF
        return uuid.UUID(int=(ms << 80) | (0x7 << 76) | (self._seq << 64) | (0b10 << 62) | rand)


# -- scratch databases --------------------------------------------------------------------


def admin_url() -> str:
    return os.environ.get("TASKMILL_BENCH_DATABASE_URL") or DEFAULT_ADMIN_URL


def with_database(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


@contextmanager
def pg_scratch_database(admin: str, name: str = SCRATCH_DB) -> Iterator[str]:
    """Create database `name` on the server of `admin`, yield its URL, drop it afterwards.

    A leftover from a crashed run is dropped first; one still in use makes CREATE fail with
    PostgreSQL's own message, so two benchmarks never share a database unknowingly."""
    ident = sql.Identifier(name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(ident))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    try:
        yield with_database(admin, name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory on the disk of the project, not a tmpfs: an fsync in RAM
    would make every SQLite figure meaningless."""
    base = os.environ.get("TASKMILL_BENCH_TMPDIR") or None
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def filesystem_type(path: Path) -> str:
    """The type of the filesystem holding `path`, from /proc/mounts (longest mount prefix)."""
    best, fs_type = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return fs_type
    resolved = str(path.resolve())
    for line in mounts:
        fields = line.split()
        if len(fields) >= 3 and resolved.startswith(fields[1]) and len(fields[1]) > len(best):
            best, fs_type = fields[1], fields[2]
    return fs_type


# -- machine facts ------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "loadavg_at_start": list(os.getloadavg()),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "sqlite_version": sqlite3.sqlite_version,
        "psycopg_version": psycopg.__version__,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def pg_server_info(url: str) -> dict[str, Any]:
    names = (
        "server_version",
        "fsync",
        "synchronous_commit",
        "wal_sync_method",
        "full_page_writes",
        "shared_buffers",
        "max_connections",
        "data_directory",
    )
    info: dict[str, Any] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for name in names:
            try:
                row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
            except psycopg.Error:
                continue  # data_directory needs superuser or pg_read_all_settings
            info[name] = row[0] if row else None
    return info


# -- the disk's flush rate ----------------------------------------------------------------


_OPS_LINE = re.compile(r"^\s*(\S+)\s+([\d.]+) ops/sec")


def pg_test_fsync(method: str, directory: Path) -> dict[str, Any]:
    """Run pg_test_fsync (1 s per test) in `directory` and return the ops/sec of `method`
    from its first section (one 8 kB write, what a single-row commit costs).

    The tool then goes on for ~15 s of other sections we do not need, so it is stopped as
    soon as the figure is known."""
    exe = PG_TEST_FSYNC if Path(PG_TEST_FSYNC).exists() else shutil.which("pg_test_fsync")
    if exe is None:
        return {"error": "pg_test_fsync not found"}
    found: dict[str, Any] = {
        "method": method,
        "directory": str(directory),
        "filesystem": filesystem_type(directory),
    }
    proc = subprocess.Popen(
        [exe, "-s", "1", "-f", str(directory / "pg_test_fsync.out")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + PG_TEST_FSYNC_TIMEOUT_S
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            match = _OPS_LINE.match(line)
            if match:
                found.setdefault("first_section", {})[match.group(1)] = float(match.group(2))
            if (match and match.group(1) == method) or time.monotonic() > deadline:
                break
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    ops = found.get("first_section", {}).get(method)
    if ops is None:
        found["error"] = f"no {method} line in pg_test_fsync's output"
    found["ops_per_s"] = ops
    return found


# -- results ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a results table. `passed` None: informational, or not measured."""

    metric: str
    value: str
    baseline: str = ""
    ratio: float | None = None
    target: str = ""
    passed: bool | None = None


def fmt_rate(per_s: float | None, unit: str = "/s") -> str:
    return "—" if per_s is None else f"{per_s:,.0f}{unit}"


def fmt_ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:.2f} ms"


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or not baseline:
        return None
    return value / baseline


def results_table(title: str, rows: list[Row]) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    for name, justify in (
        ("metric", "left"),
        ("value", "right"),
        ("baseline", "right"),
        ("ratio", "right"),
        ("target", "left"),
        ("pass/fail", "center"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        verdict = {True: "[green]pass", False: "[red]FAIL", None: "—"}[row.passed]
        shown = "—" if row.ratio is None else f"{row.ratio:.0%}"
        table.add_row(row.metric, row.value, row.baseline, shown, row.target, verdict)
    return table


def write_json(payload: dict[str, Any], name: str) -> Path:
    """bench/results/<name>-<UTC timestamp>.json (the directory is gitignored)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    return path


def _json_default(value: object) -> object:
    if isinstance(value, Row):
        return asdict(value)
    if isinstance(value, Path | uuid.UUID | datetime):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


# -- progress -----------------------------------------------------------------------------


class Reporter:
    """A rich progress display: one line per step, with a bar when the size is known."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )

    def __enter__(self) -> Reporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    @contextmanager
    def step(self, description: str, total: float | None = None) -> Iterator[Step]:
        task = self.progress.add_task(description, total=total)
        step = Step(self.progress, task)
        try:
            yield step
        finally:
            done = self.progress.tasks[self.progress.task_ids.index(task)]
            self.progress.update(task, completed=done.total or 1, total=done.total or 1)
            self.progress.stop_task(task)

    def note(self, message: str) -> None:
        self.progress.console.print(message)


class Step:
    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress = progress
        self._task = task

    def advance(self, amount: float = 1) -> None:
        self._progress.advance(self._task, amount)

    def update(self, completed: float) -> None:
        self._progress.update(self._task, completed=completed)


# -- a worker subprocess ------------------------------------------------------------------


class WorkerFailed(RuntimeError):
    pass


class WorkerProcess:
    """`taskmill worker -A <app> -c N` in its own session, output to a log file.

    Stopped with SIGTERM (the worker's graceful shutdown); if it is still there after
    `stop_timeout_s`, its whole session, which this class started, gets SIGKILL."""

    def __init__(
        self,
        database_url: str,
        app_ref: str,
        concurrency: int,
        log_path: Path,
        *,
        stop_timeout_s: float = 30.0,
    ) -> None:
        self.database_url = database_url
        self.argv = [str(taskmill_script()), "worker", "-A", app_ref, "-c", str(concurrency)]
        self.log_path = log_path
        self.stop_timeout_s = stop_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None

    def __enter__(self) -> WorkerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, "TASKMILL_DATABASE_URL": self.database_url, "PYTHONPATH": path}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def check(self) -> None:
        """Raise WorkerFailed, with the end of its log, if the worker has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise WorkerFailed(f"worker exited with code {self.proc.returncode}: {self.log_tail()}")

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"

    def stop(self) -> int | None:
        proc = self.proc
        if proc is None:
            return self.exit_code
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                _kill_session(proc.pid)
                proc.wait(timeout=10)
        _kill_session(proc.pid)  # children that outlived their supervisor
        self.exit_code, self.proc = proc.returncode, None
        return self.exit_code


def _kill_session(pgid: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def taskmill_script() -> Path:
    """The `taskmill` console script of the interpreter running the benchmark."""
    return Path(sys.executable).parent / "taskmill"
