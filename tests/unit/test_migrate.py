"""The version bookkeeping of migrate.apply_migrations, with fake scripts."""

from __future__ import annotations

import pytest

from taskmill.store import migrate

FAKE_MIGRATIONS = [(1, "m1"), (2, "m2"), (3, "m3")]


@pytest.fixture(autouse=True)
def fake_sql(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(migrate, "migrations", lambda dialect: FAKE_MIGRATIONS)
    monkeypatch.setattr(migrate, "schema_sql", lambda dialect: "schema")


def run(current: int) -> tuple[int, list[str], list[int]]:
    ran: list[str] = []
    recorded: list[int] = []
    reached = migrate.apply_migrations(
        "sqlite", current=current, run_script=ran.append, record=recorded.append
    )
    return reached, ran, recorded


def test_empty_database_gets_the_schema_in_one_step() -> None:
    assert run(0) == (3, ["schema"], [3])


def test_older_database_gets_each_newer_migration_in_order() -> None:
    assert run(1) == (3, ["m2", "m3"], [2, 3])


def test_current_database_is_left_alone() -> None:
    assert run(3) == (3, [], [])


def test_database_newer_than_this_code_is_left_alone() -> None:
    assert run(5) == (5, [], [])


def test_latest_version_is_the_highest_migration() -> None:
    assert migrate.latest_version("postgres") == 3
