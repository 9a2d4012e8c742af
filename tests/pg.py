"""PostgreSQL for tests: find a server, or start a throwaway cluster, and hand out databases.

`PgCluster` owns a cluster in a temporary directory: a test that stops or restarts
PostgreSQL (outage survival) must start its own and never touch the shared server.
`PgServer` is what the test session uses: an admin URL plus the cluster it owns, if any.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

DATABASE_URL_ENV = "TASKMILL_TEST_DATABASE_URL"
PROBE_URL_ENV = "TASKMILL_TEST_PG_PROBE_URL"
BIN_DIR_ENV = "TASKMILL_TEST_PG_BIN"
DEFAULT_PROBE_URL = "postgresql://postgres@127.0.0.1:5432/test"
PROBE_TIMEOUT_S = 2
START_TIMEOUT_S = 30
PG_USER = "postgres"

# fsync off: a throwaway cluster need not survive an OS crash, and it makes initdb and
# commits several times faster. Commits still survive a killed postmaster (WAL is written).
DEFAULT_SETTINGS: Mapping[str, str] = {"fsync": "off", "full_page_writes": "off"}


class PgUnavailable(RuntimeError):
    """No PostgreSQL could be found or started; the message says what was tried."""


def probe(url: str, timeout_s: int = PROBE_TIMEOUT_S) -> str | None:
    """None when `url` accepts a connection, else why not (one line)."""
    try:
        with psycopg.connect(url, connect_timeout=timeout_s, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return " ".join(str(exc).split()) or type(exc).__name__
    return None


def with_database(url: str, dbname: str) -> str:
    """`url` with its database name replaced (user, host, port and options kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


def find_bin_dir() -> Path | None:
    """Where initdb and pg_ctl are: `TASKMILL_TEST_PG_BIN` if set, else the newest
    /usr/lib/postgresql/<version>/bin (Debian, Ubuntu), else the directory of `initdb` on
    PATH (Homebrew, Fedora, ...)."""
    if BIN_DIR_ENV in os.environ:
        given = Path(os.environ[BIN_DIR_ENV])
        return given if (given / "initdb").exists() and (given / "pg_ctl").exists() else None
    found = []
    for initdb in Path("/usr/lib/postgresql").glob("*/bin/initdb"):
        if (initdb.parent / "pg_ctl").exists() and initdb.parent.parent.name.isdigit():
            found.append((int(initdb.parent.parent.name), initdb.parent))
    if found:
        return max(found)[1]
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def free_port() -> int:
    """A loopback port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgCluster:
    """A throwaway PostgreSQL cluster owned by whoever created it.

    `start()` runs initdb the first time (about 1-2 s) and returns the URL of the
    `postgres` database; `stop()`, `restart()` and `kill()` act on this cluster only;
    `destroy()` stops it and deletes its files (also registered at interpreter exit).
    As root, initdb and pg_ctl run as the `postgres` user, as PostgreSQL requires.
    """

    def __init__(
        self, *, bin_dir: Path | None = None, settings: Mapping[str, str] | None = None
    ) -> None:
        found = bin_dir or find_bin_dir()
        if found is None:
            raise PgUnavailable(
                f"no initdb and pg_ctl (looked in ${BIN_DIR_ENV}, /usr/lib/postgresql/*/bin"
                " and PATH)"
            )
        self.bin_dir = found
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self.port = 0
        self.dir: Path | None = None
        self.running = False
        atexit.register(self.destroy)

    @property
    def data_dir(self) -> Path:
        if self.dir is None:
            raise PgUnavailable("the cluster was never started")
        return self.dir / "data"

    @property
    def url(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/postgres"

    def __enter__(self) -> PgCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", PG_USER, "--", *cmd]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        return subprocess.run(
            cmd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
        )

    def _init(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="taskmill-pg."))
        if os.geteuid() == 0:
            shutil.chown(self.dir, PG_USER, PG_USER)
        self.dir.chmod(0o700)
        done = self._run(
            "initdb", "-D", str(self.data_dir), "-U", PG_USER, "-A", "trust", "-E", "UTF8",
            "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip
        if done.returncode != 0:
            raise PgUnavailable(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")

    def _pg_ctl_start(self) -> subprocess.CompletedProcess[str]:
        options = [f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir}"]
        options += [f"-c {name}={value}" for name, value in self.settings.items()]
        return self._run(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_path), "-w",
            "-t", str(START_TIMEOUT_S), "-o", " ".join(options), "start",
        )  # fmt: skip

    @property
    def log_path(self) -> Path:
        return (self.dir or Path(tempfile.gettempdir())) / "postgres.log"

    def start(self) -> str:
        """Start the cluster (creating it on first use) and return its URL. A restart keeps
        the port, so URLs handed out earlier stay valid."""
        if self.running:
            return self.url
        if self.dir is None:
            self._init()
        tries = 1 if self.port else 3  # a new port can be taken between lookup and bind
        for _ in range(tries):
            self.port = self.port if tries == 1 else free_port()
            done = self._pg_ctl_start()
            if done.returncode == 0:
                self.running = True
                return self.url
        raise PgUnavailable(f"pg_ctl start failed: {done.stderr.strip()}\n{self.log_tail()}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the postmaster: `fast` disconnects clients and shuts down cleanly,
        `immediate` is a crash (recovery runs on the next start)."""
        if not self.running:
            return
        done = self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop")
        if done.returncode != 0:
            raise PgUnavailable(f"pg_ctl stop failed: {done.stderr.strip()}")
        self.running = False

    def restart(self) -> None:
        """Stop then start again on the same port: every open connection is dropped."""
        self.stop()
        self.start()

    def kill(self) -> None:
        """As if the server crashed: an immediate stop, without a shutdown checkpoint."""
        self.stop(mode="immediate")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def destroy(self) -> None:
        with contextlib.suppress(PgUnavailable):
            self.stop(mode="immediate")
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        atexit.unregister(self.destroy)


_SESSION_DB = re.compile(r"taskmill_test_(\d+)_\w+")


class PgServer:
    """The PostgreSQL the test session uses: an admin URL (a user allowed to create
    databases) and, when the session started it, the cluster it owns."""

    def __init__(self, admin_url: str, owned: PgCluster | None = None) -> None:
        self.admin_url = admin_url
        self.owned = owned

    def describe(self) -> str:
        if self.owned is not None:
            return f"throwaway cluster {self.admin_url} ({self.owned.bin_dir}, in {self.owned.dir})"
        return f"server at {self.admin_url}"

    @classmethod
    def locate(cls) -> PgServer:
        """`TASKMILL_TEST_DATABASE_URL` if set (it must work); else the probe URL
        (`TASKMILL_TEST_PG_PROBE_URL`, default this machine's shared server) if it answers
        within 2 s; else a throwaway cluster. Raises PgUnavailable saying what failed."""
        explicit = os.environ.get(DATABASE_URL_ENV)
        if explicit:
            why = probe(explicit)
            if why:
                raise PgUnavailable(f"{DATABASE_URL_ENV}={explicit} does not answer: {why}")
            return cls(explicit)
        probe_url = os.environ.get(PROBE_URL_ENV, DEFAULT_PROBE_URL)
        probe_error = probe(probe_url)
        if probe_error is None:
            return cls(probe_url)
        try:
            cluster = PgCluster()
            url = cluster.start()
        except PgUnavailable as exc:
            raise PgUnavailable(
                f"{probe_url} does not answer ({probe_error}) and no throwaway cluster: {exc}"
            ) from None
        return cls(url, owned=cluster)

    def url_for(self, dbname: str) -> str:
        return with_database(self.admin_url, dbname)

    def execute(self, statement: sql.Composed) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(statement)

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """A new database (an empty one, or a copy of `template`); returns its URL."""
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        self.execute(statement)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        self.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    def drop_orphans(self) -> None:
        """Drop session databases left by test runs that died on this machine."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            names = [r[0] for r in conn.execute("SELECT datname FROM pg_database")]
        for name in names:
            m = _SESSION_DB.fullmatch(name)
            if m and not pid_alive(int(m.group(1))):
                with contextlib.suppress(psycopg.Error):
                    self.drop_database(name)

    def close(self) -> None:
        if self.owned is not None:
            self.owned.destroy()


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (ours or not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
