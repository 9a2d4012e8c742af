"""Periodic tasks: cron schedules, their ticks, and turning due ticks into jobs.

Exactly one job per tick without a leader: a tick's job carries the idempotency key
`periodic:<schedule>:<tick in UTC ISO>`, so any number of schedulers computing the same
tick insert one job between them. Each schedule's progress (`last_tick_at`) is kept in
the store and only ever moves forward, so racing schedulers agree on where they are.

Pure except for `Scheduler.tick`, which talks to the store: the clock is injected, so
tests can jump minutes without sleeping.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from taskmill.errors import ConfigError, TaskmillError, ValidationError
from taskmill.jobs import Job, JobStatus, NewJob
from taskmill.store.base import ScheduleState

if TYPE_CHECKING:
    from taskmill.app import Taskmill

log = logging.getLogger("taskmill.scheduler")

CatchUp = Literal["latest", "all"]
CATCH_UP_POLICIES: tuple[CatchUp, ...] = ("latest", "all")

# A tick at most this late is run even when later ticks are due too: a slow database or a
# paused process delays ticks but never drops them. Older ticks are *missed* (every
# scheduler was down) and handled by the schedule's catch_up policy.
LATE_GRACE_S = 10.0
MAX_CATCH_UP_TICKS = 100  # catch_up="all" enqueues at most this many missed ticks
MAX_NAME_LENGTH = 200  # the idempotency key (name + 35 characters) must fit in 255

CRON_FIELDS_HELP = (
    "5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first "
    "(second minute hour day-of-month month day-of-week)"
)
_RANDOM_FIELD = re.compile(r"^r(\(|/|$)", re.IGNORECASE)
# The usual meanings. (croniter, given a hash id, would read them as hashed times.)
_ALIASES = {
    "@midnight": "0 0 * * *", "@hourly": "0 * * * *", "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}  # fmt: skip
ENV_KEYS = frozenset({"task", "cron", "name", "tz", "catch_up", "args", "kwargs"})


def utc_now() -> datetime:
    return datetime.now(UTC)


def _expression(cron: str) -> str:
    return _ALIASES.get(cron.strip().lower(), cron)


def _croniter() -> Any:
    # Imported on first use: a process importing an app without periodic tasks (a worker
    # child, the CLI) does not pay the ~40 ms croniter and dateutil take to import.
    from croniter import croniter

    return croniter


def _expand(cron: str, hash_id: str) -> list[list[Any]]:
    """croniter's reading of the expression: one list of values (or ['*']) per field."""
    expanded = _croniter().expand(_expression(cron), hash_id=hash_id.encode(),
                               second_at_beginning=True)[0]  # fmt: skip
    return cast(list[list[Any]], expanded)


def check_cron(cron: object, *, hash_id: str) -> list[list[Any]]:
    """Refuse anything but 5 fields, or 6 with seconds first (Quartz/Spring order); returns
    the values of each field (minute, hour, ...; ['*'] for all).

    `H` (hashed) fields are allowed and spread by `hash_id` (the schedule name), the same
    on every scheduler; `R` (random) fields are refused: schedulers would draw different
    ticks and could no longer agree on one job per tick."""
    if not isinstance(cron, str) or not cron.strip():
        raise ValidationError(f"cron must be a non-empty string, got {cron!r}")
    fields = _expression(cron).split()
    if len(fields) not in (5, 6):
        raise ValidationError(f"cron {cron!r} has {len(fields)} fields; give {CRON_FIELDS_HELP}")
    if any(_RANDOM_FIELD.match(f) for f in fields):
        raise ValidationError(
            f"cron {cron!r}: random (R) fields are not supported: every scheduler must "
            "compute the same ticks (use H to spread schedules deterministically)"
        )
    try:
        return _expand(cron, hash_id)
    except (ValueError, TypeError) as exc:  # croniter's errors derive from these
        raise ValidationError(f"cron {cron!r}: {exc}; give {CRON_FIELDS_HELP}") from None


