"""Fixtures every suite shares: a database of each backend, and apps on it.

PostgreSQL, in this order: TASKMILL_TEST_DATABASE_URL if set; else the machine's server at
TASKMILL_TEST_PG_PROBE_URL (default postgresql://postgres@127.0.0.1:5432/test) if it answers
within 2 s; else a throwaway cluster from /usr/lib/postgresql/*/bin, stopped at the end. When
none works, PostgreSQL tests fail under CI=true and are skipped (with the reason) elsewhere.

Isolation: the session creates `taskmill_test_<pid>_tpl`, migrated once, and copies it
(CREATE DATABASE ... TEMPLATE) into the session's working database. Before each test every
taskmill table of the working database is emptied. Measured on this machine: a per-test
template copy costs 60-120 ms plus a DROP of 25-700 ms (it checkpoints); TRUNCATE of the
tables 25-100 ms (new files, fsync); DELETE of the few rows a test leaves ~6 ms on a kept
connection. So: DELETE. Tests that need a database of their own (migrations, outages) ask
`pg_database` for a copy of the template or an empty one. Everything created is dropped at
the end; databases left by a crashed run are dropped by the next one.

Parametrization: a test that uses `backend` (directly or through `database_url`, `app`,
`store`, `raw_db`) runs once per backend, or on PostgreSQL only with
@pytest.mark.postgres_only.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from taskmill import Taskmill
from taskmill.store import Store
from tests.helpers import RawDb, make_app, unavailable
from tests.pg import PgServer, PgUnavailable
from tests.s3 import S3_USED

BACKENDS = ("sqlite", "postgres")
PG_USED = pytest.StashKey[str]()
EMPTYING_LOCK_TIMEOUT = "2s"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    explicit = any(
        "backend" in str(mark.args[0]) for mark in metafunc.definition.iter_markers("parametrize")
    )
    if explicit:
        return
    only_pg = metafunc.definition.get_closest_marker("postgres_only") is not None
    metafunc.parametrize("backend", ["postgres"] if only_pg else list(BACKENDS))


# -- PostgreSQL -----------------------------------------------------------------------------


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """Which real servers the run used (or why none), one line each."""
    for key, name in ((S3_USED, "S3 server"), (PG_USED, "PostgreSQL")):
        used = config.stash.get(key, None)
        if used:
            terminalreporter.write_line(f"{name} used by the tests: {used}")


@pytest.fixture(scope="session")
def pg_server(pytestconfig: pytest.Config) -> Iterator[PgServer]:
    """The session's PostgreSQL server (shared: never stop or restart it in a test; start
    a `tests.pg.PgCluster` of your own for that)."""
    try:
        server = PgServer.locate()
    except PgUnavailable as exc:
        pytestconfig.stash[PG_USED] = f"none ({exc})"
        unavailable("PostgreSQL", str(exc))
    pytestconfig.stash[PG_USED] = server.describe()
    if urlsplit(server.admin_url).hostname in {"127.0.0.1", "localhost", None}:
        server.drop_orphans()
    yield server
    server.close()


@dataclass
class PgDatabases:
    """The session's databases on `server`: a migrated template, and a working copy."""

    server: PgServer
    prefix: str
    template: str = ""
    work_url: str = ""
    tables: list[str] = field(default_factory=list)
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _conn: psycopg.Connection[tuple[object, ...]] | None = None

    def setup(self) -> None:
        self.template = f"{self.prefix}_tpl"
        self.server.drop_database(self.template)
        app = make_app(self.server.create_database(self.template))
        try:
            app.migrate()
        finally:
            app.close()
        self.work_url = self.copy_of_template("work")
        with psycopg.connect(self.work_url, autocommit=True) as conn:
            self.tables = [
                r[0]
                for r in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                    " AND tablename <> 'taskmill_schema' ORDER BY tablename"
                )
            ]

    def copy_of_template(self, suffix: str | None = None) -> str:
        name = f"{self.prefix}_{suffix or next(self._numbers)}"
        self.server.drop_database(name)
        return self.server.create_database(name, template=self.template)

    def empty(self) -> str:
        name = f"{self.prefix}_{next(self._numbers)}"
        self.server.drop_database(name)
        return self.server.create_database(name)

    def _work_conn(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.work_url, autocommit=True)
            self._conn.execute(
                sql.SQL("SET lock_timeout = {}").format(sql.Literal(EMPTYING_LOCK_TIMEOUT))
            )
        return self._conn

    def empty_work(self) -> None:
        """Delete every row of every taskmill table of the working database. A connection
        that an earlier test leaked while holding row locks is terminated, not waited for."""
        conn = self._work_conn()
        statements = [sql.SQL("DELETE FROM {}").format(sql.Identifier(t)) for t in self.tables]
        try:
            for statement in statements:
                conn.execute(statement)
        except psycopg.errors.LockNotAvailable:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            for statement in statements:
                conn.execute(statement)

    def name_of(self, url: str) -> str:
        return urlsplit(url).path.lstrip("/")

    def drop_all(self) -> None:
        if self._conn is not None:
            self._conn.close()
        with psycopg.connect(self.server.admin_url, autocommit=True) as conn:
            names = [
                r[0]
                for r in conn.execute(
                    "SELECT datname FROM pg_database WHERE datname LIKE %s",
                    (self.prefix.replace("_", r"\_") + r"\_%",),
                )
            ]
        for name in names:
            self.server.drop_database(name)


