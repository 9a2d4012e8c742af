"""schema.sql (fresh installs) and migrations/ (upgrades) must describe the same schema, for
each dialect: a database built either way has the same tables, columns, types, defaults,
constraints, indexes, triggers and functions. And migrating is idempotent."""

from __future__ import annotations

import itertools
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from taskmill.store.migrate import latest_version
from taskmill.store.queries import migrations, queries
from taskmill.store.sqlite import path_from_url
from tests.helpers import make_app

Snapshot = dict[str, Any]


def normalize_sql(text: str | None) -> str | None:
    if text is None:
        return None
    text = re.sub(r"--[^\n]*", " ", text)
    return " ".join(text.split()).lower().replace("( ", "(").replace(" )", ")")


def sqlite_checks(table_sql: str) -> list[str]:
    """The CHECK (...) expressions of a CREATE TABLE, parentheses balanced."""
    found = []
    for match in re.finditer(r"\bcheck\s*\(", table_sql, flags=re.IGNORECASE):
        depth, start = 1, match.end()
        for i in range(start, len(table_sql)):
            depth += {"(": 1, ")": -1}.get(table_sql[i], 0)
            if depth == 0:
                found.append(normalize_sql(table_sql[start:i]) or "")
                break
    return sorted(found)


def sqlite_snapshot(url: str) -> Snapshot:
    conn = sqlite3.connect(path_from_url(url))
    try:
        snap: Snapshot = {}
        objects = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master"
            " WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
        ).fetchall()
        for kind, name, table, text in objects:
            if kind == "table":
                snap[f"table {name}"] = {
                    "columns": {
                        r[1]: (
                            r[2].upper(),
                            r[3],
                            r[4],
                            r[5],
                            r[6],
                        )  # type notnull default pk hidden
                        for r in conn.execute(f"PRAGMA table_xinfo({name})")
                    },
                    "checks": sqlite_checks(text),
                    "foreign_keys": conn.execute(f"PRAGMA foreign_key_list({name})").fetchall(),
                }
            elif kind == "index":
                unique = {
                    r[1]: (r[2], r[3], r[4]) for r in conn.execute(f"PRAGMA index_list({table})")
                }
                where = re.search(r"\bwhere\b(.*)$", text or "", flags=re.IGNORECASE | re.DOTALL)
                snap[f"index {name}"] = {
                    "table": table,
                    "keys": [r[2:6] for r in conn.execute(f"PRAGMA index_xinfo({name})") if r[5]],
                    "unique_origin_partial": unique[name],
                    "where": normalize_sql(where.group(1)) if where else None,
                }
            else:
                snap[f"{kind} {name}"] = normalize_sql(text)
        return snap
    finally:
        conn.close()


PG_CATALOG = {
    "relations": """
        SELECT relname, relkind FROM pg_class
        WHERE relnamespace = current_schema()::regnamespace ORDER BY relname""",
    "columns": """
        SELECT table_name, column_name, data_type, udt_name, is_nullable, column_default,
               character_maximum_length, numeric_precision, is_identity, is_generated
        FROM information_schema.columns WHERE table_schema = current_schema()
        ORDER BY table_name, column_name""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = current_schema() ORDER BY indexname""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = current_schema()::regnamespace
        ORDER BY conrelid::regclass::text, conname""",
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger
        WHERE NOT tgisinternal ORDER BY tgname""",
    "functions": """
        SELECT proname, pg_get_function_identity_arguments(oid), pg_get_functiondef(oid)
        FROM pg_proc WHERE pronamespace = current_schema()::regnamespace ORDER BY proname""",
}


def pg_snapshot(url: str) -> Snapshot:
    with psycopg.connect(url, autocommit=True) as conn:
        return {name: conn.execute(query).fetchall() for name, query in PG_CATALOG.items()}


def snapshot(url: str) -> Snapshot:
    return sqlite_snapshot(url) if url.startswith("sqlite:") else pg_snapshot(url)


def run_raw(url: str, script: str, params: dict[str, Any] | None = None) -> None:
    """Run SQL on a plain connection, not through the store: a whole script, or one
    statement with `params`."""
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(path_from_url(url), isolation_level=None)
        try:
            if params is None:
                conn.executescript(script)
            else:
                conn.execute(script, params)
        finally:
            conn.close()
    else:
        with psycopg.connect(url, autocommit=True) as pg:
            pg.execute(script.encode() if params is None else script, params)


def build_from_migrations(url: str, dialect: str, up_to: int) -> None:
    """Apply migrations 1..up_to in order, recording each, as successive releases would."""
    q = queries(dialect)
    run_raw(url, q["schema_version_table"])
    for version, script in migrations(dialect):
        if version <= up_to:
            run_raw(url, script)
            run_raw(url, q["record_schema_version"], {"version": version, "now": 0.0})


@pytest.fixture
def empty_database(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[], str]]:
    """Factory of new, empty databases of the test's backend."""
    numbers = itertools.count(1)

    def make() -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path}/db{next(numbers)}.sqlite"
        pg_database: Callable[..., str] = request.getfixturevalue("pg_database")
        return pg_database(migrated=False)

    yield make


