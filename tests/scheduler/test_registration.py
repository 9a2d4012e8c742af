"""Declaring periodic tasks: @app.periodic, app.schedule, TASKMILL_SCHEDULES, include.
Mistakes surface at registration, with a precise message, not at the first tick."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskmill import Taskmill, UnknownTaskError, ValidationError
from taskmill.config import Settings
from taskmill.errors import ConfigError
from taskmill.scheduler.periodic import Schedule, add_env_schedules


@pytest.fixture
def app(tmp_path: Path) -> Taskmill:
    """An app that never connects: registration needs no database."""
    return Taskmill(settings=Settings.from_env({}, database_url=f"sqlite:///{tmp_path}/x.db"))


def test_periodic_registers_a_task_and_its_schedule(app: Taskmill) -> None:
    @app.periodic("*/5 * * * *", tz="Europe/Paris", queue="low", max_retries=0)
    def cleanup(days: int = 7) -> int:
        return days

    assert app.tasks["cleanup"] is cleanup
    assert cleanup.options.queue == "low" and cleanup.options.max_retries == 0
    assert cleanup(3) == 3  # still a plain function too
    assert app.schedules == {
        "cleanup": Schedule("cleanup", "cleanup", "*/5 * * * *", tz="Europe/Paris")
    }


def test_periodic_takes_arguments_for_the_jobs_and_a_name(app: Taskmill) -> None:
    @app.periodic("0 * * * *", name="images.cleanup", catch_up="all", kwargs={"days": 1})
    def cleanup(days: int) -> int:
        return days

    schedule = app.schedules["images.cleanup"]
    assert (schedule.task, schedule.kwargs, schedule.catch_up) == ("images.cleanup", {"days": 1},
                                                                   "all")  # fmt: skip


def test_a_bad_periodic_registers_nothing(app: Taskmill) -> None:
    with pytest.raises(ValidationError, match="schedule 'report': cron '0 0 \\* \\*' has 4"):

        @app.periodic("0 0 * *")
        def report() -> None: ...

    with pytest.raises(ValidationError, match="bad arguments for task 'report'"):

        @app.periodic("0 0 * * *", args=[1])
        def report() -> None: ...

    assert app.tasks == {} and app.schedules == {}


def test_schedule_adds_schedules_to_an_existing_task(app: Taskmill) -> None:
    @app.task
    def send_digest(kind: str) -> str:
        return kind

    app.schedule("send_digest", "0 8 * * 1-5", name="digest.weekdays", args=["short"])
    app.schedule(send_digest, "0 10 * * 6", name="digest.saturday", args=["long"])

    assert {n: s.args for n, s in app.schedules.items()} == {
        "digest.weekdays": ("short",), "digest.saturday": ("long",),
    }  # fmt: skip


def test_schedule_refuses_unknown_tasks_duplicate_names_and_non_json_arguments(
    app: Taskmill,
) -> None:
    @app.task
    def echo(value: object = None) -> object:
        return value

    with pytest.raises(UnknownTaskError, match="unknown task 'nope'"):
        app.schedule("nope", "* * * * *")
    app.schedule("echo", "* * * * *")
    with pytest.raises(ValidationError, match="a schedule named 'echo' is already registered"):
        app.schedule("echo", "0 * * * *")
    with pytest.raises(ValidationError, match="schedule 'e2': args must be JSON"):
        app.schedule("echo", "* * * * *", name="e2", args=[{1, 2}])


def test_include_brings_the_other_apps_schedules(app: Taskmill, tmp_path: Path) -> None:
    builtin = Taskmill(settings=Settings.from_env({}, database_url=f"sqlite:///{tmp_path}/b.db"))

    @builtin.periodic("0 * * * *")
    def hourly_cleanup() -> None: ...

    app.include(builtin)
    assert "hourly_cleanup" in app.tasks
    assert app.schedules["hourly_cleanup"] == builtin.schedules["hourly_cleanup"]


# -- TASKMILL_SCHEDULES -------------------------------------------------------------------


def env_app(app: Taskmill) -> Taskmill:
    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    return app


def test_schedules_from_the_environment(app: Taskmill) -> None:
    env = {
        "TASKMILL_SCHEDULES": '[{"task": "add", "cron": "*/2 * * * * *", "args": [1, 2]},'
        ' {"task": "add", "cron": "0 9 * * *", "name": "add.morning", "tz": "Asia/Tokyo",'
        ' "kwargs": {"a": 1, "b": 1}, "catch_up": "all"}]'
    }
    added = add_env_schedules(env_app(app), env)

    assert added == [
        Schedule("add", "add", "*/2 * * * * *", args=(1, 2)),
        Schedule("add.morning", "add", "0 9 * * *", tz="Asia/Tokyo", catch_up="all",
                 kwargs={"a": 1, "b": 1}),
    ]  # fmt: skip
    assert add_env_schedules(app, env) == []  # read again (e.g. a restart in-process): no-op
    assert list(app.schedules) == ["add", "add.morning"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "TASKMILL_SCHEDULES: not JSON"),
        ('{"task": "add"}', "TASKMILL_SCHEDULES: must be a JSON list of schedules"),
        ('[{"task": "add"}]', "TASKMILL_SCHEDULES: schedule 0: needs both task and cron"),
        ('[{"task": "add", "cron": "* * * * *", "every": 1}]', "unknown keys ['every']"),
        ('[{"task": "nope", "cron": "* * * * *"}]', "schedule 0: unknown task 'nope'"),
        ('[{"task": "add", "cron": "* * * * *", "args": [1]}]', "schedule 0: schedule 'add': "
         "bad arguments for task 'add'"),
        ('[{"task": "add", "cron": "0 0 * * *", "args": [1, 1], "tz": "Nowhere"}]',
         "schedule 0: schedule 'add': tz 'Nowhere' is not a known IANA time zone"),
    ],
)  # fmt: skip
def test_bad_environment_schedules_are_refused_precisely(
    app: Taskmill, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        add_env_schedules(env_app(app), {"TASKMILL_SCHEDULES": text})
    assert message in str(caught.value)