def check_zone(tz: object) -> ZoneInfo:
    if not isinstance(tz, str):
        raise ValidationError(f"tz must be an IANA time zone name, got {tz!r}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            f"tz {tz!r} is not a known IANA time zone (examples: UTC, Europe/Paris)"
        ) from None


@dataclass(frozen=True, slots=True)
class Schedule:
    """When to run a task: a cron expression read in a time zone. Validated on creation
    (raises ValidationError naming what is wrong)."""

    name: str
    task: str
    cron: str
    tz: str = "UTC"
    catch_up: CatchUp = "latest"
    args: Sequence[Any] = ()  # stored as a tuple
    kwargs: Mapping[str, Any] = field(default_factory=dict)  # stored as a dict
    _every_hour: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not 0 < len(self.name) <= MAX_NAME_LENGTH:
            raise ValidationError(
                f"schedule name must be 1-{MAX_NAME_LENGTH} characters, got {self.name!r}"
            )
        try:
            fields = self._validate()
        except ValidationError as exc:
            raise ValidationError(f"schedule {self.name!r}: {exc}") from None
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "kwargs", dict(self.kwargs))
        object.__setattr__(self, "_every_hour", fields[1] == ["*"])

    def _validate(self) -> list[list[Any]]:
        fields = check_cron(self.cron, hash_id=self.name)
        check_zone(self.tz)
        if self.catch_up not in CATCH_UP_POLICIES:
            raise ValidationError(
                f"catch_up must be one of {list(CATCH_UP_POLICIES)}, got {self.catch_up!r}"
            )
        if not isinstance(self.args, list | tuple):
            raise ValidationError(f"args must be a list, got {type(self.args).__name__}")
        if not isinstance(self.kwargs, Mapping):
            raise ValidationError(f"kwargs must be an object, got {type(self.kwargs).__name__}")
        return fields

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def _iter(self, start: datetime, *, backwards: bool = False) -> Iterator[datetime]:
        it = _croniter()(
            _expression(self.cron), start.astimezone(self.zone), ret_type=datetime,
            hash_id=self.name, second_at_beginning=True,
        )  # fmt: skip
        step = it.get_prev if backwards else it.get_next
        while True:
            local = cast(datetime, step())
            if not self._repeated(local):
                yield local.astimezone(UTC)

    def _repeated(self, local: datetime) -> bool:
        """A wall-clock time seen a second time, in the hour a fall-back change repeats.
        As in Vixie cron, only schedules that run every hour run again then; a daily
        02:30 job runs once that night, not twice. (A time skipped by a spring-forward
        change runs at the jump, once: croniter's behaviour.)"""
        return (
            local.fold == 1
            and not self._every_hour
            and local.utcoffset() != local.replace(fold=0).utcoffset()
        )

    def next_tick(self, after: datetime) -> datetime:
        """The first tick strictly after `after`, in UTC."""
        return next(self._iter(after))

    def ticks_between(self, after: datetime, until: datetime) -> list[datetime]:
        """Ticks in (after, until], oldest first. Callers keep the window short."""
        ticks: list[datetime] = []
        for tick in self._iter(after):
            if tick > until:
                return ticks
            ticks.append(tick)
        raise AssertionError("unreachable")  # pragma: no cover - the iterator is endless

    def latest_ticks(self, after: datetime, until: datetime, *, limit: int) -> list[datetime]:
        """The latest `limit` ticks in (after, until], oldest first: bounded work however
        long the window (a schedule that was down for a year costs `limit` steps)."""
        ticks: list[datetime] = []
        # get_prev is strictly before its start; nudge so that a tick at `until` counts.
        for tick in self._iter(until + timedelta(microseconds=1), backwards=True):
            if tick <= after or len(ticks) >= limit:
                break
            ticks.append(tick)
        return ticks[::-1]

    def due_ticks(self, last: datetime, now: datetime) -> list[datetime]:
        """The ticks to enqueue at `now`, given that every tick up to `last` is done.

        Ticks at most LATE_GRACE_S late are all due. Older ones were missed: "latest" runs
        only the most recent tick (and none of the missed ones when a recent tick exists),
        "all" runs every missed tick too, the latest MAX_CATCH_UP_TICKS at most."""
        recent_from = max(last, now - timedelta(seconds=LATE_GRACE_S))
        recent = self.ticks_between(recent_from, now)
        if self.catch_up == "latest":
            return recent or self.latest_ticks(last, now, limit=1)
        room = MAX_CATCH_UP_TICKS - len(recent)
        missed = self.latest_ticks(last, recent_from, limit=room) if room > 0 else []
        return missed + recent[-MAX_CATCH_UP_TICKS:]

    def idempotency_key(self, tick: datetime) -> str:
        return f"periodic:{self.name}:{tick.astimezone(UTC).isoformat(timespec='seconds')}"

    def describes(self, state: ScheduleState) -> bool:
        """True when the stored state was kept for this very definition."""
        return (state.task, state.cron, state.tz) == (self.task, self.cron, self.tz)


