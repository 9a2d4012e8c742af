"""Tasks: registered functions, their default options, and enqueue-time validation."""

from __future__ import annotations

import inspect
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from taskmill.errors import ValidationError
from taskmill.ids import new_id
from taskmill.jobs import NewJob

if TYPE_CHECKING:
    from taskmill.app import Taskmill
    from taskmill.jobs import Job

P = ParamSpec("P")
R = TypeVar("R")

QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
PRIORITY_RANGE = (-1000, 1000)
MAX_RETRIES_LIMIT = 1000
MAX_KEY_LENGTH = 255
MAX_DELAY_S = 366 * 86400.0


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """Per-task defaults; every enqueue may override them."""

    queue: str = "default"
    priority: int = 0
    max_retries: int = 3
    timeout_s: float | None = None
    backoff: float = 2.0

    def validated(self) -> TaskOptions:
        check_queue(self.queue)
        check_priority(self.priority)
        check_max_retries(self.max_retries)
        check_timeout(self.timeout_s)
        check_backoff(self.backoff)
        return self


def check_queue(queue: object) -> str:
    if not isinstance(queue, str) or not QUEUE_NAME.fullmatch(queue):
        raise ValidationError(
            f"queue must be 1-64 characters of letters, digits and _.:- , got {queue!r}"
        )
    return queue


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise ValidationError(f"{name} must be from {low} to {high}, got {value}")
    return value


def check_priority(priority: object) -> int:
    return _check_int("priority", priority, *PRIORITY_RANGE)


def check_max_retries(max_retries: object) -> int:
    return _check_int("max_retries", max_retries, 0, MAX_RETRIES_LIMIT)


