"""Versioned schema upgrades, shared by both backends."""

from __future__ import annotations

from collections.abc import Callable

from taskmill.store.queries import migrations, schema_sql


def latest_version(dialect: str) -> int:
    return max(v for v, _ in migrations(dialect))


def apply_migrations(
    dialect: str,
    *,
    current: int,
    run_script: Callable[[str], object],
    record: Callable[[int], object],
) -> int:
    """Bring a database at version `current` to the newest version, inside the caller's
    transaction and lock. An empty database gets schema.sql in one step; an older one gets
    each numbered migration above its version, in order. Returns the version reached."""
    latest = latest_version(dialect)
    if current == 0:
        run_script(schema_sql(dialect))
        record(latest)
        return latest
    for version, sql in migrations(dialect):
        if version > current:
            run_script(sql)
            record(version)
    return max(current, latest)