def schedules_from_json(text: str, *, source: str = "TASKMILL_SCHEDULES") -> list[dict[str, Any]]:
    """Parse a JSON list of {task, cron, name?, tz?, catch_up?, args?, kwargs?}; raises
    ConfigError naming `source` and the bad item."""
    try:
        items = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{source}: not JSON: {exc}") from None
    if not isinstance(items, list):
        raise ConfigError(f"{source}: must be a JSON list of schedules")
    for index, item in enumerate(items):
        where = f"{source}: schedule {index}"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: must be an object with task and cron")
        unknown = set(item) - ENV_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)} (allowed: "
                              f"{sorted(ENV_KEYS)})")  # fmt: skip
        if "task" not in item or "cron" not in item:
            raise ConfigError(f"{where}: needs both task and cron")
    return items


def add_env_schedules(app: Taskmill, env: Mapping[str, str]) -> list[Schedule]:
    """Register the schedules of TASKMILL_SCHEDULES in `env` on `app`. A schedule already
    registered with the same definition is left as is, so calling this twice is harmless.
    Raises ConfigError naming the bad schedule."""
    text = env.get("TASKMILL_SCHEDULES", "").strip()
    added: list[Schedule] = []
    for index, item in enumerate(schedules_from_json(text) if text else []):
        options = {k: v for k, v in item.items() if k not in ("task", "cron", "name")}
        try:
            schedule = Schedule(
                name=item.get("name") or item["task"], task=item["task"], cron=item["cron"],
                **options,
            )  # fmt: skip
            if app.schedules.get(schedule.name) != schedule:
                added.append(app.add_schedule(schedule))
        except TaskmillError as exc:
            raise ConfigError(f"TASKMILL_SCHEDULES: schedule {index}: {exc}") from None
    return added


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """One schedule as `taskmill schedules` shows it."""

    name: str
    task: str
    cron: str
    tz: str
    catch_up: str | None  # None: stored, but not registered in this app
    last_tick_at: datetime | None  # None: no job yet
    last_job_id: str | None
    last_job_status: JobStatus | None
    next_tick_at: datetime | None
    overdue: bool  # the next tick is in the past: is a scheduler running?


def describe_schedules(
    schedules: Mapping[str, Schedule], states: Sequence[ScheduleState], now: datetime
) -> list[ScheduleInfo]:
    """The app's schedules with their stored progress, then stored ones the app does not
    know (removed from the code, or registered by another app), by name."""
    by_name = {s.name: s for s in states}
    return [
        _describe(schedules.get(name), by_name.get(name), now)
        for name in sorted(set(schedules) | set(by_name))
    ]