def migrate(url: str) -> int:
    app = make_app(url)
    try:
        return app.migrate()
    finally:
        app.close()


def schema_version(url: str) -> int:
    app = make_app(url)
    try:
        return app.store.schema_version()
    finally:
        app.close()


def test_migration_files_are_numbered_from_1_without_gaps_in_both_dialects() -> None:
    for dialect in ("sqlite", "postgres"):
        versions = [v for v, _ in migrations(dialect)]
        assert versions == list(range(1, len(versions) + 1)), dialect
    assert latest_version("sqlite") == latest_version("postgres")


def test_schema_sql_and_migrations_build_the_same_schema(
    backend: str, empty_database: Callable[[], str]
) -> None:
    fresh, upgraded = empty_database(), empty_database()
    assert migrate(fresh) == latest_version(backend)
    build_from_migrations(upgraded, backend, latest_version(backend))

    assert snapshot(upgraded) == snapshot(fresh)
    assert schema_version(upgraded) == schema_version(fresh) == latest_version(backend)


@pytest.mark.parametrize("start", range(1, latest_version("sqlite") + 1))
def test_migrate_upgrades_an_older_database_to_the_fresh_schema(
    backend: str, empty_database: Callable[[], str], start: int
) -> None:
    fresh, old = empty_database(), empty_database()
    migrate(fresh)
    build_from_migrations(old, backend, start)
    assert schema_version(old) == start

    assert migrate(old) == latest_version(backend)
    assert schema_version(old) == latest_version(backend)
    assert snapshot(old) == snapshot(fresh)


def test_migrate_twice_is_a_no_op(backend: str, empty_database: Callable[[], str]) -> None:
    url = empty_database()
    assert schema_version(url) == 0
    assert migrate(url) == latest_version(backend)
    app = make_app(url)
    try:
        job = app.enqueue("add", [1, 2])
        before = snapshot(url)
        assert app.migrate() == latest_version(backend)
        assert snapshot(url) == before
        assert app.get(job.id) == job
        assert app.store.schema_version() == latest_version(backend)
    finally:
        app.close()


def test_the_comparison_sees_schema_differences(
    backend: str, empty_database: Callable[[], str]
) -> None:
    """Guards the guard: a snapshot that ignored changes would make the tests above vacuous."""
    url = empty_database()
    migrate(url)
    base = snapshot(url)
    run_raw(url, "CREATE INDEX extra_idx ON taskmill_jobs (task);")
    assert snapshot(url) != base
    run_raw(url, "DROP INDEX extra_idx;")
    assert snapshot(url) == base
    run_raw(url, "ALTER TABLE taskmill_workers ADD COLUMN note TEXT DEFAULT 'x';")
    assert snapshot(url) != base