def _check_seconds(name: str, value: object, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"{name} must be a number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValidationError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return float(value)


def check_timeout(timeout_s: object) -> float | None:
    return None if timeout_s is None else _check_seconds("timeout", timeout_s, allow_zero=False)


def check_backoff(backoff: object) -> float:
    return _check_seconds("backoff", backoff, allow_zero=True)


def check_idempotency_key(key: object) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH:
        raise ValidationError(f"idempotency_key must be a string of 1-{MAX_KEY_LENGTH} characters")
    return key


def schedule_from(delay: object, run_at: object) -> datetime | None:
    """The job's start time from `delay` seconds or an aware `run_at`; None means now."""
    if delay is not None and run_at is not None:
        raise ValidationError("give either delay or run_at, not both")
    if run_at is not None:
        if not isinstance(run_at, datetime) or run_at.tzinfo is None:
            raise ValidationError("run_at must be a timezone-aware datetime")
        return run_at.astimezone(UTC)
    if delay is None or delay == 0:
        return None
    seconds = _check_seconds("delay", delay, allow_zero=True)
    if seconds > MAX_DELAY_S:
        raise ValidationError(f"delay must be at most {MAX_DELAY_S:.0f} seconds, got {seconds}")
    return datetime.now(UTC) + timedelta(seconds=seconds)


def _refuse_non_json(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON ({value!r:.60})")


def to_json(value: object, what: str) -> str:
    """Encode as compact JSON, refusing anything JSON cannot carry exactly
    (objects, bytes, NaN, non-string keys, strings with NUL or lone surrogates, circular
    or absurdly deep nesting) with a message naming `what`."""
    if value is None:  # the common result of a task, on the worker's hot path
        return "null"
    try:
        _check_tree(value)
        return json.dumps(value, separators=(",", ":"), allow_nan=False, default=_refuse_non_json)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{what} must be JSON: {exc}") from None
    except RecursionError:
        raise ValidationError(f"{what} must be JSON: nested too deeply or circular") from None


def _check_tree(value: object) -> None:
    # json.dumps silently turns int keys into strings; the task would get other data back.
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"object key {key!r} is not a string")
            _check_text(key)
            _check_tree(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_tree(item)
    elif isinstance(value, str):
        _check_text(value)


def _check_text(text: str) -> None:
    # PostgreSQL's jsonb holds neither NUL nor lone surrogates (SQLite would): refuse them
    # here, so that both backends accept the same arguments and the store never fails.
    if "\x00" in text:
        raise TypeError(f"string {text!r:.40} contains NUL (\\u0000)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise TypeError(f"string {text!r:.40} is not valid Unicode (a lone surrogate)") from None


class Task(Generic[P, R]):
    """A registered function. Call it to run it here; `enqueue` it to run it on a worker."""

    def __init__(self, app: Taskmill, fn: Callable[P, R], name: str, options: TaskOptions) -> None:
        self.app = app
        self.fn = fn
        self.name = name
        self.options = options.validated()
        self.signature = inspect.signature(fn)
        self.is_async = inspect.iscoroutinefunction(fn)
        self._arity = _positional_arity(self.signature)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.options.queue}>"

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Store a job that runs this task with these arguments; returns it at once."""
        return self.app.enqueue(self.name, args=list(args), kwargs=dict(kwargs))

    async def enqueue_async(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        return await self.app.enqueue_async(self.name, args=list(args), kwargs=dict(kwargs))

    def check_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        arity = self._arity
        if not kwargs and arity is not None and arity[0] <= len(args) <= arity[1]:
            return  # what bind() would accept, without its cost
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ValidationError(f"bad arguments for task {self.name!r}: {exc}") from None

    def _options(
        self,
        queue: str | None,
        priority: int | None,
        max_retries: int | None,
        timeout: float | None,
        backoff: float | None,
    ) -> TaskOptions:
        overrides: dict[str, Any] = {
            "queue": queue,
            "priority": priority,
            "max_retries": max_retries,
            "timeout_s": timeout,
            "backoff": backoff,
        }
        changed = {k: v for k, v in overrides.items() if v is not None}
        return replace(self.options, **changed).validated() if changed else self.options

    def new_job(
        self,
        args: Sequence[Any] | None = None,
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
        job_id: str | None = None,
    ) -> NewJob:
        """Validate one enqueue request against this task; raises ValidationError.

        `job_id` is for callers that draw ids in bulk (`taskmill.ids.new_ids`)."""
        if args is None:
            args = []
        elif isinstance(args, list | tuple):
            args = list(args)
        else:
            raise ValidationError(f"args must be a list, got {type(args).__name__}")
        if kwargs is None:
            kwargs = {}
        elif isinstance(kwargs, Mapping):
            kwargs = dict(kwargs)
        else:
            raise ValidationError(f"kwargs must be an object, got {type(kwargs).__name__}")
        self.check_arguments(args, kwargs)
        if (
            queue is None and priority is None and max_retries is None
            and timeout is None and backoff is None
        ):  # fmt: skip
            opts = self.options  # no overrides: validated when the task was registered
        else:
            opts = self._options(queue, priority, max_retries, timeout, backoff)
        return NewJob(
            new_id() if job_id is None else job_id,
            self.name,
            opts.queue,
            opts.priority,
            args,
            kwargs,
            to_json(args, "args") if args else "[]",
            to_json(kwargs, "kwargs") if kwargs else "{}",
            opts.max_retries,
            opts.timeout_s,
            opts.backoff,
            None if idempotency_key is None else check_idempotency_key(idempotency_key),
            None if delay is None and run_at is None else schedule_from(delay, run_at),
        )


def _positional_arity(signature: inspect.Signature) -> tuple[int, float] | None:
    """(fewest, most) positional arguments that bind to `signature` when no keyword
    argument is given; None when no count does (a required keyword-only parameter)."""
    fewest, most = 0, 0.0
    for param in signature.parameters.values():
        if param.kind is param.VAR_POSITIONAL:
            most = math.inf
        elif param.kind is param.KEYWORD_ONLY:
            if param.default is param.empty:
                return None
        elif param.kind is not param.VAR_KEYWORD:
            most += 1
            fewest += param.default is param.empty
    return fewest, most
