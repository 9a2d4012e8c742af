"""The scheduler against a real store (both backends), with an injected clock: one job per
tick however many schedulers run, no back-fill for a new schedule, missed ticks after
downtime, and progress that survives crashes and outages."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from taskmill import Job, JobStatus, Taskmill
from taskmill.errors import StoreUnavailable
from taskmill.scheduler import Scheduler, SchedulerRunner

Apps = Callable[[], Taskmill]


def this_minute() -> datetime:
    """The start of the current minute: injected times stay near the real clock (the
    tick's job is due at the tick), but land on known tick boundaries."""
    return datetime.now(UTC).replace(second=0, microsecond=0)


def s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def keys(jobs: list[Job]) -> list[str]:
    return sorted(job.idempotency_key or "" for job in jobs)


def key(name: str, tick: datetime) -> str:
    return f"periodic:{name}:{tick.isoformat(timespec='seconds')}"


def stored_jobs(app: Taskmill) -> list[Job]:
    return app.list(limit=1000)


def test_a_new_schedule_starts_from_now_then_fires_each_tick(app: Taskmill) -> None:
    app.schedule("add", "* * * * *", name="adder", args=[1, 2])
    scheduler, t0 = Scheduler(app), this_minute() + s(30)

    assert scheduler.tick(t0) == []  # the tick at t0 - 30 s is not back-filled
    assert scheduler.tick(t0 + s(29)) == []
    [job] = scheduler.tick(t0 + s(30.2))

    tick = t0 + s(30)
    assert job.idempotency_key == key("adder", tick)
    stored = app.get(job.id)
    assert (stored.task, stored.args, stored.status) == ("add", [1, 2], JobStatus.PENDING)
    assert stored.scheduled_at == tick  # due at its tick, ordered with other jobs by it
    [state] = app.store.schedule_states()
    assert (state.name, state.last_tick_at, state.last_job_id) == ("adder", tick, job.id)
    assert state.last_job_status is JobStatus.PENDING


def test_each_tick_makes_exactly_one_job_however_many_schedulers_run(apps: Apps) -> None:
    schedulers = []
    for _ in range(3):
        app = apps()
        app.schedule("add", "* * * * * *", args=[1, 1])
        schedulers.append(Scheduler(app))
    t0 = this_minute()
    schedulers[0].tick(t0)

    created: list[Job] = []
    for second in range(1, 11):
        # All three race on every tick, in a different order each time, a few ms apart;
        # the third also lags a whole second behind every other tick, as a stalled one would.
        for i, scheduler in enumerate(schedulers[second % 3 :] + schedulers[: second % 3]):
            lag = 1.0 if scheduler is schedulers[2] and second % 2 else 0.0
            created += scheduler.tick(t0 + s(second - lag + 0.001 * i))

    assert keys(created) == [key("add", t0 + s(n)) for n in range(1, 11)]
    assert keys(stored_jobs(schedulers[0].app)) == keys(created)


def test_a_scheduler_stopped_for_five_minutes_runs_the_missed_tick_once(app: Taskmill) -> None:
    app.schedule("add", "* * * * *", args=[1, 1])
    scheduler, t0 = Scheduler(app), this_minute()
    scheduler.tick(t0 - s(1))
    [first] = scheduler.tick(t0 + s(0.5))

    # Down from t0 + 0.5 s to 5 minutes later: the ticks t0 + 1 min ... t0 + 5 min were missed.
    [caught_up] = scheduler.tick(t0 + timedelta(minutes=5, seconds=20))

    assert caught_up.idempotency_key == key("add", t0 + timedelta(minutes=5))
    assert keys(stored_jobs(app)) == keys([first, caught_up])
    assert scheduler.tick(t0 + timedelta(minutes=5, seconds=40)) == []


def test_catch_up_all_runs_every_missed_tick_after_downtime(app: Taskmill) -> None:
    app.schedule("add", "* * * * *", args=[1, 1], catch_up="all")
    scheduler, t0 = Scheduler(app), this_minute()
    scheduler.tick(t0 - s(1))

    created = scheduler.tick(t0 + timedelta(minutes=5, seconds=20))

    assert keys(created) == [key("add", t0 + timedelta(minutes=m)) for m in range(6)]


def test_a_crash_between_enqueue_and_recording_progress_makes_no_second_job(
    app: Taskmill, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.schedule("add", "* * * * * *", args=[1, 1])
    scheduler, t0 = Scheduler(app), this_minute()
    scheduler.tick(t0)

    def database_gone(**_: object) -> bool:
        raise StoreUnavailable("connection lost")

    with monkeypatch.context() as patch:
        patch.setattr(app.store, "advance_schedule", database_gone)
        with pytest.raises(StoreUnavailable):
            scheduler.tick(t0 + s(1))
    [job] = stored_jobs(app)

    assert scheduler.tick(t0 + s(1.5)) == []  # the same tick is due again; its job exists
    assert stored_jobs(app) == [job]
    assert app.store.schedule_states()[0].last_tick_at == t0 + s(1)


def test_stored_progress_only_moves_forward(app: Taskmill) -> None:
    store, t0 = app.store, this_minute()
    job = app.enqueue("add", [1, 1])
    store.start_schedule(name="n", task="add", cron="* * * * * *", tz="UTC", since=t0)

    assert store.advance_schedule(name="n", tick_at=t0 + s(2), job_id=job.id)
    assert not store.advance_schedule(name="n", tick_at=t0 + s(2), job_id=job.id)
    assert not store.advance_schedule(name="n", tick_at=t0 + s(1), job_id=job.id)
    same = store.start_schedule(name="n", task="add", cron="* * * * * *", tz="UTC", since=t0)
    assert same.last_tick_at == t0 + s(2)  # an unchanged definition is left as it is


def test_a_changed_schedule_starts_afresh_from_when_it_is_first_seen(apps: Apps) -> None:
    old_app, new_app = apps(), apps()
    old_app.schedule("add", "* * * * *", name="sum", args=[1, 1])
    new_app.schedule("add", "*/10 * * * *", name="sum", args=[2, 2])
    t0 = this_minute()
    Scheduler(old_app).tick(t0 - s(1))
    assert len(Scheduler(old_app).tick(t0 + s(1))) == 1

    # Deployed 5 minutes later: no job for ticks of the new expression before that.
    assert Scheduler(new_app).tick(t0 + timedelta(minutes=5)) == []
    [state] = new_app.store.schedule_states()
    assert (state.cron, state.last_tick_at) == ("*/10 * * * *", t0 + timedelta(minutes=5))


# -- the loop -------------------------------------------------------------------------------


def test_the_loop_sleeps_until_the_next_tick_or_a_second_at_most(app: Taskmill) -> None:
    app.schedule("add", "* * * * * *", args=[1, 1])
    app.schedule("echo", "0 0 1 1 *")
    now = this_minute() + s(0.25)
    assert SchedulerRunner(app, clock=lambda: now).step() == pytest.approx(0.75)

    del app.schedules["add"]  # next tick next new year: still look at the store each second
    assert SchedulerRunner(app, clock=lambda: now).step() == 1.0


def test_the_loop_survives_a_store_outage_and_backs_off(
    app: Taskmill, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="taskmill.scheduler")
    app.schedule("add", "* * * * * *", args=[1, 1])
    t0 = this_minute()
    clock = [t0]
    runner = SchedulerRunner(app, clock=lambda: clock[0])
    runner.step()

    def unreachable() -> None:
        raise StoreUnavailable("PostgreSQL unreachable: connection refused")

    with monkeypatch.context() as patch:
        patch.setattr(app.store, "schedule_states", unreachable)
        waits = []
        for second in (1, 2, 3):
            clock[0] = t0 + s(second)
            waits.append(runner.step())
    assert waits == [0.25, 0.5, 1.0]
    assert "store call failed, retrying in 0.2s" in caplog.text

    clock[0] = t0 + s(4)
    assert runner.step() <= 1.0
    assert "store reachable again" in caplog.text
    # The ticks of the outage (under 10 s late) are all run once the store is back.
    assert keys(stored_jobs(app)) == [key("add", t0 + s(n)) for n in range(1, 5)]


def test_the_loop_stops_when_asked(app: Taskmill, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="taskmill.scheduler")
    runner = SchedulerRunner(app)
    runner.stop.set()
    assert runner.run() == 0
    assert "scheduler stopped" in caplog.text


@pytest.fixture
def apps(app_factory: Apps) -> Apps:
    return app_factory
