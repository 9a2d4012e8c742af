"""Schedules without a database: what a cron expression means, in which time zone, and
which ticks are due after a pause."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from taskmill.errors import ValidationError
from taskmill.scheduler.periodic import LATE_GRACE_S, MAX_CATCH_UP_TICKS, Schedule


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def schedule(cron: str, **options: object) -> Schedule:
    return Schedule("job", "add", cron, **options)  # type: ignore[arg-type]


def test_five_fields_are_minute_hour_day_of_month_month_day_of_week() -> None:
    mondays_0930 = schedule("30 9 * * 1")
    assert mondays_0930.next_tick(at(2024, 1, 7, 12, 0)) == at(2024, 1, 8, 9, 30)  # a Sunday
    assert mondays_0930.next_tick(at(2024, 1, 8, 9, 30)) == at(2024, 1, 15, 9, 30)


def test_six_fields_put_seconds_first() -> None:
    assert schedule("15 30 9 * * *").next_tick(at(2024, 1, 1)) == at(2024, 1, 1, 9, 30, 15)
    every_10_s = schedule("*/10 * * * * *")
    assert every_10_s.ticks_between(at(2024, 1, 1, 10, 0, 1), at(2024, 1, 1, 10, 0, 30)) == [
        at(2024, 1, 1, 10, 0, 10), at(2024, 1, 1, 10, 0, 20), at(2024, 1, 1, 10, 0, 30),
    ]  # fmt: skip


def test_aliases_are_accepted() -> None:
    assert schedule("@hourly").next_tick(at(2024, 1, 1, 10, 5)) == at(2024, 1, 1, 11, 0)


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("* * * *", "has 4 fields; give 5 fields (minute hour day-of-month month"),
        ("0 0 * * * * 2030", "has 7 fields; give 5 fields"),
        ("61 * * * *", "out of range"),
        ("* * * * mon-funday", "'* * * * mon-funday'"),
        ("R * * * *", "random (R) fields are not supported"),
        ("", "cron must be a non-empty string"),
    ],
)
def test_a_bad_expression_is_refused_naming_the_schedule_and_the_problem(
    cron: str, message: str
) -> None:
    with pytest.raises(ValidationError, match="schedule 'job': ") as caught:
        schedule(cron)
    assert message in str(caught.value)


def test_hashed_fields_spread_by_schedule_name_identically_on_every_scheduler() -> None:
    """H picks a minute from the name: two processes building the same schedule agree."""
    first, again = Schedule("report", "add", "H * * * *"), Schedule("report", "add", "H * * * *")
    start = at(2024, 1, 1)
    assert first.next_tick(start) == again.next_tick(start)
    assert first.next_tick(first.next_tick(start)) - first.next_tick(start) == timedelta(hours=1)


def test_time_zones_are_explicit_and_follow_daylight_saving() -> None:
    paris_9am = schedule("0 9 * * *", tz="Europe/Paris")
    assert paris_9am.next_tick(at(2024, 1, 10)) == at(2024, 1, 10, 8, 0)  # CET, UTC+1
    assert paris_9am.next_tick(at(2024, 7, 10)) == at(2024, 7, 10, 7, 0)  # CEST, UTC+2
    assert schedule("0 9 * * *").next_tick(at(2024, 7, 10)) == at(2024, 7, 10, 9, 0)  # UTC


def test_a_daily_job_runs_once_on_the_nights_clocks_change() -> None:
    daily_0230 = schedule("30 2 * * *", tz="Europe/Paris")
    spring = daily_0230.ticks_between(at(2024, 3, 30, 12), at(2024, 3, 31, 12))
    assert spring == [at(2024, 3, 31, 1, 0)]  # 02:30 does not exist: runs at the jump, 03:00
    autumn = daily_0230.ticks_between(at(2024, 10, 26, 12), at(2024, 10, 27, 12))
    assert autumn == [at(2024, 10, 27, 0, 30)]  # 02:30 happens twice: runs the first time


def test_a_frequent_job_keeps_running_through_the_repeated_hour() -> None:
    every_20_min = schedule("*/20 * * * *", tz="Europe/Paris")
    ticks = every_20_min.ticks_between(at(2024, 10, 26, 23, 50), at(2024, 10, 27, 2, 0))
    assert [b - a for a, b in itertools.pairwise(ticks)] == [timedelta(minutes=20)] * 6


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tz": "Mars/Olympus"}, "tz 'Mars/Olympus' is not a known IANA time zone"),
        ({"catch_up": "some"}, "catch_up must be one of ['latest', 'all']"),
        ({"args": "abc"}, "args must be a list"),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match="schedule 'job': ") as caught:
        schedule("* * * * *", **options)
    assert message in str(caught.value)


def test_ticks_are_keyed_by_schedule_name_and_utc_time() -> None:
    paris = schedule("0 9 * * *", tz="Europe/Paris")
    tick = paris.next_tick(at(2024, 1, 10))
    assert paris.idempotency_key(tick) == "periodic:job:2024-01-10T08:00:00+00:00"


# -- which ticks are due ----------------------------------------------------------------

T0 = at(2024, 5, 1, 12, 0, 0)


def test_on_time_exactly_the_ticks_since_the_last_one_are_due() -> None:
    every_second = schedule("* * * * * *")
    assert every_second.due_ticks(T0, T0 + timedelta(seconds=0.5)) == []
    assert every_second.due_ticks(T0, T0 + timedelta(seconds=1)) == [T0 + timedelta(seconds=1)]


def test_ticks_a_little_late_are_all_run_not_collapsed() -> None:
    """A scheduler held up for a few seconds (slow database, paused process) runs every
    tick it is late for: only downtime longer than LATE_GRACE_S counts as missed."""
    every_second = schedule("* * * * * *")
    due = every_second.due_ticks(T0, T0 + timedelta(seconds=3.5))
    assert due == [T0 + timedelta(seconds=s) for s in (1, 2, 3)]


def test_after_downtime_latest_runs_the_missed_ticks_once() -> None:
    every_minute = schedule("* * * * *")
    due = every_minute.due_ticks(T0, T0 + timedelta(minutes=5, seconds=30))
    assert due == [T0 + timedelta(minutes=5)]


def test_after_downtime_latest_runs_recent_ticks_but_none_of_the_older_ones() -> None:
    every_second = schedule("* * * * * *")
    now = T0 + timedelta(minutes=5)
    due = every_second.due_ticks(T0, now)
    assert due == [now - timedelta(seconds=s) for s in range(int(LATE_GRACE_S) - 1, -1, -1)]


def test_after_downtime_all_runs_each_missed_tick_oldest_first() -> None:
    every_minute = schedule("* * * * *", catch_up="all")
    due = every_minute.due_ticks(T0, T0 + timedelta(minutes=5, seconds=30))
    assert due == [T0 + timedelta(minutes=m) for m in range(1, 6)]


def test_catching_up_all_is_bounded_to_the_latest_ticks() -> None:
    every_second = schedule("* * * * * *", catch_up="all")
    now = T0 + timedelta(days=365)
    due = every_second.due_ticks(T0, now)
    assert len(due) == MAX_CATCH_UP_TICKS
    assert due[-1] == now
    assert due == sorted(set(due))