def _describe(
    schedule: Schedule | None, state: ScheduleState | None, now: datetime
) -> ScheduleInfo:
    next_tick = None
    if schedule is not None:
        # Where the scheduler will go on from: its progress, unless it starts afresh.
        current = state is not None and schedule.describes(state)
        next_tick = schedule.next_tick(state.last_tick_at if state and current else now)
    source = schedule or state
    assert source is not None
    ran = state is not None and state.last_job_id is not None
    return ScheduleInfo(
        name=source.name, task=source.task, cron=source.cron, tz=source.tz,
        catch_up=schedule.catch_up if schedule else None,
        last_tick_at=state.last_tick_at if state and ran else None,
        last_job_id=state.last_job_id if state else None,
        last_job_status=state.last_job_status if state else None,
        next_tick_at=next_tick,
        overdue=next_tick is not None and next_tick < now - timedelta(seconds=LATE_GRACE_S),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Due:
    schedule: Schedule
    tick: datetime
    new: NewJob


class Scheduler:
    """Turns the app's schedules into jobs. Any number may run at once, in one process or
    on many machines: each tick still produces exactly one job."""

    def __init__(self, app: Taskmill, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.app = app
        self.clock = clock

    def tick(self, now: datetime | None = None) -> list[Job]:
        """Enqueue a job for every tick due at `now` (default: the clock) and move each
        schedule's stored progress forward. Returns the jobs this call created; a tick whose
        job another scheduler already created is not repeated. A schedule seen for the
        first time — or whose definition changed — starts from `now`, without back-fill.
        Raises StoreError when the database fails (nothing is lost: the next call redoes
        what is not recorded)."""
        now = self.clock() if now is None else now
        schedules = list(self.app.schedules.values())
        if not schedules:
            return []
        store = self.app.store
        states = {s.name: s for s in store.schedule_states()}
        due: list[_Due] = []
        for schedule in schedules:
            state = states.get(schedule.name)
            if state is None or not schedule.describes(state):
                state = store.start_schedule(
                    name=schedule.name, task=schedule.task, cron=schedule.cron,
                    tz=schedule.tz, since=now,
                )  # fmt: skip
                if not schedule.describes(state):
                    continue  # another scheduler runs another definition of it: theirs wins
            due += [_Due(schedule, t, self._new_job(schedule, t))
                    for t in schedule.due_ticks(state.last_tick_at, now)]  # fmt: skip
        return self._enqueue(due) if due else []

    def _new_job(self, schedule: Schedule, tick: datetime) -> NewJob:
        return self.app.get_task(schedule.task).new_job(
            schedule.args, schedule.kwargs, run_at=tick,
            idempotency_key=schedule.idempotency_key(tick),
        )  # fmt: skip

    def _enqueue(self, due: list[_Due]) -> list[Job]:
        # Insert first, then record progress: a crash in between only makes the next pass
        # find the same ticks due, and their keys return the jobs already made.
        store = self.app.store
        jobs = store.insert_jobs([d.new for d in due])
        created: list[Job] = []
        latest: dict[str, tuple[datetime, str]] = {}
        for d, job in zip(due, jobs, strict=True):
            latest[d.schedule.name] = (d.tick, job.id)  # due ticks are oldest first
            if job.id == d.new.id:
                created.append(job)
                log.info(
                    "schedule %s fired: job %s for %s", d.schedule.name, job.id,
                    d.new.idempotency_key,
                    extra={"action": "schedule_fired", "job_id": job.id,
                           "schedule": d.schedule.name},
                )  # fmt: skip
        for name, (tick, job_id) in latest.items():
            store.advance_schedule(name=name, tick_at=tick, job_id=job_id)
        return created

    def next_tick_at(self, now: datetime) -> datetime | None:
        """The earliest tick of any schedule after `now`; None without schedules."""
        ticks = [s.next_tick(now) for s in self.app.schedules.values()]
        return min(ticks) if ticks else None
