"""Taskmill: settings -> store -> task registry, and the job-control API of the spec."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, ParamSpec, TypeVar, overload

from taskmill.asyncify import async_twin
from taskmill.config import Settings
from taskmill.errors import JobNotFound, UnknownTaskError, ValidationError
from taskmill.ids import new_ids
from taskmill.jobs import Job, JobStatus, NewJob
from taskmill.scheduler.periodic import CatchUp, Schedule
from taskmill.store import Store, open_store
from taskmill.store.base import JobFilter
from taskmill.tasks import Task, TaskOptions

P = ParamSpec("P")
R = TypeVar("R")

ENQUEUE_KEYS = frozenset(
    {"task", "args", "kwargs", "queue", "priority", "delay", "run_at", "max_retries",
     "timeout", "backoff", "idempotency_key"}
)  # fmt: skip
WAIT_POLL_MIN_S = 0.002
WAIT_POLL_MAX_S = 0.1


class Taskmill:
    """A taskmill application: where its jobs are stored and which tasks it knows.

    Nothing connects to the database until the first call that needs it, so importing a
    module that creates an app is free (worker children import it too)."""

    def __init__(self, database_url: str | None = None, *, settings: Settings | None = None):
        self.settings = settings or Settings.from_env(database_url=database_url)
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.schedules: dict[str, Schedule] = {}
        self._store: Store | None = None
        self._store_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Taskmill {self.settings.database_url} tasks={len(self.tasks)}>"

    # -- tasks ----------------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int = 0,
        max_retries: int = 3,
        timeout: float | None = None,
        backoff: float = 2.0,
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(  # type: ignore[misc]  # mypy cannot match a ParamSpec-only overload
        self,
        fn: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int = 0,
        max_retries: int = 3,
        timeout: float | None = None,
        backoff: float = 2.0,
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Register a function as a task (usable bare or with options). The name defaults
        to the function's name and must be unique in the app."""
        options = TaskOptions(queue, priority, max_retries, timeout, backoff)

        def register(func: Callable[P, R]) -> Task[P, R]:
            task = Task(self, func, name or func.__name__, options)
            if task.name in self.tasks:
                raise ValidationError(f"a task named {task.name!r} is already registered")
            self.tasks[task.name] = task
            return task

        return register if fn is None else register(fn)

    def include(self, other: Taskmill) -> None:
        """Register every task and schedule of `other` here too (e.g. the built-in image and
        demo tasks, and the image cleanup)."""
        for task in other.tasks.values():
            if task.name not in self.tasks:
                self.tasks[task.name] = Task(self, task.fn, task.name, task.options)
        for schedule in other.schedules.values():
            self.schedules.setdefault(schedule.name, schedule)

    # -- periodic tasks -------------------------------------------------------------------

    def periodic(
        self,
        cron: str,
        *,
        name: str | None = None,
        tz: str = "UTC",
        catch_up: CatchUp = "latest",
        args: list[Any] | tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
        queue: str = "default",
        priority: int = 0,
        max_retries: int = 3,
        timeout: float | None = None,
        backoff: float = 2.0,
    ) -> Callable[[Callable[P, R]], Task[P, R]]:
        """Register a function as a task (options as for `task`) and run it on a cron
        schedule: 5 fields, or 6 with seconds first. The schedule has the task's name. See
        `schedule` for tz, catch_up, args and kwargs; raises ValidationError at once for a
        bad expression, time zone or arguments (and then registers nothing)."""

        def register(func: Callable[P, R]) -> Task[P, R]:
            task_name = name or func.__name__
            schedule = Schedule(task_name, task_name, cron, tz, catch_up, args,
                                {} if kwargs is None else kwargs)  # fmt: skip
            task = self.task(
                name=task_name, queue=queue, priority=priority, max_retries=max_retries,
                timeout=timeout, backoff=backoff,
            )(func)  # fmt: skip
            try:
                self.add_schedule(schedule)
            except ValidationError:
                del self.tasks[task.name]
                raise
            return task

        return register

    def schedule(
        self,
        task: str | Task[Any, Any],
        cron: str,
        *,
        name: str | None = None,
        tz: str = "UTC",
        catch_up: CatchUp = "latest",
        args: list[Any] | tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Schedule:
        """Run a registered task on a cron schedule: 5 fields (minute hour day month
        weekday), or 6 with seconds first (Quartz/Spring order), read in the IANA time zone
        `tz`. Every tick makes exactly one job, however many schedulers run. After
        downtime, catch_up="latest" runs only the latest missed tick, "all" each missed
        tick (the latest 100 at most). `name` (default: the task's) must be unique; it names
        the schedule's stored progress, so renaming one starts it afresh. Raises
        ValidationError or UnknownTaskError."""
        task_name = task if isinstance(task, str) else task.name
        return self.add_schedule(
            Schedule(name or task_name, task_name, cron, tz, catch_up, args,
                     {} if kwargs is None else kwargs)
        )  # fmt: skip

    def add_schedule(self, schedule: Schedule) -> Schedule:
        """Register a Schedule, checking its task and arguments. Raises ValidationError."""
        task = self.get_task(schedule.task)
        if schedule.name in self.schedules:
            raise ValidationError(f"a schedule named {schedule.name!r} is already registered")
        try:
            task.new_job(schedule.args, schedule.kwargs)
        except ValidationError as exc:
            raise ValidationError(f"schedule {schedule.name!r}: {exc}") from None
        self.schedules[schedule.name] = schedule
        return schedule

    def get_task(self, name: object) -> Task[Any, Any]:
        if not isinstance(name, str) or name not in self.tasks:
            known = ", ".join(sorted(self.tasks)) or "none"
            raise UnknownTaskError(f"unknown task {name!r} (registered: {known})")
        return self.tasks[name]

    # -- store ----------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        if self._store is None:
            with self._store_lock:
                if self._store is None:
                    self._store = open_store(self.settings.database_url)
        return self._store

    def migrate(self) -> int:
        """Create or upgrade the schema; returns its version. Safe to run concurrently."""
        return self.store.migrate()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    # -- job control ----------------------------------------------------------------------

    def enqueue(
        self,
        task: str,
        args: list[Any] | tuple[Any, ...] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay: float | None = None,
        run_at: datetime | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
        backoff: float | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Store one job and return it (status pending). Options default to the task's.

        Raises UnknownTaskError or ValidationError, naming the bad part, before anything is
        stored. With an `idempotency_key` already used for this task, returns that job."""
        new = self.get_task(task).new_job(
            args, kwargs, queue=queue, priority=priority, delay=delay, run_at=run_at,
            max_retries=max_retries, timeout=timeout, backoff=backoff,
            idempotency_key=idempotency_key,
        )  # fmt: skip
        return self.store.insert_jobs([new])[0]

    def enqueue_many(self, specs: Iterable[Mapping[str, Any]]) -> list[Job]:
        """Store many jobs in one round trip; each spec has the keys of `enqueue` (task,
        args, kwargs, queue, ...). All are validated first: one bad spec stores none, and
        the error names its index."""
        specs = list(specs)
        keyed = any(isinstance(s, Mapping) and s.get("idempotency_key") is not None for s in specs)
        if keyed:
            return self.store.insert_jobs(list(self._new_jobs(specs)))
        # Validated while they are sent, so the database inserts early rows while later
        # ones are checked; a bad spec aborts the insert and none is stored.
        return self.store.insert_streamed_jobs(len(specs), self._new_jobs(specs))

    def _new_jobs(self, specs: list[Any]) -> Iterator[NewJob]:
        for index, (spec, job_id) in enumerate(zip(specs, new_ids(len(specs)), strict=True)):
            try:
                yield self._new_job_from_spec(spec, job_id)
            except ValidationError as exc:
                raise type(exc)(f"job {index}: {exc}") from None

    def _new_job_from_spec(self, spec: Mapping[str, Any], job_id: str) -> NewJob:
        if type(spec) is not dict and not isinstance(spec, Mapping):  # dict: the usual, quick
            raise ValidationError(f"a job spec must be a mapping, got {type(spec).__name__}")
        if not spec.keys() <= ENQUEUE_KEYS:
            unknown = set(spec) - ENQUEUE_KEYS
            raise ValidationError(
                f"unknown keys {sorted(unknown)} (allowed: {sorted(ENQUEUE_KEYS)})"
            )
        task = self.get_task(spec.get("task"))
        if len(spec) == 1:  # {"task": name}: nothing else to pass on
            return task.new_job(job_id=job_id)
        options = {k: v for k, v in spec.items() if k != "task"}
        return task.new_job(**options, job_id=job_id)

    def get(self, job_id: str) -> Job:
        """The job as stored now. Raises JobNotFound."""
        job = self.store.get_job(_check_id(job_id))
        if job is None:
            raise JobNotFound(f"no job with id {job_id}")
        return job

    def list(
        self,
        *,
        status: JobStatus | str | None = None,
        queue: str | None = None,
        task: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> list[Job]:
        """Jobs newest first; pass the last id of a page as `cursor` for the next page.
        Raises ValidationError for a bad status, limit or cursor."""
        if status is not None:
            try:
                status = JobStatus(status)
            except ValueError:
                raise ValidationError(
                    f"status must be one of {[s.value for s in JobStatus]}, got {status!r}"
                ) from None
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise ValidationError(f"limit must be from 1 to 1000, got {limit!r}")
        filt = JobFilter(status=status, queue=queue, task=task)
        return self.store.list_jobs(filt, limit=limit, before_id=_check_cursor(cursor))

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job is completed, failed or cancelled, and return it.

        Raises TimeoutError after `timeout` seconds (None waits as long as it takes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        poll_s = WAIT_POLL_MIN_S
        while True:
            job = self.get(job_id)
            if job.is_final:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {job.status} after {timeout}s")
            pause = poll_s if deadline is None else min(poll_s, deadline - time.monotonic())
            time.sleep(max(0.0, pause))
            poll_s = min(poll_s * 1.5, WAIT_POLL_MAX_S)

    def cancel(self, job_id: str) -> Job:
        """Cancel a pending job at once, or have a running one killed (it then ends
        cancelled). Raises InvalidTransition for a finished job, JobNotFound."""
        return self.store.cancel_job(_check_id(job_id))

    def retry(self, job_id: str) -> Job:
        """Put a failed or cancelled job back to pending with a fresh attempt budget."""
        return self.store.retry_job(_check_id(job_id))

    enqueue_async = async_twin(enqueue)
    enqueue_many_async = async_twin(enqueue_many)
    get_async = async_twin(get)
    list_async = async_twin(list)
    wait_async = async_twin(wait)
    cancel_async = async_twin(cancel)
    retry_async = async_twin(retry)
    migrate_async = async_twin(migrate)


def _check_cursor(cursor: object) -> str | None:
    # A bad cursor is bad input to a list, not a missing job; "" (as in `?cursor=`) is none.
    if cursor is None or cursor == "":
        return None
    try:
        return str(uuid.UUID(str(cursor)))
    except ValueError:
        raise ValidationError(
            f"cursor must be the id of the last job of a page, got {cursor!r}"
        ) from None


def _check_id(job_id: object) -> str:
    try:
        return str(uuid.UUID(str(job_id)))
    except ValueError:
        raise JobNotFound(f"no job with id {job_id!r} (not a job id)") from None