@pytest.fixture(scope="session")
def pg_databases(pg_server: PgServer) -> Iterator[PgDatabases]:
    dbs = PgDatabases(pg_server, prefix=f"taskmill_test_{os.getpid()}")
    try:
        dbs.setup()
        yield dbs
    finally:
        dbs.drop_all()


@pytest.fixture
def pg_url(pg_databases: PgDatabases) -> str:
    """URL of the session's migrated PostgreSQL database, emptied for this test."""
    pg_databases.empty_work()
    return pg_databases.work_url


@pytest.fixture
def pg_database(pg_databases: PgDatabases) -> Iterator[Callable[..., str]]:
    """Factory of PostgreSQL databases for this test alone: `pg_database()` is a migrated
    copy of the template, `pg_database(migrated=False)` an empty database. Dropped after
    the test (connections still open are terminated)."""
    created: list[str] = []

    def make(*, migrated: bool = True) -> str:
        url = pg_databases.copy_of_template() if migrated else pg_databases.empty()
        created.append(url)
        return url

    yield make
    for url in created:
        pg_databases.server.drop_database(pg_databases.name_of(url))


# -- both backends --------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """sqlite:////abs/path/taskmill.db in this test's tmp_path (not created yet)."""
    return f"sqlite:///{tmp_path}/taskmill.db"


@pytest.fixture
def database_url(request: pytest.FixtureRequest, backend: str) -> str:
    """A migrated, empty database of the test's backend."""
    if backend == "sqlite":
        url: str = request.getfixturevalue("sqlite_url")
        app = make_app(url)
        try:
            app.migrate()
        finally:
            app.close()
        return url
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def app_factory(database_url: str) -> Iterator[Callable[[], Taskmill]]:
    """More apps on the test's database (each with its own connections); closed after."""
    apps: list[Taskmill] = []

    def make() -> Taskmill:
        apps.append(make_app(database_url))
        return apps[-1]

    yield make
    for app in apps:
        app.close()


@pytest.fixture
def app(app_factory: Callable[[], Taskmill]) -> Taskmill:
    """A migrated app on an empty database of the test's backend, with the test tasks of
    tests/tasks_for_tests.py registered."""
    return app_factory()


@pytest.fixture
def store(app: Taskmill) -> Store:
    return app.store


@pytest.fixture
def raw_db(database_url: str) -> Iterator[RawDb]:
    """Direct SQL on the test's database (e.g. move a lease into the past)."""
    db = RawDb(database_url)
    yield db
    db.close()
