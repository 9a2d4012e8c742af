"""`taskmill schedules`: every periodic task with its last and next run, and a warning when
ticks are overdue (no scheduler running)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from taskmill import Taskmill
from taskmill.cli import cli

APP = "tests.scheduler.periodic_app:app"


def schedules(database_url: str, *extra: str) -> str:
    result = CliRunner().invoke(
        cli, ["schedules", "-A", APP, "--database-url", database_url, *extra],
        env={"TASKMILL_SCHEDULES": ""}, catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return result.output


def listed(database_url: str) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in json.loads(schedules(database_url, "--json"))}


def test_schedules_lists_every_periodic_task_before_any_ran(database_url: str) -> None:
    before = datetime.now(UTC)
    rows = listed(database_url)

    assert list(rows) == ["add.weekdays", "heartbeat"]
    beat = rows["heartbeat"]
    assert (beat["task"], beat["cron"], beat["tz"], beat["catch_up"]) == (
        "heartbeat", "*/10 * * * * *", "UTC", "latest",
    )  # fmt: skip
    assert (beat["last_tick_at"], beat["last_job_id"], beat["overdue"]) == (None, None, False)
    next_tick = datetime.fromisoformat(beat["next_tick_at"])
    assert before < next_tick <= before + timedelta(seconds=10)
    assert next_tick.second % 10 == 0
    weekday = datetime.fromisoformat(rows["add.weekdays"]["next_tick_at"])
    assert weekday.weekday() < 5 and weekday.minute == 0 and weekday.hour in (7, 8)  # 9:00 Paris


def test_schedules_shows_the_last_run_and_warns_when_ticks_are_overdue(
    database_url: str, app: Taskmill
) -> None:
    now = datetime.now(UTC)
    last_tick = now.replace(second=now.second // 10 * 10, microsecond=0) - timedelta(minutes=5)
    job = app.enqueue("add", [1, 2])
    app.store.start_schedule(name="heartbeat", task="heartbeat", cron="*/10 * * * * *",
                             tz="UTC", since=last_tick - timedelta(minutes=1))  # fmt: skip
    app.store.advance_schedule(name="heartbeat", tick_at=last_tick, job_id=job.id)
    app.store.start_schedule(name="retired", task="old", cron="@daily", tz="UTC",
                             since=last_tick)  # fmt: skip

    rows = listed(database_url)

    beat = rows["heartbeat"]
    assert datetime.fromisoformat(beat["last_tick_at"]) == last_tick
    assert (beat["last_job_id"], beat["last_job_status"]) == (job.id, "pending")
    assert datetime.fromisoformat(beat["next_tick_at"]) == last_tick + timedelta(seconds=10)
    assert beat["overdue"] is True
    assert (rows["retired"]["registered"], rows["retired"]["next_tick_at"]) == (False, None)

    table = schedules(database_url)  # for people: the same, words wrapped to the terminal
    for text in (f"{last_tick:%Y-%m-%d}", f"{last_tick:%H:%M:%S}", "pending", "overdue",
                 "never", "retired", "not in this app"):  # fmt: skip
        assert text in table


def test_schedules_without_a_migrated_database_is_one_line_error(tmp_path: Any) -> None:
    result = CliRunner().invoke(
        cli, ["schedules", "-A", APP, "--database-url", f"sqlite:///{tmp_path}/empty.db"],
        env={"TASKMILL_SCHEDULES": ""},
    )  # fmt: skip
    assert result.exit_code == 1
    assert "run `taskmill migrate` first" in result.output
    assert "Traceback" not in result.output


@pytest.fixture(autouse=True)
def _close_the_module_app() -> Any:
    yield
    from tests.scheduler.periodic_app import app

    app.close()
